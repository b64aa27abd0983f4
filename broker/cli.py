"""The ``broker`` command.

    broker check                      validate tenants, mapping rules and registrations
    broker serve                      run the broker under gunicorn (BROKER_WORKERS workers)
    broker demo                       the embedded default: broker + demo city IdPs + demo services
    broker clients add ...            register an OIDC relying party; prints its credentials as JSON
    broker sps add METADATA_FILE      register a SAML service provider
    broker keys rotate|list           token-signing keys
    broker mapping explain ...        what a city's IdP response becomes, and what each service gets
    broker config dump                the generated SATOSA configuration (no secrets)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from broker.settings import Settings, SettingsError


def main(argv: Sequence[str] | None = None) -> int:
    # pysaml2 imports a cipher mode that cryptography deprecates; not ours to fix, not the user's to read.
    warnings.filterwarnings("ignore", message=".*CFB has been moved", module="saml2")
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return args.handler(args) or 0
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="broker", description="DigiOne Login, the SSO broker")
    sub = parser.add_subparsers(metavar="COMMAND")

    p = sub.add_parser("check", help="validate tenants, mapping rules and registrations")
    p.set_defaults(handler=_check)

    p = sub.add_parser("serve", help="run the broker under gunicorn")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default BROKER_WORKERS or 1)")
    p.add_argument("--bind", default=None, help="address to bind (default 0.0.0.0:$BROKER_PORT)")
    p.set_defaults(handler=_serve)

    p = sub.add_parser("demo", help="run the broker with demo city IdPs and demo services")
    p.set_defaults(handler=_demo)

    clients = sub.add_parser("clients", help="OIDC relying parties").add_subparsers(metavar="ACTION")
    p = clients.add_parser("add", help="register an OIDC client and print its credentials as JSON")
    p.add_argument("--client-id", required=True)
    p.add_argument("--redirect-uri", action="append", required=True, dest="redirect_uris")
    p.add_argument("--name", default="")
    p.add_argument("--auth-method", default="client_secret_basic",
                   choices=["client_secret_basic", "client_secret_post", "private_key_jwt", "none"])
    p.add_argument("--jwks-uri", default=None, help="for private_key_jwt")
    p.add_argument("--scope", action="append", dest="scopes", default=None,
                   help="a claim set the client may request (repeatable; default openid roles)")
    p.add_argument("--profile", choices=["digione", "mpassid"], default="digione")
    p.add_argument("--public-subject", action="store_true", help="release a public sub instead of pairwise")
    p.add_argument("--sector", default="", help="pairwise sector identifier (default: redirect host)")
    p.add_argument("--post-logout-redirect-uri", action="append", default=[], dest="post_logout_redirect_uris",
                   metavar="URI", help="where the broker may send the browser after an RP-initiated logout "
                                       "(repeatable; matched exactly; https, or http on localhost)")
    p.add_argument("--backchannel-logout-uri", default=None, metavar="URI",
                   help="OIDC Back-Channel Logout: the URI the broker POSTs a signed logout_token to when a "
                        "session this client took part in ends (https, or http on localhost; no fragment)")
    p.add_argument("--frontchannel-logout-uri", default=None, metavar="URI",
                   help="OIDC Front-Channel Logout: the URI the broker's signed-out page loads in an iframe, "
                        "with iss and sid (same scheme, host and port as a redirect URI; no fragment)")
    p.add_argument("--id-token-alg", choices=["ES256", "RS256"], default="ES256",
                   help="ID-token signature algorithm (ES256 is cheapest to sign)")
    p.set_defaults(handler=_clients_add)
    p = clients.add_parser("list", help="list registered OIDC clients")
    p.set_defaults(handler=_clients_list)

    sps = sub.add_parser("sps", help="SAML service providers").add_subparsers(metavar="ACTION")
    p = sps.add_parser("add", help="register a SAML SP from its metadata file")
    p.add_argument("metadata_file", type=Path)
    p.add_argument("--name", default=None)
    p.add_argument("--profile", choices=["digione", "mpassid"], default="mpassid")
    p.add_argument("--scope", action="append", dest="scopes", default=None)
    p.set_defaults(handler=_sps_add)

    keys = sub.add_parser("keys", help="token-signing keys").add_subparsers(metavar="ACTION")
    p = keys.add_parser("rotate", help="promote the pre-published key and publish a new next key")
    p.add_argument("--force", action="store_true", help="rotate even if the next key is not yet pre-published")
    p.set_defaults(handler=_keys_rotate)
    p = keys.add_parser("list", help="list keys and their states")
    p.set_defaults(handler=_keys_list)

    mapping = sub.add_parser("mapping", help="attribute mapping").add_subparsers(metavar="ACTION")
    p = mapping.add_parser("explain", help="show what an upstream response maps to")
    p.add_argument("--tenant", required=True)
    p.add_argument("--idp", required=True)
    p.add_argument("input", type=Path, help="JSON claims, JSON attribute map, or SAML Response/Assertion XML")
    p.add_argument("--json", action="store_true", dest="as_json")
    p.set_defaults(handler=_mapping_explain)

    config = sub.add_parser("config", help="configuration").add_subparsers(metavar="ACTION")
    p = config.add_parser("dump", help="print the generated SATOSA configuration (no secrets)")
    p.set_defaults(handler=_config_dump)
    return parser


def _settings() -> Settings:
    return Settings.from_env()


def _load_registry_or_report(settings: Settings):
    from broker.assemble import load_registry
    from broker.registry.relying_parties import RegistrationError
    from broker.registry.tenants import TenantError

    try:
        return load_registry(settings)
    except TenantError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        print(f"{len(exc.problems)} problem(s); the broker will not start", file=sys.stderr)
    except RegistrationError as exc:
        print(f"error: {exc}", file=sys.stderr)
    return None


def _check(args) -> int:
    """Validate everything start-up validates, through the same loaders (tenant files, SAML
    metadata, mapping rules, registrations); warnings (weak cryptography an IdP opted into,
    services a tenant's allowed_services names that are not registered) are printed but do
    not fail the check."""
    from broker.registry.services import unknown_service_warnings
    from broker.registry.tenants import crypto_warnings

    settings = _settings()
    registry = _load_registry_or_report(settings)
    if registry is None:
        return 1
    for warning in crypto_warnings(registry.tenants) + unknown_service_warnings(registry.tenants, registry.parties):
        print(f"warning: {warning}", file=sys.stderr)
    idps = sum(len(t.identity_providers) for t in registry.tenants)
    print(f"ok: {len(registry.tenants)} tenants, {idps} identity providers, "
          f"{len(registry.parties.clients)} OIDC clients, {len(registry.parties.sps)} SAML SPs")
    return 0


def configure_logging(level: str) -> None:
    """One JSON object per log line on stderr, libraries held at WARNING (:mod:`broker.logs`)."""
    from broker import logs

    numeric = logging.getLevelName(str(level).upper())
    logs.configure_logging(numeric if isinstance(numeric, int) else logging.INFO)


def _serve(args) -> int:
    settings = _settings()
    configure_logging(settings.log_level)
    if _load_registry_or_report(settings) is None:
        return 1
    workers = args.workers or settings.workers
    if workers > 1 and not settings.redis_url:
        print("error: several workers need shared state: set BROKER_REDIS_URL (the in-memory store "
              "serves one process only)", file=sys.stderr)
        return 2
    from broker.server import serve

    return serve(settings, workers=workers, bind=args.bind or f"0.0.0.0:{settings.port}")


def _demo(args) -> int:
    from broker.demo.run import run_demo

    return run_demo()


def _clients_add(args) -> int:
    from broker.registry.relying_parties import RegistrationError, RelyingParties

    settings = _settings()
    data = {
        "client_id": args.client_id, "redirect_uris": args.redirect_uris, "name": args.name,
        "token_endpoint_auth_method": args.auth_method,
        "policy": {"scopes": args.scopes or ["openid", "roles"], "profile": args.profile,
                   "subject_type": "public" if args.public_subject else "pairwise", "sector": args.sector},
        "post_logout_redirect_uris": args.post_logout_redirect_uris,
        "id_token_signed_response_alg": args.id_token_alg,
        "backchannel_logout_uri": args.backchannel_logout_uri,
        "frontchannel_logout_uri": args.frontchannel_logout_uri,
    }
    if args.jwks_uri:
        data["jwks_uri"] = args.jwks_uri
    try:
        client, secret = RelyingParties.load(settings.registry_dir).add_client(data)
    except RegistrationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    out = {"client_id": client.client_id, "redirect_uris": list(client.redirect_uris),
           "token_endpoint_auth_method": client.token_endpoint_auth_method,
           "issuer": settings.base_url,
           "discovery": f"{settings.base_url}/.well-known/openid-configuration"}
    if secret:
        out["client_secret"] = secret
    print(json.dumps(out, indent=2))
    return 0


def _clients_list(args) -> int:
    from broker.registry.relying_parties import RelyingParties

    parties = RelyingParties.load(_settings().registry_dir)
    for client in parties.clients.values():
        print(f"{client.client_id}\t{client.token_endpoint_auth_method}\t{' '.join(client.redirect_uris)}")
    return 0


def _sps_add(args) -> int:
    from broker.registry.relying_parties import RegistrationError, ReleasePolicy, RelyingParties

    settings = _settings()
    try:
        xml = args.metadata_file.read_text()
    except OSError as exc:
        print(f"error: {args.metadata_file}: {exc.strerror}", file=sys.stderr)
        return 1
    policy = ReleasePolicy(scopes=tuple(args.scopes or ("openid", "roles")), profile=args.profile)
    try:
        sp = RelyingParties.load(settings.registry_dir).add_sp(xml, name=args.name, policy=policy)
    except RegistrationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"name": sp.name, "entity_id": sp.entity_id,
                      "idp_metadata": f"{settings.base_url}/saml2/idp/metadata"}, indent=2))
    return 0


def _keyring(settings: Settings):
    from broker.store import open_store
    from broker.tokens import KeyRing

    if not settings.redis_url:
        print("note: without BROKER_REDIS_URL the key ring lives in this process only; running brokers "
              "will not see this change", file=sys.stderr)
    return KeyRing(open_store(settings.redis_url, prefix=settings.redis_prefix), settings.master_secret)


def _keys_rotate(args) -> int:
    from broker.tokens.keys import KeyRingError

    ring = _keyring(_settings())
    ring.ensure()
    try:
        print(json.dumps(ring.rotate(force=args.force), indent=2))
    except KeyRingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _keys_list(args) -> int:
    ring = _keyring(_settings())
    ring.ensure()
    print(json.dumps(ring.describe(), indent=2))
    return 0


def _mapping_explain(args) -> int:
    from broker import mapping

    settings = _settings()
    registry = _load_registry_or_report(settings)
    if registry is None:
        return 1
    tenant = registry.tenants.by_id.get(args.tenant)
    if tenant is None or tenant.idp(args.idp) is None:
        print(f"error: no IdP '{args.idp}' in tenant '{args.tenant}'", file=sys.stderr)
        return 1
    try:
        upstream, subject = mapping.load_upstream(args.input.read_bytes())
    except OSError as exc:
        print(f"error: {args.input}: {exc.strerror}", file=sys.stderr)
        return 1
    except mapping.InputError as exc:
        print(f"error: {args.input}: {exc}", file=sys.stderr)
        return 1
    services = [(c.client_id, dataclasses.replace(c.policy, sector=c.sector))
                for c in registry.parties.clients.values()]
    services += [(sp.entity_id, dataclasses.replace(sp.policy, sector=sp.sector))
                 for sp in registry.parties.sps.values()]
    explained = mapping.explain(registry.rulesets[f"{tenant.id}/{args.idp}"], upstream, subject=subject,
                                salt=settings.user_id_salt, services=services,
                                subject_salt=settings.pairwise_salt)
    print(json.dumps(explained, indent=2, ensure_ascii=False) if args.as_json
          else mapping.format_explanation(explained))
    return 0


def _config_dump(args) -> int:
    from broker.assemble import plugin_config

    settings = _settings()
    registry = _load_registry_or_report(settings)
    if registry is None:
        return 1
    print(json.dumps(plugin_config(settings, registry), indent=2, default=str))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
