"""Build workers: claim a build, run it phase by phase, push the result, report how it ended.

The same code runs as threads inside ``slipway serve`` and as ``slipway worker``
processes (on other machines too): all they share with the API nodes is the
database and the blob storage.
"""
from __future__ import annotations

import base64
import fcntl
import json
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
import uuid
from pathlib import Path

from accounts.models import Account
from accounts.robots import robot_token
from accounts.users import identity_for
from registry import repos
from registry.models import PUBLIC
from registry.permissions import can
from registry.storage import Storage
from slipway import events, outgoing, redact, urls
from slipway.db import database, now_ms
from slipway.errors import Invalid

from . import backends, builds, clone, contexts, dockerfile, images, queue, sandbox
from .hooks import BuildHooks
from .logs import LogWriter
from .models import BUILDING, CANCELLED, COMPLETE, ERROR, PULLING, PUSHING, TERMINAL, UNPACKING, Build, FileDrop

log = logging.getLogger("slipway.builder.worker")
# Set when a build is queued, so idle workers start at once instead of at the next poll.
WAKE = threading.Event()
POLL_SECONDS = 0.25
# In ``slipway serve``'s HTTP processes: the pipe to the background process's workers.
wake_fd: int | None = None


def wake() -> None:
    """A build was queued: wake this process's workers and those of the background process."""
    WAKE.set()
    if wake_fd is not None:
        try:
            os.write(wake_fd, b"w")
        except OSError:  # the pipe is full (they are awake anyway) or the background process is gone
            pass


def filedrop_key(file_id: str) -> str:
    """Where an uploaded build context is kept (in the upload area of blob storage)."""
    return f"filedrop-{file_id}"


class Worker:
    def __init__(self, config, storage: Storage, hooks: BuildHooks, backend: backends.Backend | None = None,
                 name: str | None = None):
        self.config = config
        self.storage = storage
        self.hooks = hooks
        self.backend = backend or backends.make_backend(config)
        self.id = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.base = urls.base_url(config)
        self.own_names = images.local_registry_names(config)
        self.stopping = threading.Event()  # the pool's stop: a worker told to stop drops a cache publication

    @property
    def local_names(self) -> set[str]:
        """The names of this Slipway's registry: this worker's own, and every API node's address (nodes
        started since count too)."""
        from registry.identity import node_addresses

        return self.own_names | node_addresses()

    def run(self, stop: threading.Event) -> None:
        """Claim and run builds until ``stop`` is set."""
        self.stopping = stop
        while not stop.is_set():
            try:
                ran = self.run_once()
            except Exception:
                log.exception("worker %s: claiming failed", self.id)
                database.close()  # a fresh connection next time
                ran = False
            if ran:
                database.close()
            else:
                WAKE.wait(POLL_SECONDS)
                WAKE.clear()

    def run_once(self) -> bool:
        build = queue.claim(self.id, self.config.builds.lease_seconds, self.config.builds.max_concurrent)
        if build is None:
            return False
        BuildRun(self, build).execute()
        return True


