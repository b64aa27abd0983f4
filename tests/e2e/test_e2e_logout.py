"""Single logout across SAML and OIDC with real peers: signed out means signed out.

One person signs in once (Tampere's demo SAML IdP) and, in the same broker session, reaches:

* ``authlib-rp``: an Authlib client with a back-channel logout endpoint;
* ``pyoidc-rp``: a pyoidc client with a back-channel logout endpoint;
* ``front-rp``: an Authlib client with a front-channel logout URI;
* ``https://sp.example.org/sp``: a pysaml2 service provider with an SLO endpoint.

The back-channel and front-channel endpoints are served inside the test; the SP's part (it
is reached through the person's browser) is played with pysaml2.  A logout is started at each
kind of place — an OIDC RP, the SAML SP, the broker's own page, the city's IdP — and every time
the others are told: the back-channel endpoints receive logout tokens that verify against the
broker's JWKS with their own ``sid`` and ``sub``, the SP a signed ``<LogoutRequest>`` naming its
NameID and SessionIndex, the city's IdP its ``<LogoutRequest>``; and afterwards every refresh
and access token of the session is dead and the next sign-in shows the city page.
"""

from __future__ import annotations

import dataclasses
import secrets
import threading
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import lxml.html
import pytest
import requests
from agent import Person, forms, register_client
from authlib.integrations.requests_client import OAuth2Session
from joserfc import jwt
from joserfc.jwk import KeySet
from oic.oic import Client as PyoidcClient
from oic.oic.message import AuthorizationResponse, RegistrationResponse
from oic.utils.authn.client import CLIENT_AUTHN_METHOD
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.client import Saml2Client
from saml2.config import SPConfig
from saml2.metadata import create_metadata_string
from saml2.saml import NAMEID_FORMAT_PERSISTENT, NameID
from saml2.samlp import STATUS_SUCCESS
from saml2.sigver import verify_redirect_signature
from saml2.xmldsig import SIG_RSA_SHA256
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from broker.demo.servers import free_port
from broker.pki import ensure_keypair
from broker.registry.relying_parties import ReleasePolicy
from broker.saml.pysaml2_crypto import configure_signatures

BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
SP = "https://sp.example.org/sp"
SP_ACS = "https://sp.example.org/acs"
SP_SLO = "https://sp.example.org/slo"
USER = "pupil.tampere"


