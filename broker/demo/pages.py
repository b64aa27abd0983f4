"""The pages a person sees at a demo identity provider: login form, auto-POST, error.

Shared by the SAML and the Entra-shaped demo IdPs so that both look alike and
speak Finnish, Swedish and English.  Responses are never cached: the login form
carries a pending request and the auto-POST page carries an assertion or a code.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping

from flask import Flask, Response, make_response, render_template, request

from broker.i18n import LANGUAGES, negotiate

TEXTS: dict[str, dict[str, str]] = {
    "fi": {
        "title": "Kirjaudu sisään",
        "username": "Käyttäjätunnus",
        "password": "Salasana",
        "submit": "Kirjaudu",
        "cancel": "Peruuta",
        "wrong_credentials": "Väärä käyttäjätunnus tai salasana.",
        "demo_users": "Demokäyttäjät (salasana: demo)",
        "continue": "Jatka",
        "returning": "Palataan palveluun…",
        "error_title": "Kirjautuminen ei onnistu",
        "bad_request": "Kirjautumispyyntö on virheellinen.",
        "unknown_service": "Palvelu, josta tulit, ei ole tämän kirjautumispalvelun tuntema.",
        "unknown_return_address": "Palvelun paluuosoitetta ei ole rekisteröity, joten sinua ei ohjata sinne.",
        "unavailable": "Kirjautumispalvelu ei juuri nyt tavoita palvelua. Yritä hetken päästä uudelleen.",
        "logout_title": "Kirjaudu ulos",
        "sign_out": "Kirjaudu ulos",
        "signed_in_as": "Olet kirjautuneena käyttäjänä",
        "not_signed_in": "Et ole kirjautunut sisään.",
        "signing_out": "Kirjaudutaan ulos…",
        "signed_out": "Olet kirjautunut ulos.",
        "signed_out_partly": "Uloskirjautuminen ei onnistunut kaikkialla.",
        "logout_error_title": "Uloskirjautuminen ei onnistu",
        "unsigned": "Pyyntöä ei ole allekirjoitettu palvelun avaimella.",
        "unexpected": "Tähän vastaukseen ei odotettu.",
        "bad_logout_request": "Uloskirjautumispyyntö on virheellinen.",
        "logout_confirm": "Kirjaudu ulos täältä ja palveluista, joihin kirjauduit tämän kautta.",
    },
    "sv": {
        "title": "Logga in",
        "username": "Användarnamn",
        "password": "Lösenord",
        "submit": "Logga in",
        "cancel": "Avbryt",
        "wrong_credentials": "Fel användarnamn eller lösenord.",
        "demo_users": "Demoanvändare (lösenord: demo)",
        "continue": "Fortsätt",
        "returning": "Du skickas tillbaka till tjänsten…",
        "error_title": "Inloggningen går inte",
        "bad_request": "Inloggningsbegäran är felaktig.",
        "unknown_service": "Tjänsten du kom från är okänd för denna inloggningstjänst.",
        "unknown_return_address": "Tjänstens returadress är inte registrerad, så du skickas inte dit.",
        "unavailable": "Inloggningstjänsten når inte tjänsten just nu. Försök igen om en stund.",
        "logout_title": "Logga ut",
        "sign_out": "Logga ut",
        "signed_in_as": "Du är inloggad som",
        "not_signed_in": "Du är inte inloggad.",
        "signing_out": "Du loggas ut…",
        "signed_out": "Du har loggat ut.",
        "signed_out_partly": "Utloggningen lyckades inte överallt.",
        "logout_error_title": "Utloggningen går inte",
        "unsigned": "Begäran är inte signerad med tjänstens nyckel.",
        "unexpected": "Detta svar väntades inte.",
        "bad_logout_request": "Utloggningsbegäran är felaktig.",
        "logout_confirm": "Logga ut här och från tjänsterna du loggade in på härifrån.",
    },
    "en": {
        "title": "Sign in",
        "username": "Username",
        "password": "Password",
        "submit": "Sign in",
        "cancel": "Cancel",
        "wrong_credentials": "Wrong username or password.",
        "demo_users": "Demo users (password: demo)",
        "continue": "Continue",
        "returning": "Returning to the service…",
        "error_title": "Cannot sign in",
        "bad_request": "The sign-in request is not valid.",
        "unknown_service": "The service you came from is not known to this sign-in service.",
        "unknown_return_address": "The service's return address is not registered, so you are not sent there.",
        "unavailable": "The sign-in service cannot reach the service right now. Try again in a moment.",
        "logout_title": "Sign out",
        "sign_out": "Sign out",
        "signed_in_as": "You are signed in as",
        "not_signed_in": "You are not signed in.",
        "signing_out": "Signing out…",
        "signed_out": "You have signed out.",
        "signed_out_partly": "Signing out did not succeed everywhere.",
        "logout_error_title": "Cannot sign out",
        "unsigned": "The request is not signed with the service's key.",
        "unexpected": "This answer was not expected.",
        "bad_logout_request": "The sign-out request is not valid.",
        "logout_confirm": "Sign out here and of the services you signed in to from here.",
    },
}

_LANGUAGE_LABELS = {"fi": "Suomeksi", "sv": "På svenska", "en": "In English"}


def language(explicit: str | None = None) -> str:
    """The page language: a language switch or ``lang``/``ui_locales``, else the browser's."""
    requested = (
        explicit
        or request.values.get("switch_lang")
        or request.values.get("lang")
        or request.values.get("ui_locales")
    )
    return negotiate(requested, request.headers.get("Accept-Language"))


