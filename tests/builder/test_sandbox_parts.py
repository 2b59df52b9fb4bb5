"""Parts of the build sandbox in-process (as root, with the build user): the gate that holds a command until its
network is ready, black-hole routes that tolerate the allowlist, and the registry relay's rules."""
from __future__ import annotations

import socket
import subprocess
import threading

import pytest

from builder.sandbox import BuildUser, Policy, RegistryRelay, Sandboxed


def run_sandboxed(policy: Policy, argv: list[str]) -> subprocess.CompletedProcess:
    sandbox = Sandboxed(policy, "unit")
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/"}
    proc = subprocess.Popen(sandbox.wrap(argv, env), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            preexec_fn=sandbox.preexec, stdin=sandbox.gate_r, start_new_session=True)
    try:
        sandbox.started(proc)
    except Exception:
        pass
    finally:
        out = proc.communicate(timeout=60)[0].decode()
        sandbox.close()
    return subprocess.CompletedProcess(argv, proc.returncode, out)


@pytest.fixture(scope="module")
def user() -> BuildUser:
    return BuildUser.lookup("slipway-build")


def test_a_command_whose_network_could_not_be_made_never_runs(user, tmp_path, monkeypatch):
    marker = tmp_path / "ran"
    tmp_path.chmod(0o777)

    def broken(self, pid):
        raise RuntimeError("slirp4netns is missing")

    monkeypatch.setattr(Sandboxed, "_network", broken)
    result = run_sandboxed(Policy(user=user, network="public"), ["touch", str(marker)])
    assert result.returncode != 0 and not marker.exists()


def test_allowlisted_ranges_are_routed_even_inside_a_blocked_one(user):
    policy = Policy(user=user, network="public", allowlist=("10.0.0.0/8", "192.168.7.0/24", "127.0.0.1/32",
                                                             "example.com"))
    result = run_sandboxed(policy, ["ip", "route"])
    assert result.returncode == 0, result.stdout
    assert "10.0.0.0/8 via 10.0.2.2" in result.stdout and "192.168.7.0/24 via 10.0.2.2" in result.stdout
    assert "blackhole 192.168.0.0/16" in result.stdout and "127.0.0.1" not in result.stdout


def test_the_relay_passes_registry_requests_only_and_vouches_for_no_client_address():
    seen = []
    upstream = socket.socket()
    upstream.bind(("127.0.0.1", 0))
    upstream.listen(8)

    def registry():
        while True:
            try:
                conn, _ = upstream.accept()
            except OSError:  # closed at the end of the test
                return
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            seen.append(data)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok")
            conn.close()

    threading.Thread(target=registry, daemon=True).start()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    relay = RegistryRelay(listener, upstream.getsockname())
    port = listener.getsockname()[1]

    def ask(path: str, extra: str = "") -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode())
            answer = b""
            while chunk := s.recv(65536):
                answer += chunk
            return answer

    try:
        assert ask("/health").startswith(b"HTTP/1.1 403")
        answer = ask("/v2/", "X-Forwarded-For: 6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\n")
        assert answer.startswith(b"HTTP/1.1 200") and b"Connection: close" in answer
        assert len(seen) == 1 and b"6.6.6.6" not in seen[0] and b"X-Forwarded-For: 127.0.0.1" in seen[0]
        # More idle connections than the relay serves at once: the extra ones are closed at once.
        idle = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(RegistryRelay.MAX_CONNECTIONS)]
        extra = socket.create_connection(("127.0.0.1", port), timeout=10)
        assert extra.recv(1) == b""
        for s in idle + [extra]:
            s.close()
    finally:
        relay.close()
        upstream.close()
