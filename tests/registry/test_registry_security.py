"""Registry hardening (issue 11): upload-session races, revocation of issued tokens, bodies refused
before they are read, references that may not dangle, malformed query arguments."""
from __future__ import annotations

import hashlib
import socket
import time

import pytest

REPO = "admin/sec"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def tok(server):
    return server.token([f"repository:{REPO}:pull,push,delete"])


def wait_for(condition, timeout: float = 20, what: str = "condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def read_response(sock: socket.socket) -> tuple[int, bytes]:
    """Status and body of one HTTP/1.1 response with a Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = 0
    for line in lines[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == "content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), body


# -- 1. one writer per upload session ---------------------------------------------------------------

def test_a_second_patch_while_the_first_streams_is_refused_and_no_digest_is_poisoned(server, tok):
    genuine = b"A" * (2 << 20)
    attacker = b"B" * 32768  # small enough to sit in socket buffers when refused unread
    r = server.v2("POST", f"/v2/{REPO}/blobs/uploads/", tok)
    assert r.status_code == 202, r.text
    location = r.headers["Location"]
    staged = server.data_dir / "storage" / "uploads" / r.headers["Docker-Upload-UUID"]
    first = socket.create_connection(("127.0.0.1", server.port))
    try:
        first.sendall((f"PATCH {location} HTTP/1.1\r\nHost: {server.host}\r\nAuthorization: Bearer {tok}\r\n"
                       f"Content-Type: application/octet-stream\r\nContent-Length: {len(genuine)}\r\n\r\n").encode())
        first.sendall(genuine[:1 << 20])
        # The first body is being written: its bytes reach the staged file.
        wait_for(lambda: staged.stat().st_size >= (1 << 20) - 65536, what="the first chunk to be written")
        second = server.v2("PATCH", location, tok, data=attacker,
                           headers={"Content-Type": "application/octet-stream"})
        first.sendall(genuine[1 << 20:])
        status, body = read_response(first)
    finally:
        first.close()
    assert status == 202, body
    assert second.status_code == 409, second.text
    assert second.json()["errors"][0]["code"] == "BLOB_UPLOAD_INVALID"
    assert "another request is writing" in second.json()["errors"][0]["message"]
    r = server.v2("PUT", f"{location}?digest={sha256(genuine)}", tok)
    assert r.status_code == 201, r.text
    pulled = server.v2("GET", f"/v2/{REPO}/blobs/{sha256(genuine)}", tok)
    assert pulled.status_code == 200 and sha256(pulled.content) == sha256(genuine)


def test_a_repush_replaces_a_stored_copy_whose_bytes_do_not_match(server, tok):
    data = b"the genuine bytes " * 1000
    digest = sha256(data)
    r = server.v2("POST", f"/v2/{REPO}/blobs/uploads/?digest={digest}", tok, data=data)
    assert r.status_code == 201
    hexpart = digest.split(":")[1]
    path = server.data_dir / "storage" / "blobs" / "sha256" / hexpart[:2] / hexpart
    path.write_bytes(b"X" * len(data))  # a damaged (or poisoned) copy of the same size
    r = server.v2("POST", f"/v2/{REPO}/blobs/uploads/?digest={digest}", tok, data=data)
    assert r.status_code == 201
    assert server.v2("GET", f"/v2/{REPO}/blobs/{digest}", tok).content == data
    # the chunked path repairs too
    path.write_bytes(b"Y" * len(data))
    r = server.v2("POST", f"/v2/{REPO}/blobs/uploads/", tok)
    r = server.v2("PATCH", r.headers["Location"], tok, data=data)
    assert r.status_code == 202
    assert server.v2("PUT", f"{r.headers['Location']}?digest={digest}", tok).status_code == 201
    assert server.v2("GET", f"/v2/{REPO}/blobs/{digest}", tok).content == data
