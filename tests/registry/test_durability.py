"""Uploads survive restarts; a server killed mid-upload leaves no visible partial blob."""
from __future__ import annotations

import hashlib
import os
import signal
import socket
import threading

import pytest

from tests.conftest import SlipwayServer, staged_bytes, wait_for


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def fresh(tmp_path):
    srv = SlipwayServer(tmp_path).start()
    yield srv
    srv.stop()


def test_upload_in_progress_survives_a_restart(fresh):
    data = os.urandom(300000)
    token = fresh.token("repository:admin/durable:pull,push")
    location = fresh.v2("POST", "/v2/admin/durable/blobs/uploads/", token).headers["Location"]
    r = fresh.v2("PATCH", location, token, data=data[:100000], headers={"Content-Range": "0-99999"})
    assert r.status_code == 202
    fresh.restart()
    status = fresh.v2("GET", location, token)
    assert status.status_code == 204 and status.headers["Range"] == "0-99999"
    r = fresh.v2("PATCH", location, token, data=data[100000:], headers={"Content-Range": f"100000-{len(data) - 1}"})
    assert r.status_code == 202
    done = fresh.v2("PUT", f"{location}?digest={sha256(data)}", token)
    assert done.status_code == 201, done.text
    assert fresh.v2("GET", f"/v2/admin/durable/blobs/{sha256(data)}", token).content == data


def test_server_killed_mid_upload_leaves_no_visible_blob(fresh):
    data = os.urandom(4 * 1024 * 1024)
    digest = sha256(data)
    token = fresh.token("repository:admin/crash:pull,push")
    location = fresh.v2("POST", "/v2/admin/crash/blobs/uploads/", token).headers["Location"]
    first = fresh.v2("PATCH", location, token, data=data[:1000000], headers={"Content-Range": "0-999999"})
    assert first.status_code == 202

    # Stream the next chunk slowly and SIGKILL the server half way through it.
    sock = socket.create_connection(("127.0.0.1", fresh.port))
    sock.sendall((f"PATCH {location} HTTP/1.1\r\nHost: {fresh.host}\r\nAuthorization: Bearer {token}\r\n"
                  f"Content-Range: 1000000-{len(data) - 1}\r\nContent-Length: {len(data) - 1000000}\r\n\r\n").encode())
    sock.sendall(data[1000000:2500000])
    wait_for(lambda: staged_bytes(fresh.data_dir / "storage" / "uploads") > 1000000,
             what="the server to stage part of the second chunk")
    os.killpg(fresh.proc.pid, signal.SIGKILL)
    fresh.proc.wait()
    sock.close()
    fresh.start()

    assert fresh.v2("HEAD", f"/v2/admin/crash/blobs/{digest}", token).status_code == 404
    status = fresh.v2("GET", location, token)
    assert status.status_code == 204 and status.headers["Range"] == "0-999999"  # the recorded offset
    r = fresh.v2("PATCH", location, token, data=data[1000000:], headers={"Content-Range": f"1000000-{len(data) - 1}"})
    assert r.status_code == 202
    assert fresh.v2("PUT", f"{location}?digest={digest}", token).status_code == 201
    assert fresh.v2("GET", f"/v2/admin/crash/blobs/{digest}", token).content == data


def test_killed_during_a_monolithic_push_leaves_nothing_visible(fresh):
    data = os.urandom(3 * 1024 * 1024)
    digest = sha256(data)
    token = fresh.token("repository:admin/mono:pull,push")
    sock = socket.create_connection(("127.0.0.1", fresh.port))
    sock.sendall((f"POST /v2/admin/mono/blobs/uploads/?digest={digest} HTTP/1.1\r\nHost: {fresh.host}\r\n"
                  f"Authorization: Bearer {token}\r\nContent-Length: {len(data)}\r\n\r\n").encode())
    sock.sendall(data[:2000000])
    wait_for(lambda: staged_bytes(fresh.data_dir / "storage" / "uploads"), what="the server to stage bytes")
    os.killpg(fresh.proc.pid, signal.SIGKILL)
    fresh.proc.wait()
    sock.close()
    fresh.start()
    assert fresh.v2("HEAD", f"/v2/admin/mono/blobs/{digest}", token).status_code == 404
    blob_files = list((fresh.data_dir / "storage" / "blobs").rglob("*"))
    assert not any(p.is_file() and p.name == digest.split(":")[1] for p in blob_files)


def test_concurrent_pushes_of_one_tag_leave_one_alive_tag(fresh):
    token = fresh.token("repository:admin/race:pull,push")
    config = b'{"os":"linux"}'
    r = fresh.v2("POST", f"/v2/admin/race/blobs/uploads/?digest={sha256(config)}", token, data=config)
    assert r.status_code == 201
    manifests = []
    for i in range(8):
        manifests.append(('{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",'
                          '"config":{"mediaType":"application/vnd.oci.image.config.v1+json",'
                          f'"digest":"{sha256(config)}","size":{len(config)}}},"layers":[],'
                          f'"annotations":{{"n":"{i}"}}}}').encode())
    results = []

    def push(body):
        results.append(fresh.v2("PUT", "/v2/admin/race/manifests/latest", token, data=body,
                                headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"}).status_code)

    threads = [threading.Thread(target=push, args=(m,)) for m in manifests]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [201] * 8
    alive = fresh.sql("SELECT COUNT(*) FROM tag WHERE name = 'latest' AND lifetime_end IS NULL")
    assert alive[0][0] == 1
    assert fresh.v2("GET", "/v2/admin/race/tags/list", token).json()["tags"] == ["latest"]
