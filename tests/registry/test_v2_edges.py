"""Edges of /v2 found by the OCI conformance suites and simple clients: referrers of a repository that
does not exist, upload status read with a pull token, and basic credentials on every request (real curl)."""
from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from accounts.identity import ANONYMOUS
from registry import basic
from tests.api import Api
from tests.conftest import ADMIN_PASSWORD

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
ADMIN = ("admin", ADMIN_PASSWORD)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def codes(response) -> list[str]:
    return [e["code"] for e in response.json()["errors"]]


# -- 1. referrers of a repository that does not exist ------------------------------------------------

def test_referrers_of_a_missing_repository_is_an_empty_index(server):
    missing = "admin/never-pushed"
    subject = sha256(b"no such subject")
    tok = server.token(f"repository:{missing}:pull")
    for params in ({}, {"artifactType": "application/vnd.example.sbom"}):
        r = server.v2("GET", f"/v2/{missing}/referrers/{subject}", tok, params=params)
        assert r.status_code == 200, r.text
        assert r.headers["Content-Type"] == OCI_INDEX
        assert r.json() == {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}

    # Authorization still comes first: anonymous callers get the challenge, not an index.
    r = server.v2("GET", f"/v2/{missing}/referrers/{subject}")
    assert r.status_code == 401 and codes(r) == ["UNAUTHORIZED"]
    assert r.headers["WWW-Authenticate"].startswith("Bearer realm=")
    assert f'scope="repository:{missing}:pull"' in r.headers["WWW-Authenticate"]


def test_referrers_do_not_tell_a_stranger_whether_a_private_repository_exists(server):
    server.create_user("stranger", "stranger-password-1")
    admin_tok = server.token("repository:admin/hidden-refs:pull,push")
    config = b"{}"
    r = server.v2("POST", f"/v2/admin/hidden-refs/blobs/uploads/?digest={sha256(config)}", admin_tok, data=config)
    assert r.status_code == 201, r.text
    subject = sha256(b"subject")
    answers = []
    for name in ("admin/hidden-refs", "admin/not-there-at-all"):
        tok = server.token(f"repository:{name}:pull", auth=("stranger", "stranger-password-1"))
        r = server.v2("GET", f"/v2/{name}/referrers/{subject}", tok)
        answers.append((r.status_code, codes(r)))
    assert answers == [(403, ["DENIED"]), (403, ["DENIED"])]


# -- 2. upload status with a pull-only token (the out-of-order chunk tests) ---------------------------

def test_upload_status_after_an_out_of_order_chunk_needs_only_pull(server):
    repo = "admin/chunk-status"
    push_tok = server.token(f"repository:{repo}:pull,push")
    pull_tok = server.token(f"repository:{repo}:pull")
    r = server.v2("POST", f"/v2/{repo}/blobs/uploads/", push_tok)
    assert r.status_code == 202
    location = r.headers["Location"]
    data = bytes(range(30))
    r = server.v2("PATCH", location, push_tok, data=data[:10],
                  headers={"Content-Type": "application/octet-stream", "Content-Range": "0-9"})
    assert r.status_code == 202
    r = server.v2("PATCH", location, push_tok, data=data[20:],
                  headers={"Content-Type": "application/octet-stream", "Content-Range": "20-29"})
    assert r.status_code == 416
    # The client now asks where the upload stands, with the token it pulls with (as the suite does).
    for method in ("GET", "HEAD"):
        r = server.v2(method, location, pull_tok)
        assert r.status_code == 204, r.text
        assert r.headers["Range"] == "0-9" and r.headers["Location"] == location
    # Changing the session still needs push; anonymous callers still get the challenge.
    r = server.v2("PATCH", location, pull_tok, data=data[10:20],
                  headers={"Content-Type": "application/octet-stream", "Content-Range": "10-19"})
    assert r.status_code == 403 and codes(r) == ["DENIED"]
    assert 'error="insufficient_scope"' in r.headers["WWW-Authenticate"]
    r = server.v2("GET", location)
    assert r.status_code == 401 and codes(r) == ["UNAUTHORIZED"]
    r = server.v2("PUT", f"{location}?digest={sha256(data)}", push_tok, data=data[10:],
                  headers={"Content-Type": "application/octet-stream", "Content-Range": "10-29"})
    assert r.status_code == 201, r.text


# -- 9. basic credentials on /v2, with real curl ------------------------------------------------------

class Curl:
    def __init__(self, server, tmp: Path):
        self.server, self.tmp = server, tmp

    def __call__(self, method: str, path: str, user: str | None = None, data: bytes | None = None,
                 headers: dict | None = None):
        body_out, head_out = self.tmp / "body.out", self.tmp / "head.out"
        args = ["curl", "-sS", "-X", method, "-o", str(body_out), "-D", str(head_out), "-w", "%{http_code}"]
        if method == "HEAD":
            args[2:4] = ["-I"]
        if user is not None:
            args += ["-u", user]
        for key, value in (headers or {}).items():
            args += ["-H", f"{key}: {value}"]
        if data is not None:
            body_in = self.tmp / "body.in"
            body_in.write_bytes(data)
            args += ["--data-binary", f"@{body_in}"]
        args.append(f"{self.server.url}{path}")
        done = subprocess.run(args, capture_output=True, text=True, timeout=60, check=True)
        head = {}
        for line in head_out.read_text().splitlines()[1:]:
            key, sep, value = line.partition(":")
            if sep:
                head[key.strip().lower()] = value.strip()
        return int(done.stdout), head, body_out.read_bytes() if body_out.exists() else b""


