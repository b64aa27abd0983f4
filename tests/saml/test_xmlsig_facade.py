"""``broker.proxy.xmlsig`` is only re-exports now: the names other modules import keep working,
and the ``xmlsec1`` backend cannot be selected any more (ADR 0009)."""

from __future__ import annotations

import pytest

from broker.proxy import pysaml2_crypto, xml_encryption, xml_keys, xml_parsing, xml_signatures, xmlsig

KEPT = {
    "IN_PROCESS": pysaml2_crypto, "configure_signatures": pysaml2_crypto, "pysaml2_config_overrides": pysaml2_crypto,
    "check_libxml2": xml_parsing, "parse": xml_parsing, "check_unique_ids": xml_parsing,
    "private_key": xml_keys, "certificate_key": xml_keys, "clear_key_cache": xml_keys,
    "verify_node": xml_signatures, "verify_signature": xml_signatures, "sign": xml_signatures,
    "decrypt_node": xml_encryption, "decrypt": xml_encryption, "encrypt_node": xml_encryption,
    "CryptoBackendXmlSecInProcess": pysaml2_crypto, "InProcessSecurityContext": pysaml2_crypto,
}


@pytest.mark.parametrize("name", sorted(KEPT))
def test_the_old_names_are_the_new_modules_objects(name):
    assert getattr(xmlsig, name) is getattr(KEPT[name], name)
    assert name in xmlsig.__all__


def test_the_xmlsec1_backend_is_gone():
    for name in ("XMLSEC1", "SIGNATURE_BACKENDS", "use_xmlsec1_signatures"):
        assert not hasattr(xmlsig, name) and not hasattr(pysaml2_crypto, name)
    assert xmlsig.IN_PROCESS == "in-process"
    with pytest.raises(ValueError, match="signature_backend must be 'in-process'"):
        xmlsig.pysaml2_config_overrides("xmlsec1")
