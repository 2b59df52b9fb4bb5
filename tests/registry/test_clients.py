"""Real clients against a real server: skopeo, podman, buildah, oras (Python SDK) and python-dxf."""
from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from tests.conftest import ADMIN_PASSWORD
from tests.images import make_oci_layout

CREDS = f"admin:{ADMIN_PASSWORD}"


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    path = tmp_path_factory.mktemp("layout") / "busybox"
    info = make_oci_layout(path, labels={"org.example.origin": "tests"})
    return path, info


def read_layout(path: Path) -> dict:
    index = json.loads((path / "index.json").read_text())
    digest = index["manifests"][0]["digest"]
    manifest = json.loads((path / "blobs" / "sha256" / digest.split(":")[1]).read_bytes())
    return {"digest": digest, "manifest": manifest}


def test_skopeo_copy_in_inspect_copy_out_and_delete(server, tools, layout, tmp_path):
    path, info = layout
    ref = f"docker://{server.host}/admin/skopeo:1.0"
    tools.skopeo("copy", "--dest-tls-verify=false", "--dest-creds", CREDS, f"oci:{path}:latest", ref)
    inspected = json.loads(tools.skopeo("inspect", "--tls-verify=false", "--creds", CREDS, ref).stdout)
    assert inspected["Digest"] == info["manifest_digest"]
    assert inspected["Labels"] == {"org.example.origin": "tests"}
    assert inspected["RepoTags"] == ["1.0"]
    raw = json.loads(tools.skopeo("inspect", "--tls-verify=false", "--raw", "--creds", CREDS, ref).stdout)
    assert raw["layers"][0]["digest"] == info["layer_digests"][0]

    out = tmp_path / "out"
    tools.skopeo("copy", "--src-tls-verify=false", "--src-creds", CREDS, ref, f"oci:{out}:copy")
    copied = read_layout(out)
    assert copied["digest"] == info["manifest_digest"]
    layer = copied["manifest"]["layers"][0]["digest"].split(":")[1]
    assert (out / "blobs" / "sha256" / layer).read_bytes() == (path / "blobs" / "sha256" / layer).read_bytes()

    tools.skopeo("delete", "--tls-verify=false", "--creds", CREDS, ref)
    gone = tools.skopeo("inspect", "--tls-verify=false", "--creds", CREDS, ref, check=False)
    assert gone.returncode != 0 and "manifest unknown" in gone.stderr.lower()


def test_podman_login_push_and_pull(server, tools, layout):
    path, info = layout
    bad = tools.podman("login", "--tls-verify=false", "-u", "admin", "-p", "not-the-password", server.host, check=False)
    assert bad.returncode != 0 and "invalid username/password" in bad.stderr.lower()
    tools.podman("login", "--tls-verify=false", "-u", "admin", "-p", ADMIN_PASSWORD, server.host)
    tools.podman("pull", f"oci:{path}:latest")
    image = f"{server.host}/admin/podman:v1"
    tools.podman("tag", f"{tools.podman('images', '-q').stdout.split()[0]}", image)
    tools.podman("push", "--tls-verify=false", image)
    tools.podman("rmi", "-a", "-f")
    tools.podman("pull", "--tls-verify=false", image)
    inspected = json.loads(tools.podman("image", "inspect", image).stdout)[0]
    assert inspected["Labels"]["org.example.origin"] == "tests"
    assert inspected["Config"]["Cmd"] == ["/bin/sh"]
    tools.podman("logout", server.host)
    anonymous = tools.podman("pull", "--tls-verify=false", image, check=False)
    assert anonymous.returncode != 0 and "unauthorized" in anonymous.stderr.lower()


def test_buildah_pushes_a_built_image(server, tools, layout, tmp_path):
    path, _ = layout
    base = f"{server.host}/admin/base:1"
    tools.skopeo("copy", "--dest-tls-verify=false", "--dest-creds", CREDS, f"oci:{path}:latest", f"docker://{base}")
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Containerfile").write_text(
        f"FROM {base}\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo built-by-buildah > /hello.txt\"]\n"
        "LABEL org.example.step=run\n")
    tools.buildah("login", "--tls-verify=false", "-u", "admin", "-p", ADMIN_PASSWORD, server.host)
    target = f"{server.host}/admin/built:1"
    tools.buildah("bud", "--tls-verify=false", "--isolation", "chroot", "--storage-driver", "vfs", "-t", target,
                  str(context),
                  timeout=600)
    tools.buildah("push", "--tls-verify=false", "--storage-driver", "vfs", target)
    inspected = json.loads(tools.skopeo("inspect", "--tls-verify=false", "--creds", CREDS, f"docker://{target}").stdout)
    assert inspected["Labels"]["org.example.step"] == "run"
    out = tmp_path / "pulled"
    tools.skopeo("copy", "--src-tls-verify=false", "--src-creds", CREDS, f"docker://{target}", f"oci:{out}:x")
    manifest = read_layout(out)["manifest"]
    top = manifest["layers"][-1]["digest"].split(":")[1]
    data = (out / "blobs" / "sha256" / top).read_bytes()
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)) as tar:
        assert tar.extractfile("hello.txt").read() == b"built-by-buildah\n"


def test_oras_artifact_push_pull_and_referrers(server, tmp_path, monkeypatch):
    import oras.client
    import oras.oci

    monkeypatch.chdir(tmp_path)
    client = oras.client.OrasClient(hostname=server.host, insecure=True)
    client.auth.set_basic_auth("admin", ADMIN_PASSWORD)
    Path("chart.tgz").write_bytes(os.urandom(3000))
    Path("config.json").write_text("{}")
    target = f"{server.host}/admin/artifacts:chart-1"
    response = client.push(target=target, files=["chart.tgz:application/vnd.cncf.helm.chart.content.v1.tar+gzip"],
                           manifest_config="config.json:application/vnd.cncf.helm.config.v1+json")
    assert response.status_code == 201
    files = client.pull(target=target, outdir=str(tmp_path / "pulled"))
    assert Path(files[0]).read_bytes() == Path("chart.tgz").read_bytes()

    subject_manifest = client.get_manifest(target)
    subject_digest = response.headers["Docker-Content-Digest"]
    raw = client.do_request(f"http://{server.host}/v2/admin/artifacts/manifests/chart-1", "GET",
                            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    subject = oras.oci.Subject(mediaType=subject_manifest["mediaType"], digest=subject_digest,
                               size=len(raw.content))
    Path("sbom.json").write_text('{"spdxVersion": "SPDX-2.3"}')
    signed = client.push(target=f"{server.host}/admin/artifacts:sbom", files=["sbom.json:application/spdx+json"],
                         manifest_config="config.json:application/spdx+json", subject=subject)
    assert signed.status_code == 201 and signed.headers["OCI-Subject"] == subject_digest
    referrers = client.do_request(f"http://{server.host}/v2/admin/artifacts/referrers/{subject_digest}", "GET")
    assert referrers.status_code == 200
    entries = referrers.json()["manifests"]
    assert [e["digest"] for e in entries] == [signed.headers["Docker-Content-Digest"]]
    assert entries[0]["artifactType"] == "application/spdx+json"
