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
"""

from __future__ import annotations

import json
import secrets
import threading
from typing import Any

from authlib.common.errors import AuthlibBaseError
from authlib.integrations.flask_client import OAuth
from flask import Flask, redirect, render_template, request, session, url_for
from joserfc.errors import JoseError
from requests import RequestException

from broker.demo import pages

FORWARDED_PARAMS = ("idp_hint", "login_hint", "acr_values", "prompt", "ui_locales")
"""Query parameters of ``/login`` passed on to the authorize request."""


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

    Its redirect URI is ``{base_url}/callback``.  ``other_service`` is a
    (label, URL) link shown on the page.  ``cookie_name`` must differ between
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
    # Sign-ins are kept here, not in the cookie: claims easily outgrow 4 kB.
    signins: dict[str, dict[str, Any]] = {}
    lock = threading.Lock()

    def page(**context: Any):
        return render_template("demo_service.html", name=name, other_service=other_service, **context)

    @app.get("/")
    def index():
        with lock:
            signin = signins.get(session.get("sid", ""))
        if signin is None:
            return page(signin=None)
        claims, userinfo = signin["id_token"], signin["userinfo"]
        rows = [("id_token", key, _show(value)) for key, value in claims.items()]
        rows += [("userinfo", key, _show(value)) for key, value in userinfo.items()]
        who = claims.get("name") or " ".join(
            filter(None, [claims.get("given_name"), claims.get("family_name")])) or claims.get("sub")
        return page(signin=signin, who=who, rows=rows)

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
        sid = secrets.token_urlsafe(24)
        with lock:
            signins[sid] = {"id_token": dict(token["userinfo"]), "userinfo": userinfo}
        session.clear()
        session["sid"] = sid
        return redirect(url_for("index"))

    @app.get("/logout")
    def logout():
        """Forget the sign-in here only; the broker's SSO session stays."""
        with lock:
            signins.pop(session.pop("sid", ""), None)
        return redirect(url_for("index"))

    return app


class _NoIdToken(Exception):
    pass


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
