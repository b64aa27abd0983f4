"""The broker's cookies, in one place, with their attributes.

* ``flow`` — the sealed login flow (:mod:`broker.login.seal`), for the length of one login;
* ``sso`` — the broker session's random token (:mod:`broker.sessions`);
* ``idp`` — the IdP this browser last signed in with, offered first on the city page
  (a registry key, not a secret; never applied without the person's click);
* ``lang`` — the language the person chose on a broker page, for the rest of the visit
  (a browser-session cookie: it goes when the browser closes).

On https every name carries the ``__Host-`` prefix (RFC 6265bis §4.1.3.2): the
browser then accepts the cookie only with ``Secure``, ``Path=/`` and no ``Domain``,
so a sibling subdomain cannot plant or shadow it.

SameSite: the IdP answers with a cross-site POST (SAML HTTP-POST binding), which
carries only ``SameSite=None`` cookies, and browsers accept those only with
``Secure``.  On plain-http localhost (the demo) every port is the same site, so
``Lax`` is both accepted and sufficient.

A request that carries one of these names twice is refused before it reaches the
login (:func:`broker.web.guard.guard`): with two values, the last one would win and
swap sessions.
"""

from __future__ import annotations

import dataclasses
from functools import cached_property
from http.cookies import CookieError, SimpleCookie

FLOW = "digione_flow"
SSO = "digione_sso"
IDP = "digione_idp"
LANG = "digione_lang"
_HOST_PREFIX = "__Host-"


@dataclasses.dataclass(frozen=True)
class Cookies:
    """The cookie names and attributes of one deployment (``secure``: served over https)."""

    secure: bool
    #: Added to every name: a test login through a staged version (``_preview``) keeps cookies of its own.
    suffix: str = ""

    def name(self, base: str) -> str:
        return (_HOST_PREFIX + base if self.secure else base) + self.suffix

    # The names are read by every request (cached: the object is frozen, so they never change).

    @cached_property
    def flow(self) -> str:
        return self.name(FLOW)

    @cached_property
    def sso(self) -> str:
        return self.name(SSO)

    @cached_property
    def idp(self) -> str:
        return self.name(IDP)

    @cached_property
    def lang(self) -> str:
        return self.name(LANG)

    @cached_property
    def names(self) -> tuple[str, ...]:
        return self.flow, self.sso, self.idp, self.lang

    def header(self, name: str, value: str, *, max_age: int | None = None) -> tuple[str, str]:
        parts = [f"{name}={value}", "Path=/", "HttpOnly", "SameSite=None; Secure" if self.secure else "SameSite=Lax"]
        if max_age is not None:
            parts.append(f"Max-Age={max_age}")
        return ("Set-Cookie", "; ".join(parts))

    def expire(self, name: str) -> tuple[str, str]:
        return self.header(name, "", max_age=0)


def parse(header: str | None, names: tuple[str, ...] = ()) -> dict[str, str]:
    """The cookies of a ``Cookie`` header; one malformed cookie of another site's app does not hide ours."""
    if not header:
        return {}
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except CookieError:
        values = {}
        for part in header.split(";"):
            name, _, value = part.strip().partition("=")
            if name in names:
                values[name] = value
        return values
    return {name: morsel.value for name, morsel in jar.items()}
