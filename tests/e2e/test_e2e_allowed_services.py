"""A city's choice of services (``allowed_services`` in its tenant file), on the login path.

The broker runs with the shipped tenant files, two of them given a choice:

* Lahti allows ``open-rp`` and the SAML SP ``sp/open-sp`` by default; its school 93982 (Laune)
  also allows ``closed-rp``;
* Turku allows every service by default, but its school 98531 (Hirvensalo) only ``open-rp``.

Relying parties are Authlib clients and pysaml2 service providers; people sign in at the demo
city IdPs (a demo pupil is in the city's first school, the principal in the second, the teacher
in both).  A refused person reads a page whose button carries ``access_denied`` to the service.
"""

from __future__ import annotations

import base64
import logging
import re
import secrets
import shutil
from urllib.parse import parse_qs, urlsplit

import lxml.html
import pytest
import requests
import yaml
from agent import Person, forms, register_client
from authlib.integrations.requests_client import OAuth2Session
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, samlp
from saml2.client import Saml2Client
from saml2.config import SPConfig
from saml2.metadata import create_metadata_string
from saml2.response import StatusRequestDenied
from saml2.saml import AuthnContextClassRef
from saml2.sigver import SignatureError

from broker.demo.servers import free_port
from broker.demo.stack import DemoStack, Ports
from broker.i18n import MESSAGES
from broker.pki import ensure_keypair
from broker.registry.relying_parties import ReleasePolicy
from broker.saml.pysaml2_crypto import configure_signatures, pysaml2_config_overrides
from broker.settings import ROOT

OPEN, CLOSED = "open-rp", "closed-rp"
REDIRECTS = {OPEN: "https://open.example.org/cb", CLOSED: "https://closed.example.org/cb"}
NAMES = {OPEN: "Open Service", CLOSED: "Closed Service"}
CHOICES = {
    "lahti": {"default": [OPEN, "sp/open-sp"], "schools": {"93982": [OPEN, CLOSED]}},
    "turku": {"default": "all", "schools": {"98531": [OPEN]}},
}
_CID = re.compile(r'id="correlation-id">([0-9a-f]{8,})<')


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    root = tmp_path_factory.mktemp("allowed-services")
    tenants = root / "tenants"
    shutil.copytree(ROOT / "tenants", tenants)
    for city, choice in CHOICES.items():
        path = tenants / f"{city}.yaml"
        data = yaml.safe_load(path.read_text())
        data["allowed_services"] = choice
        path.write_text(yaml.safe_dump(data, allow_unicode=True))
    demo = DemoStack(demo_dir=root / "demo", metadata_dir=root / "metadata",
                     ports=Ports(*(free_port() for _ in range(5))), environ={"BROKER_TENANTS_DIR": str(tenants)})
    demo.start()
    assert not demo.app.registry.tenants.by_id["lahti"].allowed_services.allows_all
    yield demo
    demo.stop()


@pytest.fixture(scope="module")
def rps(stack):
    return {client_id: register_client(stack, client_id=client_id, name=NAMES[client_id],
                                       redirect_uris=[REDIRECTS[client_id]],
                                       policy={"scopes": ["openid", "roles", "schools"]})[1]
            for client_id in (OPEN, CLOSED)}


class Flow:
    """One authorization-code request of an Authlib client, with its state and PKCE verifier."""

    def __init__(self, stack, rps, client_id: str, **params: str):
        self.meta = requests.get(f"{stack.broker_url}/.well-known/openid-configuration", timeout=5).json()
        self.client_id = client_id
        self.session = OAuth2Session(client_id, rps[client_id], scope="openid roles schools",
                                     redirect_uri=REDIRECTS[client_id], code_challenge_method="S256")
        self.verifier = secrets.token_urlsafe(48)
        self.url, self.state = self.session.create_authorization_url(
            self.meta["authorization_endpoint"], code_verifier=self.verifier, nonce=secrets.token_urlsafe(8), **params)

    def claims(self, callback: str) -> dict:
        self.session.fetch_token(self.meta["token_endpoint"], authorization_response=callback,
                                 code_verifier=self.verifier)
        return self.session.get(self.meta["userinfo_endpoint"]).json()


def _query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


def _assert_page(response: requests.Response, lang: str, service_name: str) -> str:
    """The refusal page in ``lang`` naming the service; returns its correlation id."""
    assert response.status_code == 403, f"{response.status_code} {response.headers.get('Location')}"
    assert not response.is_redirect
    assert response.headers["Content-Type"].startswith("text/html")
    assert response.headers["Cache-Control"] == "no-store"
    page = response.text.replace("&#x27;", "'")
    assert f'<html lang="{lang}"' in page
    assert MESSAGES["access.title"][lang] in page
    assert MESSAGES["access.not_enabled"][lang].replace("{service}", service_name) in page
    assert "<script" not in page, "the page waits for the person: nothing submits it"
    match = _CID.search(page)
    assert match, page[-500:]
    return match.group(1)


def _continue_link(response: requests.Response) -> str:
    doc = lxml.html.fromstring(response.text)
    (link,) = doc.xpath('//a[@id="continue"]')
    return link.get("href")


