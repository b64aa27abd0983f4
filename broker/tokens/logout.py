"""RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0 §2-§4).

:func:`logout_request` does not log anyone out.  It reads the request at the logout
endpoint (GET or POST, §2) and returns a :class:`LogoutRequest`: what the request
*proves* — which client sent it, which of that client's sessions (``sid``) and users
(``sub``) it names, where the browser may go afterwards — and whether the broker may
proceed without asking the person (``confirmed``).  The caller (the broker's sessions)
acts on it: asks on a confirmation page when ``confirmed`` is false, ends the session,
sends the back- and front-channel notifications, then answers with
:func:`logged_out_response`.

What counts as proof, in this order:

* an ``id_token_hint`` is checked (signature with one of our published keys, ``iss``, not
  an access or logout token; an expired one is still a hint, §2).  A hint that does not
  validate proves nothing: no client, no redirection (§4), and the person is asked.
* a valid hint whose ``aud`` does not contain the ``client_id`` sent with it is refused
  outright (§2: "the OP MUST verify that the Client Identifier matches").
* ``confirmed`` is true for a valid hint naming a registered client, or a registered
  ``client_id`` with a ``post_logout_redirect_uri`` registered for it (exact string match,
  §3).  Anything else (nothing, an unknown client, an unregistered URI) is ``confirmed=False``:
  the broker asks before ending the session, so a bare link on any page cannot sign the
  person out.
* ``post_logout_redirect_uri`` is kept only when registered for the proven client (§3);
  otherwise the broker shows its own "signed out" page, never an unregistered URI.
"""

from __future__ import annotations

import dataclasses
import html
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

from broker.errors import BrokerError, log, new_correlation_id, page, render, wants_json
from broker.i18n import negotiate
from broker.tokens.http import Params, Request, Response, redirect
from digione_verify import InvalidToken

logger = logging.getLogger("broker.tokens.logout")

MESSAGES = {
    "title": {"fi": "Olet kirjautunut ulos", "sv": "Du har loggats ut", "en": "You have signed out"},
    "body": {
        "fi": "Kirjautumisesi on päättynyt. Voit sulkea tämän ikkunan.",
        "sv": "Din inloggning har avslutats. Du kan stänga det här fönstret.",
        "en": "Your sign-in has ended. You can close this window.",
    },
    "continue": {"fi": "Jatka palveluun", "sv": "Fortsätt till tjänsten", "en": "Continue to the service"},
    "confirm_title": {"fi": "Kirjaudutaanko ulos?", "sv": "Vill du logga ut?", "en": "Sign out?"},
    "confirm_body": {
        "fi": "Kirjautumisesi päättyy kaikissa palveluissa, joihin kirjauduit tällä kirjautumisella.",
        "sv": "Din inloggning avslutas i alla tjänster som du loggade in på med den här inloggningen.",
        "en": "Your sign-in will end in every service you signed in to with it.",
    },
    "confirm_button": {"fi": "Kirjaudu ulos", "sv": "Logga ut", "en": "Sign out"},
    "confirm_stay": {
        "fi": "Jos et halunnut kirjautua ulos, sulje tämä sivu.",
        "sv": "Om du inte ville logga ut kan du stänga den här sidan.",
        "en": "If you did not mean to sign out, close this page.",
    },
}

#: Parameters of RP-Initiated Logout 1.0 §2, each allowed once, with their longest accepted value.
_LIMITS = {"id_token_hint": 16 * 1024, "client_id": 128, "post_logout_redirect_uri": 2048, "state": 2048,
           "ui_locales": 128, "logout_hint": 256}


class LogoutRequestError(BrokerError):
    """A logout request refused outright (a parameter repeated or too long, a hint for another client)."""

    message_key = "error.invalid_logout_request"


#: Refusals are shown as the broker's error page (never redirected).
ShownError = Callable[[BrokerError, Request], Response]
#: ``check_hint(id_token_hint, client_id) -> claims``, raising :class:`InvalidToken`.
CheckHint = Callable[[str, "str | None"], dict[str, Any]]


