"""Image build backends behind one interface: the buildah CLI (default) and a Docker engine (docker SDK).

A backend pulls base images, builds, pushes and forgets an image. Output goes
line by line to ``on_line``. The job's ``check_stop()`` is consulted between lines
and at least every 50 ms; when it answers a reason (cancelled, timed out, over a
limit) the running command is stopped and ``Stopped`` is raised.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import selectors
import shlex
import shutil
import signal
import subprocess
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from slipway import extras

from . import sandbox as sandbox_mod


class BuildFailed(Exception):
    """The user's build failed (bad Dockerfile, failing RUN, unknown base image): shown as the build's error."""


class NothingToBuild(Exception):
    """The source, once fetched, asks for no build (a trigger's path filters): the build ends cancelled,
    with this reason."""


class Stopped(Exception):
    """The build was cancelled or ran out of time; ``reason`` says which."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class Job:
    """What one build needs from a backend."""

    context_dir: Path
    dockerfile: Path
    image: str  # the local name of the result
    build_args: dict = field(default_factory=dict)
    target: str | None = None
    authfile: Path | None = None  # credentials for base images and the push
    registries_conf: Path | None = None  # marks Slipway's registry insecure when it is plain HTTP
    cache_repo: str | None = None  # remote layer cache (buildah --cache-from/--cache-to)
    on_line: Callable[[str], None] = print
    on_idle: Callable[[], None] = lambda: None
    check_stop: Callable[[], str | None] = lambda: None
    workdir: Path | None = None  # the build's own directory (TMPDIR, digest file); default: context's parent


class Backend(ABC):
    name = ""

    @abstractmethod
    def pull(self, job: Job, image: str) -> None: ...

    @abstractmethod
    def build(self, job: Job) -> None: ...

    @abstractmethod
    def push(self, job: Job, destination: str) -> str:
        """Push the built image to ``destination`` (host/ns/repo:tag); returns the manifest digest."""

    @abstractmethod
    def config_digest(self, job: Job) -> str: ...

    @abstractmethod
    def remove(self, job: Job) -> None: ...


def run_streaming(cmd: list[str], env: dict, job: Job, tail: int = 20, run_as=None,
                  sandbox: "sandbox_mod.Sandboxed | None" = None) -> tuple[int, list[str]]:
    """Run ``cmd``, feeding its output (stdout and stderr) line by line to the job.

    Returns (exit code, the last ``tail`` lines). Stops the process group and raises
    Stopped when ``job.check_stop()`` answers. ``run_as``: the build user to run as;
    ``sandbox``: run in the build sandbox's namespaces (the command is wrapped).
    """
    kwargs: dict = {"preexec_fn": sandbox_mod.die_with_parent, "stdin": subprocess.DEVNULL}
    if sandbox is not None:
        kwargs = {"preexec_fn": sandbox.preexec, "stdin": sandbox.gate_r}
        cmd = sandbox.wrap(cmd, env)
    elif run_as is not None and os.geteuid() == 0:
        kwargs.update(user=run_as.uid, group=run_as.gid, extra_groups=[])
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                            **kwargs)
    if sandbox is not None:
        try:
            sandbox.started(proc)
        except Exception:
            _stop(proc)
            proc.stdout.close()
            raise
    last = deque(maxlen=tail)
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    buffer = b""
    try:
        while True:
            reason = job.check_stop()
            if reason:
                _stop(proc)
                raise Stopped(reason)
            ready = selector.select(timeout=0.05)
            if not ready:
                job.on_idle()
                if proc.poll() is not None:
                    break
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for raw in lines:
                line = raw.decode("utf-8", "replace").rstrip("\r")
                last.append(line)
                job.on_line(line)
        if buffer:
            line = buffer.decode("utf-8", "replace")
            last.append(line)
            job.on_line(line)
        return proc.wait(), list(last)
    finally:
        selector.close()
        proc.stdout.close()
        if proc.poll() is None:
            _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the whole process group, then SIGKILL what is left after 5 s."""
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def failure_reason(lines: list[str], fallback: str) -> str:
    """The most telling line of a failed command's output (buildah ends with ``Error: ...``)."""
    for line in reversed(lines):
        text = line.strip()
        if text.lower().startswith("error:") or "level=error" in text or text.startswith("error "):
            return text.split("msg=", 1)[-1].strip('"') if "msg=" in text else text
    meaningful = [line.strip() for line in lines if line.strip()]
    return meaningful[-1] if meaningful else fallback


