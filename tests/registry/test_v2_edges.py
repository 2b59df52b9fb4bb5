"""Edges of /v2 found by the OCI conformance suites and simple clients: referrers of a repository that
does not exist, upload status read with a pull token."""
from __future__ import annotations

import hashlib

import pytest

from tests.conftest import ADMIN_PASSWORD

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
ADMIN = ("admin", ADMIN_PASSWORD)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def codes(response) -> list[str]:
    return [e["code"] for e in response.json()["errors"]]


# -- 1. referrers of a repository that does not exist ------------------------------------------------

def test_referrers_of_a_missing_repository_is_an_empty_index(server):
    missing = "admin/never-pushed"
    subject = sha256(b"no such subject")
    tok = server.token(f"repository:{missing}:pull")
    for params in ({}, {"artifactType": "application/vnd.example.sbom"}):
        r = server.v2("GET", f"/v2/{missing}/referrers/{subject}", tok, params=params)
        assert r.status_code == 200, r.text
        assert r.headers["Content-Type"] == OCI_INDEX
        assert r.json() == {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}

    # Authorization still comes first: anonymous callers get the challenge, not an index.
    r = server.v2("GET", f"/v2/{missing}/referrers/{subject}")
    assert r.status_code == 401 and codes(r) == ["UNAUTHORIZED"]
    assert r.headers["WWW-Authenticate"].startswith("Bearer realm=")
    assert f'scope="repository:{missing}:pull"' in r.headers["WWW-Authenticate"]


def test_referrers_do_not_tell_a_stranger_whether_a_private_repository_exists(server):
    server.create_user("stranger", "stranger-password-1")
    admin_tok = server.token("repository:admin/hidden-refs:pull,push")
    config = b"{}"
    r = server.v2("POST", f"/v2/admin/hidden-refs/blobs/uploads/?digest={sha256(config)}", admin_tok, data=config)
    assert r.status_code == 201, r.text
    subject = sha256(b"subject")
    answers = []
    for name in ("admin/hidden-refs", "admin/not-there-at-all"):
        tok = server.token(f"repository:{name}:pull", auth=("stranger", "stranger-password-1"))
        r = server.v2("GET", f"/v2/{name}/referrers/{subject}", tok)
        answers.append((r.status_code, codes(r)))
    assert answers == [(403, ["DENIED"]), (403, ["DENIED"])]


# -- 2. upload status with a pull-only token (the out-of-order chunk tests) ---------------------------

def test_upload_status_after_an_out_of_order_chunk_needs_only_pull(server):
    repo = "admin/chunk-status"
    push_tok = server.token(f"repository:{repo}:pull,push")
    pull_tok = server.token(f"repository:{repo}:pull")
    r = server.v2("POST", f"/v2/{repo}/blobs/uploads/", push_tok)
    assert r.status_code == 202
    location = r.headers["Location"]
    data = bytes(range(30))
    r = server.v2("PATCH", location, push_tok, data=data[:10],
                  headers={"Content-Type": "application/octet-stream", "Content-Range": "0-9"})
    assert r.status_code == 202
    r = server.v2("PATCH", location, push_tok, data=data[20:],
                  headers={"Content-Type": "application/octet-stream", "Content-Range": "20-29"})
    assert r.status_code == 416
    # The client now asks where the upload stands, with the token it pulls with (as the suite does).
    for method in ("GET", "HEAD"):
        r = server.v2(method, location, pull_tok)
        assert r.status_code == 204, r.text
        assert r.headers["Range"] == "0-9" and r.headers["Location"] == location
    # Changing the session still needs push; anonymous callers still get the challenge.
    r = server.v2("PATCH", location, pull_tok, data=data[10:20],
                  headers={"Content-Type": "application/octet-stream", "Content-Range": "10-19"})
    assert r.status_code == 403 and codes(r) == ["DENIED"]
    assert 'error="insufficient_scope"' in r.headers["WWW-Authenticate"]
    r = server.v2("GET", location)
    assert r.status_code == 401 and codes(r) == ["UNAUTHORIZED"]
    r = server.v2("PUT", f"{location}?digest={sha256(data)}", push_tok, data=data[10:],
                  headers={"Content-Type": "application/octet-stream", "Content-Range": "10-29"})
    assert r.status_code == 201, r.text
