"""The console's request context: language, session, principal, CSRF, rendering and error pages.

Before every console view: the language (``?lang=`` remembered in the broker's ``digione_lang``
cookie, else the cookie, else ``Accept-Language``), the session and its principal (looked up
again on every request), and for every ``POST`` the CSRF token.  A page that needs a principal
and has none redirects to the sign-in page (saying so when a session has just ended).

Errors are pages in the person's language with the correlation id, never a stack trace:
the operations' ``NotFound``/``Forbidden`` (404/403), bad form input (400/422, the form shown
again with each problem next to its field), unknown paths, wrong methods, and anything
unexpected (500, logged with where it happened only).
"""

from __future__ import annotations

import functools
import logging
import re
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import yaml
from flask import current_app, g, redirect, render_template, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from broker.admin.console import blueprint
from broker.admin.console.session import (
    IDLE_TIMEOUT,
    ConsoleSession,
    Sessions,
    check_pre_session_csrf,
    cookie_header,
    cookie_names,
    pre_session_csrf,
)
from broker.derive import derive_key
from broker.i18n import LANGUAGES, negotiate
from broker.login.cookies import Cookies, parse

logger = logging.getLogger("broker.admin.console")

MESSAGES: dict[str, dict[str, str]] = yaml.safe_load(
    (Path(__file__).resolve().parent / "messages.yaml").read_text(encoding="utf-8"))
LANGUAGE_NAMES = {"fi": "Suomeksi", "sv": "På svenska", "en": "In English"}
#: Views reachable without a session (the sign-in pages and the stylesheet).
PUBLIC = frozenset({"signin_page", "signin_start", "callback", "signin_token", "static"})
#: Public POSTs, protected by the pre-session CSRF token instead.
PUBLIC_POSTS = frozenset({"signin_token"})


def text(key: str, lang: str, **values: Any) -> str:
    entry = MESSAGES.get(key)
    if entry is None:
        return key
    message = entry.get(lang) or entry.get("en") or key
    if values:
        try:
            return message.format(**values)
        except (KeyError, IndexError, ValueError):
            return message
    return message


class Console:
    """What the console keeps per admin application: sessions, its key, the operations."""

    def __init__(self, broker: Any):
        self.broker = broker
        settings = broker.settings
        conf = settings.extra.get("admin_console") if isinstance(settings.extra, Mapping) else None
        idle = conf.get("idle_timeout", IDLE_TIMEOUT) if isinstance(conf, Mapping) else IDLE_TIMEOUT
        self.sessions = Sessions(broker.store, idle_timeout=int(idle))
        self.key = derive_key(settings.master_secret, b"admin-console")
        self.secure = bool(settings.secure_cookies)
        self.session_cookie, self.pre_cookie = cookie_names(self.secure)
        self.lang_cookie = Cookies(secure=self.secure).lang
        self._ops: Any = None

    @property
    def ops(self) -> Any:
        if self._ops is None:
            from broker.admin.operations import AdminOperations

            self._ops = AdminOperations(self.broker)
        return self._ops


def console() -> Console:
    found = current_app.extensions.get("digione_console")
    if found is None:
        found = current_app.extensions["digione_console"] = Console(current_app.config["BROKER"])
    return found


def ops() -> Any:
    return console().ops


def principal() -> Any:
    return g.principal


def principal_for(session: ConsoleSession) -> Any:
    """Who the session's sign-in names now (``None``: the grant or token is gone)."""
    from broker.admin.console.signin import principal_for_session

    return principal_for_session(session)


# -- before and after every console request --------------------------------------------------------

def _cookies() -> dict[str, str]:
    c = console()
    return parse(request.headers.get("Cookie"), (c.session_cookie, c.pre_cookie, c.lang_cookie))


