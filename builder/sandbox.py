"""The build sandbox: buildah never runs as root, and user code (``RUN`` steps) runs fenced off from the host.

Every buildah command runs as the **build user** (``builds.user``, ``slipway-build``), rootless, with
its own subordinate uid/gid range: uid 0 inside a build is an unprivileged uid of that range on the host.
``buildah bud``, the one command that runs user code, additionally starts in fresh PID, mount, IPC, UTS
and network namespaces, made here (as root) before the switch to the build user:

- **PID**: the build sees and can signal only its own processes; when buildah ends, the kernel kills
  whatever the build left running.
- **Mount**: a fresh ``/proc``; the other builds' work directories are hidden.
- **Network**: ``builds.network: none`` gives loopback only; ``public`` (the default) adds slirp4netns
  with the host's loopback switched off and the private, link-local, shared and multicast ranges
  routed into a black hole unless ``network.allow_private`` (``network.allowlist`` CIDRs are routed
  out anyway). The layer cache in Slipway's registry is reached through :class:`RegistryRelay`, which
  listens on 127.0.0.1:5000 inside the namespace and passes ``/v2/`` requests only.
- **Capabilities**: ``CAP_SYS_CHROOT`` is dropped from ``RUN`` steps, which closes the classic
  ``chroot(".")`` escape of chroot isolation.
- **Limits**: a cgroup (v1 or v2) per build caps memory and processes; CPU time is read from it and the
  worker stops the build past ``builds.max_cpu_seconds``; disk growth is watched the same way.
"""
from __future__ import annotations

import ctypes
import ipaddress
import logging
import os
import pwd
import re
import select
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from slipway.processes import die_with_parent, libc

log = logging.getLogger("slipway.builder.sandbox")

CLONE_NEWNET = 0x40000000
# Inside the build's network namespace: where the registry relay listens.
RELAY_HOST = "127.0.0.1:5000"
REALM = re.compile(rb'realm="[^"]*/v2/auth"')
# Never reachable from a RUN step unless the operator allows private addresses (RFC 1918, 6598, 3927,
# 5771, and "this network"). 127/8 inside the namespace is the namespace's own loopback.
BLOCKED_RANGES = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16",
                  "224.0.0.0/4", "240.0.0.0/4", "0.0.0.0/8", "192.0.0.0/24", "198.18.0.0/15")
# slirp4netns's own small network (its gateway 10.0.2.2 is the host loopback, switched off; .3 is DNS).
SLIRP_CIDR = "10.0.2.0/24"


class SandboxError(Exception):
    """The sandbox cannot be set up on this machine (a missing user, package or kernel feature)."""


@dataclass(frozen=True)
class BuildUser:
    name: str
    uid: int
    gid: int
    home: str

    @classmethod
    def lookup(cls, name: str) -> "BuildUser":
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise SandboxError(f"the build user '{name}' does not exist: run scripts/install.sh (it creates it "
                               f"with a subordinate uid range), or set builds.user") from None
        if entry.pw_uid == 0:
            raise SandboxError(f"builds.user '{name}' is root: builds must run as an unprivileged user")
        for path in ("/etc/subuid", "/etc/subgid"):
            if not _has_subordinate_range(path, name, entry.pw_uid):
                raise SandboxError(f"the build user '{name}' has no range in {path}: "
                                   f"usermod --add-subuids 524288-589823 --add-subgids 524288-589823 {name}")
        return cls(name, entry.pw_uid, entry.pw_gid, entry.pw_dir)


def _has_subordinate_range(path: str, name: str, uid: int) -> bool:
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return False
    return any(line.split(":")[0] in (name, str(uid)) for line in lines if line.count(":") == 2)


def owned_dir(path: Path, user: BuildUser | None, mode: int = 0o700) -> Path:
    """``path`` (made if missing) owned by the build user, private to it. Parents made on the way are
    0711 (the server's umask would make them 0700): the build user walks through them, nobody lists them."""
    for parent in reversed(path.parents):
        if not parent.exists():
            parent.mkdir(exist_ok=True)
            parent.chmod(0o711)
    path.mkdir(exist_ok=True)
    if user is not None and os.geteuid() == 0:
        os.chown(path, user.uid, user.gid)
    path.chmod(mode)
    return path


