"""``broker registry …``, ``broker clients …`` and ``broker sps …``: changing the registry from a shell.

Every command here goes through :class:`~broker.registry.service.RegistryService`,
like the admin API: a change is a version, validated before it is activated, and a
running broker serves it within seconds (announced over Redis when
``BROKER_REDIS_URL`` is set; every instance also polls the database).
"""

from __future__ import annotations

import argparse
import getpass
import json
import socket
import sys
from pathlib import Path
from typing import Any

from broker.registry.relying_parties import RegistrationError
from broker.registry.versions import Invalid, NothingToChange, VersionError


def add_commands(sub: Any) -> None:
    """Add the ``registry``, ``clients`` and ``sps`` command groups to the ``broker`` parser."""
    registry = sub.add_parser("registry", help="the versioned registry: import, export, versions, diff, activate, "
                                               "rollback")
    actions = registry.add_subparsers(metavar="ACTION")

    p = actions.add_parser("versions", help="list versions, newest first: who, when, why, what changed")
    p.add_argument("--limit", type=int, default=20, help="how many versions to list (default 20)")
    p.add_argument("--json", action="store_true", dest="as_json", help="print JSON")
    p.set_defaults(handler=_versions)

    p = actions.add_parser("show", help="one version and the diff of what it changes")
    p.add_argument("version", type=int, help="the version number")
    p.set_defaults(handler=_show)

    p = actions.add_parser("diff", help="what differs between the registry of two versions")
    p.add_argument("a", type=int, help="the earlier version")
    p.add_argument("b", type=int, help="the later version")
    p.set_defaults(handler=_diff)

    p = actions.add_parser("import", help="make the tenant files and the registry directory a new version")
    p.add_argument("--tenants", type=Path, default=None, help="tenant files (default BROKER_TENANTS_DIR or tenants/)")
    p.add_argument("--registrations", type=Path, default=None,
                   help="clients/*.json and sps/*.xml (default BROKER_REGISTRY_DIR)")
    _who(p)
    p.add_argument("--stage", action="store_true", help="stage the version without activating it")
    p.set_defaults(handler=_import)

    p = actions.add_parser("export", help="write a version in the file form (tenants/*.yaml, clients/, sps/)")
    p.add_argument("directory", type=Path, help="where to write: DIR/tenants and DIR/registry")
    p.add_argument("--version", type=int, default=None, help="the version to export (default: the active one)")
    p.set_defaults(handler=_export)

    p = actions.add_parser("activate", help="activate a staged version (or an earlier one again)")
    p.add_argument("version", type=int, help="the version number")
    _who(p)
    p.set_defaults(handler=_activate)

    p = actions.add_parser("rollback", help="restore the registry as it was before the last activation")
    p.add_argument("--to", type=int, default=None, help="restore the state of this activated version instead")
    _who(p)
    p.set_defaults(handler=_rollback)

    p = actions.add_parser("migrate", help="bring the registry database to the newest schema (also done at start)")
    p.set_defaults(handler=_migrate)

    clients = sub.add_parser("clients", help="OIDC relying parties (registry changes)")
    client_actions = clients.add_subparsers(metavar="ACTION")
    p = client_actions.add_parser("add", help="register an OIDC client and print its credentials as JSON")
    p.add_argument("--client-id", required=True, help="the client's id (letters, digits, '.', '_', ':', '-')")
    p.add_argument("--redirect-uri", action="append", required=True, dest="redirect_uris", metavar="URI",
                   help="a redirect URI, matched exactly (repeatable; https, or http on localhost)")
    p.add_argument("--name", default="", help="the service's name, shown to people signing in")
    p.add_argument("--auth-method", default="client_secret_basic",
                   choices=["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
                   help="how the client authenticates at the token endpoint (default client_secret_basic)")
    p.add_argument("--jwks-uri", default=None, help="for private_key_jwt: where the client's public keys are")
    p.add_argument("--client-secret", default=None, metavar="SECRET",
                   help="keep the secret the service already has (a migration from another broker) instead of "
                        "generating one: '-' reads it from standard input, which is better than a value here "
                        f"(the command line is visible to other users in ps). {MIN_SECRET}-{MAX_SECRET} "
                        "characters, no spaces or control characters; only the SHA-256 hash is stored, and it "
                        "is not printed")
    p.add_argument("--scope", action="append", dest="scopes", default=None,
                   help="a claim set the client may request (repeatable; default openid roles)")
    p.add_argument("--profile", choices=["digione", "mpassid"], default="digione",
                   help="the claim names it receives (default digione)")
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
    _who(p)
    p.set_defaults(handler=_clients_add)
    p = client_actions.add_parser("list", help="list the OIDC clients of the active version")
    p.set_defaults(handler=_clients_list)

    sps = sub.add_parser("sps", help="SAML service providers (registry changes)")
    sp_actions = sps.add_subparsers(metavar="ACTION")
    p = sp_actions.add_parser("add", help="register a SAML SP from its metadata file")
    p.add_argument("metadata_file", type=Path, help="the SP's SAML metadata (an EntityDescriptor)")
    p.add_argument("--name", default=None, help="the registration's name (default: made of the entityID)")
    p.add_argument("--profile", choices=["digione", "mpassid"], default="mpassid",
                   help="the attribute names it receives (default mpassid)")
    p.add_argument("--scope", action="append", dest="scopes", default=None,
                   help="a claim set the SP may receive (repeatable; default openid roles)")
    p.add_argument("--encrypt-assertions", action="store_true",
                   help="encrypt its assertions (its metadata must publish an RSA encryption key)")
    p.add_argument("--release-authenticating-authority", action="store_true",
                   help="name the city IdP in AuthenticatingAuthority (default: the broker)")
    _who(p)
    p.set_defaults(handler=_sps_add)


#: Bounds of a secret given with ``broker clients add --client-secret``.
MIN_SECRET, MAX_SECRET = 16, 512


def _given_secret(value: str | None, auth_method: str) -> str | None:
    """The secret of ``--client-secret`` (``-``: one line of standard input); raises
    :class:`RegistrationError` naming the option and what was expected (never the value)."""
    if value is None:
        return None
    if auth_method not in ("client_secret_basic", "client_secret_post"):
        raise RegistrationError(f"--client-secret: expected no secret with --auth-method {auth_method} (only "
                                "client_secret_basic and client_secret_post use one)")
    if value == "-":
        value = sys.stdin.readline().rstrip("\r\n")
    if not MIN_SECRET <= len(value) <= MAX_SECRET:
        raise RegistrationError(f"--client-secret: expected {MIN_SECRET} to {MAX_SECRET} characters (got "
                                f"{len(value)}); a shorter secret can be guessed")
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        raise RegistrationError("--client-secret: expected no spaces or control characters")
    return value


def _who(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--comment", "-m", default="", help="why: kept with the version")
    parser.add_argument("--by", default=None, help="who makes the change (default: USER@host)")


def _by(args: argparse.Namespace) -> str:
    return args.by or f"{getpass.getuser()}@{socket.gethostname()}"


def _service():
    from broker.app import open_registry
    from broker.settings import Settings
    from broker.store import open_store

    settings = Settings.from_env()
    store = open_store(settings.redis_url, prefix=settings.redis_prefix) if settings.redis_url else None
    service = open_registry(settings, store)
    service.seed()
    return settings, service


def _refused(exc: Exception) -> int:
    from broker.registry.check import plural

    problems = exc.problems if isinstance(exc, Invalid) else [str(exc)]
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if isinstance(exc, Invalid):
        print(f"{plural(len(problems), 'problem')}; nothing was activated (the active version is unchanged)",
              file=sys.stderr)
    return 1


def _activated(version) -> None:
    print(f"version {version.id} is active (sequence {version.activated_seq}); running brokers serve it within "
          "seconds", file=sys.stderr)


def _versions(args: argparse.Namespace) -> int:
    _, service = _service()
    seq, active = service.versions.head()
    versions = service.versions.versions(limit=args.limit)
    if args.as_json:
        print(json.dumps({"active": active, "seq": seq, "versions": [v.to_dict() for v in versions]}, indent=2))
        return 0
    for v in versions:
        mark = "*" if v.id == active else " "
        touched = ", ".join(f"{a} {k}/{key}" for k, key, a in v.touches[:4]) + (" …" if len(v.touches) > 4 else "")
        print(f"{mark}{v.id:>5}  {v.status:<16} {v.created_at:%Y-%m-%d %H:%M}  {v.created_by:<24} "
              f"{v.comment or '-'}  [{touched}]")
    return 0


def _show(args: argparse.Namespace) -> int:
    from broker.registry.diff import unified

    _, service = _service()
    try:
        version = service.versions.version(args.version)
        changes = service.versions.changes(args.version)
    except VersionError as exc:
        return _refused(exc)
    print(json.dumps({k: v for k, v in version.to_dict().items() if k != "touches"}, indent=2))
    for change in changes:
        print(unified(change), end="")
    return 0


def _diff(args: argparse.Namespace) -> int:
    from broker.registry.diff import unified

    _, service = _service()
    try:
        changes = service.versions.diff(args.a, args.b)
    except VersionError as exc:
        return _refused(exc)
    for change in changes:
        print(unified(change), end="")
    if not changes:
        print(f"versions {args.a} and {args.b} hold the same registry", file=sys.stderr)
    return 0


def _import(args: argparse.Namespace) -> int:
    from broker.registry.tenants import TenantError

    settings, service = _service()
    try:
        version = service.import_files(args.tenants or settings.tenants_dir,
                                       args.registrations or settings.registry_dir, by=_by(args),
                                       comment=args.comment, activate=not args.stage)
    except TenantError as exc:
        return _refused(Invalid(exc.problems))
    except NothingToChange:
        print("the files hold what the active version holds: nothing to import", file=sys.stderr)
        return 0
    except VersionError as exc:
        return _refused(exc)
    if args.stage:
        print(f"version {version.id} is staged; `broker registry activate {version.id}` makes it active",
              file=sys.stderr)
    else:
        _activated(version)
    return 0


def _export(args: argparse.Namespace) -> int:
    _, service = _service()
    try:
        count = service.export_files(args.directory / "tenants", args.directory / "registry", args.version)
    except VersionError as exc:
        return _refused(exc)
    print(f"{count} objects written to {args.directory}/tenants and {args.directory}/registry", file=sys.stderr)
    return 0


def _activate(args: argparse.Namespace) -> int:
    _, service = _service()
    try:
        _activated(service.activate(args.version, by=_by(args)))
    except VersionError as exc:
        return _refused(exc)
    return 0


def _rollback(args: argparse.Namespace) -> int:
    _, service = _service()
    try:
        version = (service.restore(args.to, by=_by(args), comment=args.comment) if args.to
                   else service.rollback(by=_by(args), comment=args.comment))
    except VersionError as exc:
        return _refused(exc)
    _activated(version)
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from broker.registry.database import open_database
    from broker.settings import Settings

    settings = Settings.from_env()
    open_database(settings.database_url)
    print("the registry database is at the newest schema", file=sys.stderr)
    return 0


def _clients_add(args: argparse.Namespace) -> int:
    try:
        given = _given_secret(args.client_secret, args.auth_method)
    except RegistrationError as exc:
        return _refused(exc)
    settings, service = _service()
    data: dict[str, Any] = {
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
    if given is not None:
        data["client_secret"] = given
    try:
        client, secret, version = service.register_client(data, by=_by(args), comment=args.comment)
    except NothingToChange:
        print(f"client {args.client_id} is already registered with these settings and this secret: nothing changed",
              file=sys.stderr)
        return 0
    except (RegistrationError, VersionError) as exc:
        return _refused(exc)
    out = {"client_id": client.client_id, "redirect_uris": list(client.redirect_uris),
           "token_endpoint_auth_method": client.token_endpoint_auth_method,
           "issuer": settings.base_url,
           "discovery": f"{settings.base_url}/.well-known/openid-configuration"}
    if secret and given is None:
        out["client_secret"] = secret
    elif given is not None:
        out["client_secret_kept"] = True     # the service's own secret: not echoed
    print(json.dumps(out, indent=2))
    _activated(version)
    return 0


def _clients_list(args: argparse.Namespace) -> int:
    from broker.registry.documents import of_kind

    _, service = _service()
    for client_id, client in sorted(of_kind(service.versions.state().documents, "client").items()):
        print(f"{client_id}\t{client.get('token_endpoint_auth_method')}\t{' '.join(client.get('redirect_uris', []))}")
    return 0


def _sps_add(args: argparse.Namespace) -> int:
    from broker.registry.relying_parties import ReleasePolicy

    settings, service = _service()
    try:
        xml = args.metadata_file.read_text()
    except OSError as exc:
        print(f"error: {args.metadata_file}: {exc.strerror}", file=sys.stderr)
        return 1
    policy = ReleasePolicy(scopes=tuple(args.scopes or ("openid", "roles")), profile=args.profile)
    try:
        sp, version = service.register_sp(
            xml, by=_by(args), name=args.name, policy=policy, comment=args.comment,
            encrypt_assertions=args.encrypt_assertions,
            release_authenticating_authority=args.release_authenticating_authority)
    except NothingToChange:
        # Registering again what is registered is not an error (a script run twice, a doc followed twice).
        print(f"{args.metadata_file}: this SAML SP is already registered with this metadata and these settings: "
              "nothing changed (`broker registry versions` shows the active version)", file=sys.stderr)
        return 0
    except (RegistrationError, VersionError) as exc:
        return _refused(exc)
    print(json.dumps({"name": sp.name, "entity_id": sp.entity_id,
                      "idp_metadata": f"{settings.base_url}/saml2/idp/metadata"}, indent=2))
    _activated(version)
    return 0
