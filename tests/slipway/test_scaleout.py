"""Scale-out as an operator runs it: two API nodes and two `slipway worker`s on one PostgreSQL database and
one shared storage, all started at the same moment on an empty database. Content pushed through one node is
pulled through the other, a build queued through one runs on a worker (and survives that worker's death),
every webhook goes out exactly once however many processes send, GC runs from the workers when the API
nodes do no background work, and a process with other storage refuses to collect."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.api import Api
from tests.builder.conftest import Builds
from tests.builder.test_queue import read_events
from tests.conftest import (
    _STARTED,
    ADMIN_PASSWORD,
    ROOT,
    SLIPWAY,
    USE_PG,
    ContainerTools,
    SlipwayServer,
    new_database_url,
    wait_for,
)
from tests.registry.test_storage_s3 import BUCKET, s3  # noqa: F401 (the local S3 server fixture)
from tests.registry.test_tags_and_gc import age_registry_rows
from tests.webhooks.test_notifications import Receiver

needs_postgres = pytest.mark.skipif(not USE_PG, reason="nodes share a PostgreSQL database (SQLite is one node's)")

SLOW = '["/bin/busybox", "sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10; do echo tick $i; sleep 0.5; done"]'


class Node(SlipwayServer):
    """One process of the deployment (`slipway serve [--no-workers]` or `slipway worker`), as on a machine of
    its own: its own data directory and port, the shared database, secret, storage and public URL."""

    def __init__(self, base: Path, args: list[str], shared: dict):
        self.args = args
        self.place(base)
        self.database_url = shared["SLIPWAY_DATABASE_URL"]
        self.env = {**os.environ, **shared, "SLIPWAY_DATA_DIR": str(self.data_dir), "PYTHONPATH": str(ROOT),
                    "SLIPWAY_SERVER__HOST": "127.0.0.1", "SLIPWAY_SERVER__PORT": str(self.port),
                    "SLIPWAY_BUILDS__STORAGE_ROOT": str(self.build_root)}
        self.log_path = base / "node.log"
        self.proc = None

    def launch(self) -> "Node":
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(SLIPWAY + self.args, env=self.env, cwd=str(ROOT), stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        _STARTED.append(self)
        return self

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.args} exited with {self.proc.returncode}:\n{self.log_text()}")
        if self.args[0] == "worker":
            return "slipway worker:" in self.log_text()
        try:
            return requests.get(f"{self.url}/health", timeout=1).status_code == 200
        except requests.RequestException:
            return False


def start_together(nodes: list[Node], timeout: float = 60) -> None:
    for node in nodes:
        node.launch()
    deadline = time.time() + timeout
    waiting = list(nodes)
    while waiting:
        waiting = [n for n in waiting if not n.ready()]
        if waiting and time.time() > deadline:
            raise RuntimeError("not ready: " + "\n\n".join(f"{n.args}:\n{n.log_text()}" for n in waiting))
        time.sleep(0.2)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push(node: Node, repo: str, tag: str, token: str) -> tuple[str, bytes]:
    """An image (config and one layer) pushed through ``node`` over the distribution API."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "tag": tag, "at": time.time()}).encode()
    layer = os.urandom(2048)
    for blob in (config, layer):
        r = node.v2("POST", f"/v2/{repo}/blobs/uploads/?digest={sha256(blob)}", token, data=blob)
        assert r.status_code == 201, r.text
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256(layer),
                    "size": len(layer)}]}).encode()
    r = node.v2("PUT", f"/v2/{repo}/manifests/{tag}", token, data=manifest,
                headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 201, r.text
    return sha256(layer), layer


def deployment(tmp_path: Path, api_args: list[str], storage: dict, **settings) -> tuple[list[Node], list[Node]]:
    shared = {"SLIPWAY_DATABASE_URL": new_database_url(tmp_path), "SLIPWAY_AUTH__SECRET_KEY": "s" * 48,
              "SLIPWAY_ADMIN_PASSWORD": ADMIN_PASSWORD, "SLIPWAY_NETWORK__ALLOWLIST": "127.0.0.1/32",
              "SLIPWAY_BUILDS__LEASE_SECONDS": "3", "SLIPWAY_BUILDS__RETRY_DELAY_SECONDS": "1",
              "SLIPWAY_BUILDS__WORKERS": "0", **storage, **settings}
    apis = [Node(tmp_path / f"api{i}", api_args, shared) for i in (1, 2)]
    workers = [Node(tmp_path / f"worker{i}", ["worker"], shared) for i in (1, 2)]
    # One public URL for all (a load balancer's; here the first node), and the registry the workers push to.
    for node in apis + workers:
        node.env["SLIPWAY_SERVER__PUBLIC_URL"] = apis[0].url
        node.env["SLIPWAY_BUILDS__REGISTRY_URL"] = apis[0].url
    for worker in workers:
        worker.env["SLIPWAY_BUILDS__WORKERS"] = "1"
    return apis, workers


def check_pushes_pulls_and_webhooks(apis: list[Node], workers: list[Node], tmp_path: Path) -> dict:
    first, second = apis
    admin = Api(first, ("admin", ADMIN_PASSWORD))
    admin.ok("POST", "/repository", {"repository": "shared", "visibility": "private"})
    receiver = Receiver()
    try:
        admin.ok("POST", "/repository/admin/shared/notification/",
                 {"event": "repo_push", "method": "webhook", "config": {"url": f"{receiver.url}/hook"}})
        token = first.token("repository:admin/shared:pull,push")
        layers = {}
        for i in range(20):
            layers[f"v{i}"] = push(first, "admin/shared", f"v{i}", token)
        # Pulled through the other node (a token of the other node works there too).
        pull = second.token("repository:admin/shared:pull")
        for tag, (digest, data) in layers.items():
            assert second.v2("GET", f"/v2/admin/shared/manifests/{tag}", pull).status_code == 200
            assert second.v2("GET", f"/v2/admin/shared/blobs/{digest}", pull).content == data
        hits = receiver.wait(20, "/hook", timeout=45)
        # Every delivery recorded as sent and no process holding a claim: a sending needs a claim
        # (webhooks.dispatch.claim_due), and one in flight still holds it, so any second sending
        # has arrived by then.
        wait_for(lambda: first.sql("SELECT COUNT(*) FROM notification_delivery WHERE status = 'success' "
                                   "AND claimed_by IS NULL") == [(20,)], timeout=45, what="20 deliveries recorded")
        tags = sorted(json.loads(h["body"])["updated_tags"][0] for h in receiver.requests)
        assert tags == sorted(layers), f"{len(hits)} POSTs for 20 pushes"
        rows = first.sql("SELECT d.status, COUNT(a.id) FROM notification_delivery d "
                         "LEFT JOIN notification_attempt a ON a.delivery_id = d.id GROUP BY d.id, d.status")
        assert sorted(rows) == [("success", 1)] * 20
        senders = {row[0] for row in first.sql("SELECT claimed_by FROM notification_delivery")}
        assert senders == {None}
    finally:
        receiver.httpd.shutdown()
    return layers


def stop_all(nodes: list[Node]) -> None:
    for node in nodes:
        node.stop()


@needs_postgres
def test_two_api_nodes_and_two_workers_started_together(tmp_path):
    storage = {"SLIPWAY_STORAGE__PATH": str(tmp_path / "shared-storage")}
    apis, workers = deployment(tmp_path, ["serve"], storage)
    try:
        start_together(apis + workers)
        layers = check_pushes_pulls_and_webhooks(apis, workers, tmp_path)
        first, second = apis

        # A build queued through one node runs on a worker, its log read through the other; the worker
        # running it is killed mid-build and the other worker finishes it.
        tools = ContainerTools(tmp_path / "tools", first.host)
        builds = Builds(first, tools).setup(tmp_path)
        other = Builds(second, tools)
        repo = builds.repo("built")
        # FROM the other node, by the name it recorded at start: a name of this Slipway for every worker.
        base = f"{socket.gethostname()}:{second.port}/admin/base:1"
        build = builds.start_dockerfile(repo, f"FROM {base}\nLABEL run={time.time()}\nRUN {SLOW}\n"
                                        "LABEL survived=yes\n", docker_tags=["after-crash"])
        other.wait(repo, build["id"], phases=("building",), timeout=60)
        stream = requests.get(f"{second.url}/api/v1/repository/{repo}/build/{build['id']}/logs/stream",
                              auth=("admin", ADMIN_PASSWORD), stream=True, timeout=120)  # live, through the other
        wait_for(lambda: "tick 2" in other.log_text(repo, build["id"]), timeout=60, what="the build's RUN step")
        [(owner,)] = first.sql("SELECT lease_owner FROM build_job")
        victim = next(w for w in workers if f":{w.proc.pid}:" in owner)
        os.killpg(victim.proc.pid, signal.SIGKILL)
        victim.proc.wait()
        done = other.wait(repo, build["id"], timeout=120)
        assert done["phase"] == "complete", other.log_text(repo, build["id"])
        log = other.log_text(repo, build["id"])
        assert "The build worker stopped responding" in log and "tick 10" in log
        with stream:
            streamed = read_events(stream)
        assert streamed[-1].get("event") == "end" and json.loads(streamed[-1]["data"])["phase"] == "complete"
        assert [json.loads(e["data"]) for e in streamed if "id" in e] == other.logs(repo, build["id"])["logs"]
        assert builds.inspect(f"{repo}:after-crash")["Labels"]["survived"] == "yes"

        survivor = next(w for w in workers if w is not victim)
        Builds(survivor, tools).wait_worker_idle()  # its layer cache is published: no push in progress

        # GC with another storage (the setting forgotten) refuses, and deletes nothing.
        token = second.token("repository:admin/loose:pull,push")
        loose = os.urandom(4096)
        assert second.v2("POST", f"/v2/admin/loose/blobs/uploads/?digest={sha256(loose)}", token,
                         data=loose).status_code == 201
        age_registry_rows(first, 1.5)  # older than the 1 s grace below, without waiting
        wrong = {**first.env, "SLIPWAY_STORAGE__PATH": str(tmp_path / "elsewhere")}
        result = subprocess.run(SLIPWAY + ["admin", "gc", "--grace", "1"], env=wrong, cwd=str(ROOT), text=True,
                                capture_output=True, timeout=60)
        assert result.returncode == 2, result.stdout + result.stderr
        assert "storage.path" in result.stderr and "Traceback" not in result.stderr
        assert first.sql("SELECT COUNT(*) FROM blob WHERE digest = ?", sha256(loose)) == [(1,)]
        # With the shared storage it collects, while the other node serves pulls that lose nothing.
        gc = subprocess.Popen(SLIPWAY + ["admin", "gc", "--grace", "1"], env=first.env, cwd=str(ROOT), text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        pull = second.token("repository:admin/shared:pull")
        pulls = 0
        while gc.poll() is None or pulls < 20:
            tag = f"v{pulls % 20}"
            assert second.v2("GET", f"/v2/admin/shared/manifests/{tag}", pull).status_code == 200
            digest, data = layers[tag]
            assert second.v2("GET", f"/v2/admin/shared/blobs/{digest}", pull).content == data
            pulls += 1
        assert gc.wait() == 0, gc.stdout.read()
        assert first.sql("SELECT COUNT(*) FROM blob WHERE digest = ?", sha256(loose)) == [(0,)]
        assert second.v2("GET", f"/v2/admin/loose/blobs/{sha256(loose)}", token).status_code == 404
    finally:
        stop_all(apis + workers)
    assert not any("Traceback" in n.log_text() for n in apis + workers), \
        "\n\n".join(n.log_text() for n in apis + workers if "Traceback" in n.log_text())


@needs_postgres
def test_api_nodes_without_background_work_leave_it_to_the_workers(tmp_path, s3):  # noqa: F811
    endpoint, client = s3
    prefix = f"scaleout-{time.time_ns()}"
    storage = {"SLIPWAY_STORAGE__DRIVER": "s3", "SLIPWAY_STORAGE__S3_BUCKET": BUCKET,
               "SLIPWAY_STORAGE__S3_PREFIX": prefix, "SLIPWAY_STORAGE__S3_ENDPOINT_URL": endpoint,
               "SLIPWAY_STORAGE__S3_ACCESS_KEY_ID": "test", "SLIPWAY_STORAGE__S3_SECRET_ACCESS_KEY": "test",
               "SLIPWAY_STORAGE__S3_REDIRECT": "false"}  # blobs through the nodes, as the filesystem
    apis, workers = deployment(tmp_path, ["serve", "--no-workers"], storage,
                               SLIPWAY_GC__INTERVAL_SECONDS="2", SLIPWAY_GC__GRACE_SECONDS="1")
    try:
        start_together(apis + workers)
        first, second = apis
        children = subprocess.run(["pgrep", "-P", str(first.proc.pid)], capture_output=True, text=True).stdout
        assert children.split() == [], "an API node with --no-workers forks no background process"
        check_pushes_pulls_and_webhooks(apis, workers, tmp_path)
        # A blob no manifest uses is collected by the scheduled GC, which only the workers run.
        token = second.token("repository:admin/loose:pull,push")
        data = os.urandom(4096)
        assert second.v2("POST", f"/v2/admin/loose/blobs/uploads/?digest={sha256(data)}", token,
                         data=data).status_code == 201
        deadline = time.time() + 30
        while first.sql("SELECT COUNT(*) FROM blob WHERE digest = ?", sha256(data))[0][0] and time.time() < deadline:
            time.sleep(0.5)
        assert first.sql("SELECT COUNT(*) FROM blob WHERE digest = ?", sha256(data))[0][0] == 0
        key = f"{prefix}/blobs/sha256/{sha256(data)[7:9]}/{sha256(data)[7:]}"
        assert client.list_objects_v2(Bucket=BUCKET, Prefix=key).get("KeyCount", 0) == 0
    finally:
        stop_all(apis + workers)
    assert not any("Traceback" in n.log_text() for n in apis + workers), \
        "\n\n".join(n.log_text() for n in apis + workers if "Traceback" in n.log_text())


def test_scale_out_roles_refuse_to_start_without_a_public_url(tmp_path):
    shared = {"SLIPWAY_DATABASE_URL": new_database_url(tmp_path), "SLIPWAY_AUTH__SECRET_KEY": "s" * 48,
              "SLIPWAY_ADMIN_PASSWORD": ADMIN_PASSWORD}
    for args in (["serve", "--no-workers"], ["worker"]):
        node = Node(tmp_path / args[-1], args, shared)
        if args == ["worker"]:  # a worker acts on an existing database only: there is one
            subprocess.run(SLIPWAY + ["migrate"], env=node.env, cwd=str(ROOT), check=True, capture_output=True,
                           timeout=90)
        result = subprocess.run(SLIPWAY + args, env=node.env, cwd=str(ROOT), text=True, capture_output=True,
                                timeout=90)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert "needs server.public_url (SLIPWAY_SERVER__PUBLIC_URL)" in result.stderr
