"""The ``slipway`` command: serve, migrate, and administration."""
from __future__ import annotations

import argparse
import getpass
import secrets
import sys
from pathlib import Path

from . import __version__
from . import config as config_module
from .errors import DomainError

NO_DATA = "no Slipway data in {path}; pass --data-dir or set SLIPWAY_DATA_DIR"


def _data_dir_option(parser: argparse.ArgumentParser) -> None:
    # SUPPRESS: given after the command it wins; not given, the one before the command (if any) stays.
    parser.add_argument("--data-dir", default=argparse.SUPPRESS,
                        help="the data directory (default: $SLIPWAY_DATA_DIR, else ./slipway-data)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="slipway", description="Slipway: a container registry with builds")
    parser.add_argument("--version", action="version", version=f"slipway {__version__}")
    parser.add_argument("--config", "-c", help="YAML config file (default: $SLIPWAY_CONFIG, else built-in defaults)")
    parser.add_argument("--data-dir", help="the data directory (default: $SLIPWAY_DATA_DIR, else ./slipway-data)")
    sub = parser.add_subparsers(dest="command", required=True)

    p_serve = sub.add_parser("serve", help="run the HTTP server (registry, API, webhooks) and workers")
    p_serve.add_argument("--host")
    p_serve.add_argument("--port", type=int)
    p_serve.add_argument("--processes", type=int, help="HTTP processes (0: one per core)")
    _data_dir_option(p_serve)
    p_serve.add_argument("--no-workers", action="store_true", help="no in-process build workers or scheduler")

    p_worker = sub.add_parser("worker", help="run build workers (and no HTTP server) against the same database")
    p_worker.add_argument("--workers", type=int, help="build worker threads (default: builds.workers, at least 1)")
    _data_dir_option(p_worker)

    p_migrate = sub.add_parser("migrate", help="create or upgrade the database schema, then exit")
    _data_dir_option(p_migrate)

    p_admin = sub.add_parser("admin", help="administration (of an existing Slipway: its data directory or database)")
    _data_dir_option(p_admin)
    admin = p_admin.add_subparsers(dest="admin_command", required=True)
    p_user = admin.add_parser("create-user", help="create a user")
    p_user.add_argument("name")
    p_user.add_argument("--email")
    p_user.add_argument("--superuser", action="store_true")
    p_user.add_argument("--password", help="the password (default: asked for, or read from stdin if not a tty)")
    _data_dir_option(p_user)
    p_list = admin.add_parser("list-users", help="list the users (name, e-mail, superuser, enabled)")
    _data_dir_option(p_list)
    p_reset = admin.add_parser("reset-password", help="set a new password for a user (e.g. a lost admin password)")
    p_reset.add_argument("name")
    way = p_reset.add_mutually_exclusive_group()
    way.add_argument("--password", help="the new password (default: asked for, or read from stdin if not a tty)")
    way.add_argument("--generate", action="store_true", help="generate a new password and print it")
    _data_dir_option(p_reset)
    p_gc = admin.add_parser("gc", help="collect garbage now (expired tags, unreferenced manifests and blobs)")
    p_gc.add_argument("--grace", type=int, help="seconds (default: gc.grace_seconds) that young uploads are kept")
    p_gc.add_argument("--orphans", action="store_true",
                      help="also remove stored blobs no database row knows about, once older than the grace period")
    _data_dir_option(p_gc)

    p_scanner = sub.add_parser("scanner", help="the vulnerability scanner (of an existing Slipway)")
    _data_dir_option(p_scanner)
    scanner_sub = p_scanner.add_subparsers(dest="scanner_command", required=True)
    p_update = scanner_sub.add_parser(
        "update", help="import advisory feeds (files, directories, zips or http(s) URLs; default: scanner.feeds), "
                       "then match the stored images again")
    p_update.add_argument("sources", nargs="*", metavar="PATH_OR_URL")
    _data_dir_option(p_update)

    args = parser.parse_args(argv)
    try:
        config = config_module.load(args.config)
    except config_module.ConfigError as e:
        print(f"slipway: configuration error: {e}", file=sys.stderr)
        return 2
    if args.data_dir:
        config.data_dir = args.data_dir
    # Resolved once, absolute: every process and command of this run means the same directory.
    config.data_dir = str(config.data_path)

    if args.command == "serve":
        for key in ("host", "port", "processes"):
            if getattr(args, key) is not None:
                setattr(config.server, key, getattr(args, key))
        if args.no_workers:
            config.server.workers = False
        from .server import serve

        serve(config)
        return 0

    if args.command == "worker":
        if args.workers is not None:
            config.builds.workers = args.workers
        problem = _missing_data(config)
        if problem and not config.database_url.startswith("sqlite:"):
            problem = _wait_for_schema(config, problem)
        if problem:
            print(f"slipway: {problem}", file=sys.stderr)
            return 1
        from .server import run_worker

        run_worker(config)
        return 0

    from .app import open_db
    from .server import make_private

    if args.command == "migrate":
        make_private(config)  # it may create the database
        open_db(config)
        print(f"database is up to date ({_where(config)})")
        return 0
    problem = _missing_data(config)
    if problem:
        print(f"slipway: {problem}", file=sys.stderr)
        return 1
    make_private(config)
    open_db(config)
    if args.command == "scanner":
        return _scanner_update(config, args.sources)
    if args.admin_command == "create-user":
        return _create_user(args)
    if args.admin_command == "list-users":
        return _list_users()
    if args.admin_command == "reset-password":
        return _reset_password(args)
    if args.admin_command == "gc":
        return _gc(config, args.grace, args.orphans)
    return 1


def _scanner_update(config, sources: list[str]) -> int:
    """``slipway scanner update``: one transaction for every feed given (a bad feed writes nothing), progress
    per feed on stderr, then the stored images holding a touched package are matched again."""
    from scanner.feeds import FeedError
    from scanner.jobs import update_feeds

    sources = sources or config.scanner.feeds
    if not sources:
        print("slipway: no feed to import: name files, directories or URLs, or set scanner.feeds", file=sys.stderr)
        return 2
    shown = {}

    def progress(feed: str, count: int) -> None:
        if count - shown.get(feed, -10_000) >= 10_000:
            shown[feed] = count
            print(f"  {feed}: {count} advisories read", file=sys.stderr, flush=True)

    try:
        result = update_feeds(config, sources, progress)
    except FeedError as e:
        print(f"slipway: feed not imported, nothing was changed: {e}", file=sys.stderr)
        return 1
    for feed in result.feeds:
        print(f"{feed.name}: {feed.advisories} advisories, {feed.added} new, {feed.changed} changed, "
              f"{feed.withdrawn} withdrawn")
    print(f"{result.added} new, {result.changed} changed, {result.withdrawn} withdrawn advisories; "
          f"{result.rematched} images matched again, "
          f"{result.announced} new vulnerabilities announced")
    return 0


def _where(config) -> str:
    """The database, for messages: the SQLite file, or the PostgreSQL host and name without credentials."""
    if not config.database.url:
        return str(config.data_path / "slipway.db")
    return config.database_url.rsplit("@", 1)[-1]


def _missing_data(config) -> str | None:
    """Why a command would act on no Slipway at all (administrative commands must not make a fresh one)."""
    import peewee

    from .db import open_database

    url = config.database_url
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///"):])
        if not path.is_file():
            if not config.database.url:
                return NO_DATA.format(path=config.data_path)
            return f"no Slipway database at {path}; check SLIPWAY_DATABASE_URL (database.url)"
    database = open_database(url)
    try:
        if not database.table_exists("schema_migration"):
            return (f"no Slipway data in the database {_where(config)}; start `slipway serve` or run "
                    "`slipway migrate` against it first")
    except peewee.OperationalError as e:
        return f"cannot open the database {_where(config)}: {str(e).strip()}"
    finally:
        database.close()
    return None


WORKER_WAITS_FOR_SCHEMA = 60  # seconds


def _wait_for_schema(config, problem: str) -> str | None:
    """A worker started together with its API nodes on an empty PostgreSQL database waits for their
    ``slipway serve`` (or ``slipway migrate``) to create the schema, rather than refusing at once."""
    import time

    print(f"slipway worker: {problem}; waiting up to {WORKER_WAITS_FOR_SCHEMA} s", file=sys.stderr, flush=True)
    deadline = time.monotonic() + WORKER_WAITS_FOR_SCHEMA
    while problem and time.monotonic() < deadline:
        time.sleep(0.5)
        problem = _missing_data(config)
    return problem


def _read_password(given: str | None) -> str:
    if given is not None:
        return given
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    while True:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") == password:
            return password
        print("The two passwords differ; try again.", file=sys.stderr)


def _gc(config, grace: int | None, orphans: bool = False) -> int:
    from registry.drivers import open_storage
    from registry.jobs import GC_JOB

    from . import leases
    from .server import require_own_storage

    require_own_storage(config)  # never delete rows whose bytes this process cannot reach
    storage = open_storage(config)
    grace = config.gc.grace_seconds if grace is None else grace

    def waiting() -> None:
        print("slipway: garbage collection is running in another process; waiting for it to end", file=sys.stderr,
              flush=True)

    with leases.waiting_for(GC_JOB, waiting):  # one GC at a time, with the scheduled ones of every node
        return _collect(storage, grace, config.gc.batch, orphans)


def _collect(storage, grace: int, batch: int, orphans: bool) -> int:
    from registry.gc import collect, orphaned_files, remove_orphans

    freed = collect(storage, grace, batch)
    print(freed)
    for digest in freed.digests:
        print(f"  freed {digest}")
    if orphans:
        removed, size = remove_orphans(storage, grace)
        print(f"removed {len(removed)} stored blob(s) no row knows about (older than {grace} s); freed {size} bytes")
        for digest in removed:
            print(f"  removed {digest}")
        return 0
    left = orphaned_files(storage)
    if left:
        print(f"{len(left)} stored blob(s) have no database row (left by an interrupted push); they are kept "
              "(`slipway admin gc --orphans` removes them)")
    return 0


def _create_user(args) -> int:
    from accounts.users import create_user

    password = _read_password(args.password)
    try:
        user = create_user(args.name, password, email=args.email, superuser=args.superuser)
    except DomainError as e:
        print(f"slipway: {e.message}", file=sys.stderr)
        return 1
    print(f"created user {user.name}{' (superuser)' if user.superuser else ''}")
    return 0


def _list_users() -> int:
    from accounts.models import USER, Account

    users = list(Account.select().where(Account.kind == USER).order_by(Account.name))
    rows = [("NAME", "EMAIL", "SUPERUSER", "ENABLED")]
    rows += [(u.name, u.email or "-", "yes" if u.superuser else "no", "yes" if u.enabled else "no") for u in users]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[3])
    return 0


def _reset_password(args) -> int:
    from accounts.identity import Identity
    from accounts.users import change_password, get_user

    # The audit log names the command line as the performer (no account: whoever runs it owns the data).
    performer = Identity(kind="cli", name="slipway admin reset-password", via="cli")
    try:
        user = get_user(args.name)
        password = secrets.token_urlsafe(12) if args.generate else _read_password(args.password)
        change_password(user, password, performer)
    except DomainError as e:
        print(f"slipway: {e.message}", file=sys.stderr)
        return 1
    print(f"new password for {user.name}" + (f": {password}" if args.generate else " set"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
