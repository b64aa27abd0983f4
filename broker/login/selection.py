"""Choosing the upstream IdP for a login.

In order: an explicit hint in the request (``idp_hint=<tenant>[/<idp>]``, or
``acr_values=urn:digione:idp:<tenant>[/<idp>]`` which the OIDC frontend turns
into the same hint, or MPASSid's ``urn:mpass.id:authnsource:<tenant>[-<idp>]``),
then the e-mail domain of ``login_hint`` (an IdP's ``login_hint_domains``, else a
tenant's ``domains``: :meth:`~broker.registry.tenant_model.Tenants.for_login_hint_domain`).  Without
either the person picks on the city page, where the IdP this browser last signed
in with (its ``idp`` cookie) is offered first, never applied unasked: on a shared
classroom computer the next pupil must not land in the previous pupil's city.
"""

from __future__ import annotations

import dataclasses

from broker.errors import UnknownIdp
from broker.login.flow import ServiceRequest
from broker.registry.tenants import IdentityProvider, Tenant, Tenants

_MPASSID_PREFIX = "urn:mpass.id:authnsource:"


@dataclasses.dataclass(frozen=True)
class Choice:
    tenant: Tenant | None = None
    idp: IdentityProvider | None = None


class IdpSelector:
    def __init__(self, tenants: Tenants):
        self.tenants = tenants

    def from_request(self, request: ServiceRequest) -> Choice:
        """The IdP (or tenant) the request names; raises :class:`UnknownIdp` for an unknown hint."""
        hint = request.idp_hint
        if hint:
            normalised = _normalise(hint)
            tenant, idp = self.tenants.resolve_hint(normalised)
            if tenant is None or ("/" in normalised and idp is None):
                raise UnknownIdp("the request names an IdP that is not registered")
            return Choice(tenant, idp)
        login_hint = request.login_hint or ""
        if "@" in login_hint:
            tenant, idp = self.tenants.for_login_hint_domain(login_hint.rsplit("@", 1)[1])
            if tenant is not None:
                return Choice(tenant, idp)
        return Choice()

    def remembered(self, cookie_value: str | None) -> IdentityProvider | None:
        """The registered IdP a ``idp`` cookie names, if any (the value is not trusted beyond that)."""
        if not cookie_value or len(cookie_value) > 200:
            return None
        return self.tenants.idps.get(cookie_value)


def _normalise(hint: str) -> str:
    """Accept MPASSid's ``urn:mpass.id:authnsource:<tenant>-<idp>`` spelling too."""
    if hint.startswith(_MPASSID_PREFIX):
        tenant, _, idp = hint[len(_MPASSID_PREFIX):].partition("-")
        return f"{tenant}/{idp}" if idp else tenant
    return hint
