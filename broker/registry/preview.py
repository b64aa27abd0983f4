"""Test logins through a staged version, reachable only through a signed test link.

A city admin stages a new IdP and wants to sign in through it before anyone else
can.  :func:`test_link` gives a link (HMAC-signed with a key derived from the
master secret, expiring) to ``/registry/preview``; opening it sets a cookie on that
one browser, and from then on its requests are served by a login path built for the
staged version (:class:`Previews`) instead of the active one, until the version is
activated or discarded, the link expires, or the person stops testing.  Everyone
else keeps the active version.

A preview's broker session uses cookies of its own (``…_preview``), so a session
opened through a staged IdP never serves single sign-on on the live login path.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import html
import logging
import threading
import time
from typing import Any
from urllib.parse import parse_qs

from broker.derive import derive_key
from broker.errors import page
from broker.i18n import negotiate, text
from broker.login.cookies import parse
from broker.settings import Settings

logger = logging.getLogger(__name__)

PATH = "/registry/preview"
STOP_PATH = "/registry/preview/stop"
COOKIE = "digione_preview"
#: Test links live an hour by default, at most a day.
DEFAULT_TTL = 3600
MAX_TTL = 24 * 3600
#: Login paths of staged versions kept built at once (each is a whole proxy).
MAX_BUILT = 2
COOKIE_SUFFIX = "_preview"


def _key(settings: Settings) -> bytes:
    return derive_key(settings.master_secret, b"registry-preview")


def _token(settings: Settings, version_id: int, expires: int) -> str:
    mac = hmac.new(_key(settings), f"{version_id}.{expires}".encode(), hashlib.sha256).hexdigest()
    return f"{version_id}.{expires}.{mac}"


def test_link(settings: Settings, version_id: int, *, ttl: int = DEFAULT_TTL) -> str:
    """The URL that routes one browser to staged version ``version_id`` for ``ttl`` seconds."""
    expires = int(time.time()) + max(60, min(ttl, MAX_TTL))
    return f"{settings.base_url}{PATH}?t={_token(settings, version_id, expires)}"


test_link.__test__ = False  # type: ignore[attr-defined]  # a function, not a test, whatever pytest thinks


def open_token(settings: Settings, token: str | None, *, now: float | None = None) -> int | None:
    """The version a genuine, unexpired token names; ``None`` for anything else."""
    if not token or len(token) > 200:
        return None
    parts = token.split(".")
    if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
        return None
    version_id, expires = int(parts[0]), int(parts[1])
    if not hmac.compare_digest(_token(settings, version_id, expires), token):
        return None
    return version_id if (now or time.time()) < expires else None


class Previews:
    """The preview endpoints, and the login paths of staged versions that test links route to."""

    def __init__(self, broker: Any):
        self.broker = broker
        self._built: collections.OrderedDict[tuple[int, int], Any] = collections.OrderedDict()
        self._lock = threading.Lock()

    def version_of(self, environ: dict[str, Any]) -> int | None:
        """The staged version this request is to be served by, if it carries a valid preview cookie."""
        cookie = environ.get("HTTP_COOKIE", "")
        if COOKIE not in cookie:
            return None
        return open_token(self.broker.settings, parse(cookie, (COOKIE,)).get(COOKIE))

    def serve(self, version_id: int, environ: dict[str, Any], start_response: Any) -> Any:
        try:
            proxy = self._proxy(version_id)
        except Exception as exc:  # noqa: BLE001 - a staged version may not build: that is what testing finds
            logger.warning("registry preview version=%s does not build (%s: %s)", version_id,
                           exc.__class__.__name__, exc)
            return self._page(environ, start_response, "preview.broken", version_id, status="409 Conflict")
        if proxy is None:
            return self._page(environ, start_response, "preview.gone", version_id, expire=True, status="410 Gone")
        return proxy(environ, start_response)

    def endpoint(self, environ: dict[str, Any], start_response: Any) -> Any:
        """``/registry/preview?t=…`` starts testing; ``/registry/preview/stop`` ends it."""
        if environ.get("PATH_INFO") == STOP_PATH:
            return self._page(environ, start_response, "preview.stopped", None, expire=True)
        token = (parse_qs(environ.get("QUERY_STRING", "")).get("t") or [None])[0]
        version_id = open_token(self.broker.settings, token)
        if version_id is None:
            return self._page(environ, start_response, "preview.invalid", None, expire=True, status="400 Bad Request")
        if self._staged(version_id) is None:
            return self._page(environ, start_response, "preview.gone", version_id, expire=True, status="410 Gone")
        logger.info("registry preview started version=%s", version_id)
        assert token is not None
        return self._page(environ, start_response, "preview.started", version_id, cookie=token)

    def _staged(self, version_id: int) -> Any:
        from broker.registry.versions import VersionError

        try:
            version = self.broker.registry_service.versions.version(version_id)
        except VersionError:
            return None
        return version if version.status in ("staged", "pending_approval") else None

    def _proxy(self, version_id: int) -> Any:
        """The login path of staged ``version_id`` on today's active state (rebuilt when either moves)."""
        if self._staged(version_id) is None:
            return None
        key = (version_id, self.broker.seq)
        with self._lock:
            if key in self._built:
                self._built.move_to_end(key)
                return self._built[key]
            _, proxy = self.broker.build_proxy(self.broker.registry_service.versions.documents(version_id),
                                               cookie_suffix=COOKIE_SUFFIX)
            self._built[key] = proxy
            while len(self._built) > MAX_BUILT:
                self._built.popitem(last=False)
            return proxy

    def _page(self, environ: dict[str, Any], start_response: Any, key: str, version_id: int | None, *,
              cookie: str | None = None, expire: bool = False, status: str = "200 OK") -> list[bytes]:
        settings = self.broker.settings
        lang = negotiate(None, environ.get("HTTP_ACCEPT_LANGUAGE"))
        body = f'<p class="lead">{html.escape(text(key, lang).format(version=version_id))}</p>'
        if cookie:
            body += (f'<p><a href="{html.escape(settings.base_url)}{STOP_PATH}">'
                     f'{html.escape(text("preview.stop", lang))}</a></p>')
        data = page(lang, text("preview.title", lang), body).encode()
        headers = [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(data))),
                   ("Cache-Control", "no-store")]
        secure = settings.secure_cookies
        attributes = "Path=/; HttpOnly; " + ("SameSite=None; Secure" if secure else "SameSite=Lax")
        if cookie:
            headers.append(("Set-Cookie", f"{COOKIE}={cookie}; {attributes}; Max-Age={MAX_TTL}"))
        elif expire:
            headers.append(("Set-Cookie", f"{COOKIE}=; {attributes}; Max-Age=0"))
        start_response(status, headers)
        return [data]
