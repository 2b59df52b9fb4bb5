"""Several HTTP processes on one port: uploads that hop between them, and a clean shutdown."""
import hashlib
import os
import subprocess
import time

from builder import worker
from slipway.server import WakePipe
from tests.conftest import SlipwayServer


def nice(pid: str) -> int:
    return int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[16])


def test_two_processes_serve_chunked_uploads_across_connections(tmp_path):
    srv = SlipwayServer(tmp_path, processes=2).start()
    try:
        children = subprocess.run(["pgrep", "-P", str(srv.proc.pid)], capture_output=True, text=True).stdout.split()
        # Two HTTP processes and the background process (jobs, notifications, build workers), niced
        # (relative to this process: the suite itself may run under `nice`).
        base = os.nice(0)
        assert sorted(nice(pid) for pid in children) == [base, base, min(base + 10, 19)]
        token = srv.token("repository:admin/multi:pull,push")
        for _ in range(6):
            data = os.urandom(300000)
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            location = srv.v2("POST", "/v2/admin/multi/blobs/uploads/", token).headers["Location"]
            for start in range(0, len(data), 100000):  # each request on a new connection: any process
                r = srv.v2("PATCH", location, token, data=data[start:start + 100000],
                           headers={"Content-Range": f"{start}-{start + 99999}"})
                assert r.status_code == 202, r.text
            assert srv.v2("PUT", f"{location}?digest={digest}", token).status_code == 201
            assert srv.v2("GET", f"/v2/admin/multi/blobs/{digest}", token).content == data
    finally:
        srv.stop()
    assert srv.proc.returncode is not None
    deadline = time.time() + 5
    while any(os.path.exists(f"/proc/{pid}") for pid in children) and time.time() < deadline:
        time.sleep(0.1)
    assert not any(os.path.exists(f"/proc/{pid}") for pid in children)


def test_a_build_queued_in_an_http_process_wakes_the_background_process_workers():
    pipe = WakePipe()
    worker.WAKE.clear()
    child = os.fork()
    if child == 0:  # an HTTP process: queues a build
        try:
            pipe.keep_sending_end()
            worker.wake()
        finally:
            os._exit(0)
    pipe.relay_to_workers()
    try:
        assert worker.WAKE.wait(5), "the background process's workers were not woken"
    finally:
        os.waitpid(child, 0)
        worker.WAKE.clear()


def test_sigterm_to_the_main_process_stops_every_process_cleanly(tmp_path):
    srv = SlipwayServer(tmp_path).start()  # the default: one HTTP process and the background process
    token = srv.token("repository:admin/stopping:pull,push")
    location = srv.v2("POST", "/v2/admin/stopping/blobs/uploads/", token).headers["Location"]
    assert srv.v2("PUT", f"{location}?digest=sha256:{hashlib.sha256(b'x').hexdigest()}", token,
                  data=b"x").status_code == 201
    children = subprocess.run(["pgrep", "-P", str(srv.proc.pid)], capture_output=True, text=True).stdout.split()
    assert len(children) == 2
    os.kill(srv.proc.pid, 15)  # the main process only, as `kill PID`, systemd or `docker stop` do
    assert srv.proc.wait(timeout=20) == 0  # it waited for its children, which stopped cleanly
    srv.stop()
    assert not any(os.path.exists(f"/proc/{pid}") for pid in children)
    assert "Traceback" not in srv.log_text()
