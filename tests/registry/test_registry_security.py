"""Registry hardening (issue 11): upload-session races, revocation of issued tokens, bodies refused
before they are read, references that may not dangle, malformed query arguments."""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import socket
import threading
import time

import pytest
import requests

from tests.api import Api
from tests.conftest import ADMIN_PASSWORD, SlipwayServer

REPO = "admin/sec"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def server(server_both_paths):
    """Every test of this module runs with the registry's read path and without it (tests/registry/conftest.py)."""
    return server_both_paths


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
    race_two_patches(server, tok)


def test_the_upload_lock_holds_across_http_processes(tmp_path):
    # Two HTTP processes share the socket: the two connections land on the same or on different
    # processes; either way the second writer is refused (flock on the staged file).
    srv = SlipwayServer(tmp_path, processes=2).start()
    try:
        token = srv.token([f"repository:{REPO}:pull,push"])
        for _ in range(4):
            race_two_patches(srv, token)
    finally:
        srv.stop()


def race_two_patches(server, tok):
    genuine = b"A" * (2 << 20) + os.urandom(16)
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


# -- 3. issued tokens end with the rights they carry -------------------------------------------------


PASSWORD = "password-123"


def registry_token(server, auth, scope: str) -> str:
    r = requests.get(f"{server.url}/v2/auth", params={"scope": scope, "service": server.host}, auth=auth, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["token"]


def tags_status(server, repo: str, token: str) -> int:
    return server.v2("GET", f"/v2/{repo}/tags/list", token).status_code


def push_status(server, repo: str, token: str) -> int:
    return server.v2("POST", f"/v2/{repo}/blobs/uploads/", token).status_code


def test_deleting_a_user_ends_its_registry_tokens_and_its_id_never_comes_back(server):
    admin = Api(server, ("admin", ADMIN_PASSWORD))
    admin.ok("POST", "/superuser/users/", {"username": "leaver", "password": PASSWORD})
    leaver = Api(server, ("leaver", PASSWORD))
    leaver.ok("POST", "/repository", {"repository": "mine", "visibility": "private"})
    token = registry_token(server, ("leaver", PASSWORD), "repository:leaver/mine:pull,push")
    catalog = registry_token(server, ("leaver", PASSWORD), "registry:catalog:*")
    assert tags_status(server, "leaver/mine", token) == 200 and push_status(server, "leaver/mine", token) == 202
    admin.ok("DELETE", "/superuser/users/leaver")
    assert push_status(server, "leaver/mine", token) == 401
    assert tags_status(server, "leaver/mine", token) == 401
    assert server.v2("GET", "/v2/_catalog", catalog).status_code == 401
    Api(server, ("admin", ADMIN_PASSWORD)).ok("POST", "/superuser/users/",
                                              {"username": "newcomer", "password": PASSWORD})
    Api(server, ("newcomer", PASSWORD)).ok("POST", "/repository", {"repository": "secret", "visibility": "private"})
    assert server.v2("GET", "/v2/_catalog", catalog).status_code == 401


def test_account_ids_are_never_reused(server):
    admin = Api(server, ("admin", ADMIN_PASSWORD))
    admin.ok("POST", "/superuser/users/", {"username": "lastone", "password": PASSWORD})
    old_id = server.sql("SELECT id FROM account WHERE name = ?", "lastone")[0][0]
    assert old_id == server.sql("SELECT MAX(id) FROM account")[0][0]
    admin.ok("DELETE", "/superuser/users/lastone")
    admin.ok("POST", "/superuser/users/", {"username": "nextone", "password": PASSWORD})
    assert server.sql("SELECT id FROM account WHERE name = ?", "nextone")[0][0] > old_id


def test_regenerating_a_robot_token_ends_the_old_registry_tokens(server):
    admin = Api(server, ("admin", ADMIN_PASSWORD))
    admin.ok("POST", "/repository", {"repository": "robotic", "visibility": "private"})
    robot = admin.ok("PUT", "/user/robots/deployer", {"description": "d"})
    admin.ok("PUT", "/repository/admin/robotic/permissions/user/admin+deployer", {"role": "write"})
    token = registry_token(server, (robot["name"], robot["token"]), "repository:admin/robotic:pull,push")
    assert push_status(server, "admin/robotic", token) == 202
    fresh = admin.ok("POST", "/user/robots/deployer/regenerate")["token"]
    assert fresh != robot["token"]
    assert push_status(server, "admin/robotic", token) == 401
    assert tags_status(server, "admin/robotic", token) == 401
    renewed = registry_token(server, (robot["name"], fresh), "repository:admin/robotic:pull,push")
    assert push_status(server, "admin/robotic", renewed) == 202
    # deleting the robot ends the new one too
    admin.ok("DELETE", "/user/robots/deployer")
    assert push_status(server, "admin/robotic", renewed) == 401


def test_revoking_a_permission_or_a_team_membership_ends_what_the_token_carried(server):
    admin = Api(server, ("admin", ADMIN_PASSWORD))
    for user in ("owner1", "guest1", "member1"):
        admin.ok("POST", "/superuser/users/", {"username": user, "password": PASSWORD})
    owner = Api(server, ("owner1", PASSWORD))
    owner.ok("POST", "/organization/", {"name": "revokers", "email": "r@x.io"})
    owner.ok("POST", "/repository", {"namespace": "revokers", "repository": "app", "visibility": "private"})
    repo = "revokers/app"
    # a direct user grant
    owner.ok("PUT", f"/repository/{repo}/permissions/user/guest1", {"role": "write"})
    guest = registry_token(server, ("guest1", PASSWORD), f"repository:{repo}:pull,push")
    assert push_status(server, repo, guest) == 202
    owner.ok("PUT", f"/repository/{repo}/permissions/user/guest1", {"role": "read"})  # a lower role
    assert push_status(server, repo, guest) == 403 and tags_status(server, repo, guest) == 200
    owner.ok("DELETE", f"/repository/{repo}/permissions/user/guest1")
    assert tags_status(server, repo, guest) == 403
    # a team grant, then the membership, then the team's grant
    owner.ok("PUT", "/organization/revokers/team/devs", {"role": "member"})
    owner.ok("PUT", "/organization/revokers/team/devs/members/member1")
    owner.ok("PUT", f"/repository/{repo}/permissions/team/devs", {"role": "write"})
    member = registry_token(server, ("member1", PASSWORD), f"repository:{repo}:pull,push")
    assert push_status(server, repo, member) == 202
    owner.ok("DELETE", "/organization/revokers/team/devs/members/member1")
    assert push_status(server, repo, member) == 403 and tags_status(server, repo, member) == 403
    owner.ok("PUT", "/organization/revokers/team/devs/members/member1")
    member = registry_token(server, ("member1", PASSWORD), f"repository:{repo}:pull,push")
    assert push_status(server, repo, member) == 202
    owner.ok("DELETE", f"/repository/{repo}/permissions/team/devs")
    assert push_status(server, repo, member) == 403
    # an unrelated token keeps working (checked again once, still allowed)
    mine = registry_token(server, ("owner1", PASSWORD), f"repository:{repo}:pull,push")
    owner.ok("PUT", f"/repository/{repo}/permissions/user/guest1", {"role": "read"})
    owner.ok("DELETE", f"/repository/{repo}/permissions/user/guest1")
    assert push_status(server, repo, mine) == 202


def test_making_a_repository_private_or_revoking_an_api_token_ends_issued_tokens(server):
    admin = Api(server, ("admin", ADMIN_PASSWORD))
    admin.ok("POST", "/repository", {"repository": "opened", "visibility": "public"})
    anonymous = server.v2("GET", "/v2/auth", params={"scope": "repository:admin/opened:pull",
                                                     "service": server.host}).json()["token"]
    assert tags_status(server, "admin/opened", anonymous) == 200
    admin.ok("POST", "/repository/admin/opened/changevisibility", {"visibility": "private"})
    assert tags_status(server, "admin/opened", anonymous) == 401
    code = admin.ok("POST", "/user/apitokens", {"title": "ci", "scopes": ["repo:write"]})["token"]
    token = registry_token(server, ("$token", code["token_code"]), "repository:admin/opened:pull,push")
    assert push_status(server, "admin/opened", token) == 202
    admin.ok("DELETE", f"/user/apitokens/{code['uuid']}")
    assert push_status(server, "admin/opened", token) == 401


def test_revocation_reaches_the_other_http_processes(tmp_path):
    srv = SlipwayServer(tmp_path, processes=2).start()
    try:
        admin = Api(srv, ("admin", ADMIN_PASSWORD))
        admin.ok("POST", "/superuser/users/", {"username": "roamer", "password": PASSWORD})
        Api(srv, ("roamer", PASSWORD)).ok("POST", "/repository", {"repository": "r", "visibility": "private"})
        token = registry_token(srv, ("roamer", PASSWORD), "repository:roamer/r:pull")
        # Each request on a new connection may land on either process: all of them must refuse.
        for _ in range(10):
            assert tags_status(srv, "roamer/r", token) == 200
        admin.ok("DELETE", "/superuser/users/roamer")
        deadline = time.time() + 5
        refused = 0
        while refused < 20:
            status = tags_status(srv, "roamer/r", token)
            if status == 401:
                refused += 1
            else:
                assert time.time() < deadline, "a process kept accepting a deleted user's token"
                refused = 0
    finally:
        srv.stop()


def test_an_upgraded_sqlite_database_never_hands_out_an_id_the_audit_log_remembers(tmp_path):
    from slipway import db as slipway_db
    from slipway import migrate
    from slipway.app import migrations
    from tests.conftest import USE_PG, new_database_url

    if USE_PG:
        pytest.skip("PostgreSQL sequences never reuse ids; the rebuild is SQLite's")
    database = slipway_db.bind(slipway_db.open_database(new_database_url(tmp_path)))
    try:
        migrate.migrate(migrations(), up_to={"slipway": 99, "accounts": 2})
        for name in ("a", "b", "c"):
            database.execute_sql("INSERT INTO account (name, kind, superuser, enabled, description, created_at, "
                                 "time_machine_s) VALUES (?, 'user', 0, 1, '', 0, 0)", (name,))
        database.execute_sql("INSERT INTO log_entry (kind, performer_id, created_at, metadata) "
                             "VALUES ('x', 7, 0, '{}')")  # an account id 7 existed once
        database.execute_sql("DELETE FROM account WHERE name = 'c'")
        migrate.migrate(migrations())
        assert "AUTOINCREMENT" in database.execute_sql(
            "SELECT sql FROM sqlite_master WHERE name = 'account'").fetchone()[0]
        database.execute_sql("INSERT INTO account (name, kind, superuser, enabled, description, created_at, "
                             "time_machine_s) VALUES ('d', 'user', 0, 1, '', 0, 0)")
        assert database.execute_sql("SELECT id FROM account WHERE name = 'd'").fetchone()[0] == 8
        assert [r[0] for r in database.execute_sql("SELECT name FROM account ORDER BY id")] == ["a", "b", "d"]
        assert database.execute_sql("PRAGMA foreign_key_check").fetchall() == []
    finally:
        database.close()


# -- 4. bodies are refused before they are read ------------------------------------------------------


def _session_rss_kib(sid: int) -> dict[int, int]:
    """RSS (KiB) of every process in the server's session (the server and its forked processes)."""
    sizes = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[3]) != sid:  # field 6 of stat: the session id
                continue
            with open(f"/proc/{entry}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        sizes[int(entry)] = int(line.split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return sizes


def _big_request(server, method: str, path: str, length: int, headers: dict, results: list) -> None:
    """Send headers, then (in a thread) up to ``length`` body bytes; record the status the server answers."""
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.settimeout(60)
    head = f"{method} {path} HTTP/1.1\r\nHost: {server.host}\r\nContent-Length: {length}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    sock.sendall(head.encode())

    def pour():
        block = b"{" * (1 << 20)
        sent = 0
        try:
            while sent < length:
                sock.sendall(block[:min(len(block), length - sent)])
                sent += len(block)
        except OSError:
            pass  # refused and closed by the server: what we want

    pourer = threading.Thread(target=pour, daemon=True)
    pourer.start()
    try:
        status, body = read_response(sock)
        results.append((path, status, body))
    except OSError as e:
        results.append((path, None, repr(e).encode()))
    finally:
        pourer.join(timeout=60)
        sock.close()


def test_large_bodies_are_refused_from_the_headers_and_memory_stays_bounded(server, tok):
    length = 40 * 1024 * 1024
    sid = server.proc.pid  # started with start_new_session: its pid is the session id
    baseline = _session_rss_kib(sid)
    peak = dict(baseline)
    sampling = True

    def sample():
        while sampling:
            for pid, kib in _session_rss_kib(sid).items():
                peak[pid] = max(peak.get(pid, 0), kib)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    json_type = {"Content-Type": "application/json"}
    requests_ = [
        ("POST", "/webhooks/push/trigger/00000000-0000-0000-0000-000000000000", json_type),
        ("POST", "/webhooks/push/trigger/00000000-0000-0000-0000-000000000001", json_type),
        ("POST", "/api/v1/repository", json_type),
        ("PUT", "/api/v1/repository/admin/sec", json_type),
        ("PUT", f"/v2/{REPO}/manifests/big", {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}),
        ("PUT", f"/v2/{REPO}/manifests/big2", {"Content-Type": "application/vnd.oci.image.manifest.v1+json",
                                               "Authorization": f"Bearer {tok}"}),
        ("POST", "/v2/auth", {"Content-Type": "application/x-www-form-urlencoded"}),
        ("POST", "/api/v1/repository", {**json_type, "Authorization": "Basic " + __import__("base64").b64encode(
            f"admin:{ADMIN_PASSWORD}".encode()).decode()}),
    ]
    results: list = []
    threads = [threading.Thread(target=_big_request, args=(server, m, p, length, h, results))
               for m, p, h in requests_]
    started = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    elapsed = time.time() - started
    sampling = False
    sampler.join()
    statuses = [(path, status) for path, status, _ in results]
    growth_mib = max(peak.get(pid, 0) - kib for pid, kib in baseline.items()) / 1024
    print(f"largest RSS growth of a server process: {growth_mib:.1f} MiB, answered in {elapsed:.2f} s")
    assert growth_mib < 48, f"a server process grew by {growth_mib:.0f} MiB while 8 x 40 MiB bodies arrived"
    by_path = {}
    for path, status, body in results:
        by_path.setdefault(path, []).append((status, body))
    assert [s for s, _ in by_path["/webhooks/push/trigger/00000000-0000-0000-0000-000000000000"]] == [404], statuses
    assert sorted(s for s, _ in by_path["/api/v1/repository"]) == [401, 413], statuses
    assert [s for s, _ in by_path["/api/v1/repository/admin/sec"]] == [401], statuses
    assert [s for s, _ in by_path[f"/v2/{REPO}/manifests/big"]] == [401], statuses
    status, body = by_path[f"/v2/{REPO}/manifests/big2"][0]
    assert status == 413 and b"SIZE_INVALID" in body, (status, body)
    assert [s for s, _ in by_path["/v2/auth"]] == [413], statuses
    for path, answers in by_path.items():  # each family's own error format
        for _status, body in answers:
            assert (b'"errors"' in body) if path.startswith("/v2") else (b'"error_type"' in body), (path, body)
    assert elapsed < 30


# -- 9. no dangling references; descriptor sizes checked ---------------------------------------------


OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def _push_blob(server, tok, data: bytes) -> str:
    digest = sha256(data)
    assert server.v2("POST", f"/v2/{REPO}/blobs/uploads/?digest={digest}", tok, data=data).status_code == 201
    return digest


def _image(server, tok, config_size_delta: int = 0) -> tuple[bytes, str, str]:
    config = json.dumps({"architecture": "amd64", "os": "linux", "n": os.urandom(4).hex()}).encode()
    layer = os.urandom(64)
    cd, ld = _push_blob(server, tok, config), _push_blob(server, tok, layer)
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd,
                      "size": len(config) + config_size_delta},
           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": len(layer)}]}
    return json.dumps(doc).encode(), cd, ld


