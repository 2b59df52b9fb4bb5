"""The audit log: exactly one entry per security-relevant action, and its API (list, aggregate, export)."""
from __future__ import annotations

import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import requests

from tests.api import Api
from tests.conftest import ADMIN_PASSWORD, SlipwayServer

PASSWORD = "password-123"


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    srv = SlipwayServer(tmp_path_factory.mktemp("audit"),
                        extra_env={"SLIPWAY_NETWORK__ALLOWLIST": "127.0.0.1/32"}).start()
    yield srv
    srv.stop()


class Log:
    """Reads the entries written since the last call."""

    def __init__(self, server):
        self.server = server
        self.last = self._max()

    def _max(self) -> int:
        return self.server.sql("SELECT COALESCE(MAX(id), 0) FROM log_entry")[0][0]

    def new(self, wait_for: int = 0) -> list[tuple]:
        deadline = time.time() + 5
        while True:
            rows = self.server.sql("SELECT id, kind, performer, performer_kind, namespace, repository, metadata "
                                   "FROM log_entry WHERE id > ? ORDER BY id", self.last)
            if len(rows) >= wait_for or time.time() > deadline:
                break
            time.sleep(0.1)
        if rows:
            self.last = rows[-1][0]
        return [(r[1], r[2], r[3], r[4], r[5], json.loads(r[6])) for r in rows]


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_every_action_leaves_exactly_its_entry(audited):
    admin = Api(audited, ("admin", ADMIN_PASSWORD))
    log = Log(audited)

    def expect(kinds_and_details, wait=False):
        entries = log.new(wait_for=len(kinds_and_details) if wait else 0)
        assert [(e[0],) + tuple(e[1:3]) for e in entries] == [(k, p, pk) for k, p, pk, _ in kinds_and_details], \
            entries
        for entry, (_, _, _, check) in zip(entries, kinds_and_details):
            for key, value in check.items():
                got = {"namespace": entry[3], "repository": entry[4]}.get(key, entry[5].get(key))
                assert got == value, (entry, key)

    admin.ok("POST", "/superuser/users/", {"username": "una", "password": PASSWORD})
    expect([("user_create", "admin", "user", {"username": "una"})])
    una = Api(audited, ("una", PASSWORD))
    una.ok("POST", "/organization/", {"name": "org1", "email": "o@o.io"})
    expect([("org_create", "una", "user", {"namespace": "org1"})])
    una.ok("PUT", "/organization/org1", {"email": "new@o.io"})
    expect([("org_change_email", "una", "user", {"email": "new@o.io"})])
    una.ok("PUT", "/organization/org1/team/devs", {"role": "member"})
    expect([("org_create_team", "una", "user", {"team": "devs", "role": "member"})])
    una.ok("PUT", "/organization/org1/team/devs", {"role": "creator"})
    expect([("org_set_team_role", "una", "user", {"team": "devs", "role": "creator"})])
    token = una.ok("PUT", "/organization/org1/robots/bot", {})["token"]
    expect([("create_robot", "una", "user", {"robot": "org1+bot", "namespace": "org1"})])
    una.ok("PUT", "/organization/org1/team/devs/members/org1+bot")
    expect([("org_add_team_member", "una", "user", {"team": "devs", "member": "org1+bot"})])
    una.ok("POST", "/repository", {"namespace": "org1", "repository": "app", "visibility": "private"})
    expect([("create_repo", "una", "user", {"repository": "org1/app", "visibility": "private"})])
    una.ok("PUT", "/repository/org1/app/permissions/user/org1+bot", {"role": "write"})
    expect([("change_repo_permission", "una", "user", {"username": "org1+bot", "role": "write", "is_robot": True})])
    una.ok("PUT", "/repository/org1/app/permissions/team/devs", {"role": "read"})
    expect([("change_repo_permission", "una", "user", {"team": "devs", "role": "read"})])
    una.ok("POST", "/repository/org1/app/changevisibility", {"visibility": "public"})
    expect([("change_repo_visibility", "una", "user", {"visibility": "public"})])

    # registry actions by the robot: push, pull, delete a tag (written in batches, so wait for them)
    registry = requests.get(f"{audited.url}/v2/auth", params={"scope": "repository:org1/app:pull,push,delete"},
                            auth=("org1+bot", token)).json()["token"]
    config = b'{"os":"linux"}'
    audited.v2("POST", f"/v2/org1/app/blobs/uploads/?digest={sha256(config)}", registry, data=config)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": sha256(config), "size": len(config)}, "layers": []}).encode()
    assert audited.v2("PUT", "/v2/org1/app/manifests/v1", registry, data=manifest,
                      headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"}).status_code == 201
    expect([("push_repo", "org1+bot", "robot", {"tag": "v1", "manifest_digest": sha256(manifest),
                                                  "repository": "org1/app"})], wait=True)
    assert audited.v2("GET", "/v2/org1/app/manifests/v1", registry).status_code == 200
    assert audited.v2("HEAD", "/v2/org1/app/manifests/v1", registry).status_code == 200  # HEAD is not a pull
    expect([("pull_repo", "org1+bot", "robot", {"tag": "v1", "namespace": "org1"})], wait=True)
    assert audited.v2("DELETE", "/v2/org1/app/manifests/v1", registry).status_code == 202
    expect([("delete_tag", "org1+bot", "robot", {"tag": "v1"})])

    una.ok("POST", "/organization/org1/robots/bot/regenerate")
    expect([("regenerate_robot_token", "una", "user", {"robot": "org1+bot"})])
    r = requests.get(f"{audited.url}/v2/auth", params={"scope": "repository:org1/app:pull"}, auth=("org1+bot", token))
    assert r.status_code == 401
    expect([("login_failure", None, None, {"username": "org1+bot", "namespace": "org1",
                                           "message": "Invalid robot account or token"})])
    r = requests.get(f"{audited.url}/v2/auth", params={"scope": "repository:org1/app:pull"}, auth=("una", "wrong!!!"))
    assert r.status_code == 401
    expect([("login_failure", None, None, {"username": "una", "namespace": "una"})])
    app = una.ok("POST", "/user/apptoken", {"title": "laptop"})["token"]
    expect([("create_app_specific_token", "una", "user", {"title": "laptop"})])
    una.ok("DELETE", f"/user/apptoken/{app['uuid']}")
    expect([("revoke_app_specific_token", "una", "user", {"title": "laptop"})])
    api = una.ok("POST", "/user/apitokens", {"title": "script", "scopes": ["org:admin"]})["token"]
    expect([("create_api_token", "una", "user", {"scopes": ["org:admin"]})])
    Api(audited, bearer=api["token_code"]).ok("PUT", "/organization/org1/team/ops", {"role": "member"})
    expect([("org_create_team", "una", "token", {"team": "ops"})])  # performed through a token
    una.ok("DELETE", f"/user/apitokens/{api['uuid']}")
    expect([("revoke_api_token", "una", "user", {"title": "script"})])
    proto = una.ok("POST", "/organization/org1/prototypes",
                   {"role": "read", "delegate": {"name": "devs", "kind": "team"}})
    expect([("create_prototype_permission", "una", "user", {"role": "read", "delegate": "devs"})])
    una.ok("PUT", f"/organization/org1/prototypes/{proto['id']}", {"role": "write"})
    expect([("modify_prototype_permission", "una", "user", {"role": "write", "previous_role": "read"})])
    una.ok("DELETE", f"/organization/org1/prototypes/{proto['id']}")
    expect([("delete_prototype_permission", "una", "user", {"role": "write"})])
    una.ok("DELETE", "/repository/org1/app/permissions/team/devs")
    expect([("delete_repo_permission", "una", "user", {"team": "devs"})])
    una.ok("DELETE", "/organization/org1/team/devs/members/org1+bot")
    expect([("org_remove_team_member", "una", "user", {"member": "org1+bot"})])
    una.ok("DELETE", "/organization/org1/robots/bot")
    expect([("delete_robot", "una", "user", {"robot": "org1+bot"})])
    una.ok("DELETE", "/organization/org1/team/devs")
    expect([("org_delete_team", "una", "user", {"team": "devs"})])
    una.ok("DELETE", "/repository/org1/app")
    expect([("delete_repo", "una", "user", {"repository": "org1/app"})])
    una.ok("PUT", "/user/", {"password": "changed-pass-1"})
    expect([("user_change_password", "una", "user", {"username": "una"})])
    una = Api(audited, ("una", "changed-pass-1"))
    una.ok("DELETE", "/organization/org1")
    expect([("org_delete", "una", "user", {"namespace": "org1"})])
    # reading, and refused requests, leave nothing
    una.ok("GET", "/user/")
    assert una.put("/organization/nope/team/x", {"role": "member"}).status_code == 404
    assert log.new() == []


def test_log_api_pages_filters_aggregates_and_exports(audited):
    admin = Api(audited, ("admin", ADMIN_PASSWORD))
    admin.ok("POST", "/superuser/users/", {"username": "vic", "password": PASSWORD})
    vic = Api(audited, ("vic", PASSWORD))
    vic.ok("POST", "/organization/", {"name": "busy", "email": "b@b.io"})
    vic.ok("POST", "/repository", {"namespace": "busy", "repository": "r", "visibility": "private"})
    for i in range(130):
        vic.ok("PUT", "/organization/busy/team/team1", {"description": f"d{i}", "role": "member"})
    page = vic.ok("GET", "/organization/busy/logs")
    assert len(page["logs"]) == 100 and "next_page" in page
    assert page["logs"][0]["kind"] == "org_set_team_description"
    assert page["logs"][0]["metadata"]["description"] == "d129"
    assert page["logs"][0]["performer"] == {"kind": "user", "name": "vic", "is_robot": False}
    rest = vic.ok("GET", f"/organization/busy/logs?next_page={page['next_page']}")
    assert "next_page" not in rest
    kinds = [e["kind"] for e in page["logs"] + rest["logs"]]
    # 1 org + 1 repo + 1 team (created with description d0) + 129 changes, newest first
    assert len(kinds) == 132 and kinds[-1] == "org_create"
    repo_logs = vic.ok("GET", "/repository/busy/r/logs")["logs"]
    assert [e["kind"] for e in repo_logs] == ["create_repo"]
    today = time.strftime("%m/%d/%Y", time.gmtime())
    aggregated = vic.ok("GET", f"/organization/busy/aggregatelogs?starttime={today}&endtime={today}")["aggregated"]
    assert {a["kind"]: a["count"] for a in aggregated} == {"org_create": 1, "create_repo": 1, "org_create_team": 1,
                                                           "org_set_team_description": 129}
    assert vic.ok("GET", "/organization/busy/logs?starttime=01/01/2020&endtime=01/02/2020")["logs"] == []
    r = vic.get("/organization/busy/logs?starttime=yesterday")
    assert r.status_code == 400 and "MM/DD/YYYY" in r.json()["detail"]
    assert Api(audited, ("admin", ADMIN_PASSWORD)).ok("GET", "/organization/busy/logs")["logs"]  # superuser
    admin.ok("POST", "/superuser/users/", {"username": "wendy", "password": PASSWORD})
    assert Api(audited, ("wendy", PASSWORD)).get("/organization/busy/logs").status_code == 403

    download = vic.get("/organization/busy/exportlogs")
    lines = [json.loads(line) for line in download.text.splitlines()]
    assert download.headers["Content-Type"] == "application/x-ndjson" and len(lines) == 132
    assert lines[0]["kind"] == "org_create"  # oldest first in exports

    received = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    receiver = HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        started = vic.ok("POST", "/organization/busy/exportlogs",
                         {"callback_url": f"http://127.0.0.1:{receiver.server_port}/done"})
        deadline = time.time() + 10
        while not received and time.time() < deadline:
            time.sleep(0.1)
        assert received and received[0]["export_id"] == started["export_id"] and received[0]["status"] == "success"
        exported = requests.get(received[0]["exported_data_url"], timeout=10)
        assert len(exported.text.splitlines()) == 132
    finally:
        receiver.shutdown()


def test_export_callback_to_a_private_address_is_refused(server):
    admin = Api(server, ("admin", ADMIN_PASSWORD))
    r = admin.post("/user/exportlogs", {"callback_url": "http://127.0.0.1:9/x"})
    assert r.status_code == 400 and "non-public address" in r.json()["detail"]
    r = admin.post("/user/exportlogs", {"callback_url": "ftp://example.org/x"})
    assert r.status_code == 400 and "http://" in r.json()["detail"]
