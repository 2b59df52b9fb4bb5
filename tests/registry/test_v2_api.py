"""The /v2 API over real HTTP against a running server: uploads, manifests, tags, referrers, errors."""
from __future__ import annotations

import hashlib
import json
import os
import socket
import time

import pytest
import requests

from tests.conftest import ADMIN_PASSWORD, staged_bytes, wait_for

REPO = "admin/api-test"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def errors_of(response) -> list[str]:
    return [e["code"] for e in response.json()["errors"]]


@pytest.fixture(scope="module")
def server(server_both_paths):
    """Every test of this module runs with the registry's read path and without it (tests/registry/conftest.py)."""
    return server_both_paths


@pytest.fixture(scope="module")
def tok(server):
    return server.token([f"repository:{REPO}:pull,push,delete", "repository:admin/other:pull,push,delete"])


def push_blob(server, token, data: bytes, repo: str = REPO) -> str:
    digest = sha256(data)
    r = server.v2("POST", f"/v2/{repo}/blobs/uploads/?digest={digest}", token, data=data)
    assert r.status_code == 201, r.text
    return digest


def image_manifest(config_digest: str, config_size: int, layers: list[tuple[str, int]], **extra) -> bytes:
    doc = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest,
                   "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": s}
                   for d, s in layers],
    }
    doc.update(extra)
    return json.dumps(doc).encode()


