"""Logout on the token side, against the live provider and independent peers.

* logout tokens (Back-Channel Logout 1.0 §2.4), verified with joserfc and pyoidc against the
  JWKS the provider publishes, and with ``digione_verify`` as a service would (§2.6);
* front-channel logout URLs and the signed-out page that frames them (Front-Channel Logout 1.0);
* the RP-initiated logout decision (RP-Initiated Logout 1.0 §2-§4), over HTTP, GET and POST;
* what discovery advertises.

The harness's ``ProviderApp`` stands in for the broker's sessions at ``end_session``: it
records each decision, acts on confirmed ones and shows the confirmation page otherwise.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import re
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jwt
from joserfc.jwk import KeySet
from tokens_forge import auth_params, forge, get_authorize, public_key_material, redirected_error
from tokens_harness import CSRF
from tokens_rp import code_flow, discover

from broker.tokens.jws import SigningKey
from broker.tokens.logout import LogoutRequest
from broker.tokens.logout_token import frontchannel_logout_url, mint_logout_token
from digione_verify import (
    ExpiredToken,
    MalformedToken,
    MissingClaim,
    NotYetValid,
    ReplayedToken,
    TokenVerifier,
    UnknownKey,
    UnsupportedAlgorithm,
    WrongAudience,
    WrongIssuer,
    WrongTokenType,
)

#: Back-Channel Logout 1.0 §2.4, written out here rather than imported from the code under test.
EVENT = "http://schemas.openid.net/event/backchannel-logout"
BYE = "https://rp1.example/bye"


def jwks(env) -> dict:
    return requests.get(discover(env)["jwks_uri"], timeout=5).json()


def client(env, client_id: str = "rp1", **changes):
    registered = env.registry.client(client_id)
    return dataclasses.replace(registered, **changes) if changes else registered


# --------------------------------------------------------------------------- logout tokens


def test_logout_token_verifies_against_the_jwks_and_has_exactly_the_claims(memory_env):
    env = memory_env
    token = env.provider.logout_token(client(env), sub="pairwise-sub-1", sid="sid-for-rp1")
    decoded = jwt.decode(token, KeySet.import_key_set(jwks(env)), algorithms=["ES256", "RS256"])
    assert decoded.header["typ"] == "logout+jwt" and decoded.header["alg"] == "ES256" and decoded.header["kid"]
    claims = decoded.claims
    assert set(claims) == {"iss", "aud", "iat", "exp", "jti", "events", "sid", "sub"}  # and so no nonce
    assert claims["iss"] == env.issuer and claims["aud"] == "rp1"
    assert claims["sub"] == "pairwise-sub-1" and claims["sid"] == "sid-for-rp1"
    assert claims["events"] == {EVENT: {}}
    assert claims["iat"] == int(env.clock()) and claims["exp"] == claims["iat"] + 120
    assert len(claims["jti"]) >= 16
    again = jwt.decode(env.provider.logout_token(client(env), sub="pairwise-sub-1", sid="sid-for-rp1"),
                       KeySet.import_key_set(jwks(env)), algorithms=["ES256"])
    assert again.claims["jti"] != claims["jti"]  # random: the RP's replay check (§2.6 step 7) keys on it


def test_pyoidc_accepts_the_logout_token(memory_env):
    """pyoidc's own LogoutToken validation (signature with the provider's keys, events, sid/sub, no nonce)."""
    from oic.oic.message import LogoutToken
    from oic.utils.keyio import KeyBundle, KeyJar

    env = memory_env
    keyjar = KeyJar()
    keyjar.add_kb(env.issuer, KeyBundle(jwks(env)["keys"]))
    token = env.provider.logout_token(client(env), sub="pairwise-sub-1", sid="sid-for-rp1")
    message = LogoutToken().from_jwt(token, keyjar=keyjar)
    assert message.verify(iss=env.issuer, aud="rp1", keyjar=keyjar, skew=60)
    assert message["sid"] == "sid-for-rp1" and message["aud"] == ["rp1"]


def test_logout_token_uses_the_clients_id_token_algorithm(memory_env):
    env = memory_env
    token = env.provider.logout_token(client(env, id_token_signed_response_alg="RS256"), sub=None, sid="s")
    decoded = jwt.decode(token, KeySet.import_key_set(jwks(env)), algorithms=["RS256"])
    assert decoded.header["alg"] == "RS256" and decoded.header["typ"] == "logout+jwt"
    assert set(decoded.claims) == {"iss", "aud", "iat", "exp", "jti", "events", "sid"}  # sid only: no sub


def test_logout_token_needs_sub_or_sid_and_the_sid_a_client_requires(memory_env):
    env = memory_env
    with pytest.raises(ValueError, match="sub, sid or both"):
        env.provider.logout_token(client(env), sub=None, sid=None)
    with pytest.raises(ValueError, match="backchannel_logout_session_required"):
        env.provider.logout_token(client(env), sub="s", sid=None)  # the default: sid required
    token = env.provider.logout_token(client(env, backchannel_logout_session_required=False), sub="s", sid=None)
    claims = jwt.decode(token, KeySet.import_key_set(jwks(env)), algorithms=["ES256"]).claims
    assert claims["sub"] == "s" and "sid" not in claims
    with pytest.raises(ValueError):
        mint_logout_token(env.keyring, issuer=env.issuer, client=client(env), sub="s", sid="x", now=env.clock(),
                          lifetime=0)


def test_a_logout_token_is_no_id_token_hint(memory_env, server):
    env = memory_env
    code_flow(env, "rp1")
    logout_token = env.provider.logout_token(client(env), sub="someone", sid="sso-session-1")
    query = redirected_error(get_authorize(env, auth_params(env, "rp1", id_token_hint=logout_token)),
                             env.clients["rp1"].redirect_uri)
    assert query["error"] == "invalid_request" and "id_token_hint" in query["error_description"]
    response = requests.get(env.url("end_session"), allow_redirects=False, timeout=5,
                            params={"id_token_hint": logout_token, "post_logout_redirect_uri": BYE})
    assert response.status_code == 200 and "Location" not in response.headers
    assert server.app.logouts[-1] == LogoutRequest()


# --------------------------------------------------------------------------- digione_verify for services


def logout_verifier(env, audience: str = "rp1", **kwargs) -> TokenVerifier:
    return TokenVerifier(env.issuer, audience, clock=env.clock, **kwargs)


def sign_logout(env, claims: dict, *, typ: str = "logout+jwt", alg: str | None = None) -> str:
    return env.keyring.signing_key(alg).sign(claims, typ=typ)


def logout_claims(env, **changes) -> dict:
    now = int(env.clock())
    claims = {"iss": env.issuer, "aud": "rp1", "iat": now, "exp": now + 120, "jti": "jti-1",
              "events": {EVENT: {}}, "sid": "sid-1", "sub": "sub-1"}
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def test_verify_logout_token_accepts_what_the_provider_issues_once(memory_env):
    env = memory_env
    verifier = logout_verifier(env)
    token = env.provider.logout_token(client(env), sub="pairwise-sub-1", sid="sid-for-rp1")
    claims = verifier.verify_logout_token(token)
    assert claims["sid"] == "sid-for-rp1" and claims["sub"] == "pairwise-sub-1"
    with pytest.raises(ReplayedToken):  # §2.6 step 7
        verifier.verify_logout_token(token)
    assert verifier.verify_logout_token(token, remember_jti=False)["jti"] == claims["jti"]
    rs256 = env.provider.logout_token(client(env, id_token_signed_response_alg="RS256"), sub=None, sid="s2")
    assert verifier.verify_logout_token(rs256)["sid"] == "s2"
    # a service whose verifier is built for its API names its client id instead
    api = TokenVerifier(env.issuer, "https://api.example", clock=env.clock)
    with pytest.raises(WrongAudience):
        api.verify_logout_token(env.provider.logout_token(client(env), sub="x", sid="y"))
    assert api.verify_logout_token(env.provider.logout_token(client(env), sub="x", sid="y"), client_id="rp1")


def test_verify_logout_token_refuses_other_tokens(memory_env):
    env = memory_env
    _, token, _, _ = code_flow(env, "rp1")
    verifier = logout_verifier(env)
    with pytest.raises(WrongTokenType):
        verifier.verify_logout_token(token["id_token"])  # an ID token (typ JWT) is no logout token
    with pytest.raises(WrongTokenType):
        verifier.verify_logout_token(token["access_token"])
    with pytest.raises(WrongAudience):
        verifier.verify_logout_token(env.provider.logout_token(client(env, "rp2"), sub="x", sid="y"))


@pytest.mark.parametrize("changes,error", [
    ({"nonce": "n"}, MalformedToken),  # §2.4: MUST NOT contain a nonce
    ({"events": None}, MissingClaim),
    ({"events": {"http://schemas.openid.net/event/other": {}}}, MissingClaim),
    ({"events": [EVENT]}, MissingClaim),  # the pre-final draft's array form
    ({"events": {EVENT: "yes"}}, MissingClaim),
    ({"sid": None, "sub": None}, MissingClaim),  # §2.4: sub, sid or both
    ({"sid": 5}, MissingClaim),
    ({"jti": None}, MissingClaim),
    ({"iat": None}, MissingClaim),
    ({"exp": None}, MissingClaim),
    ({"iss": "https://evil.example"}, WrongIssuer),
    ({"aud": "rp2"}, WrongAudience),
])
def test_verify_logout_token_checks_every_claim(memory_env, changes, error):
    env = memory_env
    with pytest.raises(error):
        logout_verifier(env).verify_logout_token(sign_logout(env, logout_claims(env, **changes)))


def test_verify_logout_token_times_and_type(memory_env):
    env = memory_env
    now = int(env.clock())
    verifier = logout_verifier(env, logout_token_max_age=300)
    assert verifier.verify_logout_token(sign_logout(env, logout_claims(env, jti="a")))  # sid and sub
    assert verifier.verify_logout_token(sign_logout(env, logout_claims(env, jti="b", sub=None)))  # sid only
    assert verifier.verify_logout_token(sign_logout(env, logout_claims(env, jti="c", sid=None)))  # sub only
    assert verifier.verify_logout_token(sign_logout(env, logout_claims(env, jti="d"), typ="application/logout+jwt"))
    with pytest.raises(WrongTokenType):
        verifier.verify_logout_token(sign_logout(env, logout_claims(env, jti="e"), typ="JWT"))
    with pytest.raises(ExpiredToken):
        verifier.verify_logout_token(sign_logout(env, logout_claims(env, jti="f", exp=now - 60)))
    with pytest.raises(ExpiredToken):  # a long-lived token, but issued too long ago
        verifier.verify_logout_token(sign_logout(env, logout_claims(env, jti="g", iat=now - 400, exp=now + 3600)))
    with pytest.raises(NotYetValid):
        verifier.verify_logout_token(sign_logout(env, logout_claims(env, jti="h", iat=now + 120)))
    token = env.provider.logout_token(client(env), sub="x", sid="y")
    env.clock.advance(120 + 31)  # exp + leeway
    with pytest.raises(ExpiredToken):
        verifier.verify_logout_token(token)


def test_verify_logout_token_refuses_forgeries(memory_env):
    env = memory_env
    kid, secrets_ = public_key_material(env, "RS256")
    claims = logout_claims(env)
    verifier = logout_verifier(env)
    with pytest.raises(UnsupportedAlgorithm):
        verifier.verify_logout_token(forge({"alg": "none", "kid": kid, "typ": "logout+jwt"}, claims))
    for secret in secrets_:
        with pytest.raises(UnsupportedAlgorithm):
            verifier.verify_logout_token(forge({"alg": "HS256", "kid": kid, "typ": "logout+jwt"}, claims,
                                               hmac_key=secret))
    stranger = SigningKey(ec.generate_private_key(ec.SECP256R1()), "ES256")
    with pytest.raises(UnknownKey):
        verifier.verify_logout_token(stranger.sign(claims, typ="logout+jwt"))


# --------------------------------------------------------------------------- front-channel logout


def test_frontchannel_logout_url(memory_env):
    env = memory_env
    fc = client(env, frontchannel_logout_uri="https://rp1.example/fcl")
    url = frontchannel_logout_url(fc, issuer=env.issuer, sid="sid-for-rp1")
    parts = urlsplit(url)
    assert url.startswith("https://rp1.example/fcl?")
    assert parse_qs(parts.query) == {"iss": [env.issuer], "sid": ["sid-for-rp1"]}
    with_query = client(env, frontchannel_logout_uri="https://rp1.example/fcl?tenant=a")
    assert parse_qs(urlsplit(env.provider.frontchannel_logout_url(with_query, "s")).query) == {
        "tenant": ["a"], "iss": [env.issuer], "sid": ["s"]}
    bare = client(env, frontchannel_logout_uri="https://rp1.example/fcl", frontchannel_logout_session_required=False)
    assert env.provider.frontchannel_logout_url(bare, "s") == "https://rp1.example/fcl"
    assert env.provider.frontchannel_logout_url(client(env), "s") is None  # none registered
    with pytest.raises(ValueError, match="frontchannel_logout_session_required"):
        env.provider.frontchannel_logout_url(fc, None)


def test_signed_out_page_frames_the_frontchannel_urls_then_continues(memory_env, server):
    """Front-Channel Logout 1.0 §4: the OP renders the RPs' logout URIs in iframes."""
    env = memory_env
    _, token, _, _ = code_flow(env, "rp1")
    urls = ["https://rp1.example/fcl?iss=x&sid=1", "https://rp2.example:8443/fcl?iss=x&sid=2"]
    server.app.frontchannel = lambda decision: urls
    response = requests.get(env.url("end_session"), allow_redirects=False, timeout=5, params={
        "id_token_hint": token["id_token"], "post_logout_redirect_uri": BYE, "state": "st"})
    assert response.status_code == 200 and "Location" not in response.headers
    html = response.text
    frames = re.findall(r'<iframe class="fcl" src="([^"]+)"', html)
    assert [f.replace("&amp;", "&") for f in frames] == urls
    assert f'href="{BYE}?state=st"' in html  # the way on, once the frames have loaded
    policy = response.headers["Content-Security-Policy"]
    assert "frame-src https://rp1.example https://rp2.example:8443" in policy
    assert "frame-ancestors 'none'" in policy and "unsafe-inline'" not in policy.split("script-src")[1].split(";")[0]
    script = re.search(r"<script>(.*?)</script>", html, re.S).group(1)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in policy  # the one script the page runs, allowed by its hash


