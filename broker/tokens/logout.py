"""RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0 §2-§3).

The broker's SSO session is ended by the caller (the frontend's ``end_session`` callback);
this module decides where the browser goes next.  It redirects only to a
``post_logout_redirect_uri`` registered for the client, the client being named by
``client_id`` or by the ``aud`` of a valid ``id_token_hint`` (both must agree, §2-§3);
otherwise it shows a "signed out" page.  It never redirects to an unregistered URI.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from broker.errors import page
from broker.i18n import negotiate
from broker.tokens.http import Params, Request, Response, redirect
from broker.verify import InvalidToken

MESSAGES = {
    "title": {"fi": "Olet kirjautunut ulos", "sv": "Du har loggats ut", "en": "You have signed out"},
    "body": {
        "fi": "Kirjautumisesi on päättynyt. Voit sulkea tämän ikkunan.",
        "sv": "Din inloggning har avslutats. Du kan stänga det här fönstret.",
        "en": "Your sign-in has ended. You can close this window.",
    },
}


def _one(params: Params, name: str) -> str | None:
    values = params.get(name)
    return values[0] if values is not None and len(values) == 1 else None


def end_session(request: Request, *, clients: Any,
                check_hint: Callable[[str, str | None], dict[str, Any]]) -> tuple[Response, dict[str, Any]]:
    """Return the response and what is known about the session being ended.

    The second value has ``client_id``, ``sub`` and ``sid`` taken from a *valid*
    ``id_token_hint`` (else ``None``), for the SSO-session callback.
    """
    params = request.params
    info: dict[str, Any] = {"client_id": None, "sub": None, "sid": None}
    client_id = _one(params, "client_id")
    hint = _one(params, "id_token_hint")
    trusted = True
    if hint:
        try:
            claims = check_hint(hint, None)
        except InvalidToken:
            claims, trusted = None, False  # §4: a hint we cannot validate means no redirection
        if claims is not None:
            aud = claims.get("aud")
            auds = [aud] if isinstance(aud, str) else [a for a in aud if isinstance(a, str)] \
                if isinstance(aud, list) else []
            if client_id is None and len(auds) == 1:
                client_id = auds[0]
            elif client_id is not None and client_id not in auds:
                trusted = False  # §2: client_id must match the hint's audience
            info.update(sub=claims.get("sub"), sid=claims.get("sid"))
    info["client_id"] = client_id
    target = _one(params, "post_logout_redirect_uri")
    client = clients.client(client_id) if client_id else None
    if trusted and target and client is not None and target in client.post_logout_redirect_uris:  # §3
        state = _one(params, "state")
        sep = "&" if "?" in target else "?"
        return redirect(target + (sep + urlencode({"state": state}) if state else "")), info
    lang = negotiate(_one(params, "ui_locales"), request.header("accept-language"))
    body = page(lang, MESSAGES["title"][lang], f'<p class="lead">{html.escape(MESSAGES["body"][lang])}</p>')
    return Response(200, [("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store")],
                    body.encode()), info
