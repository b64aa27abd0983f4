"""SAML in and out, by job: the hardened parser, keys, signatures, encryption, the per-IdP crypto
policy, the one response processor, metadata fetched by URL, and pysaml2's in-process crypto plugin.

====================  =============================================================
module                concern
====================  =============================================================
``xml_parsing``       the hardened parser (no DTD, UTF-8 only, unique IDs)
``xml_keys``          keys and certificates, parsed once
``xml_signatures``    enveloped signatures, verified and made (XML-DSig)
``xml_encryption``    encrypted assertions, decrypted and made (XML-Enc)
``crypto_policy``     which algorithms an IdP's messages may use (decision 9)
``response``          the one processor of a ``<Response>`` (Profiles §4.1.4.3, decision 7)
``schema``            SAML schema validation on libxml2
``metadata``          IdP metadata by URL, pinned to its signing certificates (up to 3)
``metadata_refresh``  that metadata kept current in the background, shared by instances
``pysaml2_crypto``    pysaml2's ``CryptoBackend``/``SecurityContext``, in-process
====================  =============================================================
"""
