"""libxml2 schema validation against pysaml2's xmlschema validator: never more permissive.

pysaml2 validates ``str(item)`` — its own re-serialization of each signed item —
so the corpus is exactly that: the items of genuine responses (every signing and
encryption combination), of every wrapping attack, and of hand-made mutations
that break one schema rule each.
"""

from __future__ import annotations

import re

import pytest
from saml2 import samlp
from saml2.xml.schema import XMLSchemaError
from saml2.xml.schema import validate as xmlschema_validate

from broker.saml import schema as xmlsig_schema
from broker.saml.pysaml2_crypto import configure_signatures

if __package__:
    from .xmlsig_helpers import attacks
    from .xmlsig_helpers.peers import make_peers
else:  # tests/saml is not a package: pytest put it on sys.path
    from xmlsig_helpers import attacks
    from xmlsig_helpers.peers import make_peers


def verdict(validate, doc: str) -> bool:
    try:
        validate(doc)
    except XMLSchemaError:
        return False
    return True


def items(xml: str) -> list[str]:
    """What pysaml2 schema-validates for a response: the Response and each Assertion, re-serialized."""
    response = samlp.response_from_string(xml)
    return [str(response)] + [str(assertion) for assertion in response.assertion]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, list[str]]:
    peers = make_peers(tmp_path_factory.mktemp("peers"), encryption=True)
    configure_signatures(peers.idp)
    genuine, attacked = [], []
    for sign_response, sign_assertion, encrypt in [(True, True, False), (True, False, False),
                                                   (False, True, False), (True, True, True)]:
        xml = peers.response_xml(sign_response=sign_response, sign_assertion=sign_assertion,
                                 encrypt_assertion=encrypt)
        genuine += items(xml)
        if encrypt:
            continue
        wrappings = {**(attacks.RESPONSE_WRAPPING if sign_response else {}),
                     **(attacks.ASSERTION_WRAPPING if sign_assertion else {})}
        for wrap in wrappings.values():
            for same_id in (True, False):
                attacked += items(wrap(xml, same_id=same_id))
    return {"genuine": genuine, "attacked": attacked}


MUTATIONS = {
    "assertion without Issuer": (r"<saml:Issuer[^>]*>[^<]*</saml:Issuer>", "", 2),
    "missing Version": (r' Version="2.0"', "", 1),
    "IssueInstant not a dateTime": (r'IssueInstant="[^"]*"', 'IssueInstant="yesterday"', 1),
    "ID not an NCName": (r' ID="id-', ' ID="1-', 1),
    "two NameIDs": (r"(<saml:NameID[^>]*>[^<]*</saml:NameID>)", r"\1\1", 1),
    "unknown element in Subject": (r"</saml:Subject>", "<saml:Bogus/></saml:Subject>", 1),
    "Conditions before Subject": (r"(<saml:Subject>.*?</saml:Subject>)(<saml:Conditions.*?</saml:Conditions>)",
                                  r"\2\1", 1),
    "Signature after Subject": (r"(<ds:Signature.*?</ds:Signature>)(<saml:Subject>.*?</saml:Subject>)",
                                r"\2\1", 1),
    "NotOnOrAfter not a dateTime": (r'NotOnOrAfter="[^"]*"', 'NotOnOrAfter="soon"', 1),
    "unknown attribute on Assertion": (r"<saml:Assertion ", '<saml:Assertion Evil="1" ', 1),
    "empty AuthnStatement": (r"<saml:AuthnContext>.*?</saml:AuthnContext>", "", 1),
}


def normalized(assertion: str) -> str:
    """Rename pysaml2's ns0/ns1/... prefixes to saml:/ds: so the mutations can find their targets."""
    root = attacks.parse(assertion)
    clean = attacks.serialize(root)
    for prefix, uri in root.nsmap.items():
        new = {attacks.SAML: "saml", attacks.DS: "ds"}.get(uri)
        if prefix and new:
            clean = clean.replace(f"<{prefix}:", f"<{new}:").replace(f"</{prefix}:", f"</{new}:").replace(
                f"xmlns:{prefix}=", f"xmlns:{new}=")
    return clean


@pytest.fixture(scope="module")
def assertion_xml(corpus) -> str:
    """A signed Assertion, as pysaml2 re-serializes it, with saml:/ds: prefixes to mutate."""
    return normalized(next(item for item in corpus["genuine"] if ":Assertion " in item.split(">", 1)[0]))


def test_validators_load_the_same_schema_documents():
    assert set(xmlsig_schema._NAMESPACE_FILES) >= {
        "urn:oasis:names:tc:SAML:2.0:assertion", "urn:oasis:names:tc:SAML:2.0:protocol",
        "http://www.w3.org/2000/09/xmldsig#", "http://www.w3.org/2001/04/xmlenc#"}


def test_genuine_items_are_valid_for_both(corpus):
    for item in corpus["genuine"]:
        assert verdict(xmlschema_validate, item), item[:200]
        assert verdict(xmlsig_schema.validate, item), item[:200]


def test_libxml2_is_never_more_permissive_on_attacks(corpus):
    for item in corpus["attacked"]:
        if not verdict(xmlschema_validate, item):
            assert not verdict(xmlsig_schema.validate, item), item[:300]


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_schema_violations_are_refused_by_both(assertion_xml, mutation):
    pattern, replacement, count = MUTATIONS[mutation]
    base = assertion_xml
    mutated = re.sub(pattern, replacement, base, count=count, flags=re.DOTALL)
    assert mutated != base, f"mutation {mutation!r} did not apply"
    assert not verdict(xmlschema_validate, mutated)
    assert not verdict(xmlsig_schema.validate, mutated)


def test_documents_with_a_dtd_are_refused(assertion_xml):
    assert not verdict(xmlsig_schema.validate, "<!DOCTYPE x []>" + assertion_xml)


def test_malformed_documents_are_refused():
    assert not verdict(xmlsig_schema.validate, "<saml:Assertion")