@blueprint.before_request
def _load() -> ResponseReturnValue | None:
    c = console()
    cookies = _cookies()
    g.cookies_to_set = []
    chosen = request.args.get("lang")
    if chosen in LANGUAGES:
        g.cookies_to_set.append(Cookies(secure=c.secure).header(c.lang_cookie, chosen)[1])
    g.lang = negotiate(chosen if chosen in LANGUAGES else cookies.get(c.lang_cookie),
                       request.headers.get("Accept-Language"))
    g.pre = cookies.get(c.pre_cookie)
    g.session = None
    g.principal = None
    g.session_ended = False
    cookie = cookies.get(c.session_cookie)
    if cookie:
        g.session = c.sessions.load(cookie)
        if g.session is not None:
            g.principal = principal_for(g.session)
            if g.principal is None:
                c.sessions.end(cookie)
                g.session = None
        if g.session is None:
            g.session_ended = True
            g.cookies_to_set.append(cookie_header(c.session_cookie, "", secure=c.secure, max_age=0))
    endpoint = (request.endpoint or "").rpartition(".")[2]
    if request.method == "POST":
        if endpoint in PUBLIC_POSTS:
            if not check_pre_session_csrf(c.key, g.pre, request.form.get("csrf")):
                return error_page(403, "error.csrf")
        elif g.session is None:
            return signin_redirect()
        elif not g.session.check_csrf(request.form.get("csrf")):
            log_refusal("csrf", "the form's CSRF token did not match the session")
            return error_page(403, "error.csrf")
    elif endpoint not in PUBLIC and g.principal is None and request.endpoint is not None:
        return signin_redirect()
    return None


@blueprint.after_request
def _finish(response: Response) -> Response:
    for value in getattr(g, "cookies_to_set", ()):
        response.headers.add("Set-Cookie", value)
    if getattr(g, "lang", None):
        response.headers.setdefault("Content-Language", g.lang)
    return response


def signin_redirect() -> Response:
    query = {"next": request.full_path.rstrip("?")} if request.method == "GET" else {}
    if g.session_ended:
        query["ended"] = "1"
    return redirect(f"{base()}/admin/signin" + (f"?{urlencode(query)}" if query else ""), code=303)


def ensure_pre_cookie() -> str:
    """The pre-session cookie's value, set now if the browser has none."""
    import secrets

    if not g.pre:
        c = console()
        g.pre = secrets.token_urlsafe(24)
        g.cookies_to_set.append(cookie_header(c.pre_cookie, g.pre, secure=c.secure))
    return str(g.pre)


def base() -> str:
    return str(console().broker.settings.base_url)


# -- rendering -------------------------------------------------------------------------------------

def t(key: str, **values: Any) -> str:
    return text(key, g.get("lang", "fi"), **values)


def lang_urls() -> dict[str, str]:
    args = {k: v for k, v in request.args.items() if k != "lang"}
    path = request.path
    return {lang: f"{path}?{urlencode({**args, 'lang': lang})}" for lang in LANGUAGES}


def csrf_token() -> str:
    if g.get("session") is not None:
        return str(g.session.csrf)
    return pre_session_csrf(console().key, ensure_pre_cookie())


@blueprint.app_context_processor
def _context() -> dict[str, Any]:
    if request.blueprint != blueprint.name and not _is_console():
        return {}
    return {"t": t, "lang": g.get("lang", "fi"), "lang_urls": lang_urls, "language_names": LANGUAGE_NAMES,
            "csrf_token": csrf_token, "principal": g.get("principal"), "base": base(),
            "session_name": g.session.name if g.get("session") is not None else "",
            "correlation_id": correlation_id()}


def render(template: str, code: int = 200, /, **context: Any) -> tuple[str, int]:
    context.setdefault("errors", {})
    context.setdefault("problems", [])
    return render_template(template, **context), code


def correlation_id() -> str:
    from broker.web.guard import CORRELATION_ID

    return str(request.environ.get(CORRELATION_ID) or "")


def log_refusal(action: str, detail: str, **fields: Any) -> None:
    p = g.get("principal")
    extra = " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
    logger.warning("console refused correlation_id=%s principal=%s action=%s detail=%r %s", correlation_id(),
                   getattr(p, "name", None), action, detail, extra)


