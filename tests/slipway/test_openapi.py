"""The OpenAPI document describes every /api/v1 route and is a valid OpenAPI 3 document."""
from openapi_spec_validator import validate

from slipway.api import ApiNotFoundHandler, path_template
from tests.api import Api


def test_openapi_document_covers_every_route(server):
    doc = Api(server).ok("GET", "/openapi.json")
    validate(doc)
    from slipway.app import registration

    expected = set()
    reg = registration()
    for pattern, handler in reg.routes + reg.fallback_routes:
        if pattern.startswith("/api/v1") and handler is not ApiNotFoundHandler:
            expected.add(path_template(pattern))
    assert expected <= set(doc["paths"]), expected - set(doc["paths"])
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            assert operation["summary"] and not operation["summary"].startswith(method.upper()), (path, method)
    put = doc["paths"]["/api/v1/repository/{namespace}/{repository}/permissions/user/{username}"]["put"]
    assert put["requestBody"]["content"]["application/json"]["schema"]["properties"]["role"]["enum"] == [
        "read", "write", "admin"]
    assert Api(server).ok("GET", "/discovery") == doc


def test_unknown_api_paths_use_quay_error_shape(server):
    r = Api(server).get("/no/such/thing")
    assert r.status_code == 404
    body = r.json()
    assert body["error_type"] == "not_found" and "No such API endpoint" in body["detail"]
    r = Api(server).request("PATCH", "/user/")
    assert r.status_code == 405 and r.json()["status"] == 405