class Receiver:
    """The RPs' own endpoints: back-channel logout (POST) and front-channel logout (GET), on loopback."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://localhost:{self.port}"
        self.received: dict[str, list[str]] = {}
        self.frontchannel: list[dict[str, str]] = []
        self.down: set[str] = set()
        self._lock = threading.Lock()
        self._server = make_server("127.0.0.1", self.port, self._app, threaded=True)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def _app(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        name = request.path.rsplit("/", 1)[-1]
        if request.path.startswith("/bcl/"):
            if name in self.down:
                return Response("down", status=503)(environ, start_response)
            with self._lock:
                self.received.setdefault(name, []).append(request.form["logout_token"])
            return Response("", status=200, headers={"Cache-Control": "no-store"})(environ, start_response)
        if request.path == "/front/logout":
            with self._lock:
                self.frontchannel.append(dict(request.args))
            return Response("signed out")(environ, start_response)
        return Response("callback", status=200)(environ, start_response)

    def clear(self) -> None:
        with self._lock:
            self.received.clear()
            self.frontchannel.clear()
            self.down.clear()

    def close(self) -> None:
        self._server.shutdown()


@pytest.fixture(scope="module")
def receiver():
    server = Receiver()
    yield server
    server.close()


@dataclasses.dataclass
class Rp:
    client_id: str
    secret: str
    redirect_uri: str
    post_logout: str | None = None


@pytest.fixture(scope="module")
def rps(stack, receiver) -> dict[str, Rp]:
    policy = {"scopes": ["openid", "roles", "profile"], "profile": "digione"}
    made = {}
    for name, extra in {
        "authlib-rp": {"backchannel_logout_uri": f"{receiver.url}/bcl/authlib-rp",
                       "post_logout_redirect_uris": ["https://authlib.example.org/bye"]},
        "pyoidc-rp": {"backchannel_logout_uri": f"{receiver.url}/bcl/pyoidc-rp"},
        "front-rp": {"frontchannel_logout_uri": f"{receiver.url}/front/logout"},
    }.items():
        redirect = f"{receiver.url}/front/cb" if name == "front-rp" else f"https://{name.split('-')[0]}.example.org/cb"
        _, secret = register_client(stack, client_id=name, redirect_uris=[redirect], policy=policy, **extra)
        made[name] = Rp(name, secret, redirect, (extra.get("post_logout_redirect_uris") or [None])[0])
    return made


@pytest.fixture(scope="module")
def sp(stack, tmp_path_factory) -> Saml2Client:
    key, cert = ensure_keypair(tmp_path_factory.mktemp("sp"), "sp", common_name=SP)
    idp_metadata = requests.get(f"{stack.broker_url}/saml2/idp/metadata", timeout=5).text
    config = SPConfig().load({
        "entityid": SP, "key_file": str(key), "cert_file": str(cert), "metadata": {"inline": [idp_metadata]},
        "service": {"sp": {"endpoints": {"assertion_consumer_service": [(SP_ACS, BINDING_HTTP_POST)],
                                         "single_logout_service": [(SP_SLO, BINDING_HTTP_REDIRECT)]},
                           "want_assertions_signed": True, "want_response_signed": True,
                           "allow_unsolicited": False, "logout_requests_signed": True}},
    })
    client = Saml2Client(config)
    configure_signatures(client)
    stack.app.registry_service.register_sp(create_metadata_string(None, config=config).decode(), name="logout-sp",
                                           by="test", policy=ReleasePolicy(scopes=("openid", "roles"),
                                                                           profile="mpassid"))
    stack.app.rebuild()
    return client


def _meta(stack) -> dict[str, Any]:
    return requests.get(f"{stack.broker_url}/.well-known/openid-configuration", timeout=5).json()


@dataclasses.dataclass
class Signed:
    """What each service got in the one broker session."""

    person: Person
    tokens: dict[str, dict[str, Any]]       # client_id -> token response (with the ID token's claims)
    name_id: str
    session_index: str


def _claims(token: str) -> dict[str, Any]:
    import base64
    import json

    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def _authlib_login(stack, person: Person, rp: Rp, *, username: str = USER, **extra: str) -> dict[str, Any]:
    meta = _meta(stack)
    session = OAuth2Session(rp.client_id, rp.secret, scope="openid roles profile", redirect_uri=rp.redirect_uri,
                            code_challenge_method="S256")
    verifier = secrets.token_urlsafe(48)
    url, _ = session.create_authorization_url(meta["authorization_endpoint"], code_verifier=verifier, nonce="n",
                                              **extra)
    response = person.get(url)
    if any("password" in f.fields for f in forms(response)):
        response = person.sign_in(response, username)
    callback = Person.callback(response)
    token = session.fetch_token(meta["token_endpoint"], authorization_response=callback, code_verifier=verifier)
    token["claims"] = _claims(token["id_token"])
    return dict(token)


def _pyoidc_login(stack, person: Person, rp: Rp) -> dict[str, Any]:
    client = PyoidcClient(client_authn_method=CLIENT_AUTHN_METHOD)
    client.provider_config(stack.broker_url)
    client.store_registration_info(RegistrationResponse(client_id=rp.client_id, client_secret=rp.secret,
                                                        redirect_uris=[rp.redirect_uri]))
    state = secrets.token_urlsafe(16)
    request = client.construct_AuthorizationRequest(request_args={
        "response_type": "code", "scope": "openid roles", "redirect_uri": rp.redirect_uri, "state": state,
        "nonce": secrets.token_urlsafe(16), "client_id": rp.client_id})
    callback = Person.callback(person.get(request.request(client.authorization_endpoint)))
    authn = client.parse_response(AuthorizationResponse, info=urlsplit(callback).query, sformat="urlencoded")
    token = client.do_access_token_request(state=state, request_args={"code": authn["code"],
                                                                       "redirect_uri": rp.redirect_uri},
                                           authn_method="client_secret_basic")
    return {"access_token": token["access_token"], "refresh_token": token.get("refresh_token"),
            "claims": token["id_token"].to_dict()}


def _saml_login(stack, person: Person, sp: Saml2Client) -> tuple[str, str]:
    request_id, info = sp.prepare_for_authenticate(entityid=f"{stack.broker_url}/saml2/idp/metadata",
                                                   binding=BINDING_HTTP_REDIRECT)
    response = person.get(dict(info["headers"])["Location"])
    form = next(f for f in forms(response) if "SAMLResponse" in f.fields)
    authn = sp.parse_authn_request_response(form.fields["SAMLResponse"], BINDING_HTTP_POST,
                                            outstanding={request_id: "/"})
    statement = authn.assertion.authn_statement[0]
    return authn.name_id.text, statement.session_index


def sign_in_everywhere(stack, rps, sp, receiver) -> Signed:
    person = Person(stop_at=("https://", f"{receiver.url}/front/cb"))
    tokens = {"authlib-rp": _authlib_login(stack, person, rps["authlib-rp"], idp_hint="tampere/koulu")}
    tokens["pyoidc-rp"] = _pyoidc_login(stack, person, rps["pyoidc-rp"])          # by SSO, no IdP
    tokens["front-rp"] = _authlib_login(stack, person, rps["front-rp"])            # by SSO
    name_id, session_index = _saml_login(stack, person, sp)                         # by SSO
    sids = {c: t["claims"]["sid"] for c, t in tokens.items()}
    assert len(set(sids.values())) == 3, f"every client gets its own sid: {sids}"
    return Signed(person, tokens, name_id, session_index)


# -- driving the person's browser through a logout, playing the SP ------------------------------------------


@dataclasses.dataclass
class Trip:
    final: requests.Response
    sp_requests: list[Any]                   # the LogoutRequests the SP received (pysaml2-parsed)
    visited: list[str]


def _sp_answers(sp: Saml2Client, stack, location: str) -> tuple[Any, str]:
    """The SP verifies the broker's LogoutRequest (signature over the query, with pysaml2) and answers."""
    query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    cert = _broker_idp_certificate(sp, stack)
    assert verify_redirect_signature(query, sp.sec.sec_backend, cert=cert), "the LogoutRequest is signed by the IdP"
    request = sp.parse_logout_request(query["SAMLRequest"], BINDING_HTTP_REDIRECT)
    response = sp.create_logout_response(request.message, [BINDING_HTTP_REDIRECT], sign=False)
    info = sp.apply_binding(BINDING_HTTP_REDIRECT, str(response), f"{stack.broker_url}/saml2/idp/slo/redirect",
                            query.get("RelayState"), response=True, sign=True, sigalg=SIG_RSA_SHA256)
    return request.message, dict(info["headers"])["Location"]