def _refusal_lines(caplog, cid: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", None) == "login"
            and getattr(r, "outcome", None) == "service_not_allowed" and getattr(r, "correlation_id", None) == cid]


# -- OIDC ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("language", ["fi", "sv", "en"])
def test_a_pupil_reads_a_page_and_the_service_gets_access_denied_with_its_state(stack, rps, caplog, language):
    caplog.set_level(logging.INFO)
    flow = Flow(stack, rps, CLOSED, idp_hint="lahti/koulu")
    person = Person(language=language)
    response = person.sign_in(person.get(flow.url), "pupil.lahti")
    cid = _assert_page(response, language, NAMES[CLOSED])
    back = _continue_link(response)
    assert back.startswith(REDIRECTS[CLOSED] + "?")
    query = _query(back)
    assert query["error"] == ["access_denied"] and query["state"] == [flow.state]
    assert query["iss"] == [stack.broker_url] and "code" not in query
    (line,) = _refusal_lines(caplog, cid)
    assert (line.tenant, line.idp, line.service, line.service_id) == ("lahti", "koulu", CLOSED, CLOSED)
    assert line.user_ref is None and line.answered == "person" and line.sso is False
    assert "Leo" not in line.getMessage() and "pupil" not in str(vars(line)), "no personal data in the line"


def test_the_same_pupil_signs_in_to_an_allowed_service_by_sso(stack, rps):
    person = Person()
    closed = Flow(stack, rps, CLOSED, idp_hint="lahti/koulu")
    _assert_page(person.sign_in(person.get(closed.url), "pupil.lahti"), "fi", NAMES[CLOSED])
    opened = Flow(stack, rps, OPEN, idp_hint="lahti/koulu")
    response = person.get(opened.url)
    assert response.is_redirect, "the broker session was created: no login form this time"
    callback = Person.callback(response)
    assert callback.startswith(REDIRECTS[OPEN]) and "code" in _query(callback)
    assert {s["code"] for s in opened.claims(callback)["schools"]} == {"93981"}
    login = stack.app.proxy.login
    session = login.sessions.get(person.http.cookies.get(login.cookies.sso))
    assert session is not None
    assert {entry.requester for entry in login.sessions.services(session.id)} == {OPEN}, \
        "the refused service received nothing: a logout has nothing to tell it"


def test_sso_from_an_existing_session_to_a_service_not_allowed_is_refused(stack, rps, caplog):
    caplog.set_level(logging.INFO)
    person = Person(language="en")
    opened = Flow(stack, rps, OPEN, idp_hint="lahti/koulu")
    opened.claims(Person.callback(person.sign_in(person.get(opened.url), "pupil.lahti")))
    closed = Flow(stack, rps, CLOSED)
    response = person.get(closed.url)
    assert not any("password" in f.fields for f in forms(response)), "signed in already: no form"
    cid = _assert_page(response, "en", NAMES[CLOSED])
    query = _query(_continue_link(response))
    assert query["error"] == ["access_denied"] and query["state"] == [closed.state]
    (line,) = _refusal_lines(caplog, cid)
    assert line.sso is True
    # No page may be shown for prompt=none: the service hears access_denied at once.
    silent = Flow(stack, rps, CLOSED, prompt="none")
    location = Person.callback(person.get(silent.url))
    assert location.startswith(REDIRECTS[CLOSED])
    query = _query(location)
    assert query["error"] == ["access_denied"] and query["state"] == [silent.state] and "code" not in query
    # The session still serves the allowed service.
    again = Flow(stack, rps, OPEN, prompt="none")
    assert "code" in _query(Person.callback(person.get(again.url)))


def test_a_school_override_allows_where_the_city_default_does_not(stack, rps):
    # Lahti's default leaves closed-rp out; the principal's school (93982) allows it.
    flow = Flow(stack, rps, CLOSED, idp_hint="lahti/koulu")
    person = Person()
    callback = Person.callback(person.sign_in(person.get(flow.url), "principal.lahti"))
    assert {s["code"] for s in flow.claims(callback)["schools"]} == {"93982"}


@pytest.mark.parametrize("username,allowed", [("pupil.turku", False), ("principal.turku", True),
                                              ("teacher.turku", True)])
def test_a_school_override_refuses_where_the_city_default_allows(stack, rps, username, allowed):
    # Turku allows every service, but its school 98531 only open-rp: the pupil (98531) is refused,
    # the principal (98532, the default) is not, nor the teacher (both schools: either is enough).
    flow = Flow(stack, rps, CLOSED, idp_hint="turku/koulu")
    person = Person()
    response = person.sign_in(person.get(flow.url), username)
    if allowed:
        assert "code" in _query(Person.callback(response))
    else:
        _assert_page(response, "fi", NAMES[CLOSED])
        assert _query(_continue_link(response))["error"] == ["access_denied"]
    opened = Flow(stack, rps, OPEN, idp_hint="turku/koulu")
    assert "code" in _query(Person.callback(person.get(opened.url))), "open-rp is allowed at every Turku school"