class BuildRun:
    """One attempt at one build, from claim to a final phase."""

    def __init__(self, worker: Worker, build: Build):
        self.worker = worker
        self.config = worker.config
        self.build = build
        self.repo = build.repository
        self.writer = LogWriter(build, self.config.builds.max_log_bytes)
        self.deadline = time.monotonic() + self.config.builds.timeout_seconds
        self.stop_reason: str | None = None
        self.done = threading.Event()

    # -- supervision -------------------------------------------------------------------------------------
    def check_stop(self) -> str | None:
        if self.stop_reason is None and time.monotonic() > self.deadline:
            self.stop_reason = "timeout"
        return self.stop_reason

    def _heartbeat(self) -> None:
        lease = self.config.builds.lease_seconds
        interval = max(0.2, min(2.0, lease / 5))
        renewed = time.monotonic()
        try:
            while not self.done.wait(interval):
                try:
                    ours, cancel = queue.heartbeat(self.build, self.worker.id, lease)
                except Exception as e:  # a busy or briefly unreachable database: try again
                    log.warning("build %s: heartbeat failed: %s", self.build.uuid, e)
                    database.close()
                    if time.monotonic() - renewed > lease:
                        self.stop_reason = "lost"  # others may have taken the build back by now
                    continue
                renewed = time.monotonic()
                if not ours:
                    self.stop_reason = "lost"
                elif cancel and self.stop_reason is None:
                    self.stop_reason = "cancelled"
        finally:
            database.close()

    def phase(self, phase: str) -> None:
        Build.update(phase=phase).where((Build.id == self.build.id) & Build.phase.not_in(TERMINAL)).execute()
        self.writer.phase(phase)

    # -- the build -------------------------------------------------------------------------------------------
    def execute(self) -> None:
        log.info("worker %s: build %s of %s", self.worker.id, self.build.uuid, self.repo.full_name)
        self.writer.phase(self.build.phase)
        events.emit(events.BUILD_START, self.repo, builds.event_payload(self.build, self.worker.base))
        beat = threading.Thread(target=self._heartbeat, name=f"heartbeat-{self.build.uuid[:8]}", daemon=True)
        beat.start()
        backend = self.worker.backend
        user = getattr(backend, "user", None)
        work_root = work_root_of(self.config, backend)
        workdir = sandbox.owned_dir(Path(tempfile.mkdtemp(prefix=f"build-{self.build.uuid}-", dir=work_root)), user)
        job = None
        running = _Running.of(backend)
        running.enter()
        try:
            for line in getattr(backend, "describe", lambda: [f"backend {backend.name}"])():
                self.writer.line(f"Build worker: {line}")
            job = self._run(workdir)
        except (backends.BuildFailed, contexts.ContextError) as e:
            self._end(ERROR, str(e))
        except backends.NothingToBuild as e:
            self.writer.line(str(e))
            queue.finish(self.build, self.worker.id, CANCELLED, self.writer, self.worker.base, self.worker.hooks,
                         error_message=str(e))
        except backends.Stopped as e:
            if e.reason == "cancelled":
                self._end(CANCELLED, None)
            elif e.reason == "timeout":
                self._end(ERROR, f"The build took longer than the limit of {self.config.builds.timeout_seconds} s "
                                 "and was stopped")
            # "lost": another node declared this worker dead and took the build back
        except Exception as e:
            log.exception("build %s failed inside the worker", self.build.uuid)
            queue.internal_failure(self.build, self.worker.id,
                                   redact.text(f"Internal error in the build worker: {e}", self.build.archive_url),
                                   self.writer, self.worker.base, self.config.builds.retry_delay_seconds,
                                   self.worker.hooks)
        finally:
            self.done.set()
            beat.join(timeout=10)
            try:
                if job is not None:
                    backend.remove(job)
            except Exception:
                log.exception("build %s: removing its image failed", self.build.uuid)

            def when_idle() -> None:  # no build of this process starts while this runs
                try:
                    if isinstance(backend, backends.BuildahBackend):
                        remove_leftovers(self.config, backend, only_containers=True)
                except Exception:
                    log.exception("build %s: cleaning up after it failed", self.build.uuid)

            running.leave(when_idle)
            # Last: a build's work directory is gone only once its worker no longer touches the store.
            shutil.rmtree(workdir, ignore_errors=True)
            self.writer.flush()

    def _end(self, phase: str, error: str | None, **fields) -> None:
        error = redact.text(error, self.build.archive_url)  # shown with the build, sent with its events
        if error:
            self.writer.error(error)
        queue.finish(self.build, self.worker.id, phase, self.writer, self.worker.base, self.worker.hooks,
                     error_message=error, **fields)

    def _run(self, workdir: Path):
        build, backend = self.build, self.worker.backend
        user = getattr(backend, "user", None)
        self.phase(UNPACKING)
        root = workdir / "context"
        root.mkdir()
        self._fetch_context(workdir, root)
        sandbox.give_tree(root, user)  # buildah reads the context as the build user
        context_dir, dockerfile_path = contexts.select_context(root, build.context, build.dockerfile_path)
        build_args = json.loads(build.build_args or "{}")
        parsed = dockerfile.read(dockerfile_path.read_text(errors="replace"), build_args, build.target)
        self.writer.expect_steps(parsed.steps)
        if parsed.required_args:
            raise backends.BuildFailed(
                f"The Dockerfile declares ARG {', '.join(parsed.required_args)} without a default, and the build "
                "was not given a value: pass it in build_args")
        bases = [images.parse(image) for image in parsed.base_images]
        pull_as = self._check_base_images(bases)
        secret = builds.issue_credential(build)
        host = self.config.build_registry_url.split("://", 1)[1]
        hosts = self.registry_hosts = sorted({host, sandbox.RELAY_HOST, *self.worker.local_names})
        cache_repo = self._cache_repo() if self.config.builds.layers and self.config.builds.layer_cache else None
        job = backends.Job(
            context_dir=context_dir, dockerfile=dockerfile_path, image=f"localhost/slipway-build-{build.uuid}",
            build_args=build_args, target=build.target,
            authfile=self._authfile(workdir / "push-auth.json", {h: ("$build", secret) for h in hosts}, user),
            registries_conf=self._registries_conf(workdir, host, user), cache_repo=cache_repo,
            on_line=self.writer.line, on_idle=self.writer.flush, check_stop=self.check_stop, workdir=workdir)
        if isinstance(backend, backends.DockerBackend):
            backend.use_credentials({host: {"username": "$build", "password": secret}})

        self.phase(PULLING)
        # Pulls run outside the sandbox, on the worker's network: the credentials they carry name this
        # Slipway's hosts only (never the relay's address, which outside the sandbox is the host's own).
        pull_hosts = [h for h in hosts if h != sandbox.RELAY_HOST]
        pull_job = job
        pull_credential: tuple[str, str] | None = ("$build", secret)
        if pull_as is not None:  # the pull robot
            pull_credential = (pull_as.name, robot_token(pull_as))
        elif build.trigger_id is not None and not isinstance(backend, backends.DockerBackend):
            pull_credential = None  # triggered, no robot: anonymous
        if not isinstance(backend, backends.DockerBackend):
            pull_job = backends.Job(**{**job.__dict__, "authfile": None if pull_credential is None else self._authfile(
                workdir / "pull-auth.json", {h: pull_credential for h in pull_hosts}, user)})
        for base in bases:
            if isinstance(backend, backends.BuildahBackend):
                self._pull_buildah(backend, pull_job, base, pull_credential)
                continue
            self.writer.line(f"Pulling base image {base.name}")
            try:
                backend.pull(pull_job, base.name)
            except backends.BuildFailed as e:
                raise backends.BuildFailed(self._pull_hint(base, str(e))) from None

        self.phase(BUILDING)
        backend.build(job)
        if self.check_stop():
            raise backends.Stopped(self.stop_reason)

        self.phase(PUSHING)
        digests = []
        for tag in json.loads(build.docker_tags):
            destination = f"{host}/{self.repo.full_name}:{tag}"
            self.writer.line(f"Pushing {destination}")
            digest = backend.push(job, destination)
            if digest not in digests:
                digests.append(digest)
        image_id = backend.config_digest(job)
        self._end(COMPLETE, None, image_id=image_id, manifest_digests=json.dumps(digests))
        if job.cache_repo and isinstance(backend, backends.BuildahBackend):
            self._publish_cache(backend, job)
        return job

    def _publish_cache(self, backend: "backends.BuildahBackend", job) -> None:
        """The layer cache is written after the build is complete (its log is closed: output goes to the
        server log), before this worker takes another build. A failure costs only a cache miss later."""
        # Every step should be a hit in the local store; a miss (e.g. an ADD of a URL that changed) would
        # run a step again, so this gets a short deadline of its own, well within the credential's life.
        deadline = time.monotonic() + min(self.config.builds.timeout_seconds, 600)
        quiet = backends.Job(**{**job.__dict__, "on_line": lambda line: None, "on_idle": lambda: None,
                                "check_stop": lambda: "timeout" if time.monotonic() > deadline
                                else "stopping" if self.worker.stopping.is_set() else None})
        started = time.monotonic()
        # The build's credential ended with it: one again, for the layer cache only, while this lasts.
        secret = builds.issue_credential(self.build)
        self._authfile(job.authfile, {h: ("$build", secret) for h in self.registry_hosts}, backend.user)
        try:
            backend.publish_cache(quiet)
            log.info("build %s: layer cache published in %.1f s", self.build.uuid, time.monotonic() - started)
        except Exception as e:  # the build is complete whatever happens here; a later build misses the cache
            log.warning("build %s: the layer cache was not published: %s", self.build.uuid, e)
        finally:
            builds.revoke_credential(self.build)

    # -- base images ---------------------------------------------------------------------------------------
    def _pull_buildah(self, backend: "backends.BuildahBackend", job, base, credential) -> None:
        """Pull a base image with this build's pull credential, unless the registry, asked with that very
        credential (a HEAD, as the pull would), names a manifest digest the shared store already holds under
        the same name: that image is then exactly what the pull would store. Whatever the credential cannot
        read is pulled (and refused by the registry), so a private base another build stored here is never
        used by a build that could not pull it."""
        local = None
        if base.domain in self.worker.local_names:
            digest = images.readable_digest(self.config.build_registry_url, base, credential)
            if digest is not None:
                local = backend.image_info(job, base.name)
                if local is not None and local.digest == digest:
                    self.writer.line(f"Base image {base.name} is here already ({digest}, readable with this "
                                     "build's credentials)")
                else:
                    local = None
        if local is None:
            self.writer.line(f"Pulling base image {base.name}")
            try:
                backend.pull(job, base.name)
            except backends.BuildFailed as e:
                raise backends.BuildFailed(self._pull_hint(base, str(e))) from None
            local = backend.image_info(job, base.name)
        triggers = local.onbuild if local is not None else []
        if any("from=" in t.lower() for t in triggers):
            raise backends.BuildFailed(
                f"Base image {base.name} has ONBUILD instructions that read other images "
                f"({'; '.join(t for t in triggers if 'from=' in t.lower())}): builds here name every "
                "image they read in their own Dockerfile")

    def _check_base_images(self, bases: list) -> Account | None:
        """Decide who pulls each base image from this Slipway, refusing with a clear message what would fail.

        A pull robot (given with the build or by its trigger) pulls everything. Otherwise a build started by
        hand pulls, with its own credential, the repositories named in FROM that its requester can read, and
        a build started by a trigger pulls anonymously (Quay: private bases need the trigger's pull robot).
        """
        build = self.build
        robot = build.pull_robot if build.pull_robot_id is not None else None
        requester = None
        if robot is None and build.trigger_id is None and build.requested_by_id is not None:
            account = Account.get_or_none(Account.id == build.requested_by_id)
            requester = identity_for(account, via="build_requester") if account is not None else None
        readable = []
        for base in bases:
            if base.domain not in self.worker.local_names:
                self._check_remote_registry(base)
                continue
            repo = repos.find(base.path) if base.path.count("/") == 1 else None
            public = repo is not None and repo.visibility == PUBLIC
            if robot is not None:
                if not public and (repo is None or not can(identity_for(robot, via="robot_token"), "pull", repo)):
                    raise backends.BuildFailed(
                        f"Could not pull base image {base.name}: the pull robot {robot.name} cannot read repository "
                        f"{base.path} (or it does not exist). Grant {robot.name} read access to {base.path}.")
            elif requester is not None:
                if repo is None or not can(requester, "pull", repo):
                    raise backends.BuildFailed(
                        f"Could not pull base image {base.name}: repository {base.path} does not exist or "
                        f"{requester.name} (who started this build) cannot read it. Ask an administrator of "
                        f"{base.path.split('/')[0]} for read access, or make the repository public.")
                readable.append(repo.id)
            elif not public:
                trigger = self.build.trigger_uuid or "<trigger id>"
                raise backends.BuildFailed(
                    f"Could not pull base image {base.name}: repository {base.path} is private (or does not exist), "
                    f"and builds started by a trigger pull private base images as the trigger's pull robot. Set "
                    f"one with PUT /api/v1/repository/{self.repo.full_name}/trigger/{trigger} "
                    '{"pull_robot": "<namespace>+<robot>"} and grant that robot read access to '
                    f"{base.path}.")
        Build.update(base_repositories=json.dumps(readable)).where(Build.id == build.id).execute()
        return robot

    def _check_remote_registry(self, base) -> None:
        """A base image from elsewhere: the worker pulls it on its own network, so the registry's address
        passes the same rule as every outgoing request (no loopback or private address unless allowed)."""
        domain = "registry-1.docker.io" if base.domain == "docker.io" else base.domain
        host, _, port = domain.rpartition(":") if not domain.endswith("]") and ":" in domain else (domain, "", "")
        host = host.strip("[]")
        try:
            outgoing.check_host(host, int(port) if port.isdigit() else 443, self.config.network, f"docker://{base.name}")
        except Invalid as e:
            raise backends.BuildFailed(f"Could not pull base image {base.name}: {e.message}") from None

    def _pull_hint(self, base, error: str) -> str:
        if "unauthorized" in error.lower() or "denied" in error.lower() or "authentication required" in error.lower():
            how = ("set a pull robot (\"pull_robot\") that can read it" if self.build.trigger_id is not None
                   else "check that the repository exists and that you can read it")
            return f"{error} ({base.name} could not be read with this build's credentials: {how})"
        return error

    def _fetch_context(self, workdir: Path, root: Path) -> None:
        build = self.build
        limits = contexts.Limits(max_bytes=self.config.builds.max_context_bytes)
        source = workdir / "source"
        if build.source == "upload":
            key = filedrop_key(build.resource_key)
            with open(source, "wb") as f:
                for data in self.worker.storage.upload_read(key):
                    f.write(data)
            kind = contexts.materialize(source, root, limits)
        elif build.source == "archive_url":
            self.writer.line(f"Downloading {redact.url(build.archive_url)}")
            contexts.download(build.archive_url, source, self.config.network, self.config.builds.max_context_bytes)
            kind = contexts.materialize(source, root, limits)
        else:  # git: a trigger's build, cloned from what the trigger hands over
            kind = clone.clone(self.worker.hooks.git_source(build), root, self.config, self.writer)
        self.writer.line(f"Build context ready ({kind})")

    def _cache_repo(self) -> str:
        host = self.config.build_registry_url.split("://", 1)[1]
        name = f"{self.repo.full_name}/{builds.CACHE_SUFFIX}"
        if repos.find(name) is None:
            repos.create(name, builds.build_identity(self.build),
                         description=f"Layer cache of builds of {self.repo.full_name}")
        return f"{host}/{name}"

    @staticmethod
    def _authfile(path: Path, credentials: dict, user) -> Path:
        auths = {host: {"auth": base64.b64encode(f"{name}:{secret}".encode()).decode()}
                 for host, (name, secret) in credentials.items()}
        sandbox.write_private(path, json.dumps({"auths": auths}), user)
        return path

    def _registries_conf(self, workdir: Path, host: str, user) -> Path:
        """Every name of this Slipway (localhost, 127.0.0.1, ::1, the public host, with its port) is pulled
        from where the worker reaches it, over the transport it speaks; the relay inside the sandbox too."""
        lines = ["unqualified-search-registries = []"]
        for name in sorted({host, sandbox.RELAY_HOST, *self.worker.local_names}):
            location = sandbox.RELAY_HOST if name == sandbox.RELAY_HOST else host
            lines += ["[[registry]]", f'prefix = "{name}"', f'location = "{location}"', "insecure = true"]
        path = workdir / "registries.conf"
        sandbox.write_private(path, "\n".join(lines) + "\n", user)
        return path


