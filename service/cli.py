"""``daik api``, ``daik up``, ``daik db ...``, ``daik token ...`` and the service's client, ``daik jobs ...``
and ``daik batches ...`` (:mod:`service.client.cli`), registered with the ``daik`` command through the
``daik.commands`` entry point group; heavy imports happen inside the handlers.

User mistakes end as one line on stderr and a non-zero exit, never a traceback: the service extra not
installed (which extra to install), a bad ``DAIK_*`` setting (named by its variable), a database URL that
does not parse or a database that cannot be reached (named by ``DAIK_DATABASE_URL``, password hidden).
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from typing import Any

SERVICE_EXTRA = "pip install 'daik[service]'"


@contextlib.contextmanager
def _needs_service_extra(command: str) -> Iterator[None]:
    """Imports of the service's dependencies: one that is not installed ends ``daik COMMAND`` with a line
    that says which extra to install."""
    try:
        yield
    except ModuleNotFoundError as err:
        if err.name is None or err.name.split(".")[0] in ("service", "daik_core", "worker"):
            raise  # a module of the project itself: a bug, not a missing extra
        raise SystemExit(
            f"daik: error: `daik {command}` needs the service extra: {SERVICE_EXTRA} ({err.name} is missing)"
        ) from None


def _settings(command: str) -> Any:
    with _needs_service_extra(command):
        from pydantic import ValidationError

        from service.settings import Settings
    try:
        return Settings()
    except ValidationError as err:  # pydantic-settings hides the input: a setting may be a secret
        problems = "; ".join(
            f"DAIK_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg'].removeprefix('Value error, ')}"
            for e in err.errors()
        )
        raise SystemExit(f"daik: error: {problems}") from None


def _database(settings: Any) -> str:
    """How a message names the database: its setting and URL, the password hidden."""
    from service.settings import redact_url

    if settings.database_url:
        return f"DAIK_DATABASE_URL {redact_url(settings.database_url)}"
    return f"the embedded database {settings.db_url} (under DAIK_HOME)"


@contextlib.contextmanager
def _database_errors(settings: Any) -> Iterator[None]:
    """A database URL SQLAlchemy cannot use, or a database it cannot reach, as one line naming it."""
    from sqlalchemy.exc import ArgumentError, InterfaceError, NoSuchModuleError, OperationalError

    from service.settings import redact_url

    try:
        yield
    except NoSuchModuleError as err:
        raise SystemExit(f"daik: error: {_database(settings)}: {err} (an unknown database dialect)") from None
    except ArgumentError as err:
        raise SystemExit(f"daik: error: {_database(settings)}: not a usable database URL ({err})") from None
    except (OperationalError, InterfaceError) as err:
        cause = str(err.orig if err.orig is not None else err).strip().splitlines()
        reason = redact_url(cause[0]) if cause else type(err).__name__
        raise SystemExit(f"daik: error: {_database(settings)}: cannot connect: {reason}") from None


def _cmd_api(args: argparse.Namespace) -> int:
    with _needs_service_extra("api"):
        from service.main import serve
    if args.workers < 1:
        raise SystemExit(f"daik: error: --workers must be at least 1, got {args.workers}")
    settings = _settings("api")
    with _database_errors(settings):
        return serve(
            settings, host=args.host, port=args.port, workers=args.workers, access_log=args.access_log
        )


def _cmd_up(args: argparse.Namespace) -> int:
    with _needs_service_extra("up"):
        from service.local import up
    settings = _settings("up")
    with _database_errors(settings):
        return up(settings, host=args.host, port=args.port, workers=args.workers)


def _cmd_db(args: argparse.Namespace) -> int:
    with _needs_service_extra("db"):
        from service import migrate
        from service.db.session import make_engine

    settings = _settings("db")
    if settings.embedded:
        settings.ensure_dirs()
    with _database_errors(settings):
        engine = make_engine(settings.db_url)
        try:
            if args.db_command == "upgrade":
                migrate.upgrade(engine, args.revision)
            elif args.db_command == "downgrade":
                migrate.downgrade(engine, args.revision)
            elif args.db_command == "check":
                migrate.check(engine)
            with engine.connect() as conn:
                print(
                    f"database at revision {migrate.current_revision(conn)} (head {migrate.head_revision()})"
                )
        finally:
            engine.dispose()
    return 0


def _cmd_token_create(args: argparse.Namespace) -> int:
    with _needs_service_extra("token"):
        from service.auth.service import create_token_cli
    settings = _settings("token")
    with _database_errors(settings):
        return create_token_cli(settings, name=args.name, scopes=args.scopes, expires_days=args.expires_days)


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

    from service.client.cli import register as register_client  # the standard library only, at import

    register_client(sub)
