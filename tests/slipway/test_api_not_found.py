"""Every /api/v1 path that matches no route answers 404 in Quay's error shape, never 400 or 500."""
import pytest

from tests.api import Api
from tests.conftest import ADMIN_PASSWORD

DIGEST = "sha256:" + "ab" * 32


@pytest.fixture(scope="module")
def admin(server):
    api = Api(server, auth=("admin", ADMIN_PASSWORD))
    api.ok("POST", "/repository", {"namespace": "admin", "repository": "app", "visibility": "private"})
    return api


@pytest.mark.parametrize("method,path", [
    ("GET", f"/repository/admin/app/manifest/{DIGEST}/nope"),
    ("GET", "/repository/admin/app/tag/v1/nope"),
    ("GET", "/repository/admin/App"),
    ("GET", "/repository/admin/app:x/permissions/user/"),
    ("DELETE", "/repository/admin/a..b"),
    ("PUT", "/repository/x:y/app"),
    ("GET", "/nonexistent"),
    ("POST", "/user/nothing/here"),
    ("GET", "/"),
])
def test_paths_matching_no_route_answer_404_in_quay_shape(admin, server, method, path):
    for api in (admin, Api(server)):
        r = api.request(method, path)
        assert r.status_code == 404, (path, r.status_code, r.text)
        body = r.json()
        assert body["status"] == 404 and body["error_type"] == "not_found", body
        assert set(body) == {"status", "error_type", "title", "detail", "error_message", "type"}


def test_routes_next_to_them_still_work(admin, server):
    # A valid repository name that names nothing: 404 for a user, 401 for anonymous callers (who are
    # not told whether a private repository exists).
    assert admin.get("/repository/admin/app/manifest").status_code == 404
    assert Api(server).get("/repository/admin/app/manifest").status_code == 401
    assert admin.ok("GET", "/repository/admin/app")["name"] == "app"
    assert admin.ok("GET", "/repository/admin/app/tag/")["tags"] == []
    assert admin.get("/repository/admin/missing").status_code == 404
