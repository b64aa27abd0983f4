"""Choosing the upstream IdP for a login.

In order: an explicit hint in the request (``idp_hint=<tenant>[/<idp>]``, or
``acr_values=urn:digione:idp:<tenant>[/<idp>]`` which the OIDC frontend turns
into the same hint, or MPASSid's ``urn:mpass.id:authnsource:<tenant>[-<idp>]``),
then the e-mail domain of ``login_hint`` (a tenant's ``domains``), then the
choice this browser made before (remembered in the store under its device
cookie).  Without any of these the user picks on the discovery page.
"""

from __future__ import annotations

import dataclasses

from broker.errors import UnknownIdp
from broker.registry.tenants import IdentityProvider, Tenant, Tenants
from broker.store import Store

CHOICE_KEY = "disco:"


@dataclasses.dataclass(frozen=True)
class Choice:
    tenant: Tenant | None = None
    idp: IdentityProvider | None = None


class IdpSelector:
    def __init__(self, tenants: Tenants, store: Store, *, remember_ttl: int):
        self.tenants = tenants
        self.store = store
        self.remember_ttl = remember_ttl

    def from_request(self, authn: dict) -> Choice:
        """The IdP (or tenant) the request names; raises :class:`UnknownIdp` for an unknown hint."""
        hint = authn.get("idp_hint")
        if hint:
            tenant, idp = self.tenants.resolve_hint(_normalise(hint))
            if tenant is None or ("/" in _normalise(hint) and idp is None):
                raise UnknownIdp("the request names an IdP that is not registered")
            return Choice(tenant, idp)
        login_hint = authn.get("login_hint") or ""
        if "@" in login_hint:
            tenant = self.tenants.tenant_for_domain(login_hint.rsplit("@", 1)[1])
            if tenant is not None:
                only = tenant.identity_providers[0] if len(tenant.identity_providers) == 1 else None
                return Choice(tenant, only)
        return Choice()

    def remembered(self, device_id: str | None) -> IdentityProvider | None:
        if not device_id or len(device_id) > 64:
            return None
        key = self.store.get(CHOICE_KEY + device_id)
        return self.tenants.idps.get(key) if key else None

    def remember(self, device_id: str, idp: IdentityProvider) -> None:
        self.store.put(CHOICE_KEY + device_id, idp.key, self.remember_ttl)

    def forget(self, device_id: str | None) -> None:
        if device_id:
            self.store.delete(CHOICE_KEY + device_id)


def _normalise(hint: str) -> str:
    """Accept MPASSid's ``urn:mpass.id:authnsource:<tenant>-<idp>`` spelling too."""
    prefix = "urn:mpass.id:authnsource:"
    if hint.startswith(prefix):
        tenant, _, idp = hint[len(prefix):].partition("-")
        return f"{tenant}/{idp}" if idp else tenant
    return hint
