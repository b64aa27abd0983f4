"""``broker mapping …``: try a city's IdP response on its mapping rules, from the operator's shell.

    broker mapping explain --tenant vantaa --idp koulu [--preset wilma] [--json] RESPONSE

prints the canonical identity the response becomes (and the rule behind each value), every
value dropped and why, every input no rule uses, and what each registered service would
receive over its protocol.  Exit status: 0 when the identity is made, 1 when the login would
be refused, 2 when the command cannot explain (an unknown tenant or IdP, an unreadable
input, a tenant file or registration that does not validate).

Only the tenant's schools and mapping rules are read: not the metadata or client secrets
its IdPs name (no signature is checked), so it works on a fresh clone before ``make demo``.
Samples to try are in ``docs/examples/``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

#: Exit status when the identity would be refused, and when nothing could be explained.
REFUSED, USAGE = 1, 2


def add_commands(sub: Any) -> None:
    """Add the ``mapping`` command group to the ``broker`` parser."""
    from broker.mapping.config import PRESETS

    mapping = sub.add_parser("mapping", help="attribute mapping: what a city's IdP response becomes")
    actions = mapping.add_subparsers(metavar="ACTION")
    p = actions.add_parser("explain", help="show what an upstream response maps to, and what each service gets",
                           description="Map one IdP response with a tenant's rules (no signature is checked). "
                                       "Exit 0: an identity is made; 1: the login would be refused; 2: "
                                       "nothing to explain (unknown tenant or IdP, unreadable input). "
                                       "Samples: docs/examples/.")
    p.add_argument("--tenant", required=True, help="the tenant (city) id: its file's name in tenants/ (e.g. vantaa)")
    p.add_argument("--idp", required=True, help="the id of one of the tenant's identity providers (e.g. koulu)")
    p.add_argument("--preset", choices=PRESETS, default=None, metavar="NAME",
                   help="map with this preset alone instead of the IdP's own mapping rules (to try a sample "
                        "before writing the rules): " + ", ".join(PRESETS))
    p.add_argument("--json", action="store_true", dest="as_json", help="print the explanation as JSON")
    p.add_argument("input", type=Path, metavar="INPUT",
                   help="the response: a file of JSON claims (ID token payload or userinfo), a JSON attribute "
                        "map {\"subject\": ..., \"attributes\": {...}}, or SAML Response/Assertion XML")
    p.set_defaults(handler=_explain)


def _explain(args: argparse.Namespace) -> int:
    from broker import mapping
    from broker.assemble import registration_documents, tenant_scope
    from broker.registry.check import plural
    from broker.registry.relying_parties import RegistrationError, RelyingParties
    from broker.registry.tenants import TenantError, read_tenant_files, tenant_without_files
    from broker.settings import ROOT, Settings

    settings = Settings.from_env()
    try:
        documents = read_tenant_files(settings.tenants_dir, root=ROOT)
    except TenantError as exc:
        return _usage(*exc.problems)
    if args.tenant not in documents:
        return _usage(f"unknown tenant '{args.tenant}': the tenants are {', '.join(sorted(documents))} "
                      f"(tenant files in {settings.tenants_dir})")
    try:
        tenant = tenant_without_files(documents, args.tenant, root=ROOT, environ=settings.environ)
    except TenantError as exc:
        return _usage(*exc.problems, f"{plural(len(exc.problems), 'problem')} in tenant '{args.tenant}': fix its "
                      "file (`broker check` validates all of them)")
    idp = tenant.idp(args.idp)
    if idp is None:
        known = ", ".join(f"{i.id} ({i.type})" for i in tenant.identity_providers)
        return _usage(f"unknown IdP '{args.idp}' in tenant '{args.tenant}': its IdPs are {known}")
    config = {"preset": args.preset} if args.preset else dict(idp.mapping)
    try:
        ruleset = mapping.Ruleset.from_config(config, tenant=tenant_scope(tenant), idp_id=idp.id,
                                              source=tenant.source, path=f"identity_providers[{idp.id}].mapping")
    except mapping.RuleError as exc:
        return _usage(f"{exc} (`broker check` validates every tenant's rules)")
    try:
        data = args.input.read_bytes()
    except OSError as exc:
        return _usage(f"{args.input}: {exc.strerror}: give a file of JSON claims, a JSON attribute map or SAML "
                      "Response/Assertion XML (samples: docs/examples/)")
    try:
        upstream, subject = mapping.load_upstream(data)
    except mapping.InputError as exc:
        return _usage(f"{args.input}: {exc}")
    try:
        parties = RelyingParties.from_documents(*registration_documents(settings))
    except RegistrationError as exc:
        return _usage(f"{exc} (the registered services could not be read)")
    services: list[tuple[str, Any, str]] = [
        (c.client_id, dataclasses.replace(c.policy, sector=c.sector), "oidc") for c in parties.clients.values()]
    services += [(sp.entity_id, dataclasses.replace(sp.policy, sector=sp.sector), "saml")
                 for sp in parties.sps.values()]
    explained = mapping.explain(ruleset, upstream, subject=subject, salt=settings.user_id_salt, services=services,
                                subject_salt=settings.pairwise_salt)
    print(json.dumps(explained, indent=2, ensure_ascii=False) if args.as_json
          else mapping.format_explanation(explained), end="\n" if args.as_json else "")
    return REFUSED if explained["refused"] else 0


def _usage(*messages: str) -> int:
    for message in messages:
        print(f"error: {message}", file=sys.stderr)
    return USAGE