def push_image(server, token, repo=REPO, tag="v1", seed=b"", **extra) -> tuple[str, bytes]:
    config = json.dumps({"architecture": "amd64", "os": "linux", "seed": seed.hex()}).encode()
    layer = b"layer-" + seed + os.urandom(16)
    cd, ld = push_blob(server, token, config, repo), push_blob(server, token, layer, repo)
    manifest = image_manifest(cd, len(config), [(ld, len(layer))], **extra)
    r = server.v2("PUT", f"/v2/{repo}/manifests/{tag}", token, data=manifest,
                  headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 201, r.text
    return r.headers["Docker-Content-Digest"], manifest


# -- base check and tokens -------------------------------------------------------------------------

def test_base_check_challenges_then_accepts_a_token(server, tok):
    r = server.v2("GET", "/v2/")
    assert r.status_code == 401
    challenge = r.headers["WWW-Authenticate"]
    assert challenge.startswith(f'Bearer realm="{server.url}/v2/auth"')
    assert f'service="{server.host}"' in challenge
    assert errors_of(r) == ["UNAUTHORIZED"]
    ok = server.v2("GET", "/v2/", tok)
    assert ok.status_code == 200 and ok.headers["Docker-Distribution-API-Version"] == "registry/2.0"


def test_token_endpoint_refuses_bad_password_with_oci_error(server):
    r = requests.get(f"{server.url}/v2/auth", params={"scope": f"repository:{REPO}:pull"},
                     auth=("admin", "wrong-password"))
    assert r.status_code == 401
    assert errors_of(r) == ["UNAUTHORIZED"]
    assert "Invalid username or password" in r.json()["errors"][0]["message"]


def test_token_grants_only_the_allowed_subset(server):
    server.create_user("alice", "alice-password")
    import jwt

    token = server.token(["repository:alice/app:pull,push", "repository:admin/api-test:pull,push"],
                         auth=("alice", "alice-password"))
    claims = jwt.decode(token, options={"verify_signature": False})
    access = {a["name"]: sorted(a["actions"]) for a in claims["access"]}
    assert access["alice/app"] == ["pull", "push"]
    assert access["admin/api-test"] == []  # private and not hers
    assert claims["sub"] == "alice" and claims["exp"] > time.time()


def test_oauth2_password_grant(server):
    r = requests.post(f"{server.url}/v2/auth", data={"grant_type": "password", "username": "admin",
                                                     "password": ADMIN_PASSWORD, "service": server.host,
                                                     "scope": f"repository:{REPO}:pull"})
    assert r.status_code == 200
    assert server.v2("GET", "/v2/", r.json()["access_token"]).status_code == 200


# -- uploads -----------------------------------------------------------------------------------------

def test_monolithic_upload_then_head_get_and_ranges(server, tok):
    data = os.urandom(5000)
    digest = push_blob(server, tok, data)
    head = server.v2("HEAD", f"/v2/{REPO}/blobs/{digest}", tok)
    assert head.status_code == 200
    assert head.headers["Content-Length"] == "5000" and head.headers["Docker-Content-Digest"] == digest
    get = server.v2("GET", f"/v2/{REPO}/blobs/{digest}", tok)
    assert get.content == data
    part = server.v2("GET", f"/v2/{REPO}/blobs/{digest}", tok, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == data[100:200]
    assert part.headers["Content-Range"] == "bytes 100-199/5000"
    suffix = server.v2("GET", f"/v2/{REPO}/blobs/{digest}", tok, headers={"Range": "bytes=-10"})
    assert suffix.status_code == 206 and suffix.content == data[-10:]
    bad = server.v2("GET", f"/v2/{REPO}/blobs/{digest}", tok, headers={"Range": "bytes=6000-7000"})
    assert bad.status_code == 416


def test_post_then_put_with_the_whole_body(server, tok):
    data = os.urandom(3000)
    start = server.v2("POST", f"/v2/{REPO}/blobs/uploads/", tok)
    assert start.status_code == 202
    location = start.headers["Location"]
    assert "?" not in location and start.headers["Docker-Upload-UUID"] in location
    done = server.v2("PUT", f"{location}?digest={sha256(data)}", tok, data=data)
    assert done.status_code == 201, done.text
    assert done.headers["Location"] == f"/v2/{REPO}/blobs/{sha256(data)}"
    assert server.v2("GET", done.headers["Location"], tok).content == data


def test_chunked_upload_with_content_range_and_an_out_of_order_chunk(server, tok):
    data = os.urandom(10000)
    location = server.v2("POST", f"/v2/{REPO}/blobs/uploads/", tok).headers["Location"]
    first = server.v2("PATCH", location, tok, data=data[:4000],
                      headers={"Content-Range": "0-3999", "Content-Type": "application/octet-stream"})
    assert first.status_code == 202 and first.headers["Range"] == "0-3999"
    skipped = server.v2("PATCH", location, tok, data=data[5000:6000], headers={"Content-Range": "5000-5999"})
    assert skipped.status_code == 416
    assert skipped.headers["Range"] == "0-3999"
    status = server.v2("GET", location, tok)
    assert status.status_code == 204 and status.headers["Range"] == "0-3999"
    second = server.v2("PATCH", location, tok, data=data[4000:], headers={"Content-Range": "4000-9999"})
    assert second.status_code == 202 and second.headers["Range"] == "0-9999"
    done = server.v2("PUT", f"{location}?digest={sha256(data)}", tok)
    assert done.status_code == 201
    assert server.v2("GET", f"/v2/{REPO}/blobs/{sha256(data)}", tok).content == data


def test_streamed_patch_without_content_range(server, tok):
    pieces = [os.urandom(70000) for _ in range(5)]
    location = server.v2("POST", f"/v2/{REPO}/blobs/uploads/", tok).headers["Location"]
    r = server.v2("PATCH", location, tok, data=iter(pieces))  # a generator: chunked transfer encoding
    assert r.status_code == 202 and r.headers["Range"] == f"0-{350000 - 1}"
    whole = b"".join(pieces)
    assert server.v2("PUT", f"{location}?digest={sha256(whole)}", tok).status_code == 201


def test_sha512_blob(server, tok):
    data = os.urandom(2048)
    digest = "sha512:" + hashlib.sha512(data).hexdigest()
    location = server.v2("POST", f"/v2/{REPO}/blobs/uploads/", tok).headers["Location"]
    server.v2("PATCH", location, tok, data=data)
    assert server.v2("PUT", f"{location}?digest={digest}", tok).status_code == 201
    assert server.v2("GET", f"/v2/{REPO}/blobs/{digest}", tok).content == data


def test_wrong_digest_is_refused_and_leaves_nothing(server, tok):
    data = os.urandom(1000)
    claimed = sha256(b"something else")
    r = server.v2("POST", f"/v2/{REPO}/blobs/uploads/?digest={claimed}", tok, data=data)
    assert r.status_code == 400 and errors_of(r) == ["DIGEST_INVALID"]
    location = server.v2("POST", f"/v2/{REPO}/blobs/uploads/", tok).headers["Location"]
    server.v2("PATCH", location, tok, data=data)
    r = server.v2("PUT", f"{location}?digest={claimed}", tok)
    assert r.status_code == 400 and errors_of(r) == ["DIGEST_INVALID"]
    assert server.v2("GET", location, tok).status_code == 404  # the session is gone
    assert server.v2("HEAD", f"/v2/{REPO}/blobs/{claimed}", tok).status_code == 404
    assert server.v2("HEAD", f"/v2/{REPO}/blobs/{sha256(data)}", tok).status_code == 404
    assert list((server.data_dir / "storage" / "uploads").iterdir()) == []


def test_cancel_and_unknown_uploads(server, tok):
    location = server.v2("POST", f"/v2/{REPO}/blobs/uploads/", tok).headers["Location"]
    assert server.v2("DELETE", location, tok).status_code == 204
    gone = server.v2("PATCH", location, tok, data=b"x")
    assert gone.status_code == 404 and errors_of(gone) == ["BLOB_UPLOAD_UNKNOWN"]
    missing_digest = server.v2("PUT", f"/v2/{REPO}/blobs/uploads/{'0' * 8}", tok)
    assert missing_digest.status_code in (400, 404)
    bad_digest = server.v2("POST", f"/v2/{REPO}/blobs/uploads/?digest=sha256:xyz", tok, data=b"a")
    assert bad_digest.status_code == 400 and errors_of(bad_digest) == ["DIGEST_INVALID"]
    md5 = server.v2("POST", f"/v2/{REPO}/blobs/uploads/?digest=md5:{'a' * 32}", tok, data=b"a")
    assert md5.status_code == 400 and "unsupported digest algorithm" in md5.json()["errors"][0]["message"]


def test_client_that_hangs_up_mid_body_leaves_no_blob(server, tok):
    data = os.urandom(200000)
    digest = sha256(data)
    uploads = server.data_dir / "storage" / "uploads"
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall((f"POST /v2/{REPO}/blobs/uploads/?digest={digest} HTTP/1.1\r\nHost: {server.host}\r\n"
                   f"Authorization: Bearer {tok}\r\nContent-Length: {len(data)}\r\n\r\n").encode())
        s.sendall(data[:100000])
        wait_for(lambda: staged_bytes(uploads), what="the server to stage the first bytes")  # mid-body
    wait_for(lambda: not list(uploads.iterdir()), timeout=10, what="the staged bytes to be discarded")
    assert server.v2("HEAD", f"/v2/{REPO}/blobs/{digest}", tok).status_code == 404
    assert list((server.data_dir / "storage" / "uploads").iterdir()) == []


def test_client_that_hangs_up_mid_download_is_not_a_server_error(server, tok):
    digest = push_blob(server, tok, os.urandom(12 << 20))  # several 4 MiB writes, more than socket buffers hold
    before = server.log_text().count("Traceback")
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall((f"GET /v2/{REPO}/blobs/{digest} HTTP/1.1\r\nHost: {server.host}\r\n"
                   f"Authorization: Bearer {tok}\r\n\r\n").encode())
        assert s.recv(4096).startswith(b"HTTP/1.1 200")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST
    # The request's access log line is written once its handler is done (after any traceback it caused).
    wait_for(lambda: f"GET /v2/{REPO}/blobs/{digest} " in server.log_text(), what="the download's access log line")
    assert server.v2("HEAD", f"/v2/{REPO}/blobs/{digest}", tok).status_code == 200
    log = server.log_text()
    assert log.count("Traceback") == before and "Stream is closed" not in log, log[-2000:]


def test_cross_repository_mount(server, tok):
    data = os.urandom(4000)
    digest = push_blob(server, tok, data, "admin/other")
    r = server.v2("POST", f"/v2/{REPO}/blobs/uploads/?mount={digest}&from=admin/other", tok)
    assert r.status_code == 201 and r.headers["Location"] == f"/v2/{REPO}/blobs/{digest}"
    assert server.v2("GET", f"/v2/{REPO}/blobs/{digest}", tok).content == data
    # alice may not read admin/other: her mount turns into an ordinary upload session
    alice = server.token(["repository:alice/mine:pull,push", "repository:admin/other:pull"],
                         auth=("alice", "alice-password"))
    r = server.v2("POST", f"/v2/alice/mine/blobs/uploads/?mount={digest}&from=admin/other", alice)
    assert r.status_code == 202 and "/blobs/uploads/" in r.headers["Location"]
    assert server.v2("HEAD", f"/v2/alice/mine/blobs/{digest}", alice).status_code == 404


# -- manifests ---------------------------------------------------------------------------------------

def test_manifest_put_get_head_by_tag_and_digest(server, tok):
    digest, manifest = push_image(server, tok, tag="v1")
    assert digest == sha256(manifest)
    for ref in ("v1", digest):
        r = server.v2("GET", f"/v2/{REPO}/manifests/{ref}", tok,
                      headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
        assert r.status_code == 200 and r.content == manifest
        assert r.headers["Content-Type"] == "application/vnd.oci.image.manifest.v1+json"
        assert r.headers["Docker-Content-Digest"] == digest
        h = server.v2("HEAD", f"/v2/{REPO}/manifests/{ref}", tok)
        assert h.status_code == 200 and h.headers["Content-Length"] == str(len(manifest)) and not h.content


def test_manifest_referencing_missing_blob_is_refused(server, tok):
    config = b'{"os":"linux"}'
    cd = push_blob(server, tok, config)
    missing = sha256(b"never pushed")
    manifest = image_manifest(cd, len(config), [(missing, 12)])
    r = server.v2("PUT", f"/v2/{REPO}/manifests/broken", tok, data=manifest,
                  headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 400 and errors_of(r) == ["MANIFEST_BLOB_UNKNOWN"]
    assert r.json()["errors"][0]["detail"]["digest"] == missing
    assert server.v2("GET", f"/v2/{REPO}/manifests/broken", tok).status_code == 404


def test_blob_of_another_repository_does_not_count(server, tok):
    config = b'{"os":"linux","x":1}'
    other_cd = push_blob(server, tok, config, "admin/other")
    manifest = image_manifest(other_cd, len(config), [])
    r = server.v2("PUT", f"/v2/{REPO}/manifests/foreign", tok, data=manifest,
                  headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 400 and errors_of(r) == ["MANIFEST_BLOB_UNKNOWN"]


@pytest.mark.parametrize("body,content_type,message", [
    (b"{not json", "application/vnd.oci.image.manifest.v1+json", "not valid JSON"),
    (b'{"schemaVersion": 1, "name": "x"}', "application/vnd.oci.image.manifest.v1+json", "schema 1"),
    (b'{"schemaVersion": 2, "config": {"mediaType": "a/b", "digest": "sha256:zz", "size": 1}, "layers": []}',
     "application/vnd.oci.image.manifest.v1+json", "config.digest"),
    (b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []}',
     "application/vnd.oci.image.manifest.v1+json", "does not match"),
    (b'{"schemaVersion": 2}', "application/x-unknown", "unsupported manifest media type"),
])
def test_invalid_manifests(server, tok, body, content_type, message):
    r = server.v2("PUT", f"/v2/{REPO}/manifests/bad", tok, data=body, headers={"Content-Type": content_type})
    assert r.status_code == 400 and errors_of(r) == ["MANIFEST_INVALID"]
    assert message in r.json()["errors"][0]["message"]


def test_manifest_put_by_wrong_digest_and_too_large(server, tok):
    _, manifest = push_image(server, tok, tag="v-digest")
    wrong = sha256(b"other")
    r = server.v2("PUT", f"/v2/{REPO}/manifests/{wrong}", tok, data=manifest,
                  headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 400 and errors_of(r) == ["DIGEST_INVALID"]
    huge = b'{"schemaVersion":2,"pad":"' + b"x" * (4 * 1024 * 1024 + 10) + b'"}'
    r = server.v2("PUT", f"/v2/{REPO}/manifests/huge", tok, data=huge,
                  headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 413 and errors_of(r) == ["SIZE_INVALID"]


def test_manifest_put_by_sha512_digest(server, tok):
    config = b'{"os":"linux","sha512":true}'
    cd = push_blob(server, tok, config)
    manifest = image_manifest(cd, len(config), [])
    digest = "sha512:" + hashlib.sha512(manifest).hexdigest()
    r = server.v2("PUT", f"/v2/{REPO}/manifests/{digest}", tok, data=manifest,
                  headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 201 and r.headers["Docker-Content-Digest"] == digest
    assert server.v2("GET", f"/v2/{REPO}/manifests/{digest}", tok).content == manifest


def test_docker_schema2_manifest_and_manifest_list(server, tok):
    config = b'{"architecture":"arm64","os":"linux"}'
    layer = os.urandom(300)
    cd, ld = push_blob(server, tok, config), push_blob(server, tok, layer)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": cd, "size": len(config)},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": ld,
                    "size": len(layer)}]}).encode()
    r = server.v2("PUT", f"/v2/{REPO}/manifests/docker-arm64", tok, data=manifest,
                  headers={"Content-Type": "application/vnd.docker.distribution.manifest.v2+json"})
    assert r.status_code == 201
    child = r.headers["Docker-Content-Digest"]
    listing = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
        "manifests": [{"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "digest": child,
                       "size": len(manifest), "platform": {"architecture": "arm64", "os": "linux"}}]}).encode()
    r = server.v2("PUT", f"/v2/{REPO}/manifests/multi", tok, data=listing,
                  headers={"Content-Type": "application/vnd.docker.distribution.manifest.list.v2+json"})
    assert r.status_code == 201
    got = server.v2("GET", f"/v2/{REPO}/manifests/multi", tok)
    assert got.headers["Content-Type"] == "application/vnd.docker.distribution.manifest.list.v2+json"
    # an index naming a manifest the repository does not have is refused
    ghost = listing.replace(child.encode(), sha256(b"ghost").encode())
    r = server.v2("PUT", f"/v2/{REPO}/manifests/ghost", tok, data=ghost,
                  headers={"Content-Type": "application/vnd.docker.distribution.manifest.list.v2+json"})
    assert r.status_code == 400 and errors_of(r) == ["MANIFEST_BLOB_UNKNOWN"]


def test_artifact_with_custom_types(server, tok):
    config = b"{}"
    chart = os.urandom(700)
    cd, ld = push_blob(server, tok, config), push_blob(server, tok, chart)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.cncf.helm.config.v1+json", "digest": cd, "size": 2},
        "layers": [{"mediaType": "application/vnd.cncf.helm.chart.content.v1.tar+gzip", "digest": ld,
                    "size": len(chart)}]}).encode()
    r = server.v2("PUT", f"/v2/{REPO}/manifests/chart-0.1.0", tok, data=manifest,
                  headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 201


def test_delete_tag_manifest_and_blob(server, tok):
    digest, _ = push_image(server, tok, tag="to-delete", seed=b"del")
    push_image(server, tok, tag="keep", seed=b"keep")
    assert server.v2("DELETE", f"/v2/{REPO}/manifests/to-delete", tok).status_code == 202
    r = server.v2("GET", f"/v2/{REPO}/manifests/to-delete", tok)
    assert r.status_code == 404 and errors_of(r) == ["MANIFEST_UNKNOWN"]
    assert server.v2("GET", f"/v2/{REPO}/manifests/{digest}", tok).status_code == 200  # by digest still there
    assert server.v2("DELETE", f"/v2/{REPO}/manifests/{digest}", tok).status_code == 202
    assert server.v2("GET", f"/v2/{REPO}/manifests/{digest}", tok).status_code == 404
    assert server.v2("DELETE", f"/v2/{REPO}/manifests/{digest}", tok).status_code == 404
    data = os.urandom(100)
    bd = push_blob(server, tok, data)
    assert server.v2("DELETE", f"/v2/{REPO}/blobs/{bd}", tok).status_code == 202
    assert server.v2("HEAD", f"/v2/{REPO}/blobs/{bd}", tok).status_code == 404
    assert "to-delete" not in server.v2("GET", f"/v2/{REPO}/tags/list", tok).json()["tags"]


def test_tags_list_pagination_with_link_header(server, tok):
    repo = "admin/paged"
    token = server.token(f"repository:{repo}:pull,push")
    digest, manifest = push_image(server, token, repo=repo, tag="t0")
    for i in range(1, 5):
        r = server.v2("PUT", f"/v2/{repo}/manifests/t{i}", token, data=manifest,
                      headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
        assert r.status_code == 201
    everything = server.v2("GET", f"/v2/{repo}/tags/list", token).json()
    assert everything == {"name": repo, "tags": ["t0", "t1", "t2", "t3", "t4"]}
    page = server.v2("GET", f"/v2/{repo}/tags/list?n=2", token)
    assert page.json()["tags"] == ["t0", "t1"]
    link = page.headers["Link"]
    assert link == f'</v2/{repo}/tags/list?n=2&last=t1>; rel="next"'
    page2 = server.v2("GET", link[1:link.index(">")], token)
    assert page2.json()["tags"] == ["t2", "t3"]
    last = server.v2("GET", f"/v2/{repo}/tags/list?n=2&last=t3", token)
    assert last.json()["tags"] == ["t4"] and "Link" not in last.headers
    assert server.v2("GET", f"/v2/{repo}/tags/list?n=0", token).json()["tags"] == []


def test_referrers_from_subject(server, tok):
    subject_digest, subject = push_image(server, tok, tag="signed", seed=b"subject")
    subject_desc = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": subject_digest,
                    "size": len(subject)}
    pushed = {}
    for artifact_type in ("application/vnd.dev.cosign.simplesigning.v1+json", "application/spdx+json"):
        config = b"{}"
        cd = push_blob(server, tok, config)
        payload = os.urandom(64)
        pd = push_blob(server, tok, payload)
        doc = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "artifactType": artifact_type,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": cd, "size": 2},
            "layers": [{"mediaType": "application/octet-stream", "digest": pd, "size": 64}],
            "subject": subject_desc, "annotations": {"kind": artifact_type}}).encode()
        r = server.v2("PUT", f"/v2/{REPO}/manifests/{sha256(doc)}", tok, data=doc,
                      headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
        assert r.status_code == 201 and r.headers["OCI-Subject"] == subject_digest
        pushed[artifact_type] = sha256(doc)
    r = server.v2("GET", f"/v2/{REPO}/referrers/{subject_digest}", tok)
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/vnd.oci.image.index.v1+json"
    index = r.json()
    assert index["schemaVersion"] == 2
    assert {m["digest"] for m in index["manifests"]} == set(pushed.values())
    sbom = [m for m in index["manifests"] if m["artifactType"] == "application/spdx+json"][0]
    assert sbom["annotations"] == {"kind": "application/spdx+json"}
    filtered = server.v2("GET", f"/v2/{REPO}/referrers/{subject_digest}", tok,
                         params={"artifactType": "application/spdx+json"})
    assert filtered.headers["OCI-Filters-Applied"] == "artifactType"
    assert [m["digest"] for m in filtered.json()["manifests"]] == [pushed["application/spdx+json"]]
    nothing = server.v2("GET", f"/v2/{REPO}/referrers/{sha256(b'nobody')}", tok)
    assert nothing.status_code == 200 and nothing.json()["manifests"] == []


# -- names, permissions, catalog -------------------------------------------------------------------------

@pytest.mark.parametrize("name,fragment", [
    ("admin/Upper", "invalid repository name"),
    ("admin/a..b", "invalid repository name"),
    ("lonely", "has no namespace"),
    ("admin/build/app", "'build'"),
    ("admin/app/tag", "'tag'"),
    ("admin/trigger", "'trigger'"),
])
def test_invalid_repository_names(server, tok, name, fragment):
    r = server.v2("GET", f"/v2/{name}/tags/list", tok)
    assert r.status_code == 400 and errors_of(r) == ["NAME_INVALID"]
    assert fragment in r.json()["errors"][0]["message"]


def test_unknown_repository_and_manifest(server, tok):
    r = server.v2("GET", "/v2/admin/nothing-here/manifests/latest", server.token("repository:admin/nothing-here:pull"))
    assert r.status_code == 404 and errors_of(r) == ["NAME_UNKNOWN"]
    r = server.v2("GET", f"/v2/{REPO}/manifests/no-such-tag", tok)
    assert r.status_code == 404 and errors_of(r) == ["MANIFEST_UNKNOWN"]
    r = server.v2("GET", f"/v2/{REPO}/blobs/{sha256(b'unknown')}", tok)
    assert r.status_code == 404 and errors_of(r) == ["BLOB_UNKNOWN"]


def test_private_by_default_and_access_is_enforced(server, tok):
    push_image(server, server.token("repository:admin/secret:pull,push"), repo="admin/secret", tag="v1",
               seed=b"secret")
    # anonymous: a token with nothing, then 401 asking to authenticate
    anon = server.token("repository:admin/secret:pull", auth=None)
    r = server.v2("GET", "/v2/admin/secret/manifests/v1", anon)
    assert r.status_code == 401 and errors_of(r) == ["UNAUTHORIZED"]
    assert 'scope="repository:admin/secret:pull"' in r.headers["WWW-Authenticate"]
    # another user: denied
    alice = server.token("repository:admin/secret:pull,push", auth=("alice", "alice-password"))
    r = server.v2("GET", "/v2/admin/secret/manifests/v1", alice)
    assert r.status_code == 403 and errors_of(r) == ["DENIED"]
    r = server.v2("POST", "/v2/admin/secret/blobs/uploads/", alice)
    assert r.status_code == 403
    # a token for another repository: denied, with a challenge naming the scope to ask for
    r = server.v2("GET", "/v2/admin/secret/manifests/v1", server.token("repository:admin/other:pull"))
    assert r.status_code == 403 and errors_of(r) == ["DENIED"]
    assert 'scope="repository:admin/secret:pull",error="insufficient_scope"' in r.headers["WWW-Authenticate"]
    # pushing into someone else's namespace creates nothing
    r = server.v2("POST", "/v2/admin/alice-was-here/blobs/uploads/",
                  server.token("repository:admin/alice-was-here:push", auth=("alice", "alice-password")))
    assert r.status_code == 403
    assert "admin/alice-was-here" not in server.v2("GET", "/v2/_catalog", tok).json()["repositories"]


def test_public_repository_can_be_pulled_anonymously(server, tok, set_visibility):
    push_image(server, server.token("repository:admin/open:pull,push"), repo="admin/open", tag="v1", seed=b"open")
    set_visibility("admin/open", "public")
    anon = server.token("repository:admin/open:pull,push", auth=None)
    r = server.v2("GET", "/v2/admin/open/manifests/v1", anon)
    assert r.status_code == 200
    r = server.v2("POST", "/v2/admin/open/blobs/uploads/", anon)
    assert r.status_code == 401  # pulling is public, pushing is not


def test_catalog_is_filtered_to_what_the_caller_may_see(server, tok, set_visibility):
    alice = server.token(["repository:alice/app:pull,push", "registry:catalog:*"], auth=("alice", "alice-password"))
    push_image(server, alice, repo="alice/app", tag="v1", seed=b"alice")
    mine = server.v2("GET", "/v2/_catalog", alice).json()["repositories"]
    assert "alice/app" in mine and "admin/secret" not in mine and "admin/open" in mine
    admin = server.token("registry:catalog:*")
    everything = server.v2("GET", "/v2/_catalog", admin).json()["repositories"]
    assert {"alice/app", "admin/secret", REPO} <= set(everything)
    page = server.v2("GET", "/v2/_catalog?n=1", admin)
    assert len(page.json()["repositories"]) == 1 and 'rel="next"' in page.headers["Link"]
    assert server.v2("GET", "/v2/_catalog").status_code == 401


def test_unknown_endpoint_uses_the_oci_error_shape(server, tok):
    r = server.v2("GET", "/v2/admin/api-test/nonsense/x", tok)
    assert r.status_code == 404 and errors_of(r) == ["UNSUPPORTED"]
