"""Errors a person or a machine may see, with correlation ids.

Every rejected request becomes a :class:`BrokerError`.  :func:`render` turns it
into a localized HTML page (for people) or JSON (for machines), both carrying a
correlation id that :func:`log` writes to the log as well, so support can match
a screenshot to a log line.  Nothing here ever shows a stack trace or echoes
tokens, assertions or personal data.
"""

from __future__ import annotations

import html
import json
import logging
import secrets
from collections.abc import Mapping
from typing import Any

from broker.i18n import negotiate, text

logger = logging.getLogger("broker.errors")


class BrokerError(Exception):
    """A request the broker refuses, with what the user and the log should see.

    ``detail`` is for the log only (clients get the localized message and the
    correlation id); it must not contain secrets or personal data.  The page's heading
    follows the message (:data:`HEADINGS`).
    """

    status = 400
    code = "invalid_request"
    message_key = "error.invalid_request"
    #: Whether the page offers the city search (when a login is under way to use it in).
    offers_city_search = False
    #: Headers the refusal's response carries besides its own (a 429's ``Retry-After``).
    headers: tuple[tuple[str, str], ...] = ()

    def __init__(self, detail: str = "", *, code: str | None = None, status: int | None = None,
                 message_key: str | None = None):
        super().__init__(detail or self.code)
        self.detail = detail
        if code:
            self.code = code
        if status:
            self.status = status
        if message_key:
            self.message_key = message_key


class UnknownIdp(BrokerError):
    code = "unknown_idp"
    message_key = "error.unknown_idp"


class UnknownClient(BrokerError):
    code = "invalid_client"
    message_key = "error.unknown_client"


class InvalidRedirectUri(BrokerError):
    code = "invalid_request"
    message_key = "error.invalid_redirect_uri"


class InvalidResponse(BrokerError):
    """An upstream SAML or OIDC response failed a check (signature, issuer, time...)."""

    code = "invalid_response"
    message_key = "error.invalid_response"


class ReplayedResponse(InvalidResponse):
    code = "replayed_response"
    message_key = "error.replayed_response"


class ExpiredFlow(BrokerError):
    code = "expired_flow"
    message_key = "error.expired_flow"


class IdpError(BrokerError):
    """The upstream IdP answered with an error of its own.

    ``upstream_error`` is set when the IdP said the person did not sign in (cancelled,
    declined, no session for a passive request): the service then hears it as an OAuth
    error (``access_denied``, ``login_required``) instead of the person seeing a page.
    """

    status = 502
    code = "idp_error"
    message_key = "error.idp_error"

    def __init__(self, detail: str = "", *, upstream_error: str | None = None, **kwargs: Any):
        super().__init__(detail, **kwargs)
        self.upstream_error = upstream_error


class NoUserId(BrokerError):
    status = 403
    code = "no_user_id"
    message_key = "error.no_user_id"


class NotFound(BrokerError):
    status = 404
    code = "not_found"
    message_key = "error.not_found"


class UnknownTenant(NotFound):
    """An address naming a city (tenant) the registry does not have: a 404 with the city search."""

    message_key = "error.unknown_tenant"
    offers_city_search = True


#: The heading each message goes under: what happened, in the person's words.  A message
#: not listed here is a sign-in that went wrong (``error.title``).
HEADINGS = {
    "error.unknown_client": "error.title.not_started",
    "error.invalid_redirect_uri": "error.title.not_started",
    "error.invalid_request": "error.title.not_started",
    "error.unknown_idp": "error.title.not_started",
    "error.expired_flow": "error.title.expired",
    "error.not_found": "error.title.not_found",
    "error.unknown_tenant": "error.title.unknown_tenant",
    "error.invalid_logout_request": "error.title.logout",
    "error.rate_limited": "error.title.busy",
    "error.method_not_allowed": "error.title.generic",
    "error.bad_request": "error.title.generic",
    "error.internal": "error.title.generic",
}


def heading_key(message_key: str) -> str:
    """The key of the heading over ``message_key``'s page."""
    return HEADINGS.get(message_key, "error.title")


def new_correlation_id() -> str:
    """The correlation id of the request being served (set by the guard), else a new one."""
    from broker.logs import current_correlation_id

    return current_correlation_id() or secrets.token_hex(8)


def wants_json(accept: str | None) -> bool:
    """Machines get JSON: clients whose Accept header names JSON before (or without) HTML."""
    accept = (accept or "").lower()
    json_at, html_at = accept.find("json"), accept.find("text/html")
    return json_at != -1 and (html_at == -1 or json_at < html_at)


def log(error: BrokerError, correlation_id: str, **fields: str | None) -> None:
    """Write one log line for a refused request; ``fields`` must be free of personal data.

    A field whose value is ``None`` is left out of the line.
    """
    extra = " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
    logger.warning("refused correlation_id=%s status=%s code=%s detail=%r %s",
                   correlation_id, error.status, error.code, error.detail, extra)


LANGUAGE_NAMES = {"fi": "Suomeksi", "sv": "På svenska", "en": "In English"}


