"""A city rolls its SAML signing certificate over: its metadata lists the old and the new
certificate (two KeyDescriptor use="signing"); logins signed with either key succeed all the while;
once the old certificate is gone from the metadata (and the broker has rebuilt), an assertion
signed with the old key is refused.

The IdP is the real pysaml2 demo IdP, switched from one key pair to the other between logins
(``signing_key``); the broker reads the metadata file as a city's administrator would update it.
"""

from __future__ import annotations

import copy
import logging
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from agent import Person, register_client
from lxml import etree

from broker.demo import saml_idp
from broker.demo.servers import free_port
from broker.demo.stack import DemoStack, Ports
from broker.pki import KeyPair, certificate_body, ensure_keypair

CITY = "turku"
REDIRECT = "https://rollover.example.org/cb"
MD = "urn:oasis:names:tc:SAML:2.0:metadata"
DS = "http://www.w3.org/2000/09/xmldsig#"


class Rollover:
    def __init__(self, stack: DemoStack, old: KeyPair, new: KeyPair):
        self.stack, self.old, self.new = stack, old, new
        self.signing = old
        self.file = stack.metadata_dir / "demo" / f"{CITY}-idp.xml"
        self.original = self.file.read_text()

    def publish(self, *pairs: KeyPair) -> None:
        """Rewrite the city's metadata with a signing KeyDescriptor per pair, in that order, and build the
        login path again (what SIGHUP or the next activation does: every build reads the file)."""
        root = etree.fromstring(self.original.encode())
        idp = root.find(f"{{{MD}}}IDPSSODescriptor")
        template = next(k for k in idp.findall(f"{{{MD}}}KeyDescriptor") if k.get("use") == "signing")
        position = list(idp).index(template)
        idp.remove(template)
        for offset, pair in enumerate(pairs):
            key = copy.deepcopy(template)
            key.find(f"{{{DS}}}KeyInfo/{{{DS}}}X509Data/{{{DS}}}X509Certificate").text = \
                certificate_body(pair.cert_path.read_text())
            idp.insert(position + offset, key)
        self.file.write_text(etree.tostring(root, encoding="unicode"), encoding="utf-8")
        if self.stack.app is not None:
            self.stack.app._build()


@pytest.fixture(scope="module")
def rollover(tmp_path_factory):
    root = tmp_path_factory.mktemp("rollover")
    stack = DemoStack(demo_dir=root / "demo", metadata_dir=root / "metadata",
                      ports=Ports(*(free_port() for _ in range(5))), environ={})
    stack.prepare()
    keys = stack.demo_dir / "keys"
    old = saml_idp.idp_keys(keys, CITY)
    new = ensure_keypair(root / "next-keys", f"saml-idp-{CITY}", common_name=f"{CITY} demo SAML IdP (next)")
    state = Rollover(stack, old, new)
    stack.start_idps(saml_signing_key=lambda city: state.signing if city == CITY else saml_idp.idp_keys(keys, city))
    state.publish(old, new)                 # the city announces its next certificate ahead of time
    stack.start_broker()
    register_client(stack, client_id="rollover-rp", redirect_uris=[REDIRECT], policy={"scopes": ["openid", "roles"]})
    yield state
    stack.stop()


def _login(rollover: Rollover, signed_with: KeyPair):
    """A fresh browser signs in at the city (no SSO session anywhere) with the IdP signing with ``signed_with``."""
    rollover.signing = signed_with
    query = urlencode({"response_type": "code", "client_id": "rollover-rp", "redirect_uri": REDIRECT,
                       "scope": "openid roles", "state": "s", "nonce": "n", "idp_hint": f"{CITY}/koulu",
                       "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
                       "code_challenge_method": "S256"})
    person = Person(language="en")
    return person.sign_in(person.get(f"{rollover.stack.broker_url}/authorize?{query}"), "pupil.turku")


def _succeeded(response) -> bool:
    if not response.is_redirect:
        return False
    location = response.headers["Location"]
    return location.startswith(REDIRECT) and "code" in parse_qs(urlsplit(location).query)


def test_both_keys_sign_in_while_the_metadata_lists_both(rollover):
    assert _succeeded(_login(rollover, rollover.old)), "the old key, before the city switches"
    assert _succeeded(_login(rollover, rollover.new)), "the new key, once the city has switched"
    assert _succeeded(_login(rollover, rollover.old)), "and back: both are trusted throughout"


def test_after_the_old_certificate_is_removed_its_key_is_refused(rollover, caplog):
    rollover.publish(rollover.new)          # the rollover is complete
    try:
        assert _succeeded(_login(rollover, rollover.new))
        caplog.set_level(logging.INFO)
        refused = _login(rollover, rollover.old)
        assert not _succeeded(refused)
        assert refused.status_code == 400 and "code=" not in refused.headers.get("Location", "")
        assert any("signature does not verify with the IdP's metadata keys" in r.getMessage()
                   for r in caplog.records), [r.getMessage() for r in caplog.records if r.name.startswith("broker")]
    finally:
        rollover.publish(rollover.old, rollover.new)


def test_the_order_of_the_certificates_does_not_matter(rollover):
    rollover.publish(rollover.new, rollover.old)
    try:
        assert _succeeded(_login(rollover, rollover.old))
        assert _succeeded(_login(rollover, rollover.new))
    finally:
        rollover.publish(rollover.old, rollover.new)
