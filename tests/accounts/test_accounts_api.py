"""Users, organizations, teams, robots, tokens and default permissions through /api/v1, with real clients."""
from __future__ import annotations

import json

import pytest
import requests

from tests.api import Api
from tests.conftest import ADMIN_PASSWORD
from tests.images import make_oci_layout

PASSWORD = "password-123"


@pytest.fixture(scope="module")
def admin(server):
    return Api(server, ("admin", ADMIN_PASSWORD))


@pytest.fixture(scope="module")
def people(server, admin):
    for user in ("olga", "pete", "quinn"):
        admin.ok("POST", "/superuser/users/", {"username": user, "password": PASSWORD, "email": f"{user}@x.io"})
    olga = Api(server, ("olga", PASSWORD))
    olga.ok("POST", "/organization/", {"name": "widgets", "email": "w@widgets.io"})
    olga.ok("POST", "/organization/", {"name": "gadgets", "email": "g@gadgets.io"})
    return {"olga": olga, "pete": Api(server, ("pete", PASSWORD)), "quinn": Api(server, ("quinn", PASSWORD))}


def errors(r) -> str:
    body = r.json()
    assert set(body) >= {"status", "error_type", "title", "detail", "error_message", "type"}
    assert body["status"] == r.status_code
    return body["detail"]


def test_user_settings_and_public_view(server, people):
    olga = people["olga"]
    me = olga.ok("GET", "/user/")
    assert me["username"] == "olga" and me["email"] == "olga@x.io" and not me["super_user"]
    assert {o["name"]: o["is_org_admin"] for o in me["organizations"]} == {"widgets": True, "gadgets": True}
    olga.ok("PUT", "/user/", {"email": "olga@new.io"})
    assert olga.ok("GET", "/user/")["email"] == "olga@new.io"
    assert people["pete"].ok("GET", "/users/olga")["username"] == "olga"
    assert Api(server).get("/user/").status_code == 401


def test_change_password_takes_effect_at_once(server, admin):
    admin.ok("POST", "/superuser/users/", {"username": "rita", "password": PASSWORD})
    rita = Api(server, ("rita", PASSWORD))
    rita.ok("GET", "/user/")
    rita.ok("PUT", "/user/", {"password": "another-pass-9"})
    assert rita.get("/user/").status_code == 401  # the remembered login does not outlive the old password
    assert Api(server, ("rita", "another-pass-9")).ok("GET", "/user/")["username"] == "rita"
    r = Api(server, ("rita", "another-pass-9")).put("/user/", {"password": "short"})
    assert r.status_code == 400 and "at least 8 characters" in errors(r)


def test_superuser_creates_users_with_a_generated_password(server, admin):
    created = admin.ok("POST", "/superuser/users/", {"username": "sam", "email": "sam@x.io"})
    assert len(created["password"]) >= 12
    assert Api(server, ("sam", created["password"])).ok("GET", "/user/")["username"] == "sam"
    r = Api(server, ("sam", created["password"])).post("/superuser/users/", {"username": "eve"})
    assert r.status_code == 403


def test_superuser_disables_users_and_grants_superuser_rights(server, admin):
    admin.ok("POST", "/superuser/users/", {"username": "dora", "password": "dora-password-1"})
    dora = Api(server, ("dora", "dora-password-1"))
    assert dora.put("/superuser/users/dora", {"enabled": False}).status_code == 403  # not a superuser
    view = admin.ok("PUT", "/superuser/users/dora", {"superuser": True})
    assert view["super_user"] is True and view["enabled"] is True
    assert dora.ok("GET", "/superuser/users/")["users"]
    r = dora.put("/superuser/users/dora", {"superuser": False})
    assert r.status_code == 400 and "your own" in errors(r)  # nobody locks themselves out
    assert admin.ok("PUT", "/superuser/users/dora", {"enabled": False, "superuser": False})["enabled"] is False
    assert dora.get("/user/").status_code == 401
    admin.ok("PUT", "/superuser/users/dora", {"enabled": True})
    assert dora.ok("GET", "/user/")["super_user"] is False
    kinds = [row[0] for row in server.sql(
        "SELECT kind FROM log_entry WHERE namespace = ? AND kind LIKE ? ORDER BY id", "dora", "user_%")]
    assert kinds[-4:] == ["user_set_superuser", "user_disable", "user_set_superuser", "user_enable"]