# --------------------------------------------------------------------------- RP-initiated logout: the decision


def end_session(env, method: str = "GET", **params) -> requests.Response:
    if method == "POST":
        return requests.post(env.url("end_session"), data=params, allow_redirects=False, timeout=5)
    return requests.request(method, env.url("end_session"), params=params, allow_redirects=False, timeout=5)


@pytest.fixture
def signed_in(env):
    """``(env, token, sub)``: rp1 signed in, its ID token verified as an RP would."""
    _, token, _, _ = code_flow(env, "rp1")
    sub = jwt.decode(token["id_token"], KeySet.import_key_set(jwks(env)), algorithms=["ES256"]).claims["sub"]
    return env, token, sub


@pytest.mark.parametrize("method", ["GET", "POST"])  # §2: both
def test_a_valid_hint_proves_the_client(signed_in, method, server):
    env, token, sub = signed_in
    response = end_session(env, method, id_token_hint=token["id_token"], post_logout_redirect_uri=BYE, state="st",
                           ui_locales="sv")
    assert response.status_code == 302 and response.headers["Location"] == BYE + "?state=st"
    assert server.app.logouts[-1] == LogoutRequest(client_id="rp1", sub=sub, sid="sso-session-1",
                                                       post_logout_redirect_uri=BYE, state="st", ui_locales="sv",
                                                       confirmed=True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        server.app.logouts[-1].confirmed = False  # type: ignore[misc]


def test_a_valid_hint_with_its_own_client_id_or_an_unregistered_uri(signed_in, server):
    env, token, sub = signed_in
    response = end_session(env, id_token_hint=token["id_token"], client_id="rp1", post_logout_redirect_uri=BYE)
    assert response.status_code == 302 and response.headers["Location"] == BYE
    response = end_session(env, id_token_hint=token["id_token"], post_logout_redirect_uri="https://evil.example/")
    assert response.status_code == 200 and "Location" not in response.headers  # §3: never an unregistered URI
    decision = server.app.logouts[-1]
    assert decision.confirmed and decision.client_id == "rp1" and decision.post_logout_redirect_uri is None
    assert "You have signed out" in end_session(env, id_token_hint=token["id_token"], ui_locales="en").text


def test_an_expired_id_token_is_still_a_hint(signed_in, server):
    env, token, sub = signed_in
    env.clock.advance(24 * 3600)  # RP-Initiated Logout §2: the OP SHOULD accept it after exp
    assert end_session(env, id_token_hint=token["id_token"], post_logout_redirect_uri=BYE).status_code == 302
    assert server.app.logouts[-1].confirmed and server.app.logouts[-1].sub == sub


def test_a_hint_for_another_client_is_refused(signed_in, server):
    env, token, _ = signed_in
    before = len(server.app.logouts)
    response = end_session(env, id_token_hint=token["id_token"], client_id="rp2",
                           post_logout_redirect_uri="https://rp2.example/bye")
    assert response.status_code == 400 and "Location" not in response.headers  # shown, never redirected
    assert "text/html" in response.headers["Content-Type"]
    assert len(server.app.logouts) == before  # nobody is asked to act on it


def test_forged_hints_prove_nothing(signed_in, server):
    env, token, _ = signed_in
    kid, secrets_ = public_key_material(env, "RS256")
    claims = jwt.decode(token["id_token"], KeySet.import_key_set(jwks(env)), algorithms=["ES256"]).claims
    stranger = SigningKey(ec.generate_private_key(ec.SECP256R1()), "ES256")
    header, payload, signature = token["id_token"].split(".")
    forgeries = [forge({"alg": "none", "kid": kid}, claims),
                 *[forge({"alg": "HS256", "kid": kid, "typ": "JWT"}, claims, hmac_key=s) for s in secrets_],
                 stranger.sign(claims, typ="JWT"),
                 f"{header}.{payload}.{signature[:-4]}AAAA",  # the genuine token, its signature broken
                 token["access_token"],  # an access token is no ID token
                 "not-a-jwt"]
    for forged in forgeries:
        response = end_session(env, id_token_hint=forged, client_id="rp1", post_logout_redirect_uri=BYE, state="s")
        assert response.status_code == 200 and "Location" not in response.headers, forged[:40]  # §4
        assert server.app.logouts[-1] == LogoutRequest(state="s"), forged[:40]
        assert f'name="csrf" value="{CSRF}"' in response.text  # the person is asked


def test_client_id_with_a_registered_uri_proceeds_without_a_hint(env, server):
    response = end_session(env, client_id="rp1", post_logout_redirect_uri=BYE, state="st")
    assert response.status_code == 302 and response.headers["Location"] == BYE + "?state=st"
    assert server.app.logouts[-1] == LogoutRequest(client_id="rp1", post_logout_redirect_uri=BYE, state="st",
                                                       confirmed=True)


@pytest.mark.parametrize("params,client_id", [
    ({"client_id": "rp1", "post_logout_redirect_uri": "https://evil.example/"}, "rp1"),  # unregistered URI
    ({"client_id": "rp1", "post_logout_redirect_uri": "https://rp2.example/bye"}, "rp1"),  # another client's
    ({"client_id": "rp1", "post_logout_redirect_uri": BYE + "/"}, "rp1"),  # not an exact match
    ({"client_id": "rp1"}, "rp1"),
    ({"client_id": "nobody", "post_logout_redirect_uri": BYE}, None),  # unknown client
    ({"post_logout_redirect_uri": BYE}, None),  # no client named
    ({}, None),  # a bare link on any page
])
def test_anything_else_asks_the_person(env, params, client_id, server):
    response = end_session(env, **params)
    assert response.status_code == 200 and "Location" not in response.headers
    assert server.app.logouts[-1] == LogoutRequest(client_id=client_id)
    assert server.app.ended == []  # the stand-in session is not ended unasked
    form = response.text
    assert 'method="post"' in form and f'name="csrf" value="{CSRF}"' in form
    assert "evil.example" not in form and "post_logout_redirect_uri" not in form  # nothing unproven travels on


def test_the_confirmation_comes_back_as_a_post(env, server):
    page = end_session(env, ui_locales="fi")
    assert "Kirjaudutaanko ulos?" in page.text
    action = re.search(r'<form method="post" action="([^"]+)"', page.text).group(1)
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page.text))
    assert action == env.url("end_session") and fields == {"csrf": CSRF, "confirm": "yes", "ui_locales": "fi"}
    done = requests.post(action, data=fields, allow_redirects=False, timeout=5)
    assert done.status_code == 200 and "Olet kirjautunut ulos" in done.text
    assert server.app.ended == [LogoutRequest(ui_locales="fi")]


