"""Hardening: scoped tokens stay scoped, reserved names, look-alike names, who may be notified, existence leaks."""
from __future__ import annotations

import requests

from tests.api import Api
from tests.conftest import ADMIN_PASSWORD

PASSWORD = "password-123"


def test_scoped_tokens_stay_scoped_in_the_registry_and_the_api(server):
    admin = Api(server, ("admin", ADMIN_PASSWORD))
    admin.ok("POST", "/superuser/users/", {"username": "scoped", "password": PASSWORD})
    user = Api(server, ("scoped", PASSWORD))
    user.ok("POST", "/repository", {"repository": "private", "visibility": "private"})
    user.ok("POST", "/repository", {"repository": "public", "visibility": "public"})
    reader = user.ok("POST", "/user/apitokens", {"title": "r", "scopes": ["repo:read"]})["token"]["token_code"]
    profile = user.ok("POST", "/user/apitokens", {"title": "p", "scopes": ["user:read"]})["token"]["token_code"]
    admin_token = user.ok("POST", "/user/apitokens", {"title": "a", "scopes": ["user:admin"]})["token"]["token_code"]

    def registry(code, scope):
        r = requests.get(f"{server.url}/v2/auth", params={"scope": scope}, auth=("$token", code))
        return r.json()["token"]

    push = registry(reader, "repository:scoped/private:pull,push")
    assert server.v2("POST", "/v2/scoped/private/blobs/uploads/", push).status_code == 403
    catalog = registry(profile, "registry:catalog:*")
    names = server.v2("GET", "/v2/_catalog", catalog).json()["repositories"]
    assert "scoped/public" in names and "scoped/private" not in names
    listed = [r["name"] for r in Api(server, bearer=profile).ok("GET", "/repository?namespace=scoped")["repositories"]]
    assert listed == ["public"]
    as_token = Api(server, bearer=admin_token)
    r = as_token.post("/user/apptoken", {"title": "sneaky"})
    assert r.status_code == 403 and "password" in r.json()["detail"]
    r = as_token.post("/user/apitokens", {"title": "wider", "scopes": ["repo:admin"]})
    assert r.status_code == 403 and "repo:admin" in r.json()["detail"]
    assert as_token.post("/user/apitokens", {"title": "same", "scopes": ["user:read"]}).status_code == 201


def test_buildcache_repositories_are_the_builders(server):
    admin = Api(server, ("admin", ADMIN_PASSWORD))
    r = admin.post("/repository", {"repository": "app/buildcache", "visibility": "private"})
    assert r.status_code == 403 and "builder only" in r.json()["detail"]
    token = server.token("repository:admin/app/buildcache:pull,push")
    assert server.v2("POST", "/v2/admin/app/buildcache/blobs/uploads/", token).status_code == 403


def test_look_alike_names_with_a_trailing_newline_are_refused(server):
    token = server.token("repository:admin/app:pull,push")
    r = server.v2("GET", "/v2/admin/app%0A/tags/list", token)
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "NAME_INVALID"
    r = Api(server, ("admin", ADMIN_PASSWORD)).post("/organization/", {"name": "acme\n"})
    assert r.status_code == 400


def test_private_and_missing_repositories_look_the_same_to_anonymous_callers(server):
    admin = Api(server, ("admin", ADMIN_PASSWORD))
    admin.ok("POST", "/repository", {"repository": "hidden", "visibility": "private"})
    assert Api(server).get("/repository/admin/hidden").status_code == 401
    assert Api(server).get("/repository/admin/no-such-thing").status_code == 401


def test_in_app_notifications_reach_only_people_of_the_repository(server):
    admin = Api(server, ("admin", ADMIN_PASSWORD))
    admin.ok("POST", "/superuser/users/", {"username": "stranger", "password": PASSWORD})
    admin.ok("POST", "/repository", {"repository": "quiet", "visibility": "private"})
    r = admin.post("/repository/admin/quiet/notification/",
                   {"event": "repo_push", "method": "quay_notification",
                    "config": {"target": {"kind": "user", "name": "stranger"}}})
    assert r.status_code == 400 and "cannot read" in r.json()["detail"]
