"""The broker's cookies, in one place, with their attributes.

* ``digione_flow`` — the sealed flow state (:mod:`broker.proxy.state`);
* ``digione_sso`` — the SSO session id;
* ``digione_device`` — a random id naming this browser's remembered IdP choice.

SameSite: the IdP answers with a cross-site POST (SAML HTTP-POST binding), which
carries only ``SameSite=None`` cookies, and browsers accept those only with
``Secure``.  On plain-http localhost (the demo) every port is the same site, so
``Lax`` is both accepted and sufficient.
"""

from __future__ import annotations

from http.cookies import CookieError, SimpleCookie

FLOW = "digione_flow"
SSO = "digione_sso"
DEVICE = "digione_device"


def parse(header: str | None) -> dict[str, str]:
    if not header:
        return {}
    jar = SimpleCookie()
    try:
        jar.load(header)
    except CookieError:
        # One malformed cookie of another application must not break sign-in.
        values = {}
        for part in header.split(";"):
            name, _, value = part.strip().partition("=")
            if name in (FLOW, SSO, DEVICE):
                values[name] = value
        return values
    return {name: morsel.value for name, morsel in jar.items()}


def header(name: str, value: str, *, secure: bool, max_age: int | None = None) -> tuple[str, str]:
    parts = [f"{name}={value}", "Path=/", "HttpOnly", "SameSite=None; Secure" if secure else "SameSite=Lax"]
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    return ("Set-Cookie", "; ".join(parts))


def expire(name: str, *, secure: bool) -> tuple[str, str]:
    return header(name, "", secure=secure, max_age=0)