def _broker_idp_certificate(sp: Saml2Client, stack) -> str:
    entity = f"{stack.broker_url}/saml2/idp/metadata"
    return sp.metadata.certs(entity, "idpsso", "signing")[0][1]


def travel(person: Person, response: requests.Response, sp: Saml2Client, stack) -> Trip:
    """Follow the logout through the browser; the SP answers when the broker sends the person there."""
    sp_requests, visited = [], [h.url for h in response.history] + [response.url]
    for _ in range(8):
        location = response.headers.get("Location", "") if response.is_redirect else ""
        if not location.startswith(SP_SLO):
            break
        message, answer = _sp_answers(sp, stack, location)
        sp_requests.append(message)
        response = person.get(answer)
        visited += [h.url for h in response.history] + [response.url]
    return Trip(response, sp_requests, visited)


# -- what every logout must have done ---------------------------------------------------------------------------


def _keys(stack) -> KeySet:
    return KeySet.import_key_set(requests.get(_meta(stack)["jwks_uri"], timeout=5).json())


def assert_told_by_backchannel(stack, receiver, signed: Signed, clients: tuple[str, ...]) -> None:
    deadline = time.monotonic() + 5
    while set(receiver.received) < set(clients) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert set(receiver.received) == set(clients), receiver.received.keys()
    keys = _keys(stack)
    for client_id in clients:
        (token,) = receiver.received[client_id]
        decoded = jwt.decode(token, keys, algorithms=["ES256", "RS256"])
        claims, header = decoded.claims, decoded.header
        assert header["typ"] == "logout+jwt"
        got = signed.tokens[client_id]["claims"]
        assert claims["iss"] == stack.broker_url and claims["aud"] == client_id
        assert claims["events"] == {BACKCHANNEL_EVENT: {}} and "nonce" not in claims and claims["jti"]
        assert claims["sid"] == got["sid"] and claims["sub"] == got["sub"], client_id


