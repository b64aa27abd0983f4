"""What admin reads show: served tenants, services, validation problems, mapping dry runs.

Read-side helpers of :mod:`broker.admin.operations` (which has already decided that
the principal may see the object).  Nothing here returns a secret: the served
summary of an OIDC IdP names its client id, never the opened client secret, and a
client registration is shown without its secret's hash.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from broker.admin.errors import BadRequest, ValidationFailed
from broker.admin.principals import Principal
from broker.admin.registrations import public_client
from broker.logs import current_correlation_id

logger = logging.getLogger("broker.admin")


def tenant_source(settings: Any, tenant_id: str) -> str:
    """How validation names a tenant document (as its file would be named: broker.assemble.registry_of)."""
    from broker.registry.tenants import display_path
    from broker.settings import ROOT

    return display_path(settings.tenants_dir / f"{tenant_id}.yaml", ROOT)


def visible_problems(settings: Any, p: Principal, problems: Iterable[str]) -> list[str]:
    """The problems (or warnings) ``p`` may read: all for a platform admin; else those naming one
    of ``p``'s tenants or services, and one line counting the rest."""
    problems = list(problems)
    if p.is_platform_admin:
        return problems
    prefixes = tuple([f"{tenant_source(settings, t)}:" for t in p.tenants()]
                     + [f"tenant {t}:" for t in p.tenants()]
                     + [f"sp {s[3:]}:" if s.startswith("sp/") else f"client {s}:" for s in p.services])
    seen = [problem for problem in problems if prefixes and problem.startswith(prefixes)]
    hidden = len(problems) - len(seen)
    if hidden:
        seen.append(f"the registry: expected no problems in objects you do not administer ({hidden} found; "
                    "the platform admins can see them)")
    return seen


def validator_failed(exc: Exception) -> ValidationFailed:
    """The registry's validator failed on a document instead of naming a problem: a gap in the validator
    (logged as an error for the broker's developers), answered as the invalid input it is (422, not 500)."""
    logger.error("registry validator failed correlation_id=%s exc_type=%s", current_correlation_id() or "-",
                 type(exc).__name__, exc_info=exc)
    return ValidationFailed(["the document: expected a shape the registry's validator reads (it failed with "
                             f"{type(exc).__name__}; the correlation id finds it in the log)"])


def tenant_expiry(broker: Any, tenant_id: str) -> list[dict[str, Any]]:
    """The served tenant's certificates and metadata expiring within 30 days (or past), soonest first.

    The same items ``broker check`` prints and the log warns of (:mod:`broker.registry.expiry`);
    metadata by URL is read in its last good copy in the store, never fetched here.
    """
    from broker.registry.expiry import expiry_warnings
    from broker.saml.metadata_refresh import last_good_copies

    registry = getattr(broker, "registry", None)
    tenant = registry.tenants.by_id.get(tenant_id) if registry is not None else None
    if tenant is None:
        return []
    remote = last_good_copies([tenant], broker.store) if any(
        i.metadata is not None and i.metadata.url for i in tenant.identity_providers) else {}
    return [item.as_dict() for item in expiry_warnings([tenant], remote=remote)]


def served_tenant(broker: Any, tenant_id: str) -> dict[str, Any] | None:
    """What the broker serves of ``tenant_id`` now (``None``: not served), without secrets."""
    registry = getattr(broker, "registry", None)
    tenant = registry.tenants.by_id.get(tenant_id) if registry is not None else None
    if tenant is None:
        return None
    idps = []
    for idp in tenant.identity_providers:
        entry: dict[str, Any] = {"id": idp.id, "type": idp.type, "names": dict(idp.names)}
        if idp.type == "saml":
            source = idp.metadata
            entry["entity_id"] = idp.entity_id
            entry["metadata"] = ({"url": source.url, "signing_cert_sha256": source.signing_cert_sha256}
                                 if source is not None and source.url else {"inline": True})
        else:
            entry.update({"issuer": idp.issuer, "client_id": idp.client_id, "scopes": list(idp.scopes)})
        idps.append(entry)
    access = tenant.allowed_services
    return {"version": getattr(broker, "version_id", None), "names": dict(tenant.names),
            "municipality_code": tenant.municipality_code,
            "schools": [{"code": s.code, "names": dict(s.names), "active": s.active} for s in tenant.schools],
            "identity_providers": idps,
            "allowed_services": None if access.allows_all else {
                "default": None if access.default is None else sorted(access.default),
                "schools": {code: None if v is None else sorted(v) for code, v in access.schools.items()}}}


def service_summary(kind: str, key: str, document: Mapping[str, Any], *, full: bool) -> dict[str, Any]:
    """A registered service: id, kind and name; with ``full``, its registration (no secret hash)."""
    from broker.admin.principals import service_id

    name = document.get("name") if kind == "client" else key
    out: dict[str, Any] = {"id": service_id(kind, key), "kind": kind, "name": name or key}
    if full:
        out["document"] = public_client(document) if kind == "client" else dict(document)
    return out


def explain_sample(broker: Any, p: Principal, tenant_id: str, idp_id: str, document: Mapping[str, Any],
                   sample: bytes | str) -> dict[str, Any]:
    """:func:`broker.mapping.explain` of ``sample`` through the rules of ``document``'s IdP ``idp_id``.

    Only this tenant is validated (its rules compiled); the services shown are those the
    broker serves now.
    """
    from broker import mapping
    from broker.assemble import build_registry
    from broker.registry.relying_parties import RegistrationError
    from broker.registry.tenants import TenantError

    settings = broker.settings
    if isinstance(sample, str):
        sample = sample.encode("utf-8", "surrogatepass")
    if not isinstance(sample, (bytes, bytearray)):
        raise BadRequest("sample", "an upstream response: JSON claims, a JSON attribute map or SAML XML")
    try:
        upstream, subject = mapping.load_upstream(bytes(sample))
    except mapping.InputError as exc:
        raise BadRequest("sample", str(exc).removeprefix("expected ")) from None
    try:
        registry = build_registry(settings, {tenant_id: (tenant_source(settings, tenant_id), dict(document))},
                                  clients={}, sps={})
    except TenantError as exc:
        raise ValidationFailed(visible_problems(settings, p, exc.problems)) from None
    except RegistrationError as exc:  # pragma: no cover - no registrations are given
        raise ValidationFailed([str(exc)]) from None
    except (AttributeError, TypeError, ValueError, KeyError, IndexError) as exc:
        raise validator_failed(exc) from None
    ruleset = registry.rulesets.get(f"{tenant_id}/{idp_id}")
    if ruleset is None:
        raise ValidationFailed([f"{tenant_source(settings, tenant_id)}: identity_providers: expected an IdP "
                                f"{idp_id} whose rules compile"])
    parties = broker.registry.parties
    services = [(c.client_id, dataclasses.replace(c.policy, sector=c.sector), "oidc")
                for c in parties.clients.values()]
    services += [(f"sp/{sp.name}", dataclasses.replace(sp.policy, sector=sp.sector), "saml")
                 for sp in parties.sps.values()]
    result: dict[str, Any] = mapping.explain(ruleset, upstream, subject=subject, salt=settings.user_id_salt,
                                             services=services, subject_salt=settings.pairwise_salt)
    return result
