"""The ``broker`` command.

    broker check                      validate tenants, mapping rules and registrations
    broker serve                      run the broker under uWSGI (BROKER_WORKERS workers; BROKER_SERVER=gunicorn:
                                      under gunicorn instead)
    broker demo                       the embedded default: broker + demo city IdPs + demo services
    broker registry ...               the versioned registry: import, export, versions, diff, activate, rollback
    broker clients add ...            register an OIDC relying party (a registry change); prints its credentials
    broker sps add METADATA_FILE      register a SAML service provider (a registry change)
    broker admin token|grant ...      admin API tokens and console users' grants
    broker audit releases|changes     what services received about a school's people; admin changes
    broker keys list|rotate           the brokers' token-signing keys (in Redis: BROKER_REDIS_URL)
    broker mapping explain ...        what a city's IdP response becomes, and what each service gets
    broker config dump                the generated SATOSA configuration (no secrets)

``broker`` alone, and a command group given without an action (``broker keys``, ``broker admin
token``), prints its own help and exits 0.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import sys
import warnings
from collections.abc import Sequence

from broker.settings import Settings, SettingsError


def main(argv: Sequence[str] | None = None) -> int:
    # pysaml2 imports a cipher mode that cryptography deprecates; not ours to fix, not the user's to read.
    warnings.filterwarnings("ignore", message=".*CFB has been moved", module="saml2")
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):   # bare `broker`: what it can do, as a group says it
        parser.print_help()
        return 0
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

    p = sub.add_parser("serve", help="run the broker under uWSGI (under gunicorn with BROKER_SERVER=gunicorn)",
                       description="Run the broker under uWSGI, the default pre-fork server (HTTP parsed in C, "
                                   "slow clients held off the workers); BROKER_SERVER=gunicorn runs it under "
                                   "gunicorn's sync workers instead, behind a proxy that buffers requests. The "
                                   "registry's active version must build first; more than one worker needs "
                                   "BROKER_REDIS_URL.")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes (default BROKER_WORKERS, else 1; more than 1 needs BROKER_REDIS_URL)")
    p.add_argument("--bind", default=None, metavar="HOST:PORT",
                   help="address to listen on (default 0.0.0.0:$BROKER_PORT, port 8000 unless set)")
    p.set_defaults(handler=_serve)

    p = sub.add_parser("demo", help="run the broker with demo city IdPs and demo services")
    p.add_argument("--prepare", action="store_true",
                   help="only generate the demo's files (city IdP metadata, keys, secrets) and register its "
                        "services, then exit")
    p.set_defaults(handler=_demo)

    from broker.registry.cli import add_commands

    add_commands(sub)
    from broker.admin.cli import add_commands as add_admin_commands
    add_admin_commands(sub)
    from broker.audit.cli import add_commands as add_audit_commands
    add_audit_commands(sub)

    from broker.tokens.cli import add_commands as add_keys_commands
    add_keys_commands(sub)

    from broker.mapping.cli import add_commands as add_mapping_commands
    add_mapping_commands(sub)

    config = sub.add_parser("config", help="the generated SATOSA configuration: dump").add_subparsers(metavar="ACTION")
    p = config.add_parser("dump", help="print the generated SATOSA configuration (no secrets)")
    p.set_defaults(handler=_config_dump)
    _groups_print_their_help(parser)
    return parser


def _groups_print_their_help(parser: argparse.ArgumentParser) -> None:
    """Make every command group below ``parser`` explain itself when given no action.

    A group (a parser with sub-commands) gets a handler printing its own help, exit 0; an
    action's handler still wins, since argparse applies the deepest parser's defaults last.
    A sub-command without a description gets its one-line help as one, so its ``--help``
    says what it is.  This walks the finished tree, so groups added by other modules'
    ``add_commands`` are covered too.
    """
    for action in parser._actions:   # argparse has no public way to reach the sub-parsers
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {choice.dest: choice.help for choice in action._choices_actions}
        for name, child in action.choices.items():
            if child.description is None:
                child.description = helps.get(name)
            if any(isinstance(a, argparse._SubParsersAction) for a in child._actions):
                child.set_defaults(handler=functools.partial(_print_help, child))
            _groups_print_their_help(child)


def _print_help(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    parser.print_help()
    return 0


def _settings() -> Settings:
    return Settings.from_env()


def _active_version_builds(settings: Settings) -> bool:
    """Seed an empty registry database from the files; say whether its active version validates."""
    from broker.app import open_registry
    from broker.registry.check import plural
    from broker.registry.tenants import TenantError
    from broker.registry.versions import Invalid, VersionError

    try:
        service = open_registry(settings)
        service.seed()
        service.validate(service.versions.state().documents)
    except (Invalid, TenantError) as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        print(f"{plural(len(exc.problems), 'problem')} in the registry's active version; the broker will not start "
              "(`broker registry rollback` restores the previous one)", file=sys.stderr)
        return False
    except VersionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return False
    return True


def _check(args) -> int:
    """Validate everything start-up validates (:mod:`broker.registry.check`)."""
    from broker.registry.check import run_check

    return run_check()


def configure_logging(level: str) -> None:
    """One JSON object per log line on stderr, libraries held at WARNING (:mod:`broker.logs`)."""
    from broker import logs

    numeric = logging.getLevelName(str(level).upper())
    logs.configure_logging(numeric if isinstance(numeric, int) else logging.INFO)


def _serve(args) -> int:
    from broker.metrics.multiprocess import prepare

    prepare()   # before anything imports prometheus_client: the workers count in shared files
    settings = _settings()
    configure_logging(settings.log_level)
    if not _active_version_builds(settings):
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

    return run_demo(prepare_only=args.prepare)


def _config_dump(args) -> int:
    from broker.assemble import plugin_config
    from broker.registry.check import load_or_report

    settings = _settings()
    # The same report as `broker check`'s: a fresh clone's missing demo files get the same hint.
    registry = load_or_report(settings, os.environ, lambda line: print(line, file=sys.stderr))
    if registry is None:
        return 1
    print(json.dumps(plugin_config(settings, registry), indent=2, default=str))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