def assert_everything_revoked(stack, rps, signed: Signed) -> None:
    meta = _meta(stack)
    for client_id, token in signed.tokens.items():
        rp = rps[client_id]
        userinfo = requests.get(meta["userinfo_endpoint"], timeout=5,
                                headers={"Authorization": f"Bearer {token['access_token']}"})
        assert userinfo.status_code == 401, (client_id, userinfo.status_code)
        introspected = requests.post(meta["introspection_endpoint"], auth=(rp.client_id, rp.secret), timeout=5,
                                     data={"token": token["access_token"]}).json()
        assert introspected == {"active": False}, (client_id, introspected)
        if token.get("refresh_token"):
            refreshed = requests.post(meta["token_endpoint"], auth=(rp.client_id, rp.secret), timeout=5, data={
                "grant_type": "refresh_token", "refresh_token": token["refresh_token"]})
            assert refreshed.status_code == 400 and refreshed.json()["error"] == "invalid_grant", client_id


def assert_next_sign_in_shows_the_city_page(stack, rps, signed: Signed) -> None:
    rp = rps["pyoidc-rp"]
    silent = signed.person.get(f"{stack.broker_url}/authorize?response_type=code&client_id={rp.client_id}"
                               f"&redirect_uri={rp.redirect_uri}&scope=openid&state=s&nonce=n&prompt=none")
    assert parse_qs(urlsplit(silent.headers["Location"]).query)["error"] == ["login_required"]
    page = signed.person.get(f"{stack.broker_url}/authorize?response_type=code&client_id={rp.client_id}"
                             f"&redirect_uri={rp.redirect_uri}&scope=openid&state=s&nonce=n")
    assert "/disco" in page.url and page.status_code == 200, "the remembered city is offered, never applied"


def assert_city_idp_signed_out(trip: Trip) -> None:
    assert any("/tampere/slo/redirect" in url for url in trip.visited), trip.visited


def assert_sp_told(trip: Trip, signed: Signed) -> None:
    (request,) = trip.sp_requests
    assert request.name_id.text == signed.name_id
    assert [s.text for s in request.session_index] == [signed.session_index]


@pytest.fixture
def signed(stack, rps, sp, receiver):
    receiver.clear()
    return sign_in_everywhere(stack, rps, sp, receiver)


# -- the four ways out ----------------------------------------------------------------------------------------