def language_nav(current: str, urls: Mapping[str, str]) -> str:
    """The language switch every broker page carries: a link per language, the current one marked."""
    links = []
    for lang, url in urls.items():
        attr = ' aria-current="true"' if lang == current else ""
        links.append(f'<a lang="{lang}" href="{html.escape(url)}"{attr}>{LANGUAGE_NAMES.get(lang, lang)}</a>')
    return f'<nav class="lang" aria-label="{html.escape(text("disco.language", current))}">{"".join(links)}</nav>'


def render(error: BrokerError, correlation_id: str, *, lang: str | None = None,
           accept_language: str | None = None, as_json: bool = False,
           restart_url: str | None = None, languages: Mapping[str, str] | None = None,
           search_url: str | None = None, home_url: str | None = None) -> tuple[int, str, bytes]:
    """Return ``(status, content_type, body)`` for ``error``.

    ``languages`` (language -> URL) puts the language switch on the page; ``restart_url``
    offers the way back to the city list while the service's request is still valid;
    ``search_url`` (the city page) puts its search box on the page; ``home_url`` (the
    front page, which tells where to go) is the way on when there is no ``restart_url``.
    """
    if as_json:
        # The detail may carry library internals: it goes to the log, never to the client.
        body = {"error": error.code, "error_description": text(error.message_key, "en"),
                "correlation_id": correlation_id}
        return error.status, "application/json", json.dumps(body).encode()
    lang = negotiate(lang, accept_language)
    if restart_url:
        way_on = f'<p><a id="restart" href="{html.escape(restart_url)}">{html.escape(text("error.back", lang))}</a></p>'
    elif home_url:
        way_on = f'<p><a id="home" href="{html.escape(home_url)}">{html.escape(text("error.home", lang))}</a></p>'
    else:
        way_on = ""
    return error.status, "text/html; charset=utf-8", page(
        lang, text(heading_key(error.message_key), lang),
        (language_nav(lang, languages) if languages else "")
        + f'<p class="lead">{html.escape(text(error.message_key, lang))}</p>'
        + (city_search(search_url, lang) if search_url else "")
        + f'<p>{html.escape(text("error.help", lang))}</p>'
        f'<p class="cid">{html.escape(text("error.correlation", lang))}: '
        f'<code id="correlation-id">{html.escape(correlation_id)}</code></p>'
        + way_on,
    ).encode()


def city_search(url: str, lang: str) -> str:
    """The city page's search box as a plain GET form: it works without the page's script."""
    label = html.escape(text("disco.search", lang))
    return (f'<form id="city-search" method="get" action="{html.escape(url)}" role="search">'
            f'<label for="q">{label}</label> <input type="search" id="q" name="q" maxlength="100">'
            f'<input type="hidden" name="lang" value="{html.escape(lang)}">'
            f' <button type="submit">{html.escape(text("disco.search_button", lang))}</button></form>')


STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f4f6f8;color:#1b1f23}
main{max-width:34rem;margin:0 auto;padding:1.5rem 1rem}
h1{font-size:1.5rem;margin:.5rem 0 1rem}
.lead{font-size:1.1rem}
.card{background:#fff;border-radius:.75rem;padding:1rem 1.25rem;box-shadow:0 1px 3px rgba(0,0,0,.1)}
a.choice,button.choice{display:block;width:100%;box-sizing:border-box;text-align:left;font-size:1.05rem;
 padding:.9rem 1rem;margin:.4rem 0;border:1px solid #c9d1d9;border-radius:.5rem;background:#fff;color:#0b4f8a;
 text-decoration:none;cursor:pointer}
a.choice:hover,button.choice:hover{background:#eef5fc}
button.link{border:0;background:none;padding:0;color:#0b4f8a;text-decoration:underline;font:inherit;cursor:pointer}
input[type=search]{width:100%;box-sizing:border-box;font-size:1.05rem;padding:.7rem;\
border:1px solid #c9d1d9;border-radius:.5rem}
nav.lang{margin-bottom:1rem}
form[role=search]{margin:1rem 0}
form[role=search] button{margin-top:.5rem;font-size:1rem;padding:.5rem 1rem}
nav.lang a{margin-right:.75rem}
nav.lang a[aria-current]{font-weight:700;text-decoration:none;color:#1b1f23}
code{background:#eef0f2;padding:.1rem .3rem;border-radius:.25rem}
"""


def page(lang: str, title: str, body_html: str, *, header: str = "", footer: str = "", style: str = "") -> str:
    """The one HTML frame every page of the broker uses (responsive, no external assets).

    ``header`` and ``footer`` (trusted markup) go before and after ``<main>``; ``style`` is
    appended to the shared :data:`STYLE`.
    """
    return (
        f'<!doctype html><html lang="{html.escape(lang)}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{html.escape(title)} · DigiOne</title><style>{STYLE}{style}</style></head>"
        f'<body>{header}<main><h1>{html.escape(title)}</h1><div class="card">{body_html}</div></main>{footer}'
        "</body></html>"
    )