def check_reachable(path: Path, user: BuildUser | None) -> None:
    """The build user must be able to walk down to its directories (but list nothing on the way)."""
    if user is None or os.geteuid() != 0:
        return
    for parent in Path(path).resolve().parents:
        st = parent.stat()
        if not st.st_mode & 0o001 and st.st_uid != user.uid:
            raise SandboxError(f"the build user '{user.name}' cannot reach {path}: {parent} is not traversable "
                               f"(chmod o+x {parent}, or set builds.storage_root and the data directory elsewhere)")


def give_tree(root: Path, user: BuildUser | None) -> None:
    """Hand a directory tree (a build context unpacked as root) to the build user."""
    if user is None or os.geteuid() != 0:
        return
    for dirpath, dirnames, filenames in os.walk(root):
        os.lchown(dirpath, user.uid, user.gid)
        for name in dirnames + filenames:
            os.lchown(os.path.join(dirpath, name), user.uid, user.gid)


def write_private(path: Path, text: str, user: BuildUser | None) -> None:
    """A 0600 file readable by the build user only (credentials for buildah, outside the build's context)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    if user is not None and os.geteuid() == 0:
        os.chown(path, user.uid, user.gid)


# -- cgroups -------------------------------------------------------------------------------------------------

class Cgroup:
    """One build's cgroup: memory and process caps, CPU time and the reasons it hit a cap."""

    ROOT = Path("/sys/fs/cgroup")

    def __init__(self, name: str, memory_bytes: int, max_pids: int):
        self.name = name
        self.paths: dict[str, Path] = {}
        self.v2 = (self.ROOT / "cgroup.controllers").exists()
        try:
            if self.v2:
                parent = self.ROOT / "slipway"
                parent.mkdir(exist_ok=True)
                # Children get the controllers only when the parent hands them down.
                _write(parent / "cgroup.subtree_control", "+memory +pids +cpu", quiet=True)
                path = parent / name
                path.mkdir(parents=True, exist_ok=True)
                self.paths = {"memory": path, "pids": path, "cpu": path}
                _write(path / "memory.max", str(memory_bytes) if memory_bytes else "max")
                _write(path / "memory.swap.max", "0")
                _write(path / "pids.max", str(max_pids) if max_pids else "max")
            else:
                for controller, directory in (("memory", "memory"), ("pids", "pids"), ("cpu", "cpuacct")):
                    if (self.ROOT / directory / "tasks").exists() or (self.ROOT / directory).is_dir():
                        path = self.ROOT / directory / "slipway" / name
                        path.mkdir(parents=True, exist_ok=True)
                        self.paths[controller] = path
                if "memory" in self.paths and memory_bytes:
                    _write(self.paths["memory"] / "memory.limit_in_bytes", str(memory_bytes))
                    _write(self.paths["memory"] / "memory.memsw.limit_in_bytes", str(memory_bytes), quiet=True)
                if "pids" in self.paths and max_pids:
                    _write(self.paths["pids"] / "pids.max", str(max_pids))
        except OSError as e:
            log.warning("build limits: cannot make cgroup %s: %s (builds run without memory/process caps)", name, e)
            self.remove()
            self.paths = {}

    @property
    def active(self) -> bool:
        return bool(self.paths)

    def enter(self) -> None:
        """In the child, before exec: join every controller's group."""
        for path in set(self.paths.values()):
            with open(path / "cgroup.procs", "w") as f:
                f.write(str(os.getpid()))

    def cpu_seconds(self) -> float:
        path = self.paths.get("cpu")
        try:
            if path is None:
                return 0.0
            if self.v2:
                for line in (path / "cpu.stat").read_text().splitlines():
                    if line.startswith("usage_usec"):
                        return int(line.split()[1]) / 1e6
                return 0.0
            return int((path / "cpuacct.usage").read_text()) / 1e9
        except (OSError, ValueError):
            return 0.0

    def hit(self) -> list[str]:
        """Which caps stopped something: 'memory', 'pids'."""
        reasons = []
        memory, pids = self.paths.get("memory"), self.paths.get("pids")
        try:
            if memory is not None:
                events = _read_counters(memory / ("memory.events" if self.v2 else "memory.oom_control"))
                if events.get("oom_kill", 0) > 0 or (self.v2 and events.get("oom", 0) > 0):
                    reasons.append("memory")
                elif not self.v2 and _read_int(memory / "memory.failcnt") > 0 and events.get("under_oom", 0):
                    reasons.append("memory")
            if pids is not None and _read_counters(pids / "pids.events").get("max", 0) > 0:
                reasons.append("pids")
        except OSError:
            pass
        return reasons

    def remove(self) -> None:
        for path in set(self.paths.values()):
            for _ in range(50):
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:  # processes still leaving
                    self._kill_all(path)
                    time.sleep(0.02)

    @staticmethod
    def _kill_all(path: Path) -> None:
        try:
            for pid in (path / "cgroup.procs").read_text().split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
        except OSError:
            pass