def test_logout_started_by_an_oidc_rp_reaches_everything(stack, rps, sp, receiver, signed):
    rp = rps["authlib-rp"]
    meta = _meta(stack)
    start = signed.person.get(f"{meta['end_session_endpoint']}?id_token_hint={signed.tokens[rp.client_id]['id_token']}"
                              f"&post_logout_redirect_uri={rp.post_logout}&state=bye")
    trip = travel(signed.person, start, sp, stack)
    assert_sp_told(trip, signed)
    assert_city_idp_signed_out(trip)
    # Front-channel clients are framed on the page that then returns the person to the RP.
    page = trip.final
    frames = lxml.html.fromstring(page.text).xpath("//iframe/@src") if page.status_code == 200 else []
    assert frames and frames[0].startswith(f"{receiver.url}/front/logout?"), (page.status_code, frames)
    front = parse_qs(urlsplit(frames[0]).query)
    assert front["iss"] == [stack.broker_url] and front["sid"] == [signed.tokens["front-rp"]["claims"]["sid"]]
    continue_to = lxml.html.fromstring(page.text).xpath("//a[@id='continue']/@href")
    assert continue_to == [f"{rp.post_logout}?state=bye"]
    assert_told_by_backchannel(stack, receiver, signed, ("pyoidc-rp",))  # not the RP that asked
    assert_everything_revoked(stack, rps, signed)
    assert_next_sign_in_shows_the_city_page(stack, rps, signed)


def test_logout_started_by_the_saml_sp_reaches_everything(stack, rps, sp, receiver, signed):
    request_id, request = sp.create_logout_request(
        f"{stack.broker_url}/saml2/idp/slo/redirect", f"{stack.broker_url}/saml2/idp/metadata",
        name_id=NameID(text=signed.name_id, format=NAMEID_FORMAT_PERSISTENT), session_indexes=[signed.session_index],
        sign=False)
    info = sp.apply_binding(BINDING_HTTP_REDIRECT, str(request), f"{stack.broker_url}/saml2/idp/slo/redirect",
                            "sp-relay", sign=True, sigalg=SIG_RSA_SHA256)
    trip = travel(signed.person, signed.person.get(dict(info["headers"])["Location"]), sp, stack)
    assert trip.sp_requests == [], "the SP that asked is not asked again"
    assert_city_idp_signed_out(trip)
    final = trip.final
    location = final.headers.get("Location") if final.is_redirect else \
        lxml.html.fromstring(final.text).xpath("//a[@id='continue']/@href")[0]
    assert location.startswith(SP_SLO)
    query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    assert query["RelayState"] == "sp-relay"
    answer = sp.parse_logout_request_response(query["SAMLResponse"], BINDING_HTTP_REDIRECT)
    assert answer.response.in_response_to == request_id
    assert answer.response.status.status_code.value == STATUS_SUCCESS
    assert_told_by_backchannel(stack, receiver, signed, ("authlib-rp", "pyoidc-rp"))
    assert_everything_revoked(stack, rps, signed)
    assert_next_sign_in_shows_the_city_page(stack, rps, signed)


def test_sign_out_everywhere_at_the_broker_reaches_everything(stack, rps, sp, receiver, signed):
    page = signed.person.get(f"{stack.broker_url}/logout")
    assert page.status_code == 200
    doc = lxml.html.fromstring(page.text)
    listed = doc.xpath("//ul[@id='services']/li/text()")
    assert {"authlib-rp", "pyoidc-rp", "front-rp", SP} <= set(listed), listed
    csrf = doc.xpath("//input[@name='csrf']/@value")[0]
    trip = travel(signed.person, signed.person.post(f"{stack.broker_url}/logout", {"csrf": csrf}), sp, stack)
    assert_sp_told(trip, signed)
    assert_city_idp_signed_out(trip)
    done = lxml.html.fromstring(trip.final.text)
    assert done.xpath("//p[@id='signed-out']") and done.xpath("//iframe/@src")
    assert_told_by_backchannel(stack, receiver, signed, ("authlib-rp", "pyoidc-rp"))
    assert_everything_revoked(stack, rps, signed)
    assert_next_sign_in_shows_the_city_page(stack, rps, signed)


