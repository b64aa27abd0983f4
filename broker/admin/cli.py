"""``broker admin …``: API tokens and console grants, from the operator's shell.

    broker admin token create --role city_admin --tenant vantaa --expires 30d --note "Vantaa CI"
    broker admin token create --grant city_admin:vantaa --grant city_viewer:espoo --expires 12h
    broker admin token list [--all] [--json]
    broker admin token revoke TOKEN_ID
    broker admin grant --subject SUB --role platform_admin [--note "Maija Meikäläinen"]
    broker admin grant --subject SUB --role city_admin --tenant vantaa --remove
    broker admin grants [--json]

Whoever runs ``broker`` on the server holds the registry database, so the shell is a
platform admin (``cli:USER@host`` in the records).  A token is printed once, on
stdout, as JSON; only its SHA-256 is stored.  Nothing here prints a token again.
"""

from __future__ import annotations

import argparse
import getpass
import json
import socket
import sys
from typing import Any

from broker.admin.principals import ROLES, Grant, GrantError, make_grant


def add_commands(sub: Any) -> None:
    """Add the ``admin`` command group to the ``broker`` parser."""
    admin = sub.add_parser("admin", help="admin API tokens and console grants")
    actions = admin.add_subparsers(metavar="ACTION")

    token = actions.add_parser("token", help="API tokens: create, list, revoke")
    token_actions = token.add_subparsers(metavar="ACTION")
    p = token_actions.add_parser("create", help="create a scoped, expiring API token and print it (once)")
    _grant_arguments(p)
    p.add_argument("--expires", default="30d", help="lifetime: 30d, 12h or 90m (default 30d, at most 366d)")
    p.add_argument("--note", default="", help="what the token is for (shown in lists and logs)")
    p.set_defaults(handler=_token_create)
    p = token_actions.add_parser("list", help="list tokens (never the tokens themselves)")
    p.add_argument("--all", action="store_true", help="include revoked and expired tokens")
    p.add_argument("--json", action="store_true", dest="as_json", help="print JSON")
    p.set_defaults(handler=_token_list)
    p = token_actions.add_parser("revoke", help="revoke a token now")
    p.add_argument("token_id", help="the token's id (t…, from `broker admin token list`)")
    p.set_defaults(handler=_token_revoke)

    p = actions.add_parser("grant", help="give (or with --remove take) a console user's role")
    p.add_argument("--subject", required=True, help="the person's sub, as the broker issues it to digione-admin")
    _grant_arguments(p)
    p.add_argument("--note", default=None, help="who the person is (kept with the grant)")
    p.add_argument("--remove", action="store_true", help="take the grant(s) away instead")
    p.set_defaults(handler=_grant)
    p = actions.add_parser("grants", help="list console users' grants")
    p.add_argument("--json", action="store_true", dest="as_json", help="print JSON")
    p.set_defaults(handler=_grants)


def _grant_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--role", choices=ROLES, default=None, help="the role (with --tenant or --service as it needs)")
    p.add_argument("--tenant", default=None, help="the tenant of a city_admin or city_viewer")
    p.add_argument("--service", default=None, help="the service of a service_owner (client id, or sp/<name>)")
    p.add_argument("--grant", action="append", default=[], metavar="ROLE[:SCOPE]",
                   help="another grant, e.g. city_admin:vantaa or service_owner:sp/kirjasto (repeatable)")


def _who() -> str:
    return f"cli:{getpass.getuser()}@{socket.gethostname()}"


def _grants_of(args: argparse.Namespace) -> list[Grant]:
    grants = []
    if args.role:
        grants.append(make_grant(args.role, tenant=args.tenant, service=args.service, field="grant"))
    elif args.tenant or args.service:
        raise GrantError("--role", "a role for --tenant / --service")
    for text in args.grant:
        role, _, scope = text.partition(":")
        tenant = scope if role in ("city_admin", "city_viewer") and scope else None
        service = scope if role == "service_owner" and scope else None
        grants.append(make_grant(role, tenant=tenant, service=service, field=f"grant {text}"))
    if not grants:
        raise GrantError("--role", "a grant (--role ROLE [--tenant T | --service S], or --grant ROLE:SCOPE)")
    return grants


def _engine() -> Any:
    from broker.registry.database import open_database
    from broker.settings import Settings

    return open_database(Settings.from_env().database_url)


def _audit(engine: Any, action: str, document: str) -> None:
    """The audit record of a change made from the shell (broker.audit), as the admin API writes it."""
    from broker.audit.storage import AuditLog

    AuditLog(engine).admin_change(_who(), action, [document])


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


def _token_create(args: argparse.Namespace) -> int:
    from broker.admin.tokens import TokenStore, parse_duration

    try:
        grants = _grants_of(args)
        lifetime = parse_duration(args.expires)
        engine = _engine()
        token, info = TokenStore(engine).create(grants, lifetime=lifetime, by=_who(), note=args.note)
    except GrantError as exc:
        return _fail(str(exc))
    _audit(engine, "create_token", f"token:{info.id}")
    print(json.dumps({"token": token, **info.to_dict()}, indent=2))
    print(f"token {info.id} created, valid until {info.expires_at:%Y-%m-%d %H:%M} UTC: store it now, it is not "
          "shown again (use it as Authorization: Bearer …)", file=sys.stderr)
    return 0


def _token_list(args: argparse.Namespace) -> int:
    from broker.admin.tokens import TokenStore

    tokens = TokenStore(_engine()).entries(include_inactive=args.all)
    if args.as_json:
        print(json.dumps([t.to_dict() for t in tokens], indent=2))
        return 0
    for t in tokens:
        used = f"{t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else "never"
        print(f"{t.id}\t{t.state()}\texpires {t.expires_at:%Y-%m-%d %H:%M}\tused {used}\t"
              f"{', '.join(map(str, t.grants))}\t{t.note}")
    return 0


def _token_revoke(args: argparse.Namespace) -> int:
    from broker.admin.tokens import TokenStore

    engine = _engine()
    info = TokenStore(engine).revoke(args.token_id, by=_who())
    if info is None:
        return _fail(f"no token {args.token_id}")
    _audit(engine, "revoke_token", f"token:{info.id}")
    print(f"token {info.id} revoked", file=sys.stderr)
    return 0


def _grant(args: argparse.Namespace) -> int:
    from broker.admin.principals import SubjectGrants

    engine = _engine()
    store = SubjectGrants(engine)
    try:
        grants = _grants_of(args)
        if args.remove:
            left = store.remove(args.subject, grants, by=_who())
        else:
            left = store.add(args.subject, grants, by=_who(), note=args.note)
    except GrantError as exc:
        return _fail(str(exc))
    _audit(engine, "remove_grants" if args.remove else "add_grants", f"grant:{args.subject[:180]}")
    held = ", ".join(map(str, left.grants)) if left else "nothing"
    print(f"{args.subject} now holds {held}", file=sys.stderr)
    return 0


def _grants(args: argparse.Namespace) -> int:
    from broker.admin.principals import SubjectGrants

    entries = SubjectGrants(_engine()).entries()
    if args.as_json:
        print(json.dumps([g.to_dict() for g in entries], indent=2))
        return 0
    for g in entries:
        print(f"{g.subject}\t{', '.join(map(str, g.grants))}\t{g.note}")
    return 0