def test_cli_creates_users(server):
    server.cli("admin", "create-user", "cliuser", "--password", "cli-password-1", "--email", "c@x.io")
    assert Api(server, ("cliuser", "cli-password-1")).ok("GET", "/user/")["email"] == "c@x.io"
    dup = server.cli("admin", "create-user", "cliuser", "--password", "cli-password-1", check=False)
    assert dup.returncode == 1 and "already taken" in dup.stderr


def test_signup_only_when_enabled(server):
    r = Api(server).post("/user/", {"username": "walkin", "password": PASSWORD})
    assert r.status_code == 403 and "Sign-up is disabled" in errors(r)


def test_org_settings_and_time_machine(people):
    olga = people["olga"]
    org = olga.ok("PUT", "/organization/widgets", {"email": "ops@widgets.io", "tag_expiration_s": 7 * 86400})
    assert org["email"] == "ops@widgets.io" and org["tag_expiration_s"] == 604800
    r = olga.put("/organization/widgets", {"tag_expiration_s": 12345})
    assert r.status_code == 400 and "0s, 1d, 7d, 14d, 4w" in errors(r)
    assert "teams" not in people["pete"].ok("GET", "/organization/widgets")  # not a member: no teams shown
    assert people["pete"].put("/organization/widgets", {"email": "x@x.io"}).status_code == 403


def test_teams_members_and_roles(people):
    olga, pete = people["olga"], people["pete"]
    team = olga.ok("PUT", "/organization/widgets/team/devs", {"role": "member", "description": "Developers"})
    assert team["new_team"] and team["role"] == "member"
    olga.ok("PUT", "/organization/widgets/team/devs/members/pete")
    members = olga.ok("GET", "/organization/widgets/team/devs/members")
    assert [m["name"] for m in members["members"]] == ["pete"] and members["can_edit"]
    seen_by_pete = pete.ok("GET", "/organization/widgets/team/devs/members")
    assert not seen_by_pete["can_edit"]
    assert olga.ok("PUT", "/organization/widgets/team/devs", {"role": "creator"})["role"] == "creator"
    org_members = {m["name"]: [t["name"] for t in m["teams"]]
                   for m in olga.ok("GET", "/organization/widgets/members")["members"]}
    assert org_members == {"olga": ["owners"], "pete": ["devs"]}
    olga.ok("DELETE", "/organization/widgets/team/devs/members/pete")
    assert olga.ok("GET", "/organization/widgets/team/devs/members")["members"] == []


def test_collaborators_are_users_with_direct_grants_outside_teams(people):
    olga = people["olga"]
    olga.ok("POST", "/repository", {"namespace": "widgets", "repository": "shared", "visibility": "private"})
    olga.ok("PUT", "/repository/widgets/shared/permissions/user/quinn", {"role": "read"})
    collaborators = olga.ok("GET", "/organization/widgets/collaborators")["collaborators"]
    assert [(c["name"], c["repositories"]) for c in collaborators] == [("quinn", ["shared"])]


@pytest.mark.parametrize("path,body,status,message", [
    ("/organization/", {"name": "Bad Name"}, 400, "Invalid organization name 'Bad Name'"),
    ("/organization/", {"name": "olga"}, 409, "already taken"),
    ("/organization/", {"email": "x@x.io"}, 400, "'name' is a required property"),
    ("/organization/widgets/team/Bad-Team", {"role": "member"}, 400, "Invalid team name"),
    ("/organization/widgets/team/ops", {"role": "boss"}, 400, "Invalid team role 'boss'"),
    ("/organization/widgets/team/owners/members/ghost", None, 404, "User or robot 'ghost' does not exist"),
    ("/organization/widgets/robots/bad+name", {}, 400, "give the part after '+' only"),
    ("/organization/widgets/robots/9lives", {}, 400, "Invalid robot name '9lives'"),
    ("/repository/widgets/shared/permissions/user/quinn", {"role": "owner"}, 400, "is not one of"),
    ("/organization/nosuchorg/team/x", {"role": "member"}, 404, "Organization 'nosuchorg' does not exist"),
])
def test_bad_input_is_refused_clearly(people, path, body, status, message):
    method = "POST" if path == "/organization/" else "PUT"
    r = people["olga"].request(method, path, json=body)
    assert r.status_code == status
    assert message in errors(r)


