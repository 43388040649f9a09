"""``daik api``, ``daik up``, ``daik db ...`` and ``daik token ...`` (registered with the ``daik`` command
through the ``daik.commands`` entry point group; heavy imports happen inside the handlers)."""

from __future__ import annotations

import argparse
from typing import Any


def _settings() -> Any:
    try:
        from service.settings import Settings
    except ImportError as err:  # the service extra is not installed
        raise SystemExit(
            f"daik: error: the service needs `pip install daik[service]` ({err.name} missing)"
        ) from None
    return Settings()


def _cmd_api(args: argparse.Namespace) -> int:
    from service.main import serve

    if args.workers < 1:
        raise SystemExit(f"daik: error: --workers must be at least 1, got {args.workers}")
    return serve(
        _settings(), host=args.host, port=args.port, workers=args.workers, access_log=args.access_log
    )


def _cmd_up(args: argparse.Namespace) -> int:
    from service.local import up

    return up(_settings(), host=args.host, port=args.port, workers=args.workers)


def _cmd_db(args: argparse.Namespace) -> int:
    from service import migrate
    from service.db.session import make_engine

    settings = _settings()
    if settings.embedded:
        settings.ensure_dirs()
    engine = make_engine(settings.db_url)
    try:
        if args.db_command == "upgrade":
            migrate.upgrade(engine, args.revision)
        elif args.db_command == "downgrade":
            migrate.downgrade(engine, args.revision)
        elif args.db_command == "check":
            migrate.check(engine)
        with engine.connect() as conn:
            print(f"database at revision {migrate.current_revision(conn)} (head {migrate.head_revision()})")
    finally:
        engine.dispose()
    return 0


def _cmd_token_create(args: argparse.Namespace) -> int:
    from service.auth.service import create_token_cli

    return create_token_cli(_settings(), name=args.name, scopes=args.scopes, expires_days=args.expires_days)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("api", help="serve the HTTP API (and the dashboard)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="API server processes (default 1); one per core is the setting for throughput",
    )
    p.add_argument("--access-log", action="store_true", help="log every request (off by default)")
    p.set_defaults(handler=_cmd_api)

    p = sub.add_parser(
        "up", help="one machine: migrate, then run the API, a worker and beat (embedded defaults)"
    )
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.set_defaults(handler=_cmd_up)

    p = sub.add_parser("db", help="database migrations (DAIK_DATABASE_URL, default the embedded SQLite)")
    db = p.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    for name, default, text in (
        ("upgrade", "head", "migrate up to a revision (default head)"),
        ("downgrade", "base", "migrate down to a revision (default base: drops every table)"),
    ):
        q = db.add_parser(name, help=text)
        q.add_argument("revision", nargs="?", default=default)
        q.set_defaults(handler=_cmd_db)
    q = db.add_parser("check", help="fail when the models and the migrations disagree")
    q.set_defaults(handler=_cmd_db)
    q = db.add_parser("current", help="print the current revision")
    q.set_defaults(handler=_cmd_db)

    p = sub.add_parser("token", help="API tokens")
    tok = p.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    q = tok.add_parser("create", help="create a bearer token and print it (once)")
    q.add_argument("--name", required=True, help="what the token is for")
    q.add_argument(
        "--scopes",
        nargs="+",
        default=["jobs:read", "jobs:write"],
        help="scopes (default jobs:read jobs:write; admin grants everything)",
    )
    q.add_argument("--expires-days", type=float, default=None, help="lifetime in days (default: none)")
    q.set_defaults(handler=_cmd_token_create)
