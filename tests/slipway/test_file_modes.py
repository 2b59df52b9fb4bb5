"""What Slipway writes is for the service account only: the database and its WAL, blobs, uploads, keys."""
from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import SLIPWAY, USE_PG, SlipwayServer


def umask_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Umask:"):
            return int(line.split()[1], 8)
    raise AssertionError(f"no Umask in /proc/{pid}/status")


def children_of(pid: int) -> list[int]:
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            found += [int(p) for p in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
        except OSError:
            pass
    return found


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def exposed(root: Path) -> list[str]:
    """What another account could read or change under ``root``: entries of directories it may enter
    (group or other may search them) that group or other may read or write. A directory closed to them
    (e.g. the build user's own 0700 buildah storage) hides whatever its owner's tools put inside."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        for name in dirnames + filenames:
            path = here / name
            if path.is_symlink():
                continue
            if mode(path) & 0o066:
                found.append(f"{path.relative_to(root)} {mode(path):o}")
        dirnames[:] = [d for d in dirnames if mode(here / d) & 0o011 and not (here / d).is_symlink()]
    return found


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    base = tmp_path_factory.mktemp("modes")
    (base / "data").mkdir(mode=0o755)  # as an operator's `mkdir` would leave it
    srv = SlipwayServer(base, tls=True, processes=2).start()
    yield srv
    srv.stop()


def test_everything_under_the_data_directory_is_private(tls_server):
    server = tls_server
    data = b"private layer bytes"
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    token = server.token("repository:admin/modes:pull,push")
    r = server.v2("POST", "/v2/admin/modes/blobs/uploads/", token)  # an upload session stays in uploads/
    assert r.status_code == 202, r.text
    r = server.v2("POST", f"/v2/admin/modes/blobs/uploads/?digest={digest}", token, data=data)
    assert r.status_code == 201, r.text

    root = server.data_dir
    assert mode(root) == 0o700  # the build user's storage is elsewhere: nobody else enters

    assert mode(root / "secret.key") == 0o600
    assert mode(root / "tls" / "key.pem") == 0o600
    assert (root / "storage" / "blobs").is_dir() and (root / "storage" / "uploads").is_dir()
    if not USE_PG:  # the WAL and shared-memory files (while they exist) take the database file's mode
        assert mode(root / "slipway.db") == 0o600
        for name in ("slipway.db-wal", "slipway.db-shm"):
            assert not (root / name).exists() or mode(root / name) == 0o600, name
    assert exposed(root) == []

    # A traverse-only data directory (what an earlier version made for the build user) is closed too.
    root.chmod(0o711)
    server.create_user("someone", "password-123")
    assert mode(root) == 0o700

    # The server, its HTTP and background processes (and so buildah and git) create files privately.
    pids = [server.proc.pid, *children_of(server.proc.pid)]
    assert len(pids) == 4  # supervisor, 2 HTTP processes, background process
    assert {pid: umask_of(pid) for pid in pids} == {pid: 0o077 for pid in pids}


def test_slipway_worker_creates_files_privately(tls_server):
    env = {**tls_server.env, "SLIPWAY_SERVER__PUBLIC_URL": tls_server.url}  # a scale-out role needs it
    worker = subprocess.Popen(SLIPWAY + ["worker"], env=env, cwd=str(Path(__file__).parents[2]),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.time() + 30
        for line in worker.stdout:
            if "slipway worker:" in line or time.time() > deadline:
                break
        assert worker.poll() is None, "slipway worker exited"
        assert umask_of(worker.pid) == 0o077
    finally:
        worker.terminate()
        worker.wait(timeout=30)
