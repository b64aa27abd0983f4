"""Signing in and out: through the broker (OIDC, :mod:`.oidc`) or with an API token.

``GET /admin/signin`` shows both ways.  "Sign in" sends the browser to the broker's
authorization endpoint (``/admin/signin/start``) and the broker back to
``/admin/callback``; the subject it vouches for is looked up with
``operations.principal_for_subject``.  A person the broker knows but who holds no
grant sees their subject, to give to a platform admin.  The token form is for
automation and break-glass access: the token is checked by the operations, each
request again.  ``POST /admin/signout`` ends the console session and, after a sign-in
through the broker, the broker's session too (RP-initiated logout), so that the next person
at a shared computer is asked to sign in.
"""

from __future__ import annotations

from typing import Any

from flask import g, make_response, redirect, request
from flask.typing import ResponseReturnValue

from broker.admin.console import blueprint
from broker.admin.console import oidc as console_oidc
from broker.admin.console.session import ConsoleSession, binding, cookie_header
from broker.admin.console.web import (
    base,
    console,
    ensure_pre_cookie,
    log_refusal,
    ops,
    render,
)

MAX_TOKEN = 512


def principal_for_session(session: ConsoleSession) -> Any:
    operations = ops()
    if session.method == "oidc" and session.subject:
        return operations.principal_for_subject(session.subject)
    if session.method == "token" and session.token:
        return operations.principal_for_token(session.token)
    return None


def _next_path(raw: str | None) -> str:
    """Where to go after sign-in: a console path only (never another site)."""
    if raw and raw.startswith("/admin") and not raw.startswith("//") and "\\" not in raw and len(raw) < 1000 \
            and not raw.startswith("/admin/signin") and not raw.startswith("/admin/callback"):
        return raw
    return "/admin/"


def _signin(status: int = 200, **context: Any) -> ResponseReturnValue:
    ensure_pre_cookie()
    context.setdefault("next", _next_path(request.values.get("next")))
    return render("signin.html", status, **context)


@blueprint.get("/signin")
def signin_page() -> ResponseReturnValue:
    if g.principal is not None:
        return redirect(base() + _next_path(request.args.get("next")), code=303)
    notice = None
    if request.args.get("ended") or g.session_ended:
        notice = "signin.ended"
    elif request.args.get("signed_out"):
        notice = "signin.signed_out"
    return _signin(notice=notice)


@blueprint.get("/signin/start")
def signin_start() -> ResponseReturnValue:
    pre = ensure_pre_cookie()
    url = console_oidc.start(console().broker, binding=binding(console().key, pre), lang=g.lang,
                             next_path=_next_path(request.args.get("next")))
    response = redirect(url, code=303)
    return response


@blueprint.get("/callback")
def callback() -> ResponseReturnValue:
    c = console()
    if request.args.get("error"):
        log_refusal("signin", f"the broker answered {request.args.get('error', '')[:64]}")
        return _signin(400, failure="signin.cancelled")
    if not g.pre:
        return _signin(400, failure="signin.expired")
    try:
        claims, record = console_oidc.finish(c.broker, state=request.args.get("state", ""),
                                             code=request.args.get("code", ""), binding=binding(c.key, g.pre))
    except console_oidc.SignInFailed as exc:
        log_refusal("signin", exc.reason)
        return _signin(400, failure=exc.key)
    subject = str(claims["sub"])
    found = ops().principal_for_subject(subject)
    if found is None:
        log_refusal("signin", "the subject holds no grant", subject=subject)
        return render("no_roles.html", 403, subject=subject)
    name = " ".join(str(claims[k]) for k in ("given_name", "family_name") if isinstance(claims.get(k), str))
    return _start_session(method="oidc", subject=subject, name=name or found.note or found.name,
                          next_path=_next_path(str(record.get("next") or "")))


@blueprint.post("/signin/token")
def signin_token() -> ResponseReturnValue:
    token = (request.form.get("token") or "").strip()
    if not token:
        return _signin(400, errors={"token": "signin.token_missing"})
    found = ops().principal_for_token(token) if len(token) <= MAX_TOKEN else None
    if found is None:
        log_refusal("signin", "API token refused (unknown, expired or revoked)")
        return _signin(401, errors={"token": "signin.token_refused"})
    return _start_session(method="token", token=token, name=found.note or found.name,
                          next_path=_next_path(request.form.get("next")))


def _start_session(*, method: str, next_path: str, name: str, subject: str | None = None,
                   token: str | None = None) -> ResponseReturnValue:
    c = console()
    if g.session is not None:
        c.sessions.end(g.session.sid)
    session = c.sessions.create(method=method, subject=subject, token=token, name=name[:200])
    response = redirect(base() + next_path, code=303)
    response.headers.add("Set-Cookie", cookie_header(c.session_cookie, session.sid, secure=c.secure))
    return response


@blueprint.post("/signout")
def signout() -> ResponseReturnValue:
    c = console()
    expired = cookie_header(c.session_cookie, "", secure=c.secure, max_age=0)
    if g.session is not None:
        c.sessions.end(g.session.sid)
        if g.session.method == "oidc":
            # The broker's own session ends too (shared computers).  A page, not a redirect: the
            # broker may send the browser on to the city's IdP, and browsers check the redirects that
            # follow a form against its form-action; a page's own navigation is not a form's.
            g.principal = None
            body, status = render("signed_out.html", end_session=console_oidc.end_session_url(c.broker.settings))
            page = make_response(body, status)
            page.headers.add("Set-Cookie", expired)
            return page
    response = redirect(f"{base()}/admin/signin?signed_out=1", code=303)
    response.headers.add("Set-Cookie", expired)
    return response