@dataclasses.dataclass(frozen=True)
class LogoutRequest:
    """What a logout request proves; the caller decides and acts (see the module docstring).

    ``client_id``: the registered client the request names (proven only if ``confirmed``).
    ``sub``, ``sid``: from a *valid* ``id_token_hint`` only — that client's ``sub`` and
    ``sid`` (the caller checks that ``sid`` is one of the current broker session's, §2:
    otherwise the request is suspect and the person is asked).  ``post_logout_redirect_uri``:
    only if registered for that client (exact match, §3).  ``state`` goes back with that
    redirect; ``ui_locales`` chooses the language of the broker's pages.  ``confirmed``:
    the client proved itself (a valid hint, or ``client_id`` with a registered
    ``post_logout_redirect_uri``), so the broker proceeds without asking.
    """

    client_id: str | None = None
    sub: str | None = None
    sid: str | None = None
    post_logout_redirect_uri: str | None = None
    state: str | None = None
    ui_locales: str | None = None
    confirmed: bool = False


def _shown(error: BrokerError, request: Request) -> Response:
    cid = new_correlation_id()
    log(error, cid, endpoint="end_session")
    status, content_type, body = render(error, cid, lang=_one(request.params, "ui_locales"),
                                        as_json=wants_json(request.header("accept")),
                                        accept_language=request.header("accept-language"))
    return Response(status, [("Content-Type", content_type), ("Cache-Control", "no-store")], body)


def _one(params: Params, name: str) -> str | None:
    values = params.get(name)
    return values[0] if values is not None and len(values) == 1 and values[0] else None


def _audiences(claims: Mapping[str, Any]) -> list[str]:
    aud = claims.get("aud")
    if isinstance(aud, str):
        return [aud]
    return [a for a in aud if isinstance(a, str)] if isinstance(aud, list) else []


def logout_request(request: Request, *, clients: Any, check_hint: CheckHint,
                   shown_error: ShownError | None = None) -> LogoutRequest | Response:
    """Read a logout request (RP-Initiated Logout 1.0 §2-§4): a :class:`LogoutRequest`, or a
    :class:`Response` for an outright refusal (wrong method, a parameter repeated or too
    long, a valid hint for another client than ``client_id``), shown and never redirected.

    :param clients: ``.client(client_id) -> Client | None``.
    :param check_hint: verifies an ID token we issued (``Provider._check_hint``).
    :param shown_error: renders a refusal (default: the broker's error page).
    """
    refuse = shown_error or _shown
    if request.method not in ("GET", "POST"):  # §2: both must be supported
        return refuse(BrokerError("use GET or POST at the logout endpoint", status=405,
                                  message_key="error.method_not_allowed"), request)
    params = request.params
    for name, limit in _LIMITS.items():
        values = params.get(name) or ()
        if len(values) > 1:
            return refuse(LogoutRequestError(f"{name} repeated at the logout endpoint"), request)
        if values and len(values[0]) > limit:
            return refuse(LogoutRequestError(f"{name} longer than {limit} characters"), request)
    client_id = _one(params, "client_id")
    hint = _one(params, "id_token_hint")
    target = _one(params, "post_logout_redirect_uri")
    state = _one(params, "state")
    ui_locales = _one(params, "ui_locales")
    unproven = LogoutRequest(state=state, ui_locales=ui_locales)

    if hint is not None:
        try:
            claims = check_hint(hint, None)
        except InvalidToken as exc:
            # §4: a hint that does not validate means no redirection; the person is asked.
            logger.info("logout with an id_token_hint that does not validate: %s", exc.reason)
            return unproven
        auds = _audiences(claims)
        if client_id is not None and client_id not in auds:  # §2: client_id must match the hint's audience
            return refuse(LogoutRequestError("client_id is not the audience of id_token_hint"), request)
        if client_id is None:
            azp = claims.get("azp")
            client_id = auds[0] if len(auds) == 1 else azp if isinstance(azp, str) and azp in auds else None
        client = clients.client(client_id) if client_id else None
        if client is None:  # a genuine hint of a client no longer registered: nothing to redirect to
            return unproven
        sub, sid = claims.get("sub"), claims.get("sid")
        return LogoutRequest(
            client_id=client.client_id, sub=sub if isinstance(sub, str) else None,
            sid=sid if isinstance(sid, str) and sid else None,
            post_logout_redirect_uri=target if target in client.post_logout_redirect_uris else None,
            state=state, ui_locales=ui_locales, confirmed=True)

    client = clients.client(client_id) if client_id else None
    if client is None:
        return unproven
    if target is not None and target in client.post_logout_redirect_uris:  # §3: exact match
        return LogoutRequest(client_id=client.client_id, post_logout_redirect_uri=target, state=state,
                             ui_locales=ui_locales, confirmed=True)
    return dataclasses.replace(unproven, client_id=client.client_id)


# --------------------------------------------------------------------------- the pages after the decision


