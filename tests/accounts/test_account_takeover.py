"""A leaked token is not the account: it cannot change the password, and nobody builds from another's upload."""
from __future__ import annotations

import requests

from tests.api import Api
from tests.conftest import ADMIN_PASSWORD

PASSWORD = "password-123"


def test_a_token_cannot_change_the_password_only_the_current_password_can(server):
    admin = Api(server, ("admin", ADMIN_PASSWORD))
    admin.ok("POST", "/superuser/users/", {"username": "victim", "password": PASSWORD})
    victim = Api(server, ("victim", PASSWORD))
    victim.ok("POST", "/repository", {"repository": "precious", "visibility": "private"})
    code = victim.ok("POST", "/user/apitokens", {"title": "ci", "scopes": ["user:admin"]})["token"]["token_code"]

    stolen = Api(server, bearer=code)
    r = stolen.put("/user/", {"password": "attacker-password-1"})
    assert r.status_code == 403, r.text
    body = r.json()
    assert body["error_type"] and "current password" in body["detail"]
    # Nothing changed: the old password still works, the new one does not.
    assert Api(server, ("victim", "attacker-password-1")).get("/user/").status_code == 401
    assert victim.get("/user/").status_code == 200
    # Nor together with another change in the same request (nothing of it is applied).
    r = stolen.put("/user/", {"password": "attacker-password-1", "email": "attacker@example.com"})
    assert r.status_code == 403 and victim.ok("GET", "/user/")["email"] != "attacker@example.com"
    # The token can still do what its scope is for.
    assert stolen.put("/user/", {"tag_expiration_s": 86400}).status_code == 200

    # With the current password (basic auth), the user changes it.
    victim.ok("PUT", "/user/", {"password": "new-password-22"})
    assert Api(server, ("victim", "new-password-22")).get("/user/").status_code == 200
    assert victim.get("/user/").status_code == 401
    assert Api(server, ("victim", "new-password-22")).get("/repository/victim/precious").status_code == 200


def test_a_build_cannot_use_another_users_uploaded_file(server):
    admin = Api(server, ("admin", ADMIN_PASSWORD))
    for name in ("uploader", "thief"):
        admin.ok("POST", "/superuser/users/", {"username": name, "password": PASSWORD})
    uploader, thief = Api(server, ("uploader", PASSWORD)), Api(server, ("thief", PASSWORD))
    thief.ok("POST", "/repository", {"repository": "loot", "visibility": "private"})
    drop = uploader.ok("POST", "/filedrop/", {"mimeType": "text/plain"})
    assert requests.put(drop["url"], data=b"FROM scratch\nLABEL secret=inside\n", timeout=30).status_code == 200

    r = thief.post("/repository/thief/loot/build/", {"file_id": drop["file_id"]})
    assert r.status_code == 404, r.text
    assert "does not exist" in r.json()["detail"]
    assert thief.ok("GET", "/repository/thief/loot/build/")["builds"] == []
    # The uploader builds from it.
    uploader.ok("POST", "/repository", {"repository": "own", "visibility": "private"})
    r = uploader.post("/repository/uploader/own/build/", {"file_id": drop["file_id"]})
    assert r.status_code == 201, r.text