def test_robot_short_name_gets_a_hint(people):
    olga = people["olga"]
    olga.ok("PUT", "/organization/widgets/robots/deployer", {"description": "deploys"})
    r = olga.put("/organization/widgets/team/owners/members/deployer")
    assert r.status_code == 404 and "did you mean 'widgets+deployer'" in errors(r)
    r = olga.put("/organization/gadgets/robots/deployer", {})
    assert r.status_code == 201  # the same short name in another namespace is another robot
    r = olga.put("/organization/widgets/robots/deployer", {})
    assert r.status_code == 409 and "already exists" in errors(r)
    r = olga.put("/organization/widgets/team/owners/members/gadgets+deployer")
    assert r.status_code == 400 and "belongs to another namespace" in errors(r)


def test_the_last_admin_cannot_be_removed_and_nothing_changes(server, people):
    olga = people["olga"]
    r = olga.delete("/organization/widgets/team/owners/members/olga")
    assert r.status_code == 409 and "at least one administrator" in errors(r)
    assert [m["name"] for m in olga.ok("GET", "/organization/widgets/team/owners/members")["members"]] == ["olga"]
    r = olga.put("/organization/widgets/team/owners", {"role": "member"})
    assert r.status_code == 409
    assert olga.ok("GET", "/organization/widgets")["teams"]["owners"]["role"] == "admin"
    assert olga.delete("/organization/widgets/team/owners").status_code == 409
    r = olga.delete("/user/")
    assert r.status_code == 409 and "only administrator of organization(s) gadgets, widgets" in errors(r)
    assert olga.ok("GET", "/user/")["username"] == "olga"
    # with a second admin, the first may leave
    olga.ok("PUT", "/organization/gadgets/team/owners/members/quinn")
    olga.ok("DELETE", "/organization/gadgets/team/owners/members/olga")
    assert people["quinn"].ok("GET", "/organization/gadgets")["is_admin"]


def test_robot_token_lifecycle_with_podman(server, people, tools, tmp_path):
    olga = people["olga"]
    robot = olga.ok("PUT", "/organization/widgets/robots/pusher", {"description": "CI pusher"})
    assert robot["name"] == "widgets+pusher" and len(robot["token"]) == 64
    assert olga.ok("GET", "/organization/widgets/robots/pusher")["token"] == robot["token"]
    olga.ok("POST", "/repository", {"namespace": "widgets", "repository": "app", "visibility": "private"})
    olga.ok("PUT", "/repository/widgets/app/permissions/user/widgets+pusher", {"role": "write"})
    layout = tmp_path / "img"
    make_oci_layout(layout)
    tools.podman("login", "--tls-verify=false", "-u", "widgets+pusher", "-p", robot["token"], server.host)
    tools.podman("pull", f"oci:{layout}:latest")
    image_id = tools.podman("images", "-q").stdout.split()[0]
    tools.podman("tag", image_id, f"{server.host}/widgets/app:v1")
    tools.podman("push", "--tls-verify=false", f"{server.host}/widgets/app:v1")
    # another namespace is out of reach, even with write on something
    denied = tools.podman("push", "--tls-verify=false", image_id, f"{server.host}/gadgets/app:v1", check=False)
    assert denied.returncode != 0
    assert "403 (forbidden)" in denied.stderr.lower() or "denied" in denied.stderr.lower()
    r = olga.put("/repository/widgets/shared/permissions/user/gadgets+deployer", {"role": "read"})
    assert r.status_code == 400 and "belongs to another namespace" in errors(r)

    new = olga.ok("POST", "/organization/widgets/robots/pusher/regenerate")["token"]
    assert new != robot["token"]
    old_login = tools.podman("login", "--tls-verify=false", "-u", "widgets+pusher", "-p", robot["token"],
                             server.host, check=False)
    assert old_login.returncode != 0
    tools.podman("login", "--tls-verify=false", "-u", "widgets+pusher", "-p", new, server.host)
    tools.podman("pull", "--tls-verify=false", f"{server.host}/widgets/app:v1")
    listed = olga.ok("GET", "/organization/widgets/robots?permissions=true")["robots"]
    pusher = [r for r in listed if r["name"] == "widgets+pusher"][0]
    assert pusher["repositories"] == ["app"] and pusher["token"] == new and pusher["last_accessed"]


