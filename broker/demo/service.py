"""A demo relying party: a school service that signs people in through the broker.

It is an ordinary OpenID Connect client built with Authlib's Flask integration
(authorization code flow, PKCE S256, state and nonce; the ID token verified against
the issuer's JWKS).  After sign-in ``/`` shows who signed in and every claim
received, from the ID token and from userinfo, in the table ``#claims``, and links
to the other demo service, which signs in without a second prompt (SSO).

``/login`` forwards ``idp_hint`` (``<tenant>`` or ``<tenant>/<idp>``) and the
standard ``login_hint``, ``acr_values``, ``prompt`` and ``ui_locales`` to the
broker's authorize request, so a link like ``/login?idp_hint=vantaa`` skips the
discovery page.

Signing out:

* ``/logout`` ("Sign out of this service") forgets the sign-in here only;
* ``POST /logout/everywhere`` ("Sign out everywhere") forgets it here and sends the
  browser to the issuer's ``end_session_endpoint`` (RP-Initiated Logout 1.0) with
  ``id_token_hint``, ``post_logout_redirect_uri={base_url}/`` and a ``state`` that
  ``/`` checks when the browser comes back;
* ``POST /backchannel-logout`` (Back-Channel Logout 1.0 §2.5-§2.8) takes the issuer's
  logout token and ends every sign-in here of the ``sid`` (or ``sub``) it names;
* ``GET /frontchannel-logout?iss=...&sid=...`` (Front-Channel Logout 1.0 §2-§3) does
  the same from an iframe on the issuer's signed-out page.

Sign-ins are kept server-side, by the ``sid`` the issuer put in the ID token; the
cookie only points at one, so the next page after a back- or front-channel logout
shows "signed out", and "Sign in" then starts a new login.
"""

from __future__ import annotations

import dataclasses
import hmac
import json
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

from authlib.common.errors import AuthlibBaseError
from authlib.integrations.flask_client import OAuth
from flask import Flask, jsonify, make_response, redirect, render_template, request, session, url_for
from joserfc.errors import JoseError
from requests import RequestException

import digione_verify as verify
from broker.demo import pages
from broker.demo.greeting import greeting

FORWARDED_PARAMS = ("idp_hint", "login_hint", "acr_values", "prompt", "ui_locales")
"""Query parameters of ``/login`` passed on to the authorize request."""

@dataclasses.dataclass(frozen=True)
class SignIn:
    """One sign-in at this service: what the issuer said, and the session it belongs to."""

    id_token: dict[str, Any]
    """The ID token's verified claims."""
    userinfo: dict[str, Any]
    raw_id_token: str
    """The ID token itself: the ``id_token_hint`` of "Sign out everywhere"."""

    @property
    def iss(self) -> str:
        return str(self.id_token.get("iss", ""))

    @property
    def sid(self) -> str | None:
        sid = self.id_token.get("sid")
        return sid if isinstance(sid, str) and sid else None

    @property
    def sub(self) -> str:
        return str(self.id_token.get("sub", ""))


class SignIns:
    """The sign-ins of one service process, by a local id that the cookie holds; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[str, SignIn] = {}

    def add(self, signin: SignIn) -> str:
        local_id = secrets.token_urlsafe(24)
        with self._lock:
            self._items[local_id] = signin
        return local_id

    def get(self, local_id: str) -> SignIn | None:
        with self._lock:
            return self._items.get(local_id)

    def pop(self, local_id: str) -> SignIn | None:
        with self._lock:
            return self._items.pop(local_id, None)

    def end(self, iss: str, *, sid: str | None = None, sub: str | None = None) -> int:
        """End the sign-ins of issuer ``iss`` in session ``sid`` (if given) of ``sub`` (if given)."""
        with self._lock:
            ended = [key for key, signin in self._items.items()
                     if signin.iss == iss and (sid is None or signin.sid == sid)
                     and (sub is None or signin.sub == sub)]
            for key in ended:
                del self._items[key]
        return len(ended)


class LogoutTokens:
    """Back-Channel Logout 1.0 §2.6 with the kit services use: :meth:`digione_verify.TokenVerifier.verify_logout_token`.

    The verifier is built on first use from the issuer's discovery document (its
    ``issuer`` and ``jwks_uri``), for this client id, ES256 or RS256.  It checks the
    signature (keys by ``kid``, never from the token), ``typ`` ``logout+jwt``, ``iss``,
    ``aud``, ``iat`` (and its age), ``exp``, ``jti``, ``events``, ``sid`` and/or ``sub``,
    no ``nonce``, and that the ``jti`` was not accepted before
    (:class:`digione_verify.ReplayedToken`).
    """

    def __init__(self, metadata: Callable[[], Mapping[str, Any]], client_id: str,
                 clock: Callable[[], float] = time.time):
        self._metadata = metadata
        self._client_id = client_id
        self._clock = clock
        self._verifier: verify.TokenVerifier | None = None
        self._lock = threading.Lock()

    def verifier(self) -> verify.TokenVerifier:
        with self._lock:
            if self._verifier is None:
                meta = self._metadata()
                self._verifier = verify.TokenVerifier(
                    str(meta["issuer"]), self._client_id, jwks_uri=str(meta["jwks_uri"]), typ=None,
                    allowed_algs=("ES256", "RS256"), clock=self._clock)
            return self._verifier

    def verify(self, token: str) -> dict[str, Any]:
        """The token's claims; :class:`digione_verify.InvalidToken` if any check fails."""
        return self.verifier().verify_logout_token(token)