class WorkerPool:
    """Build worker threads in this process (the job that takes builds back from dead workers is
    ``reap``, scheduled separately by ``builder.jobs``)."""

    def __init__(self, config, storage: Storage, count: int, hooks: BuildHooks):
        self.config = config
        self.stop_event = threading.Event()
        self.threads = []
        backend = None
        if count:
            try:
                backend = backends.make_backend(config)
                if isinstance(backend, backends.BuildahBackend):
                    sandbox.check_reachable(work_root_of(config, backend) / "x", backend.user)
                    for line in backend.describe():
                        log.info("build workers: %s", line)
                    if not backend.policy.namespaces:
                        log.warning("build workers: Slipway is not running as root, so RUN steps are not fenced "
                                    "off (no build user, no namespaces): run it as root, or use workers you "
                                    "trust every builder with")
                    remove_leftovers(config, backend)
            except (sandbox.SandboxError, ValueError) as e:
                # Builds are never run outside the sandbox: they wait in the queue until this is fixed.
                log.error("build workers NOT started: %s", e)
                count = 0
        for i in range(count):
            worker = Worker(config, storage, hooks, backend)
            thread = threading.Thread(target=worker.run, args=(self.stop_event,), name=f"build-worker-{i}",
                                      daemon=True)
            self.threads.append(thread)

    def start(self) -> "WorkerPool":
        for thread in self.threads:
            thread.start()
        return self

    def stop(self, timeout: float = 10) -> None:
        self.stop_event.set()
        WAKE.set()
        for thread in self.threads:
            thread.join(timeout)