@dataclass
class Limits:
    """Per-build caps (0: none); see ``builds.max_*``."""

    memory_mb: int = 0
    processes: int = 0
    cpu_seconds: int = 0
    disk_mb: int = 0


# Storage drivers in the order they are tried, with the options that select them.
DRIVERS = {
    "overlay": ("overlay", []),
    "fuse-overlayfs": ("overlay", ["--storage-opt", "overlay.mount_program=/usr/bin/fuse-overlayfs"]),
    "vfs": ("vfs", []),
}


@dataclass
class LocalImage:
    digest: str  # the digest of the manifest it was pulled with
    onbuild: list[str]


KEPT_LAYER = "localhost/slipway-layer"  # finished images kept as the last step's layer cache


class BuildahBackend(Backend):
    """buildah, rootless as the build user; ``bud`` in the build sandbox (see ``builder/sandbox.py``)."""

    name = "buildah"

    def __init__(self, storage_root: Path, isolation: str = "chroot", storage_driver: str = "auto",
                 layers: bool = True, policy: sandbox_mod.Policy | None = None, limits: Limits | None = None,
                 oci_runtime: str = "runc"):
        if isolation not in ("chroot", "oci"):
            raise ValueError(f"builds.isolation must be chroot or oci, not '{isolation}'")
        if storage_driver not in ("auto", *DRIVERS):
            raise ValueError(f"builds.storage_driver must be auto, {', '.join(DRIVERS)}, not '{storage_driver}'")
        self.root = Path(storage_root)
        self.isolation = isolation
        self.requested_driver = storage_driver
        self.layers = layers
        self.policy = policy or sandbox_mod.Policy(user=None, network="public")
        self.user = self.policy.user if os.geteuid() == 0 else None
        self.limits = limits or Limits()
        self.oci_runtime = oci_runtime
        self._driver: str | None = None
        self.notes: list[str] = []

    # -- where and how buildah runs ----------------------------------------------------------------------
    @property
    def storage_driver(self) -> str:
        if self._driver is None:
            self.prepare()
        return self._driver

    def prepare(self) -> None:
        """Once per worker: the storage directories (owned by the build user) and the driver that works here."""
        sandbox_mod.owned_dir(self.root, self.user)
        sandbox_mod.check_reachable(self.root, self.user)
        if self.requested_driver != "auto":
            self._driver = self.requested_driver
            self.notes = [f"storage driver {self._driver} (builds.storage_driver)"]
        else:
            tried = []
            for driver in DRIVERS:
                error = self._probe(driver)
                if error is None:
                    self._driver = driver
                    break
                tried.append(f"{driver}: {error}")
            else:
                raise sandbox_mod.SandboxError("no buildah storage driver works here: " + "; ".join(tried))
            self.notes = [f"storage driver {self._driver} (probed" + (f"; not usable: {'; '.join(tried)}" if tried
                                                                     else "") + ")"]
        if self.isolation == "oci":
            runtime = shutil.which(self.oci_runtime)
            if runtime is None:
                raise sandbox_mod.SandboxError(f"builds.isolation is oci but the runtime '{self.oci_runtime}' "
                                               "(builds.oci_runtime) is not installed")
            self.oci_runtime = runtime
        isolation = f"oci ({self.oci_runtime})" if self.isolation == "oci" else self.isolation
        self.notes.append(f"isolation {isolation}, {self.policy.describe()}")

    def describe(self) -> list[str]:
        """What this backend uses, for the worker's start-up log and each build log's first lines."""
        self.storage_driver  # noqa: B018 (probes once)
        return list(self.notes)

    def _dirs(self, driver: str) -> tuple[Path, Path]:
        base = sandbox_mod.owned_dir(self.root / driver, self.user)
        return (sandbox_mod.owned_dir(base / "storage", self.user), sandbox_mod.owned_dir(base / "run", self.user))

    def _base(self, driver: str | None = None) -> list[str]:
        driver = driver or self.storage_driver
        graph, run = self._dirs(driver)
        name, options = DRIVERS[driver]
        return ["buildah", "--root", str(graph), "--runroot", str(run), "--storage-driver", name, *options]

    def _env(self, job: Job | None = None) -> dict:
        xdg = sandbox_mod.owned_dir(self.root / "xdg", self.user)
        # A clean environment: nothing of Slipway's (secrets, database URL) reaches buildah.
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "XDG_RUNTIME_DIR": str(xdg),
               "HOME": self.user.home if self.user else os.environ.get("HOME", "/root"), "LANG": "C.UTF-8",
               "BUILDAH_ISOLATION": self.isolation}
        if job is not None:
            env["TMPDIR"] = str(job.context_dir.parent if job.workdir is None else job.workdir)
            if job.registries_conf:
                env["CONTAINERS_REGISTRIES_CONF"] = str(job.registries_conf)
        return env

    def _probe(self, driver: str) -> str | None:
        """None when ``driver`` can mount a container here (as the build user), else why not."""
        if driver == "fuse-overlayfs" and not Path("/usr/bin/fuse-overlayfs").exists():
            return "fuse-overlayfs is not installed"
        # Its own directory: worker processes sharing this storage may start (and probe) at the same time.
        probe_root = self.root / f"probe-{os.getpid()}-{threading.get_ident()}"
        shutil.rmtree(probe_root, ignore_errors=True)
        sandbox_mod.owned_dir(probe_root, self.user)
        graph = sandbox_mod.owned_dir(probe_root / "storage", self.user)
        run = sandbox_mod.owned_dir(probe_root / "run", self.user)
        name, options = DRIVERS[driver]
        base = shlex.join(["buildah", "--root", str(graph), "--runroot", str(run), "--storage-driver", name, *options])
        script = f'set -e; c=$({base} from scratch); {base} mount "$c" >/dev/null; {base} rm "$c" >/dev/null'
        cmd = ["buildah", "unshare", "sh", "-c", script]
        try:
            result = subprocess.run(cmd, env=self._env(), capture_output=True, text=True, timeout=60,
                                    **self._as_user())
        except (OSError, subprocess.TimeoutExpired) as e:
            return str(e)
        finally:
            subprocess.run(["rm", "-rf", str(probe_root)], capture_output=True, timeout=60)
        if result.returncode != 0:
            lines = (result.stderr or result.stdout).strip().splitlines()
            return failure_reason(lines, f"exit code {result.returncode}")
        return None

    def _as_user(self) -> dict:
        if self.user is None:
            return {}
        return {"user": self.user.uid, "group": self.user.gid, "extra_groups": []}

    def run_buildah(self, args: list[str], job: Job | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
        """A short buildah command as the build user (listing, removing), outside the sandbox."""
        return subprocess.run(self._base() + args, env=self._env(job), capture_output=True, text=True, timeout=timeout,
                              preexec_fn=sandbox_mod.die_with_parent, **self._as_user())

    def _auth(self, job: Job) -> list[str]:
        return ["--authfile", str(job.authfile)] if job.authfile else []

    # -- the backend interface ---------------------------------------------------------------------------
    def pull(self, job: Job, image: str) -> None:
        # --policy=always: the registry checks this build's credentials even when another build already
        # stored the image here (the store is shared); layers already present are not fetched again.
        code, lines = run_streaming(self._base() + ["pull", "--policy=always", *self._auth(job), image],
                                    self._env(job), job, run_as=self.user)
        if code != 0:
            raise BuildFailed(f"Could not pull base image {image}: {failure_reason(lines, 'pull failed')}")

    def build(self, job: Job, publish_cache: bool = False) -> None:
        """``buildah bud`` in the sandbox. The layer cache in the registry is read (``--cache-from``); it is
        written (``--cache-to``) by ``publish_cache``, after the build's result is pushed, so a build is not
        slowed down by uploading every step's layer (the worker does that before its next build)."""
        # --pull=never: only the images the pull phase fetched with this build's credentials.
        cmd = self._base() + ["bud", "--isolation", self.isolation, f"--layers={str(self.layers).lower()}",
                              "--pull=never", *self._auth(job), "-f", str(job.dockerfile), "-t", job.image,
                              "--iidfile", str(self._iidfile(job))]
        if self.isolation == "chroot":
            cmd += ["--cap-drop", "CAP_SYS_CHROOT"]  # the chroot(".") escape needs it
        else:
            cmd += ["--runtime", self.oci_runtime, "--network", "host"]  # host: the sandbox's own namespace
        for key, value in sorted(job.build_args.items()):
            cmd += ["--build-arg", f"{key}={value}"]
        if job.target:
            cmd += ["--target", job.target]
        sandbox = None
        if self.policy.namespaces:
            sandbox = sandbox_mod.Sandboxed(self.policy, name=job.image.rsplit("/", 1)[-1], hide=_others(job))
            cache = f"{sandbox_mod.RELAY_HOST}/{job.cache_repo.split('/', 1)[1]}" if job.cache_repo else None
            cgroup = sandbox.cgroup_for(self.limits.memory_mb * 1024 * 1024, self.limits.processes)
        else:
            cache, cgroup = job.cache_repo, None
        if cache and self.layers:
            cmd += ["--cache-from", cache] + (["--cache-to", cache] if publish_cache else [])
        watch = _LimitWatch(job, cgroup, self.limits, self.root)
        try:
            code, lines = run_streaming(cmd + [str(job.context_dir)], self._env(job), watch.job, run_as=self.user,
                                        sandbox=sandbox)
        except Stopped as e:
            if e.reason.startswith("limit:"):
                raise BuildFailed(e.reason[len("limit:"):]) from None
            raise
        finally:
            hit = cgroup.hit() if cgroup is not None else []
            if sandbox is not None:
                sandbox.close()
        if code != 0:
            if "memory" in hit:
                raise BuildFailed(f"The build ran out of memory: it may use {self.limits.memory_mb} MiB "
                                  "(builds.max_memory_mb)")
            if "pids" in hit:
                raise BuildFailed(f"The build reached its limit of {self.limits.processes} processes "
                                  "(builds.max_processes)")
            raise BuildFailed(failure_reason(lines, f"buildah bud exited with code {code}"))

    def publish_cache(self, job: Job) -> None:
        """After the build: every step's layer into the registry's layer cache, so any worker reuses it.

        The same ``bud`` again, now with ``--cache-to``: every step is a hit in the local store (buildah
        still pushes the cache entry of a hit), so nothing of the user's runs unless the store lost a
        layer meanwhile — which is why this too runs in the sandbox, within the build's limits."""
        if not (job.cache_repo and self.layers):
            return
        self.build(job, publish_cache=True)

    def push(self, job: Job, destination: str) -> str:
        digest_file = (job.workdir or job.context_dir.parent) / "digest"
        sandbox = None
        if self.policy.namespaces and job.cache_repo and self.layers:
            # Through the relay, under the registry name the layer cache was pushed to: buildah then knows
            # which blobs the cache holds and mounts them instead of compressing and uploading them again.
            # No user code runs here; the sandbox (without a network) only gives the relay's address.
            destination = f"{sandbox_mod.RELAY_HOST}/{destination.split('/', 1)[1]}"
            sandbox = sandbox_mod.Sandboxed(dataclasses.replace(self.policy, network="none"),
                                            name=job.image.rsplit("/", 1)[-1] + "-push", hide=_others(job))
        cmd = self._base() + ["push", *self._auth(job), "--digestfile", str(digest_file), job.image,
                              f"docker://{destination}"]
        try:
            code, lines = run_streaming(cmd, self._env(job), job, run_as=self.user, sandbox=sandbox)
        finally:
            if sandbox is not None:
                sandbox.close()
        if code != 0:
            raise RuntimeError(f"pushing to {destination} failed: {failure_reason(lines, f'exit code {code}')}")
        return digest_file.read_text().strip()

    @staticmethod
    def _iidfile(job: Job) -> Path:
        return (job.workdir or job.context_dir.parent) / "image-id"

    def config_digest(self, job: Job) -> str:
        try:  # written by ``bud`` (saves a ``buildah images``)
            image_id = self._iidfile(job).read_text().strip()
            if image_id.startswith("sha256:") and len(image_id) == 71:
                return image_id
        except OSError:
            pass
        out = self.run_buildah(["images", "--no-trunc", "--format", "{{.ID}}", job.image], job, timeout=60)
        image_id = out.stdout.split()[0] if out.returncode == 0 and out.stdout.split() else ""
        return image_id if image_id.startswith("sha256:") else f"sha256:{image_id}" if image_id else ""

    def image_info(self, job: Job, image: str) -> "LocalImage | None":
        """What the local store holds under the name ``image``: its manifest digest and the ONBUILD
        instructions it carries (they run in a build as if written in it); None if it holds nothing.

        The whole ``inspect`` document is parsed here: buildah 1.28's ``--format`` has no ``json`` function
        (``{{json .Docker.Config.OnBuild}}`` failed, and the ONBUILD check saw no instruction at all)."""
        out = self.run_buildah(["inspect", "--type", "image", image], job, timeout=60)
        if out.returncode != 0:
            return None
        try:
            info = json.loads(out.stdout)
            stored = json.loads(info.get("Config") or "{}")  # the image's configuration as stored
        except ValueError:
            return None
        triggers = list(((info.get("Docker") or {}).get("config") or {}).get("OnBuild") or [])
        triggers += [t for t in ((stored.get("config") or {}).get("OnBuild") or []) if t not in triggers]
        return LocalImage(digest=info.get("FromImageDigest") or "", onbuild=[str(t) for t in triggers])

    def remove(self, job: Job) -> None:
        """Drop the build's name from its image.

        With ``--layers`` the finished image is also the cache entry of the last step, which another build
        of the same content may be committing onto at this very moment (it adds its own name to the same
        image). Deleting the image then made that build fail with "image not known", so the image is first
        kept under a name of its own (``localhost/slipway-layer:<id>``, as dangling intermediate layers are
        kept) and only this build's name is removed; nothing is deleted while another build may use it."""
        image_id = self.config_digest(job).removeprefix("sha256:")
        if image_id and self.layers:
            self.run_buildah(["tag", job.image, f"{KEPT_LAYER}:{image_id}"], job, timeout=60)
            self.run_buildah(["rmi", job.image], job)
        elif image_id:
            self.run_buildah(["rmi", "-f", job.image], job)

    def remove_containers(self) -> int:
        """Remove every working container (what a killed build leaves); the worker calls this when no build runs."""
        listed = self.run_buildah(["containers", "--quiet", "--all"])
        ids = listed.stdout.split() if listed.returncode == 0 else []
        if ids:
            self.run_buildah(["rm", *ids], timeout=300)
        return len(ids)


def _others(job: Job) -> list:
    """The other builds' work directories as they are now (hidden in this command's mount namespace)."""
    if job.workdir is None:
        return []
    return [p for p in job.workdir.parent.iterdir() if p != job.workdir]


class _LimitWatch:
    """Wraps a job's stop check with the build's CPU-time and disk limits."""

    def __init__(self, job: Job, cgroup, limits: Limits, storage: Path):
        self.cgroup = cgroup
        self.limits = limits
        self.storage = storage
        self.disk_start = sandbox_mod.storage_filesystem_used(storage) if limits.disk_mb else 0
        self.last_check = 0.0
        self.job = Job(**{**job.__dict__, "check_stop": self.check})
        self._inner = job.check_stop

    def check(self) -> str | None:
        reason = self._inner()
        if reason:
            return reason
        now = time.monotonic()
        if now - self.last_check < 0.5:
            return None
        self.last_check = now
        if self.cgroup is not None and self.limits.cpu_seconds and self.cgroup.cpu_seconds() > self.limits.cpu_seconds:
            return (f"limit:The build used more than its {self.limits.cpu_seconds} s of CPU time "
                    "(builds.max_cpu_seconds) and was stopped")
        if self.limits.disk_mb:
            grown = sandbox_mod.storage_filesystem_used(self.storage) - self.disk_start
            if grown > self.limits.disk_mb * 1024 * 1024:
                return (f"limit:The build wrote more than {self.limits.disk_mb} MiB to the build storage "
                        "(builds.max_disk_mb) and was stopped")
        return None


class DockerBackend(Backend):
    """A Docker engine reached through the docker SDK (when the operator configures ``builds.docker_host``)."""

    name = "docker"

    def __init__(self, docker_host: str, client=None):
        if client is None:
            extras.require("docker", "The docker build backend (builds.backend: docker)")
            import docker

            client = docker.APIClient(base_url=docker_host, timeout=600)
        self.client = client
        self.credentials: dict | None = None

    def use_credentials(self, auths: dict) -> None:
        """``{"host": {"username", "password"}}`` for pulls and pushes."""
        self.credentials = auths

    def _auth_for(self, image: str) -> dict | None:
        host = image.split("/", 1)[0]
        return (self.credentials or {}).get(host)

    def _consume(self, job: Job, stream) -> list[dict]:
        seen = []
        for item in stream:
            reason = job.check_stop()
            if reason:
                raise Stopped(reason)
            seen.append(item)
            if "error" in item:
                raise BuildFailed(str(item.get("error")).strip())
            text = item.get("stream") or item.get("status")
            if text:
                for line in str(text).rstrip("\n").split("\n"):
                    job.on_line(line if "progress" not in item else f"{line} {item['progress']}")
        return seen

    def pull(self, job: Job, image: str) -> None:
        repository, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "latest")
        try:
            self._consume(job, self.client.pull(repository, tag=tag or "latest", stream=True, decode=True,
                                                auth_config=self._auth_for(image)))
        except BuildFailed as e:
            raise BuildFailed(f"Could not pull base image {image}: {e}") from None

    def build(self, job: Job) -> None:
        stream = self.client.build(path=str(job.context_dir),
                                   dockerfile=str(job.dockerfile.relative_to(job.context_dir)),
                                   tag=job.image, buildargs=job.build_args or None, target=job.target, rm=True,
                                   forcerm=True, pull=False, decode=True)
        self._consume(job, stream)

    def push(self, job: Job, destination: str) -> str:
        repository, tag = destination.rsplit(":", 1)
        self.client.tag(job.image, repository, tag)
        digest = ""
        for item in self._consume(job, self.client.push(repository, tag=tag, stream=True, decode=True,
                                                        auth_config=self._auth_for(destination))):
            digest = (item.get("aux") or {}).get("Digest", digest)
        if not digest:
            raise RuntimeError(f"the Docker engine did not report a digest for {destination}")
        return digest

    def config_digest(self, job: Job) -> str:
        return self.client.inspect_image(job.image)["Id"]

    def remove(self, job: Job) -> None:
        try:
            self.client.remove_image(job.image, force=True)
        except Exception:  # an image that is already gone is fine
            pass