def create_app(
    *,
    name: str,
    base_url: str,
    issuer: str,
    client_id: str,
    client_secret: str,
    other_service: tuple[str, str] | None,
    cookie_name: str,
    scope: str = "openid profile email",
) -> Flask:
    """A demo service called ``name`` at ``base_url``, a client of ``issuer``.

    Its redirect URI is ``{base_url}/callback``; its ``post_logout_redirect_uri``
    ``{base_url}/``, ``backchannel_logout_uri`` ``{base_url}/backchannel-logout`` and
    ``frontchannel_logout_uri`` ``{base_url}/frontchannel-logout``.  ``other_service``
    is a (label, URL) link shown on the page.  ``cookie_name`` must differ between
    services on one host: browsers share localhost cookies across ports.
    Discovery is fetched on the first sign-in, so the issuer may start later.
    """
    base_url = base_url.rstrip("/")
    app = pages.demo_app(cookie_name)
    oauth = OAuth(app)
    broker = oauth.register(
        "broker",
        client_id=client_id,
        client_secret=client_secret,
        server_metadata_url=f"{issuer.rstrip('/')}/.well-known/openid-configuration",
        client_kwargs={"scope": scope, "code_challenge_method": "S256"},
    )
    # Sign-ins are kept here, not in the cookie: claims easily outgrow 4 kB, and a
    # back-channel logout (which comes without the cookie) must be able to end one.
    signins = SignIns()
    logout_tokens = LogoutTokens(broker.load_server_metadata, client_id)

    def page(**context: Any):
        return render_template("demo_service.html", name=name, other_service=other_service, **context)

    def issuer_id() -> str:
        """The issuer exactly as its discovery document says (what its tokens carry in ``iss``)."""
        return str(broker.load_server_metadata().get("issuer", issuer))

    @app.get("/")
    def index():
        notice, error = None, None
        if "state" in request.args:
            # The way back from "Sign out everywhere" (RP-Initiated Logout §3: state comes back as sent).
            expected = session.pop("logout_state", "")
            if expected and hmac.compare_digest(request.args["state"], expected):
                notice = "Signed out everywhere."
            else:
                error = ("invalid_state", "The sign-out came back with a state this service did not send.")
        local_id = session.get("signin", "")
        signin = signins.get(local_id) if local_id else None
        if local_id and signin is None:
            # The cookie names a sign-in that is gone: ended by a back- or front-channel logout.
            session.pop("signin", None)
            notice = notice or "You were signed out (the sign-in service ended your session)."
        if error:
            return page(error=error[0], error_description=error[1]), 400
        if signin is None:
            return page(signin=None, notice=notice)
        claims, userinfo = signin.id_token, signin.userinfo
        rows = [("id_token", key, _show(value)) for key, value in claims.items()]
        rows += [("userinfo", key, _show(value)) for key, value in userinfo.items()]
        # Service B asks for no profile: it greets with the roles and schools it has (broker.demo.greeting).
        return page(signin=signin, greeting=greeting({**userinfo, **claims}), rows=rows)

    @app.get("/login")
    def login():
        extra = {param: request.args[param] for param in FORWARDED_PARAMS if request.args.get(param)}
        try:
            return broker.authorize_redirect(f"{base_url}/callback", **extra)
        except RequestException as exc:  # discovery not reachable: the broker is not up (yet)
            return page(error="issuer_unreachable", error_description=type(exc).__name__), 502

    @app.route("/callback", methods=["GET", "POST"])
    def callback():
        values = request.values
        if values.get("error"):
            return page(error=values["error"], error_description=values.get("error_description", "")), 400
        try:
            token = broker.authorize_access_token()
            if "userinfo" not in token:
                raise _NoIdToken()
            userinfo = dict(broker.userinfo(token=token)) if broker.load_server_metadata().get(
                "userinfo_endpoint") else {}
        except (AuthlibBaseError, JoseError) as exc:
            # Invalid state, a refused code, a bad ID token signature, issuer or nonce...
            return page(error=exc.error or type(exc).__name__, error_description=exc.description or ""), 400
        except _NoIdToken:
            return page(error="no_id_token", error_description="The token response had no ID token."), 400
        except RequestException as exc:
            return page(error="issuer_unreachable", error_description=type(exc).__name__), 502
        local_id = signins.add(SignIn(dict(token["userinfo"]), userinfo, str(token["id_token"])))
        signins.pop(session.get("signin", ""))
        session.clear()
        session["signin"] = local_id
        return redirect(url_for("index"))

    @app.get("/logout")
    def logout():
        """Forget the sign-in here only; the broker's SSO session stays."""
        signins.pop(session.pop("signin", ""))
        return redirect(url_for("index"))

    @app.post("/logout/everywhere")
    def logout_everywhere():
        """RP-Initiated Logout 1.0 §2: forget the sign-in here, then sign out at the issuer."""
        signin = signins.pop(session.pop("signin", ""))
        try:
            end_session = broker.load_server_metadata().get("end_session_endpoint")
        except RequestException as exc:
            return page(error="issuer_unreachable", error_description=type(exc).__name__), 502
        if not end_session:
            return page(error="no_end_session_endpoint",
                        error_description="The issuer does not support RP-initiated logout."), 502
        state = secrets.token_urlsafe(24)
        session["logout_state"] = state
        params = {"client_id": client_id, "post_logout_redirect_uri": f"{base_url}/", "state": state}
        if signin is not None:
            params["id_token_hint"] = signin.raw_id_token
        sep = "&" if urlsplit(end_session).query else "?"
        response = redirect(f"{end_session}{sep}{urlencode(params)}", 303)
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.post("/backchannel-logout")
    def backchannel_logout():
        """Back-Channel Logout 1.0 §2.5-§2.8: 200 once the sign-ins are ended, 400 for a bad token."""
        tokens = request.form.getlist("logout_token")
        if len(tokens) != 1 or not tokens[0]:
            return _logout_error("invalid_request", "exactly one logout_token is required")
        try:
            claims = logout_tokens.verify(tokens[0])
        except verify.ReplayedToken:
            # Valid, but its jti was accepted before: at-least-once delivery repeats a token now
            # and then (§2.7). The first one acted; a repeat ends nothing (above all, a sub-only
            # token replayed later ends no newer sign-in), and is answered as done.
            claims = None
        except verify.InvalidToken as exc:
            return _logout_error("invalid_request", exc.reason)
        except (verify.KeySetUnavailable, RequestException, KeyError) as exc:
            # Not the token's fault: a 5xx, so that the issuer tries again.
            return _logout_error("temporarily_unavailable", type(exc).__name__, 503)
        if claims is not None:
            signins.end(claims["iss"], sid=claims.get("sid") or None, sub=claims.get("sub") or None)
        response = make_response("", 200)
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/frontchannel-logout")
    def frontchannel_logout():
        """Front-Channel Logout 1.0 §3: loaded in an iframe by the issuer; ends the session it names."""
        iss, sid = request.args.get("iss"), request.args.get("sid")
        if (iss is None) != (sid is None):
            return _frontchannel_page("iss and sid go together", 400)
        if iss is not None and sid is not None:
            try:
                expected = issuer_id()
            except RequestException:
                expected = issuer
            if not hmac.compare_digest(iss, expected):
                return _frontchannel_page("iss is not this service's issuer", 400)
            signins.end(iss, sid=sid)
        else:  # no session named: the browser's own sign-in here (its cookie came with the iframe)
            signins.pop(session.pop("signin", ""))
        # Framable (Front-Channel Logout §3): no X-Frame-Options and no frame-ancestors, since the
        # issuer's page may itself be framed (an upstream IdP's signed-out page framing the
        # broker's, which frames this one) and frame-ancestors would check every ancestor.
        return _frontchannel_page("Signed out.", 200)

    return app


def _logout_error(error: str, description: str, status: int = 400):
    response = jsonify({"error": error, "error_description": description})
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    return response


def _frontchannel_page(text: str, status: int):
    body = f'<!doctype html><meta charset="utf-8"><title>Logout</title><p id="frontchannel">{text}</p>'
    response = make_response(body, status)
    response.headers["Cache-Control"] = "no-cache, no-store"
    response.headers["Pragma"] = "no-cache"
    response.headers["Content-Security-Policy"] = "default-src 'none'"   # no frame-ancestors: framable
    return response


class _NoIdToken(Exception):
    pass


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
