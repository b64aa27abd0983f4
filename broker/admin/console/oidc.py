"""The console as an OpenID Connect client of the broker itself (client id ``digione-admin``).

The console registers itself: :func:`ensure_client` makes the active registry hold the
client ``digione-admin`` (confidential, ``client_secret_basic``, redirect
``<base>/admin/callback``, a pairwise subject in its own sector ``digione-admin``) whenever
it is missing or differs, as a version by ``system``.  Its secret is derived from the
master secret (:func:`broker.derive.derive_key`), so every instance computes the same one
and no secret is stored anywhere but as the registry's hash.

A sign-in is the authorization code flow with PKCE (S256), ``state`` and ``nonce``.  The
code is exchanged, and the broker's JWKS read, by calling the broker's own login path
in-process (:func:`call_broker`): the console never needs to reach its public URL from
the server, which may not route back to itself.  The ID token is verified with
:mod:`digione_verify` (signature by ``kid`` from the JWKS, ES256/RS256 only) and its claims
here: ``iss``, ``aud``, ``azp``, ``exp``, ``iat``, ``nonce``, ``sub``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import secrets
import time
from typing import Any
from urllib.parse import urlencode, urlsplit

import digione_verify as verify
from broker.derive import derive_key
from broker.registry.relying_parties import client_document
from broker.tokens.discovery import PATHS

logger = logging.getLogger("broker.admin.console")

CLIENT_ID = "digione-admin"
SCOPES = ("openid", "profile")
LEEWAY = 60
_LOGIN_PREFIX = "admin-console:login:"
LOGIN_TTL = 600


class SignInFailed(Exception):
    """The sign-in did not complete; ``reason`` is for the log (never shown)."""

    def __init__(self, reason: str, *, key: str = "signin.failed"):
        super().__init__(reason)
        self.reason = reason
        self.key = key


def client_secret(settings: Any) -> str:
    return base64.urlsafe_b64encode(derive_key(settings.master_secret, b"admin-console-client")).decode().rstrip("=")


def callback_url(settings: Any) -> str:
    return f"{settings.base_url}/admin/callback"


def signed_out_url(settings: Any) -> str:
    """Where the broker sends the browser after signing out (registered as the client's only one)."""
    return f"{settings.base_url}/admin/signin?signed_out=1"


def end_session_url(settings: Any) -> str:
    """RP-initiated logout at the broker: its session ends too, so the next "Sign in" asks again.

    The client id with its registered ``post_logout_redirect_uri`` is proof enough for the
    broker to proceed without asking (broker/tokens/logout.py).
    """
    query = {"client_id": CLIENT_ID, "post_logout_redirect_uri": signed_out_url(settings)}
    return f"{settings.base_url}{PATHS['end_session']}?{urlencode(query)}"


def registration(settings: Any) -> dict[str, Any]:
    """The ``digione-admin`` client as the registry holds it."""
    client, _ = client_document({
        "client_id": CLIENT_ID, "name": "DigiOne admin console",
        "redirect_uris": [callback_url(settings)], "post_logout_redirect_uris": [signed_out_url(settings)],
        "token_endpoint_auth_method": "client_secret_basic", "client_secret": client_secret(settings),
        "policy": {"scopes": list(SCOPES), "profile": "digione", "subject_type": "pairwise",
                   "sector": CLIENT_ID},
    })
    return client.to_dict()


def ensure_client(broker: Any) -> None:
    """Make the served registry hold the console's client as :func:`registration` says."""
    wanted = registration(broker.settings)
    served = broker.registry.parties.client(CLIENT_ID)
    if served is not None and served.to_dict() == wanted:
        return
    from broker.registry.versions import Conflict

    try:
        broker.registry_service.ensure({("client", CLIENT_ID): wanted}, by="system",
                                       comment="the admin console's own sign-in client (digione-admin)")
    except Conflict:
        pass    # another instance registered it at the same moment: theirs is the same document
    broker.rebuild()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def start(broker: Any, *, binding: str, lang: str, next_path: str) -> str:
    """Remember a new sign-in and return the authorization request URL to send the browser to."""
    ensure_client(broker)
    settings = broker.settings
    state, nonce, verifier = secrets.token_urlsafe(24), secrets.token_urlsafe(24), secrets.token_urlsafe(48)
    broker.store.put(_LOGIN_PREFIX + hashlib.sha256(state.encode()).hexdigest(),
                     {"nonce": nonce, "verifier": verifier, "binding": binding, "next": next_path, "lang": lang},
                     LOGIN_TTL)
    challenge = _b64(hashlib.sha256(verifier.encode()).digest())
    query = {"response_type": "code", "client_id": CLIENT_ID, "redirect_uri": callback_url(settings),
             "scope": " ".join(SCOPES), "state": state, "nonce": nonce, "code_challenge": challenge,
             "code_challenge_method": "S256", "ui_locales": lang}
    return f"{settings.base_url}{PATHS['authorize']}?{urlencode(query)}"


def finish(broker: Any, *, state: str, code: str, binding: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Check the callback, exchange the code and verify the ID token: ``(claims, remembered sign-in)``."""
    if not state or len(state) > 200 or not code or len(code) > 2048:
        raise SignInFailed("callback without a usable state or code")
    record = broker.store.take(_LOGIN_PREFIX + hashlib.sha256(state.encode()).hexdigest())
    if not isinstance(record, dict):
        raise SignInFailed("unknown or used state", key="signin.expired")
    if not secrets.compare_digest(str(record.get("binding")), binding):
        raise SignInFailed("state started in another browser", key="signin.expired")
    settings = broker.settings
    status, body = call_broker(broker, "POST", PATHS["token"], form={
        "grant_type": "authorization_code", "code": code, "redirect_uri": callback_url(settings),
        "code_verifier": str(record["verifier"])}, auth=(CLIENT_ID, client_secret(settings)))
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    if status != 200 or not isinstance(answer, dict) or not isinstance(answer.get("id_token"), str):
        error = answer.get("error") if isinstance(answer, dict) else None
        raise SignInFailed(f"token endpoint answered {status} {error or ''}".strip())
    claims = verify_id_token(broker, answer["id_token"], nonce=str(record["nonce"]))
    return claims, record


def verify_id_token(broker: Any, id_token: str, *, nonce: str) -> dict[str, Any]:
    issuer = broker.settings.base_url
    status, body = call_broker(broker, "GET", PATHS["jwks"])
    if status != 200:
        raise SignInFailed(f"JWKS answered {status}")
    try:
        keys = verify.load_jwks(json.loads(body))
        _, claims = verify.verify_jws(id_token, keys.get, ("ES256", "RS256"))
    except (ValueError, verify.InvalidToken) as exc:
        raise SignInFailed(f"ID token refused: {exc}") from None
    now = time.time()
    aud = claims.get("aud")
    audiences = aud if isinstance(aud, list) else [aud]
    checks = {
        "iss": claims.get("iss") == issuer,
        "aud": CLIENT_ID in audiences,
        "azp": claims.get("azp", CLIENT_ID) == CLIENT_ID and (len(audiences) == 1 or "azp" in claims),
        "exp": isinstance(claims.get("exp"), (int, float)) and claims["exp"] > now - LEEWAY,
        "iat": isinstance(claims.get("iat"), (int, float)) and claims["iat"] < now + LEEWAY,
        "nonce": isinstance(claims.get("nonce"), str) and secrets.compare_digest(claims["nonce"], nonce),
        "sub": isinstance(claims.get("sub"), str) and 0 < len(claims["sub"]) <= 255,
    }
    failed = [name for name, ok in checks.items() if not ok]
    if failed:
        raise SignInFailed(f"ID token claims refused: {', '.join(failed)}")
    return claims


def call_broker(broker: Any, method: str, path: str, *, form: dict[str, str] | None = None,
                auth: tuple[str, str] | None = None) -> tuple[int, bytes]:
    """One request to the broker's login path, in this process: ``(status, body)``."""
    from werkzeug.test import EnvironBuilder, run_wsgi_app

    from broker.logs import current_correlation_id
    from broker.web.guard import CORRELATION_ID

    headers = {"Accept": "application/json"}
    if auth is not None:
        raw = f"{_form_escape(auth[0])}:{_form_escape(auth[1])}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
    base = urlsplit(broker.settings.base_url)
    builder = EnvironBuilder(path=path, method=method, headers=list(headers.items()), data=form,
                             base_url=f"{base.scheme}://{base.netloc}")
    try:
        environ = builder.get_environ()
    finally:
        builder.close()
    environ[CORRELATION_ID] = current_correlation_id() or secrets.token_hex(8)
    app_iter, status, _headers = run_wsgi_app(broker.proxy, environ, buffered=True)
    try:
        body = b"".join(app_iter)
    finally:
        close = getattr(app_iter, "close", None)
        if close is not None:
            close()
    return int(str(status)[:3]), body


def _form_escape(value: str) -> str:
    # RFC 6749 §2.3.1: client id and secret are form-encoded before Basic encoding.
    from urllib.parse import quote

    return quote(value, safe="")