@pytest.fixture(scope="module")
def server(server_both_paths):
    """Every test of this module runs with the registry's read path and without it (tests/registry/conftest.py)."""
    return server_both_paths


@pytest.fixture
def curl(server, tmp_path):
    return Curl(server, tmp_path)


def curl_push(curl, user: str, repo: str, tag: str, seed: bytes) -> tuple[int, str, bytes]:
    """A whole push with curl -u: a monolithic config blob, a chunked layer, the manifest. (status, digest, bytes)"""
    config = json.dumps({"architecture": "amd64", "os": "linux", "seed": seed.hex()}).encode()
    layer = b"curl layer " + seed
    status, head, _ = curl("POST", f"/v2/{repo}/blobs/uploads/?digest={sha256(config)}", user, config,
                           {"Content-Type": "application/octet-stream"})
    if status != 201:
        return status, "", b""
    status, head, _ = curl("POST", f"/v2/{repo}/blobs/uploads/", user)
    assert status == 202
    location = head["location"]
    status, head, _ = curl("PATCH", location, user, layer, {"Content-Type": "application/octet-stream"})
    assert status == 202
    status, head, _ = curl("PUT", f"{location}?digest={sha256(layer)}", user, b"",
                           {"Content-Type": "application/octet-stream"})
    assert status == 201
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256(layer),
                    "size": len(layer)}]}).encode()
    status, head, _ = curl("PUT", f"/v2/{repo}/manifests/{tag}", user, manifest, {"Content-Type": OCI_MANIFEST})
    return status, head.get("docker-content-digest", ""), manifest


def test_curl_with_basic_credentials_pushes_and_pulls(server, curl):
    user = f"admin:{ADMIN_PASSWORD}"
    status, head, body = curl("GET", "/v2/", user)
    assert status == 200 and json.loads(body) == {}
    # Clients that send nothing still get the token challenge; wrong credentials get 401.
    status, head, body = curl("GET", "/v2/")
    assert status == 401 and head["www-authenticate"].startswith("Bearer realm=")
    status, head, body = curl("GET", "/v2/admin/curl-basic/manifests/v1", "admin:not-the-password")
    assert status == 401 and json.loads(body)["errors"][0]["code"] == "UNAUTHORIZED"
    assert head["www-authenticate"].startswith("Bearer realm=")

    status, digest, manifest = curl_push(curl, user, "admin/curl-basic", "v1", b"one")
    assert status == 201 and digest == sha256(manifest)
    status, head, body = curl("GET", "/v2/admin/curl-basic/manifests/v1", user, headers={"Accept": OCI_MANIFEST})
    assert status == 200 and body == manifest
    assert head["docker-content-digest"] == digest and head["content-type"] == OCI_MANIFEST
    status, head, _ = curl("HEAD", "/v2/admin/curl-basic/manifests/v1", user)
    assert status == 200 and head["docker-content-digest"] == digest
    status, _, body = curl("GET", "/v2/admin/curl-basic/tags/list", user)
    assert status == 200 and json.loads(body)["tags"] == ["v1"]
    status, _, body = curl("GET", "/v2/_catalog", user)
    assert status == 200 and "admin/curl-basic" in json.loads(body)["repositories"]
    status, _, body = curl("GET", f"/v2/admin/curl-basic/blobs/{json.loads(manifest)['layers'][0]['digest']}", user)
    assert status == 200 and body == b"curl layer one"
    status, _, _ = curl("DELETE", "/v2/admin/curl-basic/manifests/v1", user)
    assert status == 202
    # Bearer tokens work as before next to it.
    tok = server.token("repository:admin/curl-basic:pull")
    assert server.v2("GET", "/v2/admin/curl-basic/tags/list", tok).status_code == 200