def login_page(
    *,
    idp_name: str,
    action: str,
    hidden: Mapping[str, str],
    demo_users: Iterable[str],
    lang: str,
    username: str = "",
    error: bool = False,
) -> Response:
    """The login form.  ``hidden`` fields carry the pending request through the POST."""
    body = render_template(
        "demo_login.html",
        lang=lang,
        t=TEXTS[lang],
        languages=[(code, _LANGUAGE_LABELS[code]) for code in LANGUAGES],
        idp_name=idp_name,
        action=action,
        hidden=hidden,
        demo_users=list(demo_users),
        username=username,
        error=error,
    )
    return _no_store(make_response(body, 401 if error else 200))


def auto_post(action: str, fields: Mapping[str, str], lang: str) -> Response:
    """A page that POSTs ``fields`` to ``action`` at once (a button without JavaScript)."""
    body = render_template("demo_autopost.html", lang=lang, t=TEXTS[lang], action=action, fields=fields)
    return _no_store(make_response(body, 200))


def error_page(key: str, *, idp_name: str, lang: str, detail: str = "", status: int = 400,
               title: str = "error_title") -> Response:
    """An error page: the localized text ``TEXTS[lang][key]`` and a technical ``detail``.

    ``detail`` is shown as is (in English, like real IdPs' error codes) and must
    hold nothing secret.  ``title`` is the key of the heading (``logout_error_title``
    on the sign-out paths).
    """
    body = render_template(
        "demo_error.html", lang=lang, t=TEXTS[lang], idp_name=idp_name, message=TEXTS[lang][key], detail=detail,
        title=TEXTS[lang][title],
    )
    return _no_store(make_response(body, status))


def logout_page(
    *,
    idp_name: str,
    lang: str,
    message: str,
    who: str = "",
    action: str = "",
    detail: str = "",
    frames: Iterable[str] = (),
    target: str = "",
    status: int = 200,
) -> Response:
    """A sign-out page: ``TEXTS[lang][message]`` in ``#status``.

    With ``action``, a form that POSTs there with a ``#sign-out`` button (the person
    confirms); ``who`` names the person signed in.  ``frames`` are front-channel
    logout URLs loaded in hidden iframes (OpenID Connect Front-Channel Logout §4);
    ``target`` is where the page goes once they have loaded (a ``#continue`` link,
    followed by script; a few seconds at most).  ``detail`` is shown as is.
    """
    body = render_template(
        "demo_logout.html", lang=lang, t=TEXTS[lang], idp_name=idp_name, message=TEXTS[lang][message], who=who,
        action=action, detail=detail, frames=list(frames), target=target,
    )
    return _no_store(make_response(body, status))


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def demo_app(session_cookie: str) -> Flask:
    """A demo peer's Flask app: its own session cookie (localhost ports share cookies), HttpOnly, Lax."""
    app = Flask("broker.demo")
    app.config.update(SECRET_KEY=secrets.token_bytes(32), SESSION_COOKIE_NAME=session_cookie,
                      SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax")
    return app