def test_logout_started_at_the_city_idp_reaches_everything(stack, rps, sp, receiver, signed):
    page = signed.person.get(f"{stack.saml_url}/tampere/logout")
    form = next(f for f in forms(page) if f.method == "POST")
    trip = travel(signed.person, signed.person.post(form.action, form.fields), sp, stack)
    assert_sp_told(trip, signed)
    # The broker's page frames the front-channel client, then (its Refresh header, 2 s) answers the city.
    page = trip.final
    assert page.url.startswith(stack.broker_url) and "Refresh" in page.headers
    continue_to = lxml.html.fromstring(page.text).xpath("//a[@id='continue']/@href")[0]
    assert continue_to.startswith(f"{stack.saml_url}/tampere/slo/redirect?SAMLResponse=")
    back = signed.person.get(continue_to)
    assert back.url.startswith(stack.saml_url) and back.status_code == 200, back.url
    assert_told_by_backchannel(stack, receiver, signed, ("authlib-rp", "pyoidc-rp"))
    assert_everything_revoked(stack, rps, signed)
    assert_next_sign_in_shows_the_city_page(stack, rps, signed)


# -- the rest of the contract ----------------------------------------------------------------------------------


def test_a_backchannel_endpoint_that_is_down_is_retried_and_blocks_nobody(stack, rps, sp, receiver, signed):
    receiver.down.add("pyoidc-rp")
    started = time.monotonic()
    page = signed.person.get(f"{stack.broker_url}/logout")
    csrf = lxml.html.fromstring(page.text).xpath("//input[@name='csrf']/@value")[0]
    trip = travel(signed.person, signed.person.post(f"{stack.broker_url}/logout", {"csrf": csrf}), sp, stack)
    assert time.monotonic() - started < 8, "the person reached the signed-out page in bounded time"
    assert lxml.html.fromstring(trip.final.text).xpath("//p[@id='signed-out']")
    assert "authlib-rp" in receiver.received and "pyoidc-rp" not in receiver.received
    receiver.down.clear()
    delivery = stack.app.delivery
    deadline = time.monotonic() + 10
    while "pyoidc-rp" not in receiver.received and time.monotonic() < deadline:
        delivery.run_due()
        time.sleep(0.2)
    assert "pyoidc-rp" in receiver.received, "the retry from the queue delivered it"
    claims = jwt.decode(receiver.received["pyoidc-rp"][0], _keys(stack), algorithms=["ES256", "RS256"]).claims
    assert claims["sid"] == signed.tokens["pyoidc-rp"]["claims"]["sid"]


def test_a_bare_get_cannot_sign_anyone_out(stack, rps, sp, receiver, signed):
    """RP-Initiated Logout §2: without a hint the person is asked; a cross-site page cannot log them out."""
    meta = _meta(stack)
    asked = signed.person.get(meta["end_session_endpoint"])
    assert asked.status_code == 200 and "csrf" in asked.text
    forged = signed.person.post(meta["end_session_endpoint"], {"confirm": "1", "csrf": "guessed"})
    assert forged.status_code == 200 and "csrf" in forged.text, "a forged confirmation is asked again"
    other_site = signed.person.post(f"{stack.broker_url}/logout", {"csrf": "guessed"})
    assert other_site.status_code == 400
    # The session is intact: the next service still signs in silently.
    token = _authlib_login(stack, signed.person, rps["front-rp"], prompt="none")
    assert token["claims"]["sub"]
    assert receiver.received == {}


def _sso_cookie(person: Person) -> str:
    return next(c.value for c in person.http.cookies if c.name == "digione_sso")


def test_a_new_sign_in_in_the_same_browser_rotates_the_cookie_and_ends_the_old_session(stack, rps, sp, receiver,
                                                                                       signed):
    old_cookie = _sso_cookie(signed.person)
    # The next pupil at the same computer signs in (prompt=login: the city IdP asks again).
    token = _authlib_login(stack, signed.person, rps["authlib-rp"], idp_hint="tampere/koulu", prompt="login")
    assert _sso_cookie(signed.person) != old_cookie, "a new sign-in gets a new session cookie"
    assert token["claims"]["sid"] != signed.tokens["authlib-rp"]["claims"]["sid"]
    # The old session ended: its services are told and its tokens are dead.
    assert_told_by_backchannel(stack, receiver, signed, ("authlib-rp", "pyoidc-rp"))
    assert_everything_revoked(stack, rps, signed)


