"""Image build backends behind one interface: the buildah CLI (default) and a Docker engine (docker SDK).

A backend pulls base images, builds, pushes and forgets an image. Output goes
line by line to ``on_line``. ``Stopper.check()`` is consulted between lines and
at least every 50 ms; when it answers (cancelled, timed out) the running command
is stopped and ``Stopped`` is raised.
"""
from __future__ import annotations

import ctypes
import os
import selectors
import signal
import subprocess
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


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


def run_streaming(cmd: list[str], env: dict, job: Job, tail: int = 20) -> tuple[int, list[str]]:
    """Run ``cmd``, feeding its output (stdout and stderr) line by line to the job.

    Returns (exit code, the last ``tail`` lines). Stops the process group and raises
    Stopped when ``job.check_stop()`` answers.
    """
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True, preexec_fn=_die_with_worker)
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


def _die_with_worker() -> None:
    """In the child: get SIGKILL if the worker dies, so a killed worker leaves no build running."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


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


class BuildahBackend(Backend):
    """buildah with chroot isolation and vfs storage by default: no daemon, no privileges beyond root."""

    name = "buildah"

    def __init__(self, storage_root: Path, isolation: str = "chroot", storage_driver: str = "vfs",
                 layers: bool = True):
        self.root = Path(storage_root)
        self.isolation = isolation
        self.storage_driver = storage_driver
        self.layers = layers

    def _base(self) -> list[str]:
        return ["buildah", "--root", str(self.root / "storage"), "--runroot", str(self.root / "run"),
                "--storage-driver", self.storage_driver]

    def _env(self, job: Job) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REGISTRY_AUTH_FILE", "CONTAINERS_"))}
        env["BUILDAH_ISOLATION"] = self.isolation
        env["TMPDIR"] = str(job.context_dir.parent)
        if job.registries_conf:
            env["CONTAINERS_REGISTRIES_CONF"] = str(job.registries_conf)
        return env

    def _auth(self, job: Job) -> list[str]:
        return ["--authfile", str(job.authfile)] if job.authfile else []

    def pull(self, job: Job, image: str) -> None:
        # --policy=always: the registry checks this build's credentials even when another build already
        # stored the image here (the store is shared); layers already present are not fetched again.
        code, lines = run_streaming(self._base() + ["pull", "--policy=always", *self._auth(job), image],
                                    self._env(job), job)
        if code != 0:
            raise BuildFailed(f"Could not pull base image {image}: {failure_reason(lines, 'pull failed')}")

    def build(self, job: Job) -> None:
        # --pull=never: only the images the pull phase fetched with this build's credentials.
        cmd = self._base() + ["bud", "--isolation", self.isolation, f"--layers={str(self.layers).lower()}",
                              "--pull=never", *self._auth(job), "-f", str(job.dockerfile), "-t", job.image]
        for key, value in sorted(job.build_args.items()):
            cmd += ["--build-arg", f"{key}={value}"]
        if job.target:
            cmd += ["--target", job.target]
        if job.cache_repo and self.layers:
            cmd += ["--cache-from", job.cache_repo, "--cache-to", job.cache_repo]
        code, lines = run_streaming(cmd + [str(job.context_dir)], self._env(job), job)
        if code != 0:
            raise BuildFailed(failure_reason(lines, f"buildah bud exited with code {code}"))

    def push(self, job: Job, destination: str) -> str:
        digest_file = job.context_dir.parent / "digest"
        cmd = self._base() + ["push", *self._auth(job), "--digestfile", str(digest_file), job.image,
                              f"docker://{destination}"]
        code, lines = run_streaming(cmd, self._env(job), job)
        if code != 0:
            raise RuntimeError(f"pushing to {destination} failed: {failure_reason(lines, f'exit code {code}')}")
        return digest_file.read_text().strip()

    def config_digest(self, job: Job) -> str:
        out = subprocess.run(self._base() + ["images", "--no-trunc", "--format", "{{.ID}}", job.image],
                             env=self._env(job), capture_output=True, text=True, timeout=60)
        image_id = out.stdout.split()[0] if out.returncode == 0 and out.stdout.split() else ""
        return image_id if image_id.startswith("sha256:") else f"sha256:{image_id}" if image_id else ""

    def remove(self, job: Job) -> None:
        subprocess.run(self._base() + ["rmi", "-f", job.image], env=self._env(job), capture_output=True, timeout=120)


class DockerBackend(Backend):
    """A Docker engine reached through the docker SDK (when the operator configures ``builds.docker_host``)."""

    name = "docker"

    def __init__(self, docker_host: str, client=None):
        import docker

        self.client = client or docker.APIClient(base_url=docker_host, timeout=600)
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
        stream = self.client.build(path=str(job.context_dir), dockerfile=str(job.dockerfile.relative_to(job.context_dir)),
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
        return BuildahBackend(config.buildah_root, config.builds.isolation, config.builds.storage_driver,
                              config.builds.layers)
    if config.builds.backend == "docker":
        if not config.builds.docker_host:
            raise ValueError("builds.backend is docker but builds.docker_host is not set")
        return DockerBackend(config.builds.docker_host)
    raise ValueError(f"unknown build backend '{config.builds.backend}' (use buildah or docker)")

