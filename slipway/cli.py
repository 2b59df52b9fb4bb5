"""The ``slipway`` command: serve, migrate, and administration."""
from __future__ import annotations

import argparse
import getpass
import sys

from . import config as config_module


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="slipway", description="Slipway: a container registry with builds")
    parser.add_argument("--config", "-c", help="YAML config file (default: $SLIPWAY_CONFIG, else built-in defaults)")
    sub = parser.add_subparsers(dest="command", required=True)

    p_serve = sub.add_parser("serve", help="run the HTTP server (registry, API, webhooks) and workers")
    p_serve.add_argument("--host")
    p_serve.add_argument("--port", type=int)
    p_serve.add_argument("--processes", type=int, help="HTTP processes (0: one per core)")
    p_serve.add_argument("--data-dir")
    p_serve.add_argument("--no-workers", action="store_true", help="no in-process build workers or scheduler")

    p_worker = sub.add_parser("worker", help="run build workers (and no HTTP server) against the same database")
    p_worker.add_argument("--workers", type=int, help="build worker threads (default: builds.workers, at least 1)")
    p_worker.add_argument("--data-dir")

    sub.add_parser("migrate", help="create or upgrade the database schema, then exit")

    p_admin = sub.add_parser("admin", help="administration")
    admin = p_admin.add_subparsers(dest="admin_command", required=True)
    p_user = admin.add_parser("create-user", help="create a user")
    p_user.add_argument("name")
    p_user.add_argument("--email")
    p_user.add_argument("--superuser", action="store_true")
    p_user.add_argument("--password", help="the password (default: asked for, or read from stdin if not a tty)")
    p_gc = admin.add_parser("gc", help="collect garbage now (expired tags, unreferenced manifests and blobs)")
    p_gc.add_argument("--grace", type=int, help="seconds (default: gc.grace_seconds) that young uploads are kept")

    args = parser.parse_args(argv)
    try:
        config = config_module.load(args.config)
    except config_module.ConfigError as e:
        print(f"slipway: configuration error: {e}", file=sys.stderr)
        return 2
    if getattr(args, "data_dir", None):
        config.data_dir = args.data_dir

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
        from .server import run_worker

        run_worker(config)
        return 0

    from .app import open_db
    from .server import make_private

    make_private(config)  # `slipway migrate` may create the database
    open_db(config)
    if args.command == "migrate":
        print("database is up to date")
        return 0
    if args.command == "admin" and args.admin_command == "create-user":
        return _create_user(args)
    if args.command == "admin" and args.admin_command == "gc":
        return _gc(config, args.grace)
    return 1


def _gc(config, grace: int | None) -> int:
    from registry.gc import collect, orphaned_files
    from registry.storage import open_storage

    storage = open_storage(config)
    freed = collect(storage, config.gc.grace_seconds if grace is None else grace, config.gc.batch)
    print(freed)
    for digest in freed.digests:
        print(f"  freed {digest}")
    orphans = orphaned_files(storage)
    if orphans:
        print(f"{len(orphans)} stored blob(s) have no database row (left by an interrupted push); they are kept")
    return 0


def _create_user(args) -> int:
    from accounts.users import AccountError, create_user

    password = args.password
    if password is None:
        password = getpass.getpass("Password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
    try:
        user = create_user(args.name, password, email=args.email, superuser=args.superuser)
    except AccountError as e:
        print(f"slipway: {e.message}", file=sys.stderr)
        return 1
    print(f"created user {user.name}{' (superuser)' if user.superuser else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