def _write(path: Path, value: str, quiet: bool = False) -> None:
    try:
        path.write_text(value)
    except OSError:
        if not quiet:
            raise


def _read_int(path: Path) -> int:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return 0


def _read_counters(path: Path) -> dict[str, int]:
    counters = {}
    try:
        for line in path.read_text().splitlines():
            key, _, value = line.partition(" ")
            if value.strip().isdigit():
                counters[key] = int(value)
    except OSError:
        pass
    return counters


# -- the registry relay ----------------------------------------------------------------------------------

def _listen_in_netns(pid: int, port: int) -> socket.socket:
    """A listening socket on 127.0.0.1:``port`` inside the network namespace of ``pid``."""
    result: dict = {}

    def enter_and_listen():
        try:
            fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
            try:
                if libc().setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns into the build's network namespace failed")
            finally:
                os.close(fd)
            # This thread is in the build's namespace from here on and ends right after.
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))
            sock.listen(64)
            result["sock"] = sock
        except OSError as e:
            result["error"] = e

    thread = threading.Thread(target=enter_and_listen, name="sandbox-netns", daemon=True)
    thread.start()
    thread.join()
    if "error" in result:
        raise SandboxError(f"cannot listen inside the build's network namespace: {result['error']}")
    return result["sock"]


class RegistryRelay:
    """Passes ``/v2/`` requests from inside a build's network namespace to Slipway's registry, one request
    per connection (``Connection: close`` both ways), and refuses everything else with 403."""

    MAX_HEAD = 64 * 1024
    MAX_CONNECTIONS = 16  # buildah uses a handful; a RUN step may not use up the worker's threads
    HEAD_TIMEOUT = 10

    def __init__(self, listener: socket.socket, upstream: tuple[str, int], tls: bool = False):
        self.listener = listener
        self.upstream = upstream
        self.tls = tls
        self.slots = threading.BoundedSemaphore(self.MAX_CONNECTIONS)
        self.closed = False
        self.thread = threading.Thread(target=self._accept, name="sandbox-relay", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.closed = True
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.slots.acquire(blocking=False):
                client.close()  # too many at once
                continue
            threading.Thread(target=self._serve, args=(client,), name="sandbox-relay-conn", daemon=True).start()

    @staticmethod
    def _read_head(sock: socket.socket, limit: int) -> tuple[bytes, bytes] | None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return None
            data += chunk
            if len(data) > limit:
                return None
        head, _, rest = data.partition(b"\r\n\r\n")
        return head, rest

    # Hop-by-hop headers, and what a proxy would vouch for: the relay connects from 127.0.0.1, a trusted
    # proxy by default, so a RUN step must not be able to pick the client address Slipway records.
    DROPPED = (b"connection:", b"keep-alive:", b"proxy-connection:", b"forwarded:", b"x-forwarded-", b"x-real-ip:")

    @classmethod
    def _with_close(cls, head: bytes, request: bool = False) -> bytes:
        lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(cls.DROPPED)]
        if request:
            lines.append(b"X-Forwarded-For: 127.0.0.1")  # the build sandbox, whatever the step said
        return b"\r\n".join(lines + [b"Connection: close"]) + b"\r\n\r\n"

    def _serve(self, client: socket.socket) -> None:
        upstream = None
        try:
            client.settimeout(self.HEAD_TIMEOUT)
            first = client.recv(1, socket.MSG_PEEK)
            if first == b"\x16":
                # A TLS ClientHello: buildah tries HTTPS first on an insecure registry. Closing at once makes
                # it fall back to plain HTTP now instead of after its 10 s handshake timeout.
                return
            parsed = self._read_head(client, self.MAX_HEAD)
            if parsed is None:
                return
            head, rest = parsed
            request_line = head.split(b"\r\n", 1)[0].split(b" ")
            path = request_line[1] if len(request_line) >= 3 else b""
            if not (path == b"/v2/" or path.startswith(b"/v2/")):
                client.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 50\r\n"
                               b"Connection: close\r\n\r\nOnly the registry API is reachable from a build.\r\n")
                return
            client.settimeout(300)
            upstream = socket.create_connection(self.upstream, timeout=300)
            if self.tls:  # Slipway's own server on this machine, often with a self-signed certificate
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
                upstream = context.wrap_socket(upstream, server_hostname=self.upstream[0])
            upstream.sendall(self._with_close(head, request=True) + rest)
            pump = threading.Thread(target=_pump, args=(client, upstream), daemon=True)
            pump.start()
            answer = self._read_head(upstream, self.MAX_HEAD * 4)
            if answer is None:
                return
            head = answer[0]
            # The token realm the registry names (its public URL when server.public_url is set, else the relay
            # the request came through) becomes the relay, over plain HTTP: nothing else is reachable from here.
            head = REALM.sub(f'realm="http://{RELAY_HOST}/v2/auth"'.encode(), head)
            client.sendall(self._with_close(head) + answer[1])
            _pump(upstream, client)
        except OSError:
            pass
        finally:
            self.slots.release()
            for sock in (client, upstream):
                if sock is not None:
                    try:
                        sock.close()
                    except OSError:
                        pass


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while True:
            data = source.recv(262144)
            if not data:
                try:
                    sink.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            sink.sendall(data)
    except OSError:
        return


