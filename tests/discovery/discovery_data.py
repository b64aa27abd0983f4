"""Tenants for the city search's tests, built without IdP metadata: the shipped seven cities'
names, schools and IdPs as ``tenants/*.yaml`` give them, and a builder for more."""

from __future__ import annotations

from pathlib import Path

import yaml

from broker.registry.tenant_model import IdentityProvider, School, Tenant, Tenants

ROOT = Path(__file__).resolve().parents[2]


def _names(fi: str, sv: str | None = None, en: str | None = None) -> dict[str, str]:
    return {"fi": fi, "sv": sv or fi, "en": en or fi}


def tenant(tenant_id: str, names: dict[str, str] | str, code: str, schools: list[tuple[str, dict[str, str] | str]],
           *, provider: dict[str, str] | str | None = None, idps: int = 1, inactive: tuple[str, ...] = ()) -> Tenant:
    """A tenant: ``schools`` as ``(code, names)``; ``idps`` SAML IdPs named ``koulu``, ``idp1``..."""
    city = _names(names) if isinstance(names, str) else names
    provider_names = (_names(provider) if isinstance(provider, str) else provider) or _names(f"{city['fi']}n kunta")
    built = tuple(School(code=c, oid=f"1.2.246.562.10.{int(c):011d}", names=_names(n) if isinstance(n, str) else n,
                         active=c not in inactive) for c, n in schools)
    methods = tuple(IdentityProvider(tenant_id, "koulu" if k == 0 else f"idp{k}", "saml",
                                     _names(f"Tunnukset {k}"), {}) for k in range(idps))
    return Tenant(id=tenant_id, names=city, municipality_code=code, provider_oid=f"1.2.246.562.10.{code}00000000",
                  provider_names=provider_names, schools=built, identity_providers=methods)


def tenants(*items: Tenant) -> Tenants:
    return Tenants(by_id={t.id: t for t in items}, idps={i.key: i for t in items for i in t.identity_providers},
                   saml_idps_by_entity={})


def demo_tenants() -> Tenants:
    """The seven shipped cities (``tenants/*.yaml``): their names, schools and IdPs."""
    items = []
    for path in sorted((ROOT / "tenants").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        schools = tuple(School(s["code"], s["oid"], s["names"]) for s in doc["schools"])
        idps = tuple(IdentityProvider(doc["id"], i["id"], i["type"], i["names"], {})
                     for i in doc["identity_providers"])
        items.append(Tenant(doc["id"], doc["names"], doc["municipality_code"], doc["education_provider"]["oid"],
                            doc["education_provider"]["names"], schools, idps, domains=tuple(doc.get("domains", ()))))
    return tenants(*items)
