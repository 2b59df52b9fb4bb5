"""The S3 storage driver against a real S3 server on loopback (moto in server mode)."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
import requests

from tests.conftest import ADMIN_PASSWORD, SlipwayServer, free_port
from tests.images import make_oci_layout

BUCKET = "slipway-test"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    port = free_port()
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "wb")
    moto = Path(sys.executable).parent / "moto_server"  # installed with the test extras
    proc = subprocess.Popen([str(moto), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            requests.get(endpoint, timeout=1)
            break
        except requests.RequestException:
            time.sleep(0.1)
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="test", aws_secret_access_key="test")
    client.create_bucket(Bucket=BUCKET)
    yield endpoint, client
    proc.terminate()
    proc.wait()
    log.close()


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory, s3):
    endpoint, _ = s3
    srv = SlipwayServer(tmp_path_factory.mktemp("s3slipway"), extra_env={
        "SLIPWAY_STORAGE__DRIVER": "s3",
        "SLIPWAY_STORAGE__S3_BUCKET": BUCKET,
        "SLIPWAY_STORAGE__S3_PREFIX": "registry",
        "SLIPWAY_STORAGE__S3_ENDPOINT_URL": endpoint,
        "SLIPWAY_STORAGE__S3_ACCESS_KEY_ID": "test",
        "SLIPWAY_STORAGE__S3_SECRET_ACCESS_KEY": "test",
    }).start()
    yield srv
    srv.stop()


def keys(client, prefix: str) -> list[str]:
    return [o["Key"] for o in client.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])]


def test_skopeo_round_trip_through_s3(s3_server, s3, tmp_path):
    from tests.conftest import ContainerTools

    tools = ContainerTools(tmp_path, s3_server.host)
    layout = tmp_path / "img"
    info = make_oci_layout(layout)
    ref = f"docker://{s3_server.host}/admin/on-s3:1"
    tools.skopeo("copy", "--dest-tls-verify=false", "--dest-creds", f"admin:{ADMIN_PASSWORD}",
                 f"oci:{layout}:latest", ref)
    out = tmp_path / "out"
    tools.skopeo("copy", "--src-tls-verify=false", "--src-creds", f"admin:{ADMIN_PASSWORD}", ref, f"oci:{out}:x")
    index = json.loads((out / "index.json").read_text())
    assert index["manifests"][0]["digest"] == info["manifest_digest"]
    layer = info["layer_digests"][0]
    assert f"registry/blobs/sha256/{layer[7:9]}/{layer[7:]}" in keys(s3[1], "registry/blobs/")


def test_blob_get_redirects_to_a_presigned_url(s3_server, s3):
    data = os.urandom(100000)
    token = s3_server.token("repository:admin/redirect:pull,push")
    assert s3_server.v2("POST", f"/v2/admin/redirect/blobs/uploads/?digest={sha256(data)}", token,
                        data=data).status_code == 201
    r = s3_server.v2("GET", f"/v2/admin/redirect/blobs/{sha256(data)}", token)
    assert r.status_code == 307
    assert r.headers["Location"].startswith(s3[0]) and "Signature" in r.headers["Location"]
    assert requests.get(r.headers["Location"], timeout=10).content == data
    head = s3_server.v2("HEAD", f"/v2/admin/redirect/blobs/{sha256(data)}", token)
    assert head.status_code == 200 and head.headers["Content-Length"] == str(len(data))


def test_chunked_upload_is_composed_and_cleaned_up(s3_server, s3):
    data = os.urandom(20 * 1024 * 1024)  # more than one 16 MiB multipart part
    token = s3_server.token("repository:admin/chunks:pull,push")
    location = s3_server.v2("POST", "/v2/admin/chunks/blobs/uploads/", token).headers["Location"]
    upload_id = location.rsplit("/", 1)[1]
    step = 6 * 1024 * 1024
    for start in range(0, len(data), step):
        chunk = data[start:start + step]
        r = s3_server.v2("PATCH", location, token, data=chunk,
                         headers={"Content-Range": f"{start}-{start + len(chunk) - 1}"})
        assert r.status_code == 202, r.text
    assert len(keys(s3[1], f"registry/uploads/{upload_id}/")) == 5  # marker + 4 chunks
    assert s3_server.v2("PUT", f"{location}?digest={sha256(data)}", token).status_code == 201
    assert keys(s3[1], f"registry/uploads/{upload_id}/") == []
    body = s3[1].get_object(Bucket=BUCKET, Key=f"registry/blobs/sha256/{sha256(data)[7:9]}/{sha256(data)[7:]}")
    assert hashlib.sha256(body["Body"].read()).hexdigest() == sha256(data)[7:]


def test_wrong_digest_leaves_no_objects(s3_server, s3):
    data = os.urandom(5000)
    token = s3_server.token("repository:admin/bad:pull,push")
    location = s3_server.v2("POST", "/v2/admin/bad/blobs/uploads/", token).headers["Location"]
    upload_id = location.rsplit("/", 1)[1]
    s3_server.v2("PATCH", location, token, data=data)
    r = s3_server.v2("PUT", f"{location}?digest={sha256(b'other')}", token)
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "DIGEST_INVALID"
    assert keys(s3[1], f"registry/uploads/{upload_id}/") == []
    assert not [k for k in keys(s3[1], "registry/blobs/") if sha256(data)[7:] in k]