# -- one sandboxed command -----------------------------------------------------------------------------------

@dataclass
class Policy:
    """What the sandbox allows; made once per worker from the configuration."""

    user: BuildUser | None  # None: Slipway itself is not root, buildah runs as the current user
    network: str = "public"  # none | public
    allow_private: bool = False
    allowlist: tuple = ()
    memory_bytes: int = 0
    max_pids: int = 0
    registry: tuple[str, int] | None = None  # Slipway's registry (host, port) for the relay
    registry_tls: bool = False  # the registry speaks HTTPS (its own certificate, on this machine)

    @property
    def namespaces(self) -> bool:
        return self.user is not None and os.geteuid() == 0

    def describe(self) -> str:
        if not self.namespaces:
            return "rootless as the current user, without namespaces (Slipway is not running as root)"
        return (f"rootless as '{self.user.name}', own PID/mount/IPC/UTS/network namespaces, "
                f"network {self.network}{' (private ranges allowed)' if self.allow_private else ''}")

    def routes(self) -> list[list[str]]:
        if self.allow_private:
            return []
        commands = [["ip", "route", "replace", "blackhole", cidr] for cidr in BLOCKED_RANGES]
        for entry in self.allowlist:
            try:
                network = ipaddress.ip_network(entry, strict=False)
            except ValueError:
                continue  # host names in the allowlist cannot be routed; they stay blocked inside builds
            # (the host's loopback is not routed either: slirp4netns has it switched off unless allow_private)
            if network.version == 4 and not network.overlaps(ipaddress.ip_network("127.0.0.0/8")):
                commands.append(["ip", "route", "replace", str(network), "via", "10.0.2.2"])
        return commands