def make_backend(config) -> Backend:
    if config.builds.backend == "buildah":
        policy = build_policy(config)
        return BuildahBackend(build_root(config, policy.user), config.builds.isolation, config.builds.storage_driver,
                              config.builds.layers, policy=policy,
                              limits=Limits(config.builds.max_memory_mb, config.builds.max_processes,
                                            config.builds.max_cpu_seconds, config.builds.max_disk_mb),
                              oci_runtime=config.builds.oci_runtime)
    if config.builds.backend == "docker":
        if not config.builds.docker_host:
            raise ValueError("builds.backend is docker but builds.docker_host is not set")
        return DockerBackend(config.builds.docker_host)
    raise ValueError(f"unknown build backend '{config.builds.backend}' (use buildah or docker)")


def build_root(config, user: sandbox_mod.BuildUser | None) -> Path:
    """The build storage: ``builds.storage_root``; else, with a build user, a directory of this Slipway's in
    its home (``/var/lib/slipway-build/slipway-<hash of the data directory>``), so the data directory stays
    private to the service account wherever it is; else ``<data>/buildah``."""
    if config.builds.storage_root:
        return Path(config.builds.storage_root).resolve()
    if user is not None:
        digest = hashlib.sha256(str(config.data_path).encode()).hexdigest()[:12]
        return Path(user.home) / f"slipway-{digest}"
    return config.data_path / "buildah"


def build_policy(config) -> sandbox_mod.Policy:
    """The sandbox rules from the configuration; the build user must exist when Slipway runs as root."""
    if config.builds.network not in ("public", "none"):
        raise ValueError(f"builds.network must be public or none, not '{config.builds.network}'")
    user = sandbox_mod.BuildUser.lookup(config.builds.user) if os.geteuid() == 0 else None
    registry = urlsplit(config.build_registry_url)
    return sandbox_mod.Policy(
        user=user, network=config.builds.network, allow_private=config.network.allow_private,
        allowlist=tuple(config.network.allowlist),
        registry=(registry.hostname, registry.port or (443 if registry.scheme == "https" else 80)),
        registry_tls=registry.scheme == "https")
