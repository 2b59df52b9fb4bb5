"""The authorization matrix: every role × every action, on a private and a public repository.

Each cell is asserted allow or deny through the interface a user would use:
/v2 with a token from /v2/auth for pull, push, delete tag (and repository
creation by robots), /api/v1 for the rest. Real podman logins cover the main
cells in test_podman_cells.
"""
from __future__ import annotations

import hashlib
import json
import uuid

import pytest
import requests

from tests.api import Api
from tests.conftest import ADMIN_PASSWORD, SlipwayServer

ORG = "acme"
REPOS = {"private": f"{ORG}/private", "public": f"{ORG}/public"}
PASSWORD = "password-123"
ACTIONS = ["pull", "push", "delete_tag", "change_permissions", "create_repo", "view_logs", "manage_robots",
           "manage_teams"]

Y, N = True, False
# role: {action: (private, public)}
EXPECTED = {
    "anonymous":      dict(pull=(N, Y), push=(N, N), delete_tag=(N, N), change_permissions=(N, N),
                           create_repo=(N, N), view_logs=(N, N), manage_robots=(N, N), manage_teams=(N, N)),
    "no_access":      dict(pull=(N, Y), push=(N, N), delete_tag=(N, N), change_permissions=(N, N),
                           create_repo=(N, N), view_logs=(N, N), manage_robots=(N, N), manage_teams=(N, N)),
    "read":           dict(pull=(Y, Y), push=(N, N), delete_tag=(N, N), change_permissions=(N, N),
                           create_repo=(N, N), view_logs=(N, N), manage_robots=(N, N), manage_teams=(N, N)),
    "write":          dict(pull=(Y, Y), push=(Y, Y), delete_tag=(Y, Y), change_permissions=(N, N),
                           create_repo=(N, N), view_logs=(N, N), manage_robots=(N, N), manage_teams=(N, N)),
    "admin":          dict(pull=(Y, Y), push=(Y, Y), delete_tag=(Y, Y), change_permissions=(Y, Y),
                           create_repo=(N, N), view_logs=(Y, Y), manage_robots=(N, N), manage_teams=(N, N)),
    "team_member":    dict(pull=(Y, Y), push=(N, N), delete_tag=(N, N), change_permissions=(N, N),
                           create_repo=(N, N), view_logs=(N, N), manage_robots=(N, N), manage_teams=(N, N)),
    "team_creator":   dict(pull=(N, Y), push=(N, N), delete_tag=(N, N), change_permissions=(N, N),
                           create_repo=(Y, Y), view_logs=(N, N), manage_robots=(N, N), manage_teams=(N, N)),
    "team_admin":     dict(pull=(Y, Y), push=(Y, Y), delete_tag=(Y, Y), change_permissions=(Y, Y),
                           create_repo=(Y, Y), view_logs=(Y, Y), manage_robots=(Y, Y), manage_teams=(Y, Y)),
    "org_owner":      dict(pull=(Y, Y), push=(Y, Y), delete_tag=(Y, Y), change_permissions=(Y, Y),
                           create_repo=(Y, Y), view_logs=(Y, Y), manage_robots=(Y, Y), manage_teams=(Y, Y)),
    "robot_with":     dict(pull=(Y, Y), push=(Y, Y), delete_tag=(Y, Y), change_permissions=(N, N),
                           create_repo=(N, N), view_logs=(N, N), manage_robots=(N, N), manage_teams=(N, N)),
    "robot_without":  dict(pull=(N, Y), push=(N, N), delete_tag=(N, N), change_permissions=(N, N),
                           create_repo=(N, N), view_logs=(N, N), manage_robots=(N, N), manage_teams=(N, N)),
    "robot_creator":  dict(pull=(N, Y), push=(N, N), delete_tag=(N, N), change_permissions=(N, N),
                           create_repo=(Y, Y), view_logs=(N, N), manage_robots=(N, N), manage_teams=(N, N)),
    "robot_elsewhere": dict(pull=(N, Y), push=(N, N), delete_tag=(N, N), change_permissions=(N, N),
                            create_repo=(N, N), view_logs=(N, N), manage_robots=(N, N), manage_teams=(N, N)),
    "token_read":     dict(pull=(Y, Y), push=(N, N), delete_tag=(N, N), change_permissions=(N, N),
                           create_repo=(N, N), view_logs=(N, N), manage_robots=(N, N), manage_teams=(N, N)),
    "token_revoked":  dict(pull=(N, N), push=(N, N), delete_tag=(N, N), change_permissions=(N, N),
                           create_repo=(N, N), view_logs=(N, N), manage_robots=(N, N), manage_teams=(N, N)),
}
CELLS = [(role, action, vis) for role in EXPECTED for action in ACTIONS for vis in ("private", "public")]


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class World:
    """The organization, repositories, teams, robots and credentials the matrix runs against."""

    def __init__(self, server: SlipwayServer):
        self.server = server
        self.admin = Api(server, ("admin", ADMIN_PASSWORD))
        self.creds: dict[str, tuple | None] = {"anonymous": None}
        self.api_auth: dict[str, dict] = {}

    def setup(self) -> "World":
        admin = self.admin
        for user in ("owner", "noaccess", "reader", "writer", "repoadmin", "member", "creator", "teamadmin"):
            admin.ok("POST", "/superuser/users/", {"username": user, "password": PASSWORD, "email": f"{user}@x.io"})
        owner = Api(self.server, ("owner", PASSWORD))
        owner.ok("POST", "/organization/", {"name": ORG, "email": "org@acme.io"})
        owner.ok("POST", "/organization/", {"name": "elsewhere", "email": "org@else.io"})
        for team, role in (("readers", "member"), ("makers", "creator"), ("admins", "admin"),
                           ("builders", "member"), ("robotmakers", "creator")):
            owner.ok("PUT", f"/organization/{ORG}/team/{team}", {"role": role})
        robots = {}
        for ns, name in ((ORG, "ci"), (ORG, "idle"), (ORG, "maker"), ("elsewhere", "bot")):
            robots[f"{ns}+{name}"] = owner.ok("PUT", f"/organization/{ns}/robots/{name}",
                                              {"description": name})["token"]
        for team, member in (("readers", "member"), ("makers", "creator"), ("admins", "teamadmin"),
                             ("builders", f"{ORG}+ci"), ("robotmakers", f"{ORG}+maker")):
            owner.ok("PUT", f"/organization/{ORG}/team/{team}/members/{member}")
        for vis, repo in REPOS.items():
            owner.ok("POST", "/repository", {"namespace": ORG, "repository": repo.split("/")[1], "visibility": vis})
            for user, role in (("reader", "read"), ("writer", "write"), ("repoadmin", "admin")):
                owner.ok("PUT", f"/repository/{repo}/permissions/user/{user}", {"role": role})
            for team, role in (("readers", "read"), ("builders", "write")):
                owner.ok("PUT", f"/repository/{repo}/permissions/team/{team}", {"role": role})
            self.push_image(repo, "v1")
        writer = Api(self.server, ("writer", PASSWORD))
        read_token = writer.ok("POST", "/user/apitokens", {"title": "ci read", "scopes": ["repo:read"]})["token"]
        revoked = writer.ok("POST", "/user/apitokens", {"title": "old", "scopes": ["repo:read", "repo:write"]})["token"]
        writer.ok("DELETE", f"/user/apitokens/{revoked['uuid']}")
        self.creds.update({
            "no_access": ("noaccess", PASSWORD), "read": ("reader", PASSWORD), "write": ("writer", PASSWORD),
            "admin": ("repoadmin", PASSWORD), "team_member": ("member", PASSWORD),
            "team_creator": ("creator", PASSWORD), "team_admin": ("teamadmin", PASSWORD),
            "org_owner": ("owner", PASSWORD),
            "robot_with": (f"{ORG}+ci", robots[f"{ORG}+ci"]), "robot_without": (f"{ORG}+idle", robots[f"{ORG}+idle"]),
            "robot_creator": (f"{ORG}+maker", robots[f"{ORG}+maker"]),
            "robot_elsewhere": ("elsewhere+bot", robots["elsewhere+bot"]),
            "token_read": ("$token", read_token["token_code"]), "token_revoked": ("$token", revoked["token_code"]),
        })
        return self

    # -- helpers --------------------------------------------------------------------------------------
    def registry_token(self, role: str, scope: str) -> str | None:
        r = requests.get(f"{self.server.url}/v2/auth", params={"service": self.server.host, "scope": scope},
                         auth=self.creds[role], timeout=30)
        return r.json()["token"] if r.status_code == 200 else None

    def push_image(self, repo: str, tag: str) -> None:
        token = self.server.token(f"repository:{repo}:pull,push")
        config = json.dumps({"os": "linux", "architecture": "amd64"}).encode()
        assert self.server.v2("POST", f"/v2/{repo}/blobs/uploads/?digest={sha256(config)}", token,
                              data=config).status_code == 201
        manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                               "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                          "digest": sha256(config), "size": len(config)}, "layers": []}).encode()
        assert self.server.v2("PUT", f"/v2/{repo}/manifests/{tag}", token, data=manifest,
                              headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"}).status_code == 201

    def api_for(self, role: str) -> Api:
        creds = self.creds[role]
        if creds is None:
            return Api(self.server)
        if creds[0] == "$token":
            return Api(self.server, bearer=creds[1])
        return Api(self.server, creds)

    # -- actions: True if allowed, False if denied (any other outcome fails the test) ---------------
    def pull(self, role, repo):
        token = self.registry_token(role, f"repository:{repo}:pull")
        if token is None:
            return False
        r = self.server.v2("GET", f"/v2/{repo}/manifests/v1", token)
        return _decide(r, 200)

    def push(self, role, repo):
        token = self.registry_token(role, f"repository:{repo}:pull,push")
        if token is None:
            return False
        r = self.server.v2("POST", f"/v2/{repo}/blobs/uploads/", token)
        if r.status_code == 202:
            self.server.v2("DELETE", r.headers["Location"], token)
        return _decide(r, 202)

    def delete_tag(self, role, repo):
        tag = f"t{uuid.uuid4().hex[:8]}"
        self.push_image(repo, tag)
        token = self.registry_token(role, f"repository:{repo}:delete")
        if token is None:
            return False
        return _decide(self.server.v2("DELETE", f"/v2/{repo}/manifests/{tag}", token), 202)

    def change_permissions(self, role, repo):
        r = self.api_for(role).put(f"/repository/{repo}/permissions/user/noaccess", {"role": "read"})
        if r.status_code == 200:
            self.admin.ok("DELETE", f"/repository/{repo}/permissions/user/noaccess")
        return _decide(r, 200)

    def create_repo(self, role, repo):
        name = f"new{uuid.uuid4().hex[:8]}"
        creds = self.creds[role]
        if creds is not None and "+" in creds[0]:  # robots create repositories by pushing
            token = self.registry_token(role, f"repository:{ORG}/{name}:pull,push")
            return token is not None and _decide(self.server.v2("POST", f"/v2/{ORG}/{name}/blobs/uploads/", token), 202)
        r = self.api_for(role).post("/repository", {"namespace": ORG, "repository": name, "visibility": "private"})
        return _decide(r, 201)

    def view_logs(self, role, repo):
        return _decide(self.api_for(role).get(f"/repository/{repo}/logs"), 200)

    def manage_robots(self, role, repo):
        name = f"r{uuid.uuid4().hex[:8]}"
        r = self.api_for(role).put(f"/organization/{ORG}/robots/{name}", {"description": "matrix"})
        if r.status_code == 201:
            self.admin.ok("DELETE", f"/organization/{ORG}/robots/{name}")
        return _decide(r, 201)

    def manage_teams(self, role, repo):
        name = f"t{uuid.uuid4().hex[:8]}"
        r = self.api_for(role).put(f"/organization/{ORG}/team/{name}", {"role": "member"})
        if r.status_code == 200:
            self.admin.ok("DELETE", f"/organization/{ORG}/team/{name}")
        return _decide(r, 200)


def _decide(response, allowed_status: int) -> bool:
    if response.status_code == allowed_status:
        return True
    # 404: the API does not reveal a private repository to callers who may not read it
    assert response.status_code in (401, 403, 404), \
        f"neither allowed nor denied: {response.status_code} {response.text}"
    body = response.json()
    assert "errors" in body or "error_message" in body  # the API family's own error format
    return False


@pytest.fixture(scope="module")
def world(server):
    return World(server).setup()


@pytest.mark.parametrize("role,action,visibility", CELLS, ids=[f"{r}-{a}-{v}" for r, a, v in CELLS])
def test_matrix_cell(world, role, action, visibility):
    expected = EXPECTED[role][action][0 if visibility == "private" else 1]
    allowed = getattr(world, action)(role, REPOS[visibility])
    assert allowed == expected, f"{role} {action} on {visibility}: expected {'allow' if expected else 'deny'}"


def test_disabled_robots_cannot_log_in_or_be_created(tmp_path):
    srv = SlipwayServer(tmp_path, extra_env={"SLIPWAY_AUTH__ROBOTS_ENABLED": "false"}).start()
    try:
        admin = Api(srv, ("admin", ADMIN_PASSWORD))
        r = admin.put("/user/robots/ci", {"description": "x"})
        message = "Robot accounts have been disabled. Please contact your administrator."
        assert r.status_code == 403 and r.json()["detail"] == message
        srv.sql("INSERT INTO account (name, kind, owner_id, superuser, enabled, description, created_at, "
                "time_machine_s, token_hash) VALUES ('admin+old', 'robot', 1, ?, ?, '', 0, 0, 'x')", False, True)
        r = requests.get(f"{srv.url}/v2/auth", params={"scope": "repository:admin/x:pull"}, auth=("admin+old", "t"))
        assert r.status_code == 401 and r.json()["errors"][0]["message"] == message
    finally:
        srv.stop()
