"""The SAML toolkit: hardened XML parsing, signatures, encryption, the one response processor, metadata."""