def error_page(status: int, key: str) -> tuple[str, int]:
    return render("error.html", status, message_key=key, status=status)


def done(url: str, key: str) -> Response:
    """Redirect after a change, with the message ``key`` shown on the next page."""
    sep = "&" if "?" in url else "?"
    return redirect(f"{url}{sep}{urlencode({'done': key})}", code=303)


def needs_principal(view: Callable[..., ResponseReturnValue]) -> Callable[..., ResponseReturnValue]:
    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> ResponseReturnValue:
        if g.get("principal") is None:
            return signin_redirect()
        return view(*args, **kwargs)

    return wrapper


# -- errors ----------------------------------------------------------------------------------------

def _is_console() -> bool:
    return not request.path.startswith("/admin/api")


@blueprint.app_errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> ResponseReturnValue:
    if not _is_console():
        # One handler per application and exception class: the API's paths get the API's JSON error.
        from broker.admin.api import json_http_error

        return json_http_error(exc)
    if not hasattr(g, "lang"):
        c = console()
        g.lang = negotiate(_cookies().get(c.lang_cookie), request.headers.get("Accept-Language"))
        g.cookies_to_set, g.pre, g.session, g.principal, g.session_ended = [], None, None, None, False
    code = exc.code or 500
    key = {404: "error.not_found", 405: "error.method", 413: "error.too_large"}.get(code, "error.bad_request")
    if code >= 500:
        key = "error.internal"
    return error_page(code, key)


@blueprint.errorhandler(Exception)
def _unexpected(exc: Exception) -> ResponseReturnValue:
    from broker.admin.errors import AdminError, BadRequest, Unauthorized, ValidationFailed

    if isinstance(exc, HTTPException):
        return _http_error(exc)
    if isinstance(exc, Unauthorized):
        return signin_redirect()
    if isinstance(exc, AdminError):
        log_refusal(request.endpoint or "", exc.code, status=exc.status)
        problems = problem_list(exc) if isinstance(exc, (BadRequest, ValidationFailed)) else []
        key = {403: "error.forbidden", 404: "error.not_found", 409: "error.conflict",
               501: "error.not_available"}.get(exc.status, "error.bad_request")
        status = exc.status if exc.status < 500 else 409
        return render("error.html", status, message_key=key, status=status, problems=problems,
                      description=exc.description if exc.status == 409 else "")
    frames = [f"{f.filename}:{f.lineno} in {f.name}" for f in traceback.extract_tb(exc.__traceback__)][-20:]
    logger.error("console error correlation_id=%s exc_type=%s", correlation_id(), type(exc).__name__,
                 extra={"exc_type": type(exc).__name__, "where": frames[-1] if frames else None, "stack": frames})
    return error_page(500, "error.internal")


#: The file a validator names a tenant document by (a server path): the field that follows is what matters here.
_SOURCE = re.compile(r"^[^\s:]*\.yaml: ")


def problem_list(exc: Exception, fields: Mapping[str, str] | None = None) -> list[dict[str, str]]:
    """The problems of a refused change, each ``{"field": form field id or "", "text"}``.

    ``fields`` maps what the validator or the operation names (a suffix of its field path, e.g.
    ``metadata`` or ``mapping``) to the form field it came from, for the link in the summary.
    """
    from broker.admin.errors import BadRequest, ValidationFailed

    raw: list[tuple[str, str]] = []
    if isinstance(exc, BadRequest):
        raw.append((exc.field, f"{exc.field}: {exc.expected}"))
    elif isinstance(exc, ValidationFailed):
        raw.extend((p.partition(": expected ")[0], p) for p in exc.problems)
    else:
        raw.append(("", str(exc)))
    out = []
    for where, message in raw:
        field = ""
        for needle, field_id in (fields or {}).items():
            if needle and needle in where:
                field = field_id
                break
        out.append({"field": field, "text": _SOURCE.sub("", message, count=1)})
    return out
