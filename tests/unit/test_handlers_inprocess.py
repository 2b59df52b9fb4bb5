"""Handlers through the real application object, in-process (tornado's AsyncHTTPTestCase: a loopback
socket, no server process): the /v2 token dance and a push and pull, and the /api/v1 error shape."""
from __future__ import annotations

import base64
import json

import pytest
from tornado.testing import AsyncHTTPTestCase

from accounts import audit, tokens, users
from slipway.app import build_services, make_app
from slipway.config import Config

from .steps import OCI_CONFIG, OCI_MANIFEST, digest_of


class AppTestCase(AsyncHTTPTestCase):
    """The application on a fresh database, with an administrator whose application and API tokens
    log in (a token login costs no password hash)."""

    @pytest.fixture(autouse=True)
    def _database(self, db, tmp_path):
        config = Config(data_dir=str(tmp_path / "data"))
        config.auth.secret_key = "in-process-test-secret-of-enough-length"
        self.services = build_services(config)
        admin = users.create_user("admin", None, superuser=True)
        acting = users.identity_for(admin, "password")
        self.app_token = tokens.create(admin, tokens.APP, "push", None, acting)[1]
        self.api_token = tokens.create(admin, tokens.API, "api", ["repo:admin", "repo:create", "user:admin"],
                                       acting)[1]
        yield
        audit.flush()  # pulls and pushes buffered for the audit log go to this test's database, not the next's

    def get_app(self):
        return make_app(self.services)

    def basic(self, user: str, password: str) -> dict:
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}

    def registry_token(self, scope: str) -> str:
        response = self.fetch(f"/v2/auth?service=localhost&scope={scope}", headers=self.basic("$app", self.app_token))
        assert response.code == 200, response.body
        return json.loads(response.body)["token"]


class TestRegistry(AppTestCase):
    def test_the_base_check_challenges_then_accepts_a_token(self):
        response = self.fetch("/v2/")
        assert response.code == 401
        assert response.headers["WWW-Authenticate"].startswith('Bearer realm="http://127.0.0.1:')
        token = self.registry_token("repository:admin/app:pull")
        assert self.fetch("/v2/", headers={"Authorization": f"Bearer {token}"}).code == 200

    def test_push_then_pull_an_image(self):
        bearer = {"Authorization": f"Bearer {self.registry_token('repository:admin/app:pull,push')}"}
        config = b'{"architecture": "amd64", "os": "linux"}'
        response = self.fetch(f"/v2/admin/app/blobs/uploads/?digest={digest_of(config)}", method="POST",
                              body=config, headers=bearer)
        assert response.code == 201 and response.headers["Docker-Content-Digest"] == digest_of(config)
        manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": [],
                               "config": {"mediaType": OCI_CONFIG, "digest": digest_of(config),
                                          "size": len(config)}}).encode()
        response = self.fetch("/v2/admin/app/manifests/v1", method="PUT", body=manifest,
                              headers={**bearer, "Content-Type": OCI_MANIFEST})
        assert response.code == 201 and response.headers["Docker-Content-Digest"] == digest_of(manifest)
        pulled = self.fetch("/v2/admin/app/manifests/v1", headers={**bearer, "Accept": OCI_MANIFEST})
        assert pulled.code == 200 and pulled.body == manifest
        assert json.loads(self.fetch("/v2/admin/app/tags/list", headers=bearer).body)["tags"] == ["v1"]
        blob = self.fetch(f"/v2/admin/app/blobs/{digest_of(config)}", headers=bearer)
        assert blob.code == 200 and blob.body == config

        other = {"Authorization": f"Bearer {self.registry_token('repository:admin/other:pull')}"}
        missing = self.fetch("/v2/admin/other/manifests/v1", headers=other)
        assert missing.code == 404 and json.loads(missing.body)["errors"][0]["code"] == "NAME_UNKNOWN"


class TestApi(AppTestCase):
    def test_the_api_answers_with_the_caller_and_in_quays_error_shape(self):
        bearer = {"Authorization": f"Bearer {self.api_token}"}
        user = self.fetch("/api/v1/user/", headers=bearer)
        assert user.code == 200 and json.loads(user.body)["username"] == "admin"
        assert self.fetch("/api/v1/user/").code == 401
        unknown = self.fetch("/api/v1/no/such/thing", headers=bearer)
        assert unknown.code == 404 and {"status", "error_message", "detail"} <= set(json.loads(unknown.body))
        created = self.fetch("/api/v1/repository", method="POST", headers=bearer,
                             body=json.dumps({"namespace": "admin", "repository": "app", "visibility": "private",
                                              "description": ""}))
        assert created.code in (200, 201), created.body
        repo = self.fetch("/api/v1/repository/admin/app", headers=bearer)
        assert repo.code == 200 and json.loads(repo.body)["is_public"] is False


class TestSignedOutCsrfCookie(AppTestCase):
    def test_a_page_without_a_form_leaves_the_sign_in_forms_token_alone(self):
        """A browser fetches ``/favicon.ico`` (a 404 page) beside the sign-in page, sometimes without the
        cookie the sign-in page just set: that page must not set a new token, or the form on screen,
        carrying the first one, is refused."""
        signin = self.fetch("/signin")
        assert signin.code == 200 and "slipway_csrf=" in signin.headers.get("Set-Cookie", "")
        missing = self.fetch("/favicon.ico")
        assert missing.code == 404
        assert "slipway_csrf=" not in missing.headers.get("Set-Cookie", "")

    def test_sign_in_redirects_only_to_a_path_of_this_server(self):
        """``next`` after signing in: a path here, never another site, whatever a browser would make of
        it (a tab dropped from "/\\t/evil.example" leaves "//evil.example"), and never a 500."""
        import re
        from urllib.parse import urlencode

        users.create_user("webby", "webby-password-1")
        for target, expected in [("/repository/webby/x", "/repository/webby/x"), ("//evil.example", "/"),
                                 ("/\t/evil.example", "/"), ("/\\evil.example", "/"), ("https://evil.example", "/")]:
            page = self.fetch("/signin")
            cookie = page.headers["Set-Cookie"].split(";", 1)[0]
            token = re.search(rb'name="_csrf" value="([^"]+)"', page.body).group(1).decode()
            response = self.fetch("/signin", method="POST", follow_redirects=False, headers={"Cookie": cookie},
                                  body=urlencode({"_csrf": token, "username": "webby",
                                                  "password": "webby-password-1", "next": target}))
            assert response.code in (302, 303), (target, response.code)
            assert response.headers["Location"] == expected, target
