"""The one-pass SAML response processor on genuine pysaml2 responses: signed response and/or
assertion, encrypted assertions, and what must be refused."""

from __future__ import annotations

import base64
import re

import pytest

from broker.errors import InvalidResponse
from broker.proxy import xmlsig
from broker.proxy.saml_response import Expected, IdpKeys, process_response

if __package__:
    from .xmlsig_helpers.peers import ACS_URL, IDP_ENTITY_ID, REQUEST_ID, SP_ENTITY_ID, make_peers
else:  # tests/saml is not a package: pytest put it on sys.path
    from xmlsig_helpers.peers import ACS_URL, IDP_ENTITY_ID, REQUEST_ID, SP_ENTITY_ID, make_peers

EXPECTED = Expected(sp_entity_id=SP_ENTITY_ID, acs_url=ACS_URL, request_id=REQUEST_ID, idp_entity_id=IDP_ENTITY_ID)


@pytest.fixture(scope="module")
def peers(tmp_path_factory):
    peers = make_peers(tmp_path_factory.mktemp("peers"), encryption=True)
    xmlsig.configure_signatures(peers.idp)
    return peers


@pytest.fixture(scope="module")
def keys(peers):
    return IdpKeys({IDP_ENTITY_ID: [peers.idp_keys.cert_base64]})


@pytest.fixture(scope="module")
def decryption_key(peers):
    return xmlsig.private_key(peers.sp_enc_keys.key_file)


def _process(xml: str, keys, decryption_key=None):
    return process_response(base64.b64encode(xml.encode()).decode(), EXPECTED, keys, decryption_key=decryption_key)


@pytest.mark.parametrize("sign_response,sign_assertion", [(True, True), (True, False), (False, True)])
def test_signed_by_response_or_assertion_is_accepted(peers, keys, sign_response, sign_assertion):
    assertion = _process(peers.response_xml(sign_response=sign_response, sign_assertion=sign_assertion), keys)
    assert assertion.issuer == IDP_ENTITY_ID and assertion.name_id
    assert assertion.attributes


def test_unsigned_is_refused(peers, keys):
    with pytest.raises(InvalidResponse, match="neither the assertion nor the response is signed"):
        _process(peers.response_xml(sign_response=False, sign_assertion=False), keys)


@pytest.mark.parametrize("sign_response", [True, False])
def test_encrypted_assertion_is_decrypted_with_our_key_only(peers, keys, decryption_key, sign_response):
    xml = peers.response_xml(sign_response=sign_response, sign_assertion=True, encrypt_assertion=True)
    assert "EncryptedAssertion" in xml
    assertion = _process(xml, keys, decryption_key)
    assert assertion.attributes
    with pytest.raises(InvalidResponse, match="no decryption key"):
        _process(xml, keys)
    wrong = xmlsig.private_key(peers.sp_keys.key_file)
    with pytest.raises(InvalidResponse):
        _process(xml, keys, wrong)


def test_tampered_ciphertext_is_refused(peers, keys, decryption_key):
    xml = peers.response_xml(sign_response=False, sign_assertion=True, encrypt_assertion=True)
    values = re.findall(r"<(?:\w+:)?CipherValue>([^<]+)<", xml)
    data = bytearray(base64.b64decode(values[-1]))
    data[len(data) // 2] ^= 0x01
    tampered = xml.replace(values[-1], base64.b64encode(bytes(data)).decode())
    with pytest.raises(InvalidResponse):
        _process(tampered, keys, decryption_key)


def test_a_key_not_in_metadata_never_verifies(peers):
    other = IdpKeys({IDP_ENTITY_ID: [peers.attacker_keys.cert_base64]})
    with pytest.raises(InvalidResponse, match="signature does not verify"):
        _process(peers.response_xml(), other)
    with pytest.raises(InvalidResponse, match="no signing certificate"):
        _process(peers.response_xml(), IdpKeys({}))