def test_robot_bulk_permissions_are_all_or_nothing(people):
    olga = people["olga"]
    olga.ok("PUT", "/organization/widgets/robots/reader", {})
    for name in ("one", "two"):
        olga.ok("POST", "/repository", {"namespace": "widgets", "repository": name, "visibility": "private"})
    r = olga.put("/organization/widgets/robots/reader/permissions",
                 {"permissions": [{"repository": "one", "role": "read"}, {"repository": "nope", "role": "read"}]})
    assert r.status_code == 404 and "widgets/nope does not exist" in errors(r)
    assert olga.ok("GET", "/organization/widgets/robots/reader/permissions")["permissions"] == []
    done = olga.ok("PUT", "/organization/widgets/robots/reader/permissions",
                   {"permissions": [{"repository": "one", "role": "read"}, {"repository": "two", "role": "write"}]})
    assert {(p["repository"]["name"], p["role"]) for p in done["permissions"]} == {("one", "read"), ("two", "write")}
    done = olga.ok("PUT", "/organization/widgets/robots/reader/permissions",
                   {"permissions": [{"repository": "two", "role": "none"}]})
    assert [(p["repository"]["name"], p["role"]) for p in done["permissions"]] == [("one", "read")]


def test_robot_credential_downloads(server, people, tools):
    olga = people["olga"]
    token = olga.ok("PUT", "/user/robots/fetcher", {})["token"]
    base = "/user/robots/fetcher/credentials"
    login = olga.get(f"{base}?format=podman-login")
    assert login.text == f"podman login -u='olga+fetcher' -p='{token}' {server.host}\n"
    assert olga.get(f"{base}?format=docker-login").text.startswith("docker login -u='olga+fetcher'")
    config = olga.get(f"{base}?format=docker-config").json()
    import base64

    assert base64.b64decode(config["auths"][server.host]["auth"]).decode() == f"olga+fetcher:{token}"
    kube = olga.get(f"{base}?format=kubernetes").text
    assert "type: kubernetes.io/dockerconfigjson" in kube and "name: olga-fetcher-pull-secret" in kube
    encoded = kube.split(".dockerconfigjson: ")[1].split()[0]
    assert json.loads(base64.b64decode(encoded))["auths"][server.host]["auth"] == config["auths"][server.host]["auth"]
    # the downloaded config.json works as podman's auth file
    tools.authfile.write_text(json.dumps(config))
    olga.ok("POST", "/repository", {"namespace": "olga", "repository": "fetchme", "visibility": "private"})
    olga.ok("PUT", "/repository/olga/fetchme/permissions/user/olga+fetcher", {"role": "read"})
    search = tools.skopeo("list-tags", "--tls-verify=false", "--authfile", str(tools.authfile),
                          f"docker://{server.host}/olga/fetchme")
    assert json.loads(search.stdout)["Tags"] == []
    assert olga.get(f"{base}?format=nope").status_code == 400


def test_app_token_logins_and_revocation(server, people, tools):
    pete = people["pete"]
    created = pete.ok("POST", "/user/apptoken", {"title": "laptop"})["token"]
    code = created["token_code"]
    assert "token_code" not in pete.ok("GET", f"/user/apptoken/{created['uuid']}")["token"]
    tools.podman("login", "--tls-verify=false", "-u", "$app", "-p", code, server.host)
    pete.ok("DELETE", f"/user/apptoken/{created['uuid']}")
    again = tools.podman("login", "--tls-verify=false", "-u", "$app", "-p", code, server.host, check=False)
    assert again.returncode != 0
    assert pete.ok("GET", "/user/apptoken")["tokens"] == []


def test_api_tokens_are_scoped_and_revocable(server, people):
    pete = people["pete"]
    created = pete.ok("POST", "/user/apitokens", {"title": "reader", "scopes": ["user:read"]})["token"]
    bearer = Api(server, bearer=created["token_code"])
    assert bearer.ok("GET", "/user/")["username"] == "pete"
    r = bearer.put("/user/", {"email": "p@p.io"})
    assert r.status_code == 403 and "lacks the 'user:admin' scope" in errors(r)
    r = pete.post("/user/apitokens", {"title": "x", "scopes": ["repo:everything"]})
    assert r.status_code == 400 and "Unknown scope" in errors(r)
    oauth = requests.get(f"{server.url}/v2/auth", params={"scope": "repository:pete/x:pull"},
                         auth=("$oauthtoken", created["token_code"]))
    assert oauth.status_code == 200
    pete.ok("DELETE", f"/user/apitokens/{created['uuid']}")
    r = bearer.get("/user/")
    assert r.status_code == 401 and "revoked" in errors(r)