def test_outright_refusals(env, server):
    assert end_session(env, "PUT").status_code == 405
    repeated = requests.get(env.url("end_session") + "?client_id=rp1&client_id=rp2", timeout=5)
    assert repeated.status_code == 400
    assert end_session(env, state="x" * 3000).status_code == 400
    assert server.app.logouts == []


# --------------------------------------------------------------------------- discovery


def test_discovery_advertises_logout(env):
    doc = discover(env)
    assert doc["end_session_endpoint"] == env.issuer + "/end_session"
    for flag in ("backchannel_logout_supported", "backchannel_logout_session_supported",
                 "frontchannel_logout_supported", "frontchannel_logout_session_supported"):
        assert doc[flag] is True, flag
    assert "check_session_iframe" not in doc  # OIDC Session Management is not implemented
    assert "sid" in doc["claims_supported"]


def test_the_documented_backchannel_endpoint_with_a_real_flask_service(memory_env):
    """docs/verifying-tokens.md's Flask example, served over HTTP and sent what the provider issues."""
    import threading

    import flask
    from werkzeug.serving import make_server

    from digione_verify import InvalidToken, KeySetUnavailable

    env = memory_env
    ended: list[tuple[str, str]] = []
    app = flask.Flask("service")
    logout_tokens = TokenVerifier(env.issuer, audience="rp1", clock=env.clock)

    @app.post("/oidc/backchannel-logout")
    def backchannel_logout():
        headers = {"Cache-Control": "no-store"}
        try:
            claims = logout_tokens.verify_logout_token(flask.request.form.get("logout_token", ""))
        except ReplayedToken:
            return "", 200, headers
        except InvalidToken:
            return "", 400, headers
        except KeySetUnavailable:
            return "", 503, headers
        ended.append(("sid", claims["sid"]) if "sid" in claims else ("sub", claims["sub"]))
        return "", 200, headers

    service = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=service.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{service.server_port}/oidc/backchannel-logout"
    try:
        token = env.provider.logout_token(client(env), sub="pairwise-sub-1", sid="sid-for-rp1")
        first = requests.post(url, data={"logout_token": token}, timeout=5)
        assert first.status_code == 200 and first.headers["Cache-Control"] == "no-store"
        assert requests.post(url, data={"logout_token": token}, timeout=5).status_code == 200  # delivered again
        other = env.provider.logout_token(client(env, "rp2"), sub="x", sid="y")
        assert requests.post(url, data={"logout_token": other}, timeout=5).status_code == 400  # not for rp1
        assert requests.post(url, data={}, timeout=5).status_code == 400
        sub_only = env.provider.logout_token(client(env, backchannel_logout_session_required=False), sub="s-2",
                                             sid=None)
        assert requests.post(url, data={"logout_token": sub_only}, timeout=5).status_code == 200
        assert ended == [("sid", "sid-for-rp1"), ("sub", "s-2")]
    finally:
        service.shutdown()