def test_basic_credentials_get_exactly_what_a_token_would(server, curl):
    admin = Api(server, auth=ADMIN)
    server.create_user("reader", "reader-password-1")
    server.create_user("nobody", "nobody-password-1")
    status, _, _ = curl_push(curl, f"admin:{ADMIN_PASSWORD}", "admin/granted", "v1", b"granted")
    assert status == 201
    admin.ok("PUT", "/repository/admin/granted/permissions/user/reader", {"role": "read"})
    robot = admin.ok("PUT", "/user/robots/ci", {})
    admin.ok("PUT", "/repository/admin/granted/permissions/user/admin+ci", {"role": "write"})
    app_token = Api(server, auth=("reader", "reader-password-1")).ok(
        "POST", "/user/apptoken", {"title": "curl"})["token"]["token_code"]
    read_token = admin.ok("POST", "/user/apitokens", {"title": "ro", "scopes": ["repo:read"]})["token"]["token_code"]

    logins = {
        "reader": ("reader", "reader-password-1"),
        "nobody": ("nobody", "nobody-password-1"),
        "robot": ("admin+ci", robot["token"]),
        "app": ("$app", app_token),
        "api-read": ("$token", read_token),
    }
    for what, (username, password) in logins.items():
        granted = json.loads(_token_payload(server.token("repository:admin/granted:pull,push",
                                                         auth=(username, password))))["access"][0]["actions"]
        user = f"{username}:{password}"
        pull, _, _ = curl("GET", "/v2/admin/granted/manifests/v1", user, headers={"Accept": OCI_MANIFEST})
        push, _, _ = curl_push(curl, user, "admin/granted", f"by-{what}", what.encode())
        assert (pull == 200) == ("pull" in granted), (what, pull, granted)
        assert (push == 201) == ("push" in granted), (what, push, granted)
        assert pull in (200, 403) and push in (201, 403), (what, pull, push)
    assert curl("GET", "/v2/admin/granted/manifests/by-robot", f"admin+ci:{robot['token']}",
                headers={"Accept": OCI_MANIFEST})[0] == 200
    # A robot never reaches outside its namespace, with basic credentials either.
    status, _, _ = curl_push(curl, f"admin+ci:{robot['token']}", "reader/elsewhere", "v1", b"x")
    assert status == 403


def _token_payload(token: str) -> str:
    import base64

    part = token.split(".")[1]
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)).decode()


def test_verified_basic_credentials_are_remembered_briefly():
    claims = basic.remember("someone", "pw", ANONYMOUS)
    assert basic.cached("someone", "pw") is claims
    assert basic.cached("someone", "other") is None
    assert basic.cached("someone-else", "pw") is None
    claims.expires = 0  # past its TTL
    assert basic.cached("someone", "pw") is None


# -- an answer given before the body was read closes the connection, and says so ---------------------

def _exchange(sock, request: bytes) -> tuple[int, dict, bytes]:
    """Send one HTTP/1.1 request on a kept-alive socket; read one response (Content-Length bodies)."""
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "connection closed before a response"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    while len(body) < int(headers.get("content-length", 0)):
        body += sock.recv(65536)
    return int(lines[0].split()[1]), headers, body


def test_an_upload_refused_before_its_body_is_read_says_connection_close(server):
    import socket

    repo = "admin/conn-close"
    tok = server.token(f"repository:{repo}:pull,push")
    location = server.v2("POST", f"/v2/{repo}/blobs/uploads/", tok).headers["Location"]
    chunk = b"x" * 10

    def patch(content_range: str) -> bytes:
        return (f"PATCH {location} HTTP/1.1\r\nHost: {server.host}\r\nAuthorization: Bearer {tok}\r\n"
                f"Content-Type: application/octet-stream\r\nContent-Range: {content_range}\r\n"
                f"Content-Length: {len(chunk)}\r\n\r\n").encode() + chunk

    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        status, headers, _ = _exchange(sock, patch("0-9"))
        assert status == 202 and headers.get("connection", "").lower() != "close"
        status, headers, _ = _exchange(sock, patch("20-29"))  # out of order: refused in prepare
        assert status == 416
        assert headers.get("connection", "").lower() == "close"
        assert sock.recv(1) == b""  # and closed, as announced


def test_an_upload_is_cancelled_with_a_push_or_a_delete_token(server):
    repo = "admin/cancel-upload"
    push_tok = server.token(f"repository:{repo}:pull,push")
    for scope, status in (("pull", 403), ("delete", 204), ("pull,push", 204)):
        location = server.v2("POST", f"/v2/{repo}/blobs/uploads/", push_tok).headers["Location"]
        r = server.v2("DELETE", location, server.token(f"repository:{repo}:{scope}"))
        assert r.status_code == status, (scope, r.text)
        if status == 204:
            assert server.v2("GET", location, push_tok).status_code == 404


def test_basic_credentials_end_at_once_when_the_password_changes_or_a_grant_goes(server, curl):
    server.create_user("basicbob", "basicbob-pass-1")
    status, _, _ = curl_push(curl, f"admin:{ADMIN_PASSWORD}", "admin/granted", "v1", b"granted")
    assert status == 201
    admin = Api(server, ("admin", ADMIN_PASSWORD))
    admin.ok("PUT", "/repository/admin/granted/permissions/user/basicbob", {"role": "read"})
    path = "/v2/admin/granted/manifests/v1"
    assert curl("GET", path, "basicbob:basicbob-pass-1")[0] == 200  # verified, and remembered
    admin.ok("DELETE", "/repository/admin/granted/permissions/user/basicbob")
    assert curl("GET", path, "basicbob:basicbob-pass-1")[0] in (401, 403)  # not 60 s later: now

    assert curl("GET", "/v2/", "basicbob:basicbob-pass-1")[0] == 200
    server.cli("admin", "reset-password", "basicbob", "--password", "basicbob-pass-2")
    assert curl("GET", "/v2/", "basicbob:basicbob-pass-1")[0] == 401
    assert curl("GET", "/v2/", "basicbob:basicbob-pass-2")[0] == 200
