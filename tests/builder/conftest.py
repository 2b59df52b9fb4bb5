"""Fixtures for build tests: a server that builds with real buildah, a public base image in it, helpers."""
from __future__ import annotations

import io
import json
import tarfile
import time

import pytest

from tests.api import Api
from tests.conftest import ADMIN_PASSWORD, ContainerTools, SlipwayServer
from tests.images import make_oci_layout

FAST_QUEUE = {
    "SLIPWAY_BUILDS__LEASE_SECONDS": "3",
    "SLIPWAY_BUILDS__RETRY_DELAY_SECONDS": "1",
}


class Builds:
    """Starting, watching and checking builds of one server."""

    def __init__(self, server: SlipwayServer, tools: ContainerTools):
        self.server = server
        self.tools = tools
        self.admin = Api(server, ("admin", ADMIN_PASSWORD))
        self.base = f"{server.host}/admin/base:1"

    def setup(self, tmp_path) -> "Builds":
        layout = tmp_path / "base-layout"
        make_oci_layout(layout, labels={"from": "base"})
        self.tools.skopeo("copy", "--dest-tls-verify=false", "--dest-creds", f"admin:{ADMIN_PASSWORD}",
                          f"oci:{layout}:latest", f"docker://{self.base}")
        self.admin.ok("POST", "/repository/admin/base/changevisibility", {"visibility": "public"})
        return self

    def repo(self, name: str) -> str:
        if self.admin.get(f"/repository/admin/{name}").status_code == 404:
            self.admin.ok("POST", "/repository", {"repository": name, "visibility": "private"})
        return f"admin/{name}"

    def start_dockerfile(self, repo: str, dockerfile: str, api: Api | None = None, **fields) -> dict:
        api = api or self.admin
        data = {k: (json.dumps(v) if isinstance(v, dict) else ",".join(v) if isinstance(v, list) else v)
                for k, v in fields.items()}
        r = api.request("POST", f"/repository/{repo}/build/", files={"file": ("Dockerfile", dockerfile.encode())},
                        data=data)
        assert r.status_code == 201, r.text
        return r.json()

    def start_archive(self, repo: str, archive: bytes, **body) -> dict:
        drop = self.admin.ok("POST", "/filedrop/", {"mimeType": "application/gzip"})
        import requests

        put = requests.put(drop["url"], data=archive, timeout=30)
        assert put.status_code == 200, put.text
        return self.admin.ok("POST", f"/repository/{repo}/build/", {"file_id": drop["file_id"], **body})

    def get(self, repo: str, build_id: str) -> dict:
        return self.admin.ok("GET", f"/repository/{repo}/build/{build_id}")

    def wait(self, repo: str, build_id: str, phases=("complete", "error", "internalerror", "cancelled", "expired"),
             timeout: float = 180) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            build = self.get(repo, build_id)
            if build["phase"] in phases:
                return build
            time.sleep(0.2)
        raise AssertionError(f"build {build_id} did not reach {phases}: {self.get(repo, build_id)}")

    def wait_worker_idle(self, timeout: float = 60) -> None:
        """Until no build work directory is left: a build is "complete" before its worker removes the image."""
        work = self.server.build_root / "work"
        deadline = time.time() + timeout
        while time.time() < deadline:
            if not any(work.glob("build-*")):
                return
            time.sleep(0.1)
        raise AssertionError(f"the worker still has {[p.name for p in work.glob('build-*')]}")

    def logs(self, repo: str, build_id: str, start: int = 0) -> dict:
        return self.admin.ok("GET", f"/repository/{repo}/build/{build_id}/logs?start={start}")

    def log_text(self, repo: str, build_id: str) -> str:
        return "\n".join(e["message"] for e in self.logs(repo, build_id)["logs"])

    def tags(self, repo: str) -> list[str]:
        token = self.server.token(f"repository:{repo}:pull")
        r = self.server.v2("GET", f"/v2/{repo}/tags/list", token)
        return sorted(r.json()["tags"]) if r.status_code == 200 else []

    def inspect(self, ref: str) -> dict:
        out = self.tools.skopeo("inspect", "--tls-verify=false", "--creds", f"admin:{ADMIN_PASSWORD}",
                                f"docker://{self.server.host}/{ref}")
        return json.loads(out.stdout)


def tar_gz(files: dict[str, str | bytes], modes: dict[str, int] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, content in files.items():
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = (modes or {}).get(name, 0o644)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture(scope="module")
def build_server(tmp_path_factory):
    srv = SlipwayServer(tmp_path_factory.mktemp("builds"), extra_env={
        **FAST_QUEUE,
        "SLIPWAY_BUILDS__WORKERS": "2",
        "SLIPWAY_NETWORK__ALLOWLIST": "127.0.0.1/32",
    }).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def builds(build_server, tmp_path_factory):
    base = tmp_path_factory.mktemp("build-tools")
    return Builds(build_server, ContainerTools(base, build_server.host)).setup(base)
