"""Choosing the upstream IdP for a login.

In order: an explicit hint in the request (``idp_hint=<tenant>[/<idp>]``, or
``acr_values=urn:digione:idp:<tenant>[/<idp>]`` which the OIDC frontend turns
into the same hint, or MPASSid's ``urn:mpass.id:authnsource:<tenant>[-<idp>]``;
or a school: ``idp_hint=school:<school code or OID>``, ``urn:digione:school:<code>``
in ``acr_values`` or the SAML request's ``AuthnContextClassRef``), then the e-mail
domain of ``login_hint`` (an IdP's ``login_hint_domains``, else a tenant's ``domains``:
:meth:`~broker.registry.tenant_model.Tenants.for_login_hint_domain`).  A school hint
picks the city the (active) school belongs to; a code no city has, or more than one
city has, shows the city page with the code searched, so the person sees what it
matches (never another city's sign-in chosen for them).  Without
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
#: ``idp_hint`` values of this form name a school: ``school:<school code or OID>``.
SCHOOL_HINT = "school:"


@dataclasses.dataclass(frozen=True)
class Choice:
    tenant: Tenant | None = None
    idp: IdentityProvider | None = None
    school: str | None = None       # the school a school hint named (its code), shown on the city's page
    query: str | None = None        # what the city page searches for (a school hint no single city matches)


class IdpSelector:
    def __init__(self, tenants: Tenants):
        self.tenants = tenants
        # Built with the login path, once per registry version: school code or OID -> (code, tenants).
        schools: dict[str, tuple[str, list[Tenant]]] = {}
        for tenant in tenants:
            for school in tenant.schools:
                if school.active:
                    for key in (school.code, school.oid):
                        schools.setdefault(key, (school.code, []))[1].append(tenant)
        self._schools = schools

    def from_request(self, request: ServiceRequest) -> Choice:
        """The IdP (or tenant) the request names; raises :class:`UnknownIdp` for an unknown hint."""
        hint = request.idp_hint
        if hint and hint.startswith(SCHOOL_HINT):
            return self.school(hint[len(SCHOOL_HINT):])
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

    def school(self, key: str) -> Choice:
        """The city of the active school with code or OID ``key`` (its only IdP if it has one).

        A key that no city's school has, or that more than one city's has, leaves the choice to
        the person: the city page opens with ``key`` searched.
        """
        code, tenants = self._schools.get(key, (key, []))
        if len(tenants) != 1:
            return Choice(query=code[:100])
        tenant = tenants[0]
        only = tenant.identity_providers[0] if len(tenant.identity_providers) == 1 else None
        return Choice(tenant, only, school=code)

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