def work_root_of(config, backend) -> Path:
    """Where each running build gets a private directory: ``<build storage>/work`` (the build user's) for
    buildah, ``<data>/builder-work`` for a Docker engine."""
    if isinstance(backend, backends.BuildahBackend):
        return sandbox.owned_dir(backend.root / "work", backend.user)
    root = config.data_path / "builder-work"
    root.mkdir(parents=True, exist_ok=True)
    return root


class _Running:
    """How many builds a backend (shared by a pool's worker threads) is running; the cleanup that needs
    none running holds the lock, so no build of this process starts meanwhile."""

    _lock = threading.Lock()

    def __init__(self):
        self.count = 0
        self.lock = threading.Lock()

    @classmethod
    def of(cls, backend) -> "_Running":
        with cls._lock:
            if not hasattr(backend, "_running"):
                backend._running = cls()
            return backend._running

    def enter(self) -> None:
        with self.lock:
            self.count += 1

    def leave(self, when_idle) -> None:
        with self.lock:
            self.count -= 1
            if self.count == 0:
                when_idle()


_storage_locks: dict = {}


def remove_leftovers(config, backend: backends.BuildahBackend, only_containers: bool = False) -> None:
    """What killed builds leave: work directories and buildah working containers.

    Done at worker start and when this worker has no build running, and only while no other process uses the
    same build storage (an exclusive lock on it; every worker process holds it shared while it runs).
    """
    lock_path = backend.root / ".workers.lock"
    fd = _storage_locks.get(str(lock_path))
    if fd is None:
        sandbox.owned_dir(backend.root, backend.user)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        _storage_locks[str(lock_path)] = fd
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fcntl.flock(fd, fcntl.LOCK_SH)
        log.info("build workers: another process uses %s; leftovers are left to it", backend.root)
        return
    try:
        removed_dirs = 0
        if not only_containers:
            for leftover in work_root_of(config, backend).glob("build-*"):
                shutil.rmtree(leftover, ignore_errors=True)
                removed_dirs += 1
            for probe in backend.root.glob("probe-*"):  # a storage probe of a process that died meanwhile
                pid = probe.name.split("-")[1]
                if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                    shutil.rmtree(probe, ignore_errors=True)
        removed = backend.remove_containers()
        if removed or removed_dirs:
            log.info("build workers: removed %d working containers and %d work directories left by killed builds",
                     removed, removed_dirs)
    finally:
        fcntl.flock(fd, fcntl.LOCK_SH)


def reap(config, hooks: BuildHooks) -> int:
    try:
        return queue.reap_expired_leases(config, hooks)
    finally:
        database.close()


def drop_stale_filedrops(storage: Storage, max_age_seconds: int) -> int:
    """Uploaded contexts never used by a build (or long used) are removed."""
    cutoff = now_ms() - max_age_seconds * 1000
    count = 0
    for drop in FileDrop.select().where(FileDrop.created_at < cutoff):
        in_use = Build.select().where((Build.resource_key == drop.file_id) & Build.phase.not_in(TERMINAL)).exists()
        if in_use:
            continue
        storage.upload_delete(filedrop_key(drop.file_id))
        drop.delete_instance()
        count += 1
    return count