def test_an_idle_session_signs_nobody_in(stack, rps, sp, receiver, signed):
    """A pupil who walked away: once the idle timeout has passed, prompt=none gets login_required."""
    from broker.sessions.model import session_id_of
    from broker.sessions.store import session_key

    store = stack.app.store
    key = session_key(session_id_of(_sso_cookie(signed.person)))
    record = store.get(key)
    record["last_seen"] -= record["idle_timeout"] + 1   # as if an hour had passed without use
    store.put(key, record, 60)
    rp = rps["pyoidc-rp"]
    silent = signed.person.get(f"{stack.broker_url}/authorize?response_type=code&client_id={rp.client_id}"
                               f"&redirect_uri={rp.redirect_uri}&scope=openid&state=s&nonce=n&prompt=none")
    assert parse_qs(urlsplit(silent.headers["Location"]).query)["error"] == ["login_required"]


def test_signing_out_at_entra_ends_the_broker_session_through_its_front_channel_url(stack, rps, receiver):
    """The city's Entra frames the broker's front-channel logout URL; the broker ends the session there."""
    receiver.clear()
    person = Person(stop_at=("https://", f"{receiver.url}/front/cb"))
    token = _authlib_login(stack, person, rps["authlib-rp"], idp_hint="vantaa/entra", username="pupil@vantaa.example")
    _pyoidc_login(stack, person, rps["pyoidc-rp"])
    assert token["claims"]["sid"]
    from broker.demo.directory import DEMO_DIRECTORY

    tenant = DEMO_DIRECTORY["vantaa"]["entra_tenant_id"]
    form = next(f for f in forms(person.get(f"{stack.entra_url}/{tenant}/logout")) if f.method == "POST")
    page = person.post(form.action, form.fields)    # "Sign out" at Entra
    frames = lxml.html.fromstring(page.text).xpath("//iframe/@src")
    ours = f"{stack.broker_url}/oidc/vantaa/entra/frontchannel_logout"
    broker_frames = [src for src in frames if src.startswith(ours)]
    assert broker_frames, frames
    framed = person.get(broker_frames[0])       # what the browser loads in Entra's iframe
    assert framed.status_code == 200
    assert "frame-ancestors http://localhost:" in framed.headers["Content-Security-Policy"]
    deadline = time.monotonic() + 5
    while set(receiver.received) < {"authlib-rp", "pyoidc-rp"} and time.monotonic() < deadline:
        time.sleep(0.05)
    assert set(receiver.received) == {"authlib-rp", "pyoidc-rp"}
    silent = person.get(f"{stack.broker_url}/authorize?response_type=code&client_id=pyoidc-rp"
                        f"&redirect_uri={rps['pyoidc-rp'].redirect_uri}&scope=openid&state=s&nonce=n&prompt=none")
    assert parse_qs(urlsplit(silent.headers["Location"]).query)["error"] == ["login_required"]


def test_a_front_channel_call_for_another_issuer_or_session_ends_nothing(stack, rps, receiver):
    receiver.clear()
    person = Person(stop_at=("https://", f"{receiver.url}/front/cb"))
    _authlib_login(stack, person, rps["authlib-rp"], idp_hint="vantaa/entra", username="pupil@vantaa.example")
    url = f"{stack.broker_url}/oidc/vantaa/entra/frontchannel_logout"
    forged = person.get(f"{url}?iss=https://login.evil.example/v2.0&sid=x")
    assert forged.status_code == 400
    other = person.get(f"{url}?sid=not-this-session")
    assert other.status_code == 200 and receiver.received == {}, "an unknown sid ends nothing"
    token = _authlib_login(stack, person, rps["front-rp"], prompt="none")
    assert token["claims"]["sub"], "the session is intact"
