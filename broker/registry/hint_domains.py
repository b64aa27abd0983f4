"""``login_hint=user@<domain>``: which city, and which of its IdPs, an e-mail domain picks.

A tenant's ``domains`` pick the city (and its IdP when it has only one); an IdP's
``login_hint_domains`` pick that IdP, e.g. ``edu.vantaa.fi`` for the pupils' Entra ID and
``vantaa.fi`` for the staff's SAML IdP.  :func:`hint_domains` builds the one dictionary the
login path reads (:meth:`broker.registry.tenant_model.Tenants.for_login_hint_domain`) and
lists every conflict: a domain belongs to one city, and within it to one IdP, so a city
cannot draw another city's people to its own IdP by claiming their domain.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from broker.registry.tenant_model import Tenant

#: A DNS name as e-mail addresses carry it: labels of letters, digits and '-', a dot between.
_DOMAIN = re.compile(r"^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}\Z")


def parse_login_hint_domains(raw: Any, path: str, c: Any) -> tuple[str, ...]:
    """An IdP's ``login_hint_domains``: e-mail domains, lowercased; problems go to ``c.fail``."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(d, str) for d in raw):
        c.fail(path, "a list of e-mail domains (e.g. [edu.vantaa.fi])")
        return ()
    domains: list[str] = []
    for index, value in enumerate(raw):
        domain = value.strip().lower().rstrip(".")
        if not _DOMAIN.match(domain):
            c.fail(f"{path}[{index}]", f"an e-mail domain such as edu.vantaa.fi (not an address or a URL: "
                                       f"'{value[:80]}')")
        elif domain in domains:
            c.fail(f"{path}[{index}]", f"each domain once ('{domain}' repeats)")
        else:
            domains.append(domain)
    return tuple(domains)


def hint_domains(tenants: Iterable[Tenant]) -> tuple[dict[str, tuple[str, str | None]], list[str]]:
    """``({domain: (tenant id, IdP key or None)}, problems)`` over every city's claims."""
    tenants = list(tenants)
    claims: dict[str, list[tuple[Tenant, str | None, str]]] = {}
    for tenant in tenants:
        for domain in dict.fromkeys(tenant.domains):
            claims.setdefault(domain, []).append((tenant, None, "domains"))
        for index, idp in enumerate(tenant.identity_providers):
            for domain in idp.login_hint_domains:
                claims.setdefault(domain, []).append((tenant, idp.key, f"identity_providers[{index}]."
                                                                        "login_hint_domains"))
    table: dict[str, tuple[str, str | None]] = {}
    problems: list[str] = []
    for domain, claimants in claims.items():
        cities = list(dict.fromkeys(t.id for t, _, _ in claimants))
        if len(cities) > 1:
            for tenant, _, field in claimants:
                others = ", ".join(dict.fromkeys(t.source for t, _, _ in claimants if t.id != tenant.id))
                problems.append(f"{tenant.source}: {field}: expected e-mail domains no other city claims "
                                f"('{domain}' is also in {others})")
            continue
        idps = list(dict.fromkeys(key for _, key, _ in claimants if key))
        if len(idps) > 1:
            tenant = claimants[0][0]
            for _, key, field in claimants:
                if key:
                    problems.append(f"{tenant.source}: {field}: expected a domain no other IdP of the city claims "
                                    f"('{domain}' is also claimed by {', '.join(i for i in idps if i != key)})")
            continue
        tenant = claimants[0][0]
        only = tenant.identity_providers[0].key if len(tenant.identity_providers) == 1 else None
        table[domain] = (tenant.id, idps[0] if idps else only)
    return table, problems