def test_cities_without_a_choice_allow_every_service(stack, rps):
    flow = Flow(stack, rps, CLOSED, idp_hint="tampere/koulu")
    person = Person()
    assert "code" in _query(Person.callback(person.sign_in(person.get(flow.url), "pupil.tampere")))


# -- SAML ---------------------------------------------------------------------------------------------


class Sp:
    def __init__(self, stack, directory, name: str):
        self.entity_id = f"https://{name}.sp.example/sp"
        self.acs = f"https://{name}.sp.example/acs"
        key, cert = ensure_keypair(directory, name, common_name=self.entity_id)
        idp_metadata = requests.get(f"{stack.broker_url}/saml2/idp/metadata", timeout=5).text
        config = SPConfig().load({
            **pysaml2_config_overrides(),
            "entityid": self.entity_id, "key_file": str(key), "cert_file": str(cert),
            "metadata": {"inline": [idp_metadata]},
            "service": {"sp": {"endpoints": {"assertion_consumer_service": [(self.acs, BINDING_HTTP_POST)]},
                               "want_assertions_signed": True, "want_response_signed": True,
                               "allow_unsolicited": False}},
        })
        self.client = Saml2Client(config)
        configure_signatures(self.client)
        stack.app.registry_service.register_sp(create_metadata_string(None, config=config).decode(), name=name,
                                               by="test", policy=ReleasePolicy(scopes=("openid", "roles", "schools"),
                                                                               profile="mpassid"))
        self.idp = f"{stack.broker_url}/saml2/idp/metadata"

    def request(self, person: Person, city: str | None = None) -> tuple[str, requests.Response]:
        kwargs = {}
        if city:
            kwargs["requested_authn_context"] = samlp.RequestedAuthnContext(
                authn_context_class_ref=[AuthnContextClassRef(text=f"urn:mpass.id:authnsource:{city}-koulu")])
        request_id, info = self.client.prepare_for_authenticate(entityid=self.idp, binding=BINDING_HTTP_REDIRECT,
                                                                **kwargs)
        return request_id, person.get(dict(info["headers"])["Location"])

    def answer(self, response: requests.Response) -> str:
        """The SAMLResponse the page posts to this SP's ACS."""
        form = next(f for f in forms(response) if "SAMLResponse" in f.fields)
        assert form.action == self.acs
        return form.fields["SAMLResponse"]

    def parse(self, encoded: str, request_id: str):
        """What pysaml2 makes of it: the signature is checked against the broker's metadata, then the status."""
        return self.client.parse_authn_request_response(encoded, BINDING_HTTP_POST, outstanding={request_id: "/"})


@pytest.fixture(scope="module")
def sps(stack, tmp_path_factory):
    directory = tmp_path_factory.mktemp("sps")
    made = {name: Sp(stack, directory, name) for name in ("open-sp", "closed-sp")}
    stack.app.rebuild()
    return made


def test_an_sp_not_allowed_gets_a_signed_request_denied_after_the_page(stack, sps, caplog):
    caplog.set_level(logging.INFO)
    sp = sps["closed-sp"]
    person = Person(language="sv")
    request_id, response = sp.request(person, "lahti")
    response = person.sign_in(response, "pupil.lahti")
    cid = _assert_page(response, "sv", "closed-sp")
    assert f"form-action https://{urlsplit(sp.acs).netloc}" in response.headers["Content-Security-Policy"]
    doc = lxml.html.fromstring(response.text)
    assert doc.xpath('//form//button[@id="continue"]'), "the person presses the button; no script does"
    encoded = sp.answer(response)
    xml = base64.b64decode(encoded).decode()
    assert "Signature" in xml
    with pytest.raises(StatusRequestDenied):
        sp.parse(encoded, request_id)   # the Response's signature is checked first
    assert samlp.STATUS_RESPONDER in xml and samlp.STATUS_REQUEST_DENIED in xml
    tampered = base64.b64encode(xml.replace("RequestDenied", "RequestDenieD", 1).encode()).decode()
    with pytest.raises(SignatureError):
        sp.parse(tampered, request_id)
    (line,) = _refusal_lines(caplog, cid)
    assert (line.tenant, line.service, line.service_id) == ("lahti", sp.entity_id, "sp/closed-sp")


def test_an_allowed_sp_signs_in_and_sso_to_an_sp_not_allowed_is_refused(stack, sps, rps):
    person = Person(language="en")
    open_sp, closed_sp = sps["open-sp"], sps["closed-sp"]
    request_id, response = open_sp.request(person, "lahti")
    authn = open_sp.parse(open_sp.answer(person.sign_in(response, "pupil.lahti")), request_id)
    assert authn.assertion is not None, "sp/open-sp is in Lahti's default"
    request_id, response = closed_sp.request(person)   # no hint: the session answers
    assert not any("password" in f.fields for f in forms(response))
    _assert_page(response, "en", "closed-sp")
    with pytest.raises(StatusRequestDenied):
        closed_sp.parse(closed_sp.answer(response), request_id)
    # The OIDC service Lahti allows still signs in from the same session.
    flow = Flow(stack, rps, OPEN)
    assert "code" in _query(Person.callback(person.get(flow.url)))