def _lang(decision: LogoutRequest, request: Request | None) -> str:
    return negotiate(decision.ui_locales, request.header("accept-language") if request else None)


def _html(body: str, headers: Iterable[tuple[str, str]] = ()) -> Response:
    return Response(200, [("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store"), *headers],
                    body.encode())


def post_logout_location(decision: LogoutRequest) -> str | None:
    """Where the browser goes after the logout (§3): the registered URI with ``state``, or None."""
    target = decision.post_logout_redirect_uri
    if target is None:
        return None
    if decision.state is None:
        return target
    sep = "&" if urlsplit(target).query else "" if target.endswith("?") else "?"
    return target + sep + urlencode({"state": decision.state})


#: Waits for the front-channel iframes (at most 3 s), then follows the page's "continue" link.
_FRONTCHANNEL_SCRIPT = (
    "(function(){var a=document.getElementById('next');if(!a)return;var f=document.querySelectorAll("
    "'iframe.fcl'),n=f.length,g=function(){location.replace(a.href)};if(!n){g();return}"
    "f.forEach(function(e){e.addEventListener('load',function(){if(--n===0)g()})});setTimeout(g,3000)})();"
)


def logged_out_response(decision: LogoutRequest, request: Request | None = None, *,
                        frontchannel_urls: Iterable[str] = ()) -> Response:
    """The answer once the session has ended.

    Without front-channel URLs: a redirect to the registered ``post_logout_redirect_uri``
    with ``state`` (§3), else the broker's "signed out" page.  With them (Front-Channel
    Logout 1.0 §4, :func:`broker.tokens.logout_token.frontchannel_logout_url`): the page
    renders each in a hidden iframe and, if there is somewhere to go, continues there once
    they have loaded (or after 3 s).  The page's own Content-Security-Policy frames exactly
    those origins and runs only its one hashed script.
    """
    from broker.web import csp  # local: broker.web loads its request guard too, which the provider never needs

    location = post_logout_location(decision)
    urls = list(dict.fromkeys(frontchannel_urls))
    if not urls and location is not None:
        return redirect(location)
    lang = _lang(decision, request)
    parts = [f'<p class="lead">{html.escape(MESSAGES["body"][lang])}</p>']
    if location is not None:
        link = html.escape(MESSAGES["continue"][lang])
        parts.append(f'<p><a id="next" href="{html.escape(location)}">{link}</a></p>')
    headers: list[tuple[str, str]] = []
    if urls:
        parts.extend(f'<iframe class="fcl" src="{html.escape(url)}" title="logout" width="0" height="0" '
                     'style="display:none;border:0" referrerpolicy="origin" sandbox="allow-scripts '
                     'allow-same-origin"></iframe>' for url in urls)
        parts.append(f"<script>{_FRONTCHANNEL_SCRIPT}</script>")
        origins = " ".join(sorted({o for o in (csp.origin(url) for url in urls) if o})) or "'none'"
        policy = csp.policy(form_action=("'none'",), script_src=(csp.script_hash(_FRONTCHANNEL_SCRIPT),))
        headers.append(("Content-Security-Policy", f"{policy}; frame-src {origins}"))
    return _html(page(lang, MESSAGES["title"][lang], "".join(parts)), headers)


def confirmation_page(decision: LogoutRequest, request: Request | None = None, *, action: str,
                      csrf: str, fields: Mapping[str, str] | None = None) -> Response:
    """The page that asks the person before an unconfirmed logout (§2: "the OP MUST ask").

    One POST form to ``action`` carrying ``csrf`` (the caller's token, checked when the form
    comes back), ``confirm=yes``, and the request's ``client_id``, ``state`` and
    ``ui_locales`` (never an unproven redirect URI).  ``fields`` adds hidden fields.
    """
    lang = _lang(decision, request)
    hidden = {"csrf": csrf, "confirm": "yes"}
    for name in ("client_id", "state", "ui_locales"):
        value = getattr(decision, name)
        if value is not None:
            hidden[name] = value
    hidden.update(fields or {})
    inputs = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                     for k, v in hidden.items())
    body = (f'<p class="lead">{html.escape(MESSAGES["confirm_body"][lang])}</p>'
            f'<form method="post" action="{html.escape(action)}">{inputs}'
            f'<button class="choice" type="submit">{html.escape(MESSAGES["confirm_button"][lang])}</button></form>'
            f'<p>{html.escape(MESSAGES["confirm_stay"][lang])}</p>')
    return _html(page(lang, MESSAGES["confirm_title"][lang], body))

