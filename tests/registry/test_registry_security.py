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


# -- 3. issued tokens end with the rights they carry -------------------------------------------------

from tests.api import Api  # noqa: E402
from tests.conftest import ADMIN_PASSWORD, SlipwayServer  # noqa: E402

PASSWORD = "password-123"


def registry_token(server, auth, scope: str) -> str:
    import requests

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
    Api(server, ("admin", ADMIN_PASSWORD)).ok("POST", "/superuser/users/", {"username": "newcomer", "password": PASSWORD})
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
    from tests.conftest import USE_PG, new_database_url

    if USE_PG:
        pytest.skip("PostgreSQL sequences never reuse ids; the rebuild is SQLite's")
    database = slipway_db.bind(slipway_db.open_database(new_database_url(tmp_path)))
    try:
        migrate.migrate(up_to={"slipway": 99, "accounts": 2})
        for name in ("a", "b", "c"):
            database.execute_sql("INSERT INTO account (name, kind, superuser, enabled, description, created_at, "
                                 "time_machine_s) VALUES (?, 'user', 0, 1, '', 0, 0)", (name,))
        database.execute_sql("INSERT INTO log_entry (kind, performer_id, created_at, metadata) "
                             "VALUES ('x', 7, 0, '{}')")  # an account id 7 existed once
        database.execute_sql("DELETE FROM account WHERE name = 'c'")
        migrate.migrate()
        assert "AUTOINCREMENT" in database.execute_sql(
            "SELECT sql FROM sqlite_master WHERE name = 'account'").fetchone()[0]
        database.execute_sql("INSERT INTO account (name, kind, superuser, enabled, description, created_at, "
                             "time_machine_s) VALUES ('d', 'user', 0, 1, '', 0, 0)")
        assert database.execute_sql("SELECT id FROM account WHERE name = 'd'").fetchone()[0] == 8
        assert [r[0] for r in database.execute_sql("SELECT name FROM account ORDER BY id")] == ["a", "b", "d"]
        assert database.execute_sql("PRAGMA foreign_key_check").fetchall() == []
    finally:
        database.close()
