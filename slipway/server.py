"""Running Slipway: bind, optionally fork HTTP processes sharing the socket, serve."""
from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
import sys
import threading
from pathlib import Path

from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop
from tornado.netutil import bind_sockets
from tornado.process import fork_processes

from accounts import audit
from accounts.users import ensure_admin
from slipway.errors import Conflict, DomainError

from . import db, tls
from .app import build_services, http_delegate, make_app, open_db
from .config import Config
from .processes import die_with_parent

log = logging.getLogger("slipway")


# Connections the kernel holds for each listening socket: tornado's default (128) dropped part of a
# burst of 200 webhooks, whose senders then retried a second later (bench/trigger_bench.py).
BACKLOG = 1024


def setup_logging(config: Config) -> None:
    logging.basicConfig(level=getattr(logging, config.log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if not config.server.access_log:
        logging.getLogger("tornado.access").setLevel(logging.WARNING)
    # APScheduler announces every run of every job at INFO (two lines a second for notifications).
    logging.getLogger("apscheduler").setLevel(logging.WARNING)


# Files and directories Slipway (and its children: HTTP and background processes, buildah, git) creates
# are for the service account only: the database, blobs, uploads, build contexts, keys.
PRIVATE_UMASK = 0o077


def make_private(config: Config) -> None:
    """Set the private umask, and close the data directory (and an SQLite database an older version
    made readable) to everyone but the service account. Called first by ``serve``, ``worker`` and the
    other commands. The build user never needs to enter it (its storage lives outside, see
    ``builder.backends.build_root``), so even a traverse-only data directory (0711, as an earlier
    version made it for that user) is closed."""
    os.umask(PRIVATE_UMASK)
    config.data_path.mkdir(parents=True, exist_ok=True)
    paths = [(config.data_path, 0o700, 0o077)]
    url = config.database_url
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        database_file = url[len("sqlite:///"):]
        paths += [(Path(database_file + suffix), 0o600, 0o066) for suffix in ("", "-wal", "-shm")]
    for path, mode, closed in paths:
        try:
            if path.exists() and path.stat().st_mode & closed:
                path.chmod(mode)
        except OSError as e:  # not the owner: say so, go on
            log.warning("could not make %s private (mode %o): %s", path, mode, e)


def use_uvloop() -> None:
    """uvloop's event loop when the ``uvloop`` extra is installed (faster), else asyncio's own."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def _pass_on_to_children(signum, frame) -> None:
    for task in os.listdir("/proc/self/task"):
        try:
            pids = [int(pid) for pid in open(f"/proc/self/task/{task}/children").read().split()]
        except OSError:
            continue
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass


def _exit_now(signum, frame) -> None:
    _exit_forked_child()  # not sys.exit: that would wait for whatever threads the start has begun


def first_start(config: Config) -> None:
    """On an empty database, create the admin user and say how to log in."""
    try:
        account, generated = ensure_admin(config.auth.admin_user, config.auth.admin_password)
    except Conflict:  # another node starting at the same moment created it first
        return
    if account is None:
        return
    scheme = "https" if (config.server.tls_cert or config.server.tls_self_signed) else "http"
    host = f"localhost:{config.server.port}"
    flag = "" if scheme == "https" else " --tls-verify=false"
    lines = [
        "",
        "=" * 72,
        f"Slipway created the administrator account '{account.name}'.",
        f"  password: {generated}" if generated else "  password: the one given in SLIPWAY_ADMIN_PASSWORD",
        f"Log in:  podman login{flag} {host} -u {account.name}",
        f"Push:    podman push{flag} <image> {host}/{account.name}/<repository>:<tag>",
        "=" * 72,
        "",
    ]
    print("\n".join(lines), flush=True)


def ssl_options(config: Config):
    if config.server.tls_cert and config.server.tls_key:
        return tls.ssl_context(config.server.tls_cert, config.server.tls_key)
    if config.server.tls_self_signed:
        cert, key, created = tls.self_signed_pair(config.data_path / "tls")
        if created:
            print(tls.trust_instructions(cert, config.server.port), flush=True)
        return tls.ssl_context(cert, key)
    return None


class PlainHTTPServer(HTTPServer):
    """Plain HTTP that answers a TLS handshake at once instead of waiting for headers that never come.

    Container tools told a registry is insecure still try HTTPS first and fall
    back to HTTP only when that fails; without this they wait out a 10 s timeout.
    """

    TLS_HANDSHAKE = 0x16

    def _handle_connection(self, connection, address):
        loop = IOLoop.current()

        def readable(fd, events):
            loop.remove_handler(fd)
            try:
                first = connection.recv(1, socket.MSG_PEEK)
            except BlockingIOError:
                first = b""
            except OSError:
                connection.close()
                return
            if first and first[0] == self.TLS_HANDSHAKE:
                try:
                    connection.send(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
                finally:
                    connection.close()
                return
            HTTPServer._handle_connection(self, connection, address)

        loop.add_handler(connection.fileno(), readable, IOLoop.READ)


def serve(config: Config) -> None:
    setup_logging(config)
    if not config.server.workers:
        require_public_url(config, "slipway serve --no-workers (server.workers: false)")
    make_private(config)
    config.secret_key()
    open_db(config)  # migrations run once, before any fork
    try:
        first_start(config)
    except DomainError as e:  # e.g. SLIPWAY_ADMIN_PASSWORD breaks the password rules: say so, no traceback
        print(f"slipway: cannot create the administrator '{config.auth.admin_user}': {e} "
              "(auth.admin_password / SLIPWAY_ADMIN_PASSWORD)", file=sys.stderr)
        raise SystemExit(2) from None
    require_own_storage(config)
    from registry.identity import announce

    announce(config.server.host, config.server.port)  # builds on any worker take FROM <this node> as local
    db.database.close()
    ssl_ctx = ssl_options(config)
    processes = config.server.processes or os.cpu_count() or 1
    # Scheduled jobs, notification delivery and build workers run in a process of their own (the
    # last child), not beside an event loop: their Python work took the GIL from the requests of
    # the process they shared (pushes with three notifications ran at 0.89 of pushes with none).
    background = bool(config.server.workers)
    wake = WakePipe() if background else None
    sockets = []
    if processes > 1:
        # Each process binds its own SO_REUSEPORT socket, so the kernel spreads new connections
        # over them; with one shared socket, whichever process wakes first takes most of them.
        for probe in bind_sockets(config.server.port, config.server.host, reuse_port=True, backlog=BACKLOG):
            probe.close()  # a port in use fails here, once, not in every child
    else:
        sockets = bind_sockets(config.server.port, config.server.host, backlog=BACKLOG)
    children = processes + (1 if background else 0)
    task = 0
    if children > 1:
        # The supervising parent passes SIGTERM / SIGINT on and exits when its children have
        # (without handlers it died at once, and as PID 1 in a container it ignored SIGTERM).
        signal.signal(signal.SIGTERM, _pass_on_to_children)
        signal.signal(signal.SIGINT, _pass_on_to_children)
        share_with_children()
        task = fork_processes(children)
        # A child told to stop before its own handlers are in place exits cleanly (tornado
        # would restart one killed by the signal).
        signal.signal(signal.SIGTERM, _exit_now)
        signal.signal(signal.SIGINT, _exit_now)
        die_with_parent(signal.SIGTERM)  # a forked child ends with its supervising parent
    if background and task == processes:
        for sock in sockets:
            sock.close()
        run_background(config, wake)
        return
    if processes > 1:
        sockets = bind_sockets(config.server.port, config.server.host, reuse_port=True, backlog=BACKLOG)
    if wake is not None:
        wake.keep_sending_end()
    use_uvloop()
    open_db(config, run_migrations=False)
    services = build_services(config)
    app = make_app(services)
    server_class = HTTPServer if ssl_ctx else PlainHTTPServer
    server = server_class(http_delegate(app, services), ssl_options=ssl_ctx, idle_connection_timeout=300,
                          body_timeout=3600, max_buffer_size=64 * 1024 * 1024)
    server.add_sockets(sockets)
    if task == 0:
        scheme = "https" if ssl_ctx else "http"
        log.info("Slipway listening on %s://%s:%d (%d HTTP process%s), data in %s", scheme, config.server.host,
                 config.server.port, processes, "" if processes == 1 else "es", config.data_path)
    loop = IOLoop.current()
    audit_writer = audit.Writer().start()  # pull/push audit entries, written in batches off the event loop

    def stop(*_):
        loop.add_callback_from_signal(loop.stop)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        loop.start()
    finally:
        server.stop()
        audit_writer.stop()
    if children > 1:  # a forked HTTP process
        _exit_forked_child()


def share_with_children() -> None:
    """Before forking: keep what every process imported on pages the children share with the parent.

    The imports are done (every package, through ``slipway.app``); a collection now, then
    ``gc.freeze()``, moves every object there is into the collector's permanent generation, so the
    children's collections never write to them (a write copies the page into the child). The
    event loop the children use is imported here too, once for all of them."""
    try:
        import uvloop  # noqa: F401 - imported for the children (use_uvloop)
    except ImportError:
        pass
    gc.collect()
    gc.freeze()


def _exit_forked_child() -> None:
    """End a forked child now that its own shutdown is done, without joining leftover threads
    (a request's storage work, a delivery waiting out a 10 s timeout): the parent waits for its
    children, and so do ``kill PID``, systemd and ``docker stop``."""
    logging.shutdown()
    os._exit(0)


def run_background(config: Config, wake: "WakePipe | None" = None) -> None:
    """The background process of ``slipway serve``: scheduled jobs, notifications, build workers.

    It runs at ``server.background_nice`` (inherited by buildah), so on a busy
    machine requests get the CPU first and background work catches up after.
    """
    if config.server.background_nice > 0:
        os.nice(config.server.background_nice)
    open_db(config, run_migrations=False)
    services = build_services(config)
    if wake is not None:
        wake.relay_to_workers()
    from .background import Background

    # Before starting (which probes the build storage and can take seconds): a stop asked meanwhile is
    # honoured once the start is done, instead of exiting in the middle of it.
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    background = Background(services, services.registration.job_registrars()).start()
    log.info("background jobs and %d build worker(s) in process %d (nice %d)",
             config.builds.workers, os.getpid(), os.nice(0))
    while not stopping.wait(1):
        pass
    background.stop()
    _exit_forked_child()


class WakePipe:
    """Queued builds start at once: HTTP processes write a byte to a pipe made before the fork, and
    the background process turns it into ``builder.worker.WAKE`` (otherwise they wait for a poll)."""

    def __init__(self):
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.write_fd, False)

    def keep_sending_end(self) -> None:
        os.close(self.read_fd)
        from builder import worker

        worker.wake_fd = self.write_fd

    def relay_to_workers(self) -> None:
        os.close(self.write_fd)
        from builder.worker import WAKE

        def relay():
            while True:
                try:
                    data = os.read(self.read_fd, 512)
                except OSError:
                    return
                if not data:  # every HTTP process is gone
                    return
                WAKE.set()

        threading.Thread(target=relay, name="build-wake", daemon=True).start()


def run_worker(config: Config) -> None:
    """``slipway worker``: build workers and every scheduled job (notifications, GC, sweeps, the lease
    reaper), no HTTP server. The jobs run under their leases, so any number of workers and ``slipway
    serve`` nodes may run them; API nodes started with ``--no-workers`` leave them to the workers."""
    setup_logging(config)
    require_public_url(config, "slipway worker")
    make_private(config)
    config.secret_key()
    open_db(config)
    require_own_storage(config)
    config.builds.workers = max(1, config.builds.workers)
    services = build_services(config)
    from .background import Background

    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    background = Background(services, services.registration.job_registrars()).start()
    log.info("slipway worker: %d build worker(s) and the scheduled jobs against %s", config.builds.workers,
             config.database_url.split("@")[-1])
    while not stopping.wait(1):
        pass
    background.stop()


def require_own_storage(config: Config) -> None:
    """Serve, build or collect only with the storage this database's blobs are in (registry.identity):
    the first process records it, every later one (on any node) checks it, and stops, naming the
    setting, when its own storage is another."""
    from registry.drivers import open_storage
    from registry.identity import StorageMismatch, ensure

    try:
        ensure(open_storage(config))
    except StorageMismatch as e:
        print(f"slipway: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def require_public_url(config: Config, role: str) -> None:
    """A scale-out role (an API node without background work, a worker) must know the one URL clients
    use: its notifications and build events link there, whichever node sends them."""
    if config.server.public_url:
        return
    print(f"slipway: {role} needs server.public_url (SLIPWAY_SERVER__PUBLIC_URL): the URL clients reach "
          "Slipway at (the load balancer's), the same on every node. Notifications and build events link "
          "to it whichever process sends them.", file=sys.stderr)
    raise SystemExit(2)
