"""HTTP hygiene around the broker: the outermost WSGI layer and the pages' security policy.

* :mod:`broker.web.guard` — :func:`guard`: correlation ids, path and body limits, duplicate
  cookies, security headers, the last-resort 500;
* :mod:`broker.web.csp` — Content-Security-Policy values and an auto-POST page that fits them.

:func:`protect_broker` is the guard as the broker runs it, configured from its settings.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from broker.derive import derive_key
from broker.web.csp import script_hash
from broker.web.guard import BODY_TIMEOUT, DRAIN_LIMIT, MAX_BODY, REQUEST_TIME_LIMIT, Guard, guard, protect

__all__ = ["BODY_TIMEOUT", "DRAIN_LIMIT", "MAX_BODY", "REQUEST_TIME_LIMIT", "Guard", "broker_cookies",
           "broker_script_hashes", "guard", "protect", "protect_broker"]


def broker_cookies(app: Any = None) -> tuple[str, ...]:
    """The broker's own cookie names (flow, broker session, remembered IdP), with and without ``__Host-``."""
    from broker.login.cookies import Cookies
    from broker.registry.preview import COOKIE, COOKIE_SUFFIX

    return tuple(name for secure in (True, False) for suffix in ("", COOKIE_SUFFIX)
                 for name in Cookies(secure=secure, suffix=suffix).names) + (COOKIE,)


def broker_script_hashes() -> tuple[str, ...]:
    """CSP hashes of the inline scripts the broker's own pages carry (the city page's search)."""
    from broker.discovery import script

    return (script_hash(script.SEARCH_SCRIPT),)


def protect_broker(app: Callable, settings: Any, **options: Any) -> Callable:
    """``app`` (the broker) behind :func:`guard`, configured for ``settings``; never wrapped twice.

    Guards the broker's cookies against duplicates, allows the hashed inline scripts of its
    pages, recognises pysaml2's auto-POST pages (their ``form-action`` is their target),
    sends ``Strict-Transport-Security`` when the public URL is ``https://``, writes the
    access log when ``BROKER_ACCESS_LOG`` is on, and, inside uWSGI, limits the application's
    time per request to :data:`REQUEST_TIME_LIMIT` seconds.
    """
    base_url = str(getattr(settings, "base_url", "") or "")
    defaults: dict[str, Any] = {
        "guarded_cookies": broker_cookies(app),
        "script_hashes": broker_script_hashes(),
        "autopost_compat": True,
        "strict_transport_security": "max-age=31536000" if base_url.startswith("https://") else None,
        "access_log": bool(getattr(settings, "access_log", False)),
        # The access line names the client by a keyed reference, never by its address.
        "client_key": derive_key(settings.master_secret, b"access-log-client")
        if getattr(settings, "master_secret", None) else None,
        "time_limit": REQUEST_TIME_LIMIT,  # inside uWSGI only (its per-request harakiri)
    }
    defaults.update(options)
    return protect(app, **defaults)