def test_default_permissions_apply_to_new_repositories(people):
    olga = people["olga"]
    olga.ok("PUT", "/organization/widgets/team/readers", {"role": "member"})
    everyone = olga.ok("POST", "/organization/widgets/prototypes",
                       {"role": "read", "delegate": {"name": "readers", "kind": "team"}})
    olga.ok("POST", "/organization/widgets/prototypes",
            {"role": "admin", "delegate": {"name": "quinn", "kind": "user"}, "activating_user": {"name": "pete"}})
    listed = olga.ok("GET", "/organization/widgets/prototypes")["prototypes"]
    assert {(p["delegate"]["name"], p["role"], (p["activating_user"] or {}).get("name")) for p in listed} == {
        ("readers", "read", None), ("quinn", "admin", "pete")}
    olga.ok("POST", "/repository", {"namespace": "widgets", "repository": "proto", "visibility": "private"})
    assert olga.ok("GET", "/repository/widgets/proto/permissions/team/")["permissions"]["readers"]["role"] == "read"
    users = olga.ok("GET", "/repository/widgets/proto/permissions/user/")["permissions"]
    assert {name: p["role"] for name, p in users.items()} == {"olga": "admin"}  # the creator; quinn's is for pete's
    pete_repo = people["pete"]
    olga.ok("PUT", "/organization/widgets/team/makers", {"role": "creator"})
    olga.ok("PUT", "/organization/widgets/team/makers/members/pete")
    pete_repo.ok("POST", "/repository", {"namespace": "widgets", "repository": "by-pete", "visibility": "private"})
    users = olga.ok("GET", "/repository/widgets/by-pete/permissions/user/")["permissions"]
    assert {name: p["role"] for name, p in users.items()} == {"pete": "admin", "quinn": "admin"}
    olga.ok("PUT", f"/organization/widgets/prototypes/{everyone['id']}", {"role": "write"})
    olga.ok("POST", "/repository", {"namespace": "widgets", "repository": "proto2", "visibility": "private"})
    assert olga.ok("GET", "/repository/widgets/proto2/permissions/team/readers")["role"] == "write"
    olga.ok("DELETE", f"/organization/widgets/prototypes/{everyone['id']}")
    assert len(olga.ok("GET", "/organization/widgets/prototypes")["prototypes"]) == 1
    r = olga.post("/organization/widgets/prototypes", {"role": "read", "delegate": {"name": "nobody", "kind": "team"}})
    assert r.status_code == 404


def test_repository_api_create_visibility_delete(server, people):
    quinn = people["quinn"]
    quinn.ok("POST", "/repository", {"repository": "mine", "visibility": "private", "description": "hello"})
    repo = quinn.ok("GET", "/repository/quinn/mine")
    assert repo["description"] == "hello" and not repo["is_public"] and repo["can_admin"]
    assert Api(server).get("/repository/quinn/mine").status_code == 401
    assert people["pete"].get("/repository/quinn/mine").status_code == 404
    quinn.ok("POST", "/repository/quinn/mine/changevisibility", {"visibility": "public"})
    assert Api(server).ok("GET", "/repository/quinn/mine")["is_public"]
    r = quinn.post("/repository", {"repository": "mine", "visibility": "private"})
    assert r.status_code == 400 and "already exists" in errors(r)
    r = quinn.post("/repository", {"repository": "bad/tag/x", "visibility": "private"})
    assert r.status_code == 400 and "'tag'" in errors(r)
    r = quinn.post("/repository", {"namespace": "widgets", "repository": "x", "visibility": "private"})
    assert r.status_code == 403
    names = [r["name"] for r in quinn.ok("GET", "/repository?namespace=quinn")["repositories"]]
    assert names == ["mine"]
    quinn.ok("DELETE", "/repository/quinn/mine")
    assert quinn.get("/repository/quinn/mine").status_code == 404


def test_secrets_are_not_stored_in_plain_text(server, people):
    olga = people["olga"]
    robot_token = olga.ok("PUT", "/organization/widgets/robots/secretive", {})["token"]
    app = olga.ok("POST", "/user/apptoken", {"title": "check"})["token"]["token_code"]
    api = olga.ok("POST", "/user/apitokens", {"title": "check", "scopes": ["repo:read"]})["token"]["token_code"]
    accounts = server.sql("SELECT name, password_hash, token_hash, token_encrypted FROM account")
    tokens = server.sql("SELECT prefix, token_hash, title, scopes FROM token")
    dump = json.dumps([list(map(str, row)) for row in accounts + tokens])
    for secret in (PASSWORD, ADMIN_PASSWORD, robot_token, app, api):
        assert secret not in dump
    olga_row = [row for row in accounts if row[0] == "olga"][0]
    assert olga_row[1].startswith("$argon2id$")
    robot_row = [row for row in accounts if row[0] == "widgets+secretive"][0]
    assert robot_row[2] and robot_row[3] and robot_token not in robot_row[3]