class Sandboxed:
    """Runs one command in a fresh set of namespaces as the build user; use as a context manager around
    the Popen: ``wrap()`` the command, start it with ``preexec`` and ``gate_r`` as standard input, then
    ``started(proc)``."""

    def __init__(self, policy: Policy, name: str, hide: list[Path] = (), keep: list[Path] = ()):
        self.policy = policy
        self.name = name
        self.hide = [Path(p) for p in hide]
        self.keep = [Path(p) for p in keep]
        self.cgroup: Cgroup | None = None
        self.relay: RegistryRelay | None = None
        self.slirp: subprocess.Popen | None = None
        self.gate_r, self.gate_w = os.pipe()

    def wrap(self, argv: list[str], env: dict) -> list[str]:
        user = self.policy.user
        assert user is not None
        # The gate is the command's standard input (dash knows only fds 0-9): the network first, then go.
        script = ['set -e', 'read -r gate', '[ "$gate" = go ]', "exec </dev/null", "ip link set lo up"]
        keep = {str(p) for p in self.keep}
        for path in self.hide:
            if str(path) in keep:
                continue
            script.append(f"[ -e {shlex.quote(str(path))} ] && mount -t tmpfs -o size=4k,mode=0 slipway-hidden "
                          f"{shlex.quote(str(path))} || true")
        env_args = [f"{k}={v}" for k, v in sorted(env.items())]
        inner = ["setpriv", f"--reuid={user.uid}", f"--regid={user.gid}", "--clear-groups", "--pdeathsig", "KILL",
                 "--", "env", "-i", *env_args, *argv]
        script.append("exec " + shlex.join(inner))
        return ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc", "--ipc", "--uts", "--net", "--mount",
                "--propagation", "private", "--", "/bin/sh", "-c", "\n".join(script)]

    def cgroup_for(self, memory_bytes: int, max_pids: int) -> Cgroup | None:
        self.cgroup = Cgroup(self.name, memory_bytes, max_pids)  # without caps: CPU accounting only
        return self.cgroup if self.cgroup.active else None

    def preexec(self) -> None:
        """In the child (root, before exec): join the cgroup, die with the worker, own process group."""
        die_with_parent()
        if self.cgroup is not None and self.cgroup.active:
            self.cgroup.enter()

    def _close_gate(self, which: str) -> None:
        fd = getattr(self, which)
        if fd >= 0:
            setattr(self, which, -1)
            os.close(fd)

    def started(self, proc: subprocess.Popen) -> None:
        """The namespaces exist: set up the network, then let the command go."""
        self._close_gate("gate_r")
        try:
            self._network(proc.pid)
            os.write(self.gate_w, b"go\n")
        finally:
            self._close_gate("gate_w")  # without "go" the command's script reads end-of-file and exits

    def _network(self, pid: int) -> None:
        netns = f"/proc/{pid}/ns/net"
        deadline = time.monotonic() + 5
        # unshare(1) makes the namespaces before it forks: wait until the pid's netns is a new one.
        while os.readlink(netns) == os.readlink("/proc/self/ns/net"):
            if time.monotonic() > deadline:
                raise SandboxError("the build's namespaces did not appear")
            time.sleep(0.005)
        if self.policy.network == "public":
            ready_r, ready_w = os.pipe()
            cmd = ["slirp4netns", "--configure", "--mtu=65520", "--ready-fd", str(ready_w),
                   "--cidr", SLIRP_CIDR, "--enable-sandbox", "--enable-seccomp"]
            if not self.policy.allow_private:
                cmd.append("--disable-host-loopback")
            self.slirp = subprocess.Popen(cmd + [str(pid), "tap0"], pass_fds=(ready_w,), stdin=subprocess.DEVNULL,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                          preexec_fn=die_with_parent, start_new_session=True)
            os.close(ready_w)
            with os.fdopen(ready_r, "rb") as ready:
                if not select.select([ready], [], [], 10)[0] or ready.read(1) != b"1":
                    error = self.slirp.stderr.read().decode(errors="replace").strip() if self.slirp.poll() else ""
                    raise SandboxError(f"slirp4netns did not start: {error or 'no answer'}")
            routes = self.policy.routes()
            if routes:  # one ``ip -batch`` (it stops at the first failing line) instead of a process per route
                batch = "".join(shlex.join(route[1:]) + "\n" for route in routes)
                subprocess.run(["nsenter", f"--net={netns}", "ip", "-batch", "-"], input=batch.encode(), check=True,
                               capture_output=True, timeout=10)
        if self.policy.registry is not None:
            port = int(RELAY_HOST.rsplit(":", 1)[1])
            # The namespace's loopback is brought up by the command's own script, after the gate:
            # binding to 127.0.0.1 works on a down interface, connections wait until it is up.
            self.relay = RegistryRelay(_listen_in_netns(pid, port), self.policy.registry, self.policy.registry_tls)

    def close(self) -> None:
        self._close_gate("gate_r")
        self._close_gate("gate_w")
        if self.relay is not None:
            self.relay.close()
        if self.slirp is not None and self.slirp.poll() is None:
            self.slirp.kill()
            self.slirp.wait()
        if self.slirp is not None and self.slirp.stderr:
            self.slirp.stderr.close()
        if self.cgroup is not None:
            self.cgroup.remove()


def storage_filesystem_used(path: Path) -> int:
    try:
        return shutil.disk_usage(path).used
    except OSError:
        return 0