def test_descriptor_sizes_must_match_the_stored_content(server, tok):
    body, _, _ = _image(server, tok, config_size_delta=5)
    r = server.v2("PUT", f"/v2/{REPO}/manifests/wrong-size", tok, data=body, headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "MANIFEST_INVALID", r.text
    assert "size" in r.json()["errors"][0]["message"]
    body, _, _ = _image(server, tok)
    r = server.v2("PUT", f"/v2/{REPO}/manifests/right-size", tok, data=body, headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 201
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": sha256(body), "size": len(body) + 1}]}).encode()
    r = server.v2("PUT", f"/v2/{REPO}/manifests/wrong-index", tok, data=index, headers={"Content-Type": OCI_INDEX})
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "MANIFEST_INVALID", r.text


def test_what_a_tagged_manifest_or_index_uses_cannot_be_deleted(server, tok):
    body, config, layer = _image(server, tok)
    child = sha256(body)
    assert server.v2("PUT", f"/v2/{REPO}/manifests/{child}", tok, data=body,
                     headers={"Content-Type": OCI_MANIFEST}).status_code == 201
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": child, "size": len(body)}]}).encode()
    assert server.v2("PUT", f"/v2/{REPO}/manifests/multi", tok, data=index,
                     headers={"Content-Type": OCI_INDEX}).status_code == 201
    # The child of a tagged index, and a blob of that child, stay.
    r = server.v2("DELETE", f"/v2/{REPO}/manifests/{child}", tok)
    assert r.status_code == 405 and r.json()["errors"][0]["code"] == "UNSUPPORTED", r.text
    assert "multi" in r.json()["errors"][0]["message"]
    r = server.v2("DELETE", f"/v2/{REPO}/blobs/{layer}", tok)
    assert r.status_code == 405 and "multi" in r.json()["errors"][0]["message"], r.text
    assert server.v2("GET", f"/v2/{REPO}/manifests/{child}", tok).status_code == 200
    assert server.v2("GET", f"/v2/{REPO}/blobs/{layer}", tok).status_code == 200
    # Untagging the index frees them, in the order the conformance suite deletes things.
    assert server.v2("DELETE", f"/v2/{REPO}/manifests/multi", tok).status_code == 202
    assert server.v2("DELETE", f"/v2/{REPO}/manifests/{child}", tok).status_code == 202
    assert server.v2("DELETE", f"/v2/{REPO}/blobs/{config}", tok).status_code == 202
    assert server.v2("DELETE", f"/v2/{REPO}/blobs/{layer}", tok).status_code == 202
    assert server.v2("GET", f"/v2/{REPO}/blobs/{layer}", tok).status_code == 404
    # A tagged image's own blob is refused too; deleting the image by digest frees it.
    body, config, layer = _image(server, tok)
    assert server.v2("PUT", f"/v2/{REPO}/manifests/single", tok, data=body,
                     headers={"Content-Type": OCI_MANIFEST}).status_code == 201
    assert server.v2("DELETE", f"/v2/{REPO}/blobs/{config}", tok).status_code == 405
    assert server.v2("DELETE", f"/v2/{REPO}/manifests/{sha256(body)}", tok).status_code == 202
    assert server.v2("DELETE", f"/v2/{REPO}/blobs/{config}", tok).status_code == 202


# -- also found: malformed input is a 400 in the family's format, never a 500 -------------------------


DEEP = b"[" * 100000 + b"]" * 100000


def test_deeply_nested_json_is_a_400_everywhere(server, tok):
    r = server.v2("PUT", f"/v2/{REPO}/manifests/deep", tok, data=DEEP, headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "MANIFEST_INVALID", r.text
    admin = Api(server, ("admin", ADMIN_PASSWORD))
    r = admin.request("POST", "/repository", data=DEEP, headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "nested too deeply" in r.json()["detail"], r.text


def _github_trigger(server, repo_name: str, secret: str) -> str:
    admin = Api(server, ("admin", ADMIN_PASSWORD))
    admin.ok("POST", "/repository", {"repository": repo_name, "visibility": "private"})
    created = admin.ok("POST", f"/repository/admin/{repo_name}/trigger/",
                       {"service": "github", "config": {"build_source": "https://github.com/acme/app.git"}})
    admin.ok("POST", f"/repository/admin/{repo_name}/trigger/{created['id']}/activate", {"webhook_secret": secret})
    return f"{server.url}/webhooks/push/trigger/{created['id']}"


def test_malformed_signed_webhook_payloads_are_a_400(server):
    hook = _github_trigger(server, "hooked", "s3cret")

    def send(body: bytes) -> requests.Response:
        signature = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
        return requests.post(hook, data=body, timeout=30, headers={
            "X-GitHub-Event": "push", "X-Hub-Signature-256": signature, "Content-Type": "application/json"})

    r = send(DEEP)
    assert r.status_code == 400 and "nested too deeply" in r.json()["detail"], r.text
    body = json.dumps({"ref": "refs/heads/main", "after": "a" * 40, "head_commit": "a" * 40,
                       "repository": {"clone_url": "https://github.com/acme/app.git"}}).encode()
    r = send(body)
    assert r.status_code == 400 and "head_commit must be an object" in r.json()["detail"], r.text


@pytest.mark.parametrize("query", ["n=99999999999999999999999", "n=abc", "n=-1", "n=1.5"])
def test_bad_page_sizes_on_v2_are_a_400(server, tok, query):
    for path in (f"/v2/{REPO}/tags/list?{query}", f"/v2/_catalog?{query}"):
        token = tok if "tags" in path else server.token("registry:catalog:*")
        r = server.v2("GET", path, token)
        assert r.status_code == 400 and r.json()["errors"][0]["code"] == "UNSUPPORTED", (path, r.text)
        assert "n must be" in r.json()["errors"][0]["message"]


@pytest.mark.parametrize("path", [
    f"/repository/{REPO}/tag/?page=99999999999999999999",
    f"/repository/{REPO}/tag/?page=0",
    f"/repository/{REPO}/tag/?limit=abc",
    f"/repository/{REPO}/tag/?limit=-5",
    f"/repository/{REPO}/build/?limit=abc",
    f"/repository/{REPO}/build/?limit=-5",
    f"/repository/{REPO}/build/?limit=99999999999999999999999",
])
def test_bad_paging_arguments_on_the_api_are_a_400(server, tok, path):
    server.v2("GET", f"/v2/{REPO}/tags/list", tok)  # (the repository exists from earlier tests)
    r = Api(server, ("admin", ADMIN_PASSWORD)).get(path)
    if "limit=9999" in path:  # a page size above the maximum is lowered to it, as Quay does
        assert r.status_code == 200, r.text
        return
    assert r.status_code == 400, r.text
    assert r.json()["error_type"] == "invalid_request" and ("must be" in r.json()["detail"]), r.text


def test_limit_minus_five_no_longer_returns_everything(server):
    hook = _github_trigger(server, "limited", "x")
    trigger_id = hook.rsplit("/", 1)[1]
    r = Api(server, ("admin", ADMIN_PASSWORD)).get(f"/repository/admin/limited/trigger/{trigger_id}/builds?limit=-5")
    assert r.status_code == 400 and "limit must be at least 1" in r.json()["detail"], r.text


def test_huge_start_of_build_logs_is_a_400(server):
    Api(server, ("admin", ADMIN_PASSWORD)).ok("POST", "/repository", {"repository": "logged", "visibility": "private"})
    repo_id = server.sql("SELECT r.id FROM repository r JOIN account a ON a.id = r.namespace_id "
                         "WHERE a.name = 'admin' AND r.name = 'logged'")[0][0]
    build = "11111111-2222-3333-4444-555555555555"
    server.sql("INSERT INTO build (uuid, repository_id, phase, docker_tags, dockerfile_path, context, build_args, "
               "source, trigger_metadata, created_at, manifest_digests, retries_remaining, cancel_requested, "
               "log_count, log_bytes, log_truncated) VALUES (?, ?, 'complete', '[]', 'Dockerfile', '', ?, "
               "'upload', '{}', 0, '[]', 0, ?, 0, 0, ?)", build, repo_id, server.encrypt("{}"), False, False)
    admin = Api(server, ("admin", ADMIN_PASSWORD))
    assert admin.get(f"/repository/admin/logged/build/{build}/logs?start=3").status_code == 200
    for query in ("start=99999999999999999999", "start=-1", "start=x"):
        r = admin.get(f"/repository/admin/logged/build/{build}/logs?{query}")
        assert r.status_code == 400 and "start must be" in r.json()["detail"], (query, r.text)
    r = admin.get(f"/repository/admin/logged/build/{build}/logs/stream",
                  headers={"Last-Event-ID": "99999999999999999999"}, stream=True)
    assert r.status_code == 400, r.text


def test_an_answer_without_reading_a_body_keeps_bodiless_connections_alive(server, tok):
    import http.client

    r = server.v2("POST", f"/v2/{REPO}/blobs/uploads/", tok)
    location = r.headers["Location"]
    elsewhere = server.token("repository:admin/elsewhere:pull")  # nothing on REPO
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        answers = []
        for method, path, headers in [
            ("GET", location, {"Authorization": f"Bearer {elsewhere}"}),  # 403 from prepare()
            ("GET", "/api/v1/repository/admin/sec", {}),  # 401 from prepare()
            ("DELETE", f"/v2/{REPO}/blobs/{sha256(b'never pushed')}", {"Authorization": f"Bearer {tok}"}),
        ]:
            conn.request(method, path, headers=headers)
            response = conn.getresponse()
            response.read()
            answers.append(response.status)
            assert not response.will_close, (method, path, response.status)
        assert answers == [403, 401, 404]
    finally:
        conn.close()
