"""Builds with real buildah: uploads and archives, results pulled back, errors, permissions, events, queue rules."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from tests.api import Api
from tests.builder.conftest import tar_gz

PASSWORD = "password-123"


def dockerfile(base: str, *lines: str) -> str:
    return "\n".join([f"FROM {base}", *lines]) + "\n"


def test_build_from_an_uploaded_dockerfile_is_pushed_with_exactly_its_tags(builds):
    repo = builds.repo("hello")
    build = builds.start_dockerfile(repo, dockerfile(builds.base, 'RUN ["/bin/busybox", "sh", "-c", "echo hi > /hi"]',
                                                     "LABEL org.example.built=by-slipway"),
                                    docker_tags=["v1", "stable"])
    assert build["phase"] == "waiting" and build["tags"] == ["v1", "stable"] and build["manual_user"] == "admin"
    done = builds.wait(repo, build["id"])
    assert done["phase"] == "complete", builds.log_text(repo, build["id"])
    assert builds.tags(repo) == ["stable", "v1"]
    inspected = builds.inspect(f"{repo}:stable")
    assert inspected["Labels"]["org.example.built"] == "by-slipway"
    assert inspected["Labels"]["from"] == "base"  # inherited from the base image
    assert done["manifest_digests"] == [inspected["Digest"]]
    raw = json.loads(builds.tools.skopeo("inspect", "--tls-verify=false", "--raw", "--creds",
                                         f"admin:{builds.admin.auth[1]}",
                                         f"docker://{builds.server.host}/{repo}:v1").stdout)
    assert raw["config"]["digest"] == done["image_id"]
    phases = [e["message"] for e in builds.logs(repo, build["id"])["logs"] if e.get("type") == "phase"]
    assert phases == ["build-scheduled", "unpacking", "pulling", "building", "pushing", "complete"]
    steps = [e for e in builds.logs(repo, build["id"])["logs"] if e.get("type") == "command"]
    assert [s["message"].split(":")[0] for s in steps] == ["STEP 1/3", "STEP 2/3", "STEP 3/3"]
    assert all("datetime" in e["data"] for e in builds.logs(repo, build["id"])["logs"] if e.get("type") == "phase")
    text = builds.admin.get(f"/repository/{repo}/build/{build['id']}/logs/download")
    assert text.headers["Content-Type"].startswith("text/plain") and "== phase: complete" in text.text
    assert text.text.count("\n") == builds.logs(repo, build["id"])["total"]
    later = builds.logs(repo, build["id"], start=3)
    assert later["start"] == 3 and len(later["logs"]) == later["total"] - 3


def test_archive_with_subdirectory_context_build_args_and_target(builds, tmp_path):
    repo = builds.repo("archived")
    archive = tar_gz({
        "README": "outside the context",
        "app/Containerfile": "\n".join([
            "ARG GREETING",
            f"FROM {builds.base} AS first",
            "ARG GREETING",
            'RUN ["/bin/busybox", "sh", "-c", "echo $GREETING > /greeting"]',
            "COPY run.sh /run.sh",
            'RUN ["/run.sh"]',
            f"FROM {builds.base} AS unused",
            "LABEL stage=unused",
        ]) + "\n",
        "app/run.sh": "#!/bin/sh\necho from-script > /script.txt\n",
    }, modes={"app/run.sh": 0o755})
    build = builds.start_archive(repo, archive, context="app", dockerfile_path="Containerfile",
                                 build_args={"GREETING": "bonjour"}, target="first", docker_tags=["t1"])
    done = builds.wait(repo, build["id"])
    assert done["phase"] == "complete", builds.log_text(repo, build["id"])
    assert done["build_args"] == {"GREETING": "bonjour"} and done["target"] == "first"
    out = tmp_path / "out"
    builds.tools.skopeo("copy", "--src-tls-verify=false", "--src-creds", f"admin:{builds.admin.auth[1]}",
                        f"docker://{builds.server.host}/{repo}:t1", f"dir:{out}")
    layers = b"".join(p.read_bytes() for p in out.iterdir() if p.stat().st_size > 100)
    import gzip
    import io
    import tarfile

    found = {}
    for path in out.iterdir():
        data = path.read_bytes()
        if data[:2] == b"\x1f\x8b":
            with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data))) as tar:
                for member in tar.getmembers():
                    if member.name in ("greeting", "script.txt", "README"):
                        found[member.name] = tar.extractfile(member).read()
    assert found == {"greeting": b"bonjour\n", "script.txt": b"from-script\n"}
    assert layers
    assert "stage" not in builds.inspect(f"{repo}:t1")["Labels"]  # the target stage, not the last one


def test_only_the_context_is_visible_to_the_build(builds):
    repo = builds.repo("confined")
    archive = tar_gz({"secret.txt": "do not leak", "app/Dockerfile": dockerfile(builds.base, "COPY ../secret.txt /x")})
    build = builds.start_archive(repo, archive, context="app")
    done = builds.wait(repo, build["id"])
    assert done["phase"] == "error"
    assert builds.tags(repo) == []


@pytest.mark.parametrize("name,files,fragment", [
    ("dotdot", {"../escape": "x", "Dockerfile": "FROM scratch\n"}, "../escape"),
    ("missing", {"src/main.c": "int main;"}, "Dockerfile not found"),
])
def test_bad_archives_fail_with_the_reason_and_push_nothing(builds, name, files, fragment):
    repo = builds.repo(f"bad-{name}")
    build = builds.start_archive(repo, tar_gz(files))
    done = builds.wait(repo, build["id"])
    assert done["phase"] == "error" and fragment in done["error"]
    errors = [e["message"] for e in builds.logs(repo, build["id"])["logs"] if e.get("type") == "error"]
    assert any(fragment in e for e in errors)
    assert builds.tags(repo) == []


@pytest.mark.parametrize("name,content,fragment", [
    ("syntax", "FROM {base}\nFROOM nothing\n", "FROOM"),
    ("failing-run", 'FROM {base}\nRUN ["/bin/busybox", "sh", "-c", "echo about to fail; exit 3"]\n', "exit status 3"),
    ("unknown-base", "FROM {host}/admin/does-not-exist:1\n", "Could not pull base image"),
    ("missing-arg", "ARG VERSION\nFROM {base}\nRUN echo $VERSION\n", "ARG VERSION"),
])
def test_user_errors_end_in_error_with_the_real_reason(builds, name, content, fragment):
    repo = builds.repo(f"err-{name}")
    build = builds.start_dockerfile(repo, content.format(base=builds.base, host=builds.server.host))
    done = builds.wait(repo, build["id"])
    assert done["phase"] == "error", done
    assert fragment in done["error"], done["error"]
    assert fragment in builds.log_text(repo, build["id"]) or name == "missing-arg"
    assert builds.tags(repo) == []


def test_archive_url_is_fetched_and_private_addresses_need_the_operators_consent(builds, tmp_path):
    archive = tar_gz({"Dockerfile": dockerfile(builds.base, "LABEL source=url")})

    class Serve(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(archive)))
            self.end_headers()
            self.wfile.write(archive)

        def log_message(self, *args):
            pass

    httpd = HTTPServer(("127.0.0.1", 0), Serve)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        repo = builds.repo("from-url")
        url = f"http://127.0.0.1:{httpd.server_port}/context.tar.gz"
        build = builds.admin.ok("POST", f"/repository/{repo}/build/", {"archive_url": url, "docker_tags": ["u"]})
        done = builds.wait(repo, build["id"])
        assert done["phase"] == "complete", builds.log_text(repo, build["id"])
        assert builds.inspect(f"{repo}:u")["Labels"]["source"] == "url"
        r = builds.admin.post(f"/repository/{repo}/build/", {"archive_url": "http://10.1.2.3/x.tar"})
        assert r.status_code == 400 and "non-public address" in r.json()["detail"]
    finally:
        httpd.shutdown()


def test_permissions_and_bad_requests(builds):
    repo = builds.repo("guarded")
    builds.admin.ok("POST", "/superuser/users/", {"username": "reader", "password": PASSWORD})
    builds.admin.ok("PUT", f"/repository/{repo}/permissions/user/reader", {"role": "read"})
    reader = Api(builds.server, ("reader", PASSWORD))
    r = reader.request("POST", f"/repository/{repo}/build/", files={"file": ("Dockerfile", b"FROM scratch\n")})
    assert r.status_code == 403
    build = builds.start_dockerfile(repo, dockerfile(builds.base, "LABEL a=b"))
    assert reader.ok("GET", f"/repository/{repo}/build/")["builds"][0]["id"] == build["id"]
    assert reader.get(f"/repository/{repo}/build/{build['id']}/logs").status_code == 403
    assert Api(builds.server).get(f"/repository/{repo}/build/").status_code == 401
    for body, message in (({"docker_tags": ["bad tag"], "file_id": "x"}, "Invalid tag"),
                          ({}, "exactly one of file_id"),
                          ({"file_id": "0" * 32}, "does not exist"),
                          ({"file_id": "x", "context": "../up"}, "may not contain '..'"),
                          ({"file_id": "x", "pull_robot": "nobody+bot"}, "does not exist")):
        r = builds.admin.post(f"/repository/{repo}/build/", body)
        assert r.status_code in (400, 404) and message in r.json()["detail"], (body, r.text)
    builds.wait(repo, build["id"])


def test_build_events_are_recorded_with_quays_fields(builds):
    repo = builds.repo("evented")
    good = builds.start_dockerfile(repo, dockerfile(builds.base, "LABEL ok=1"), docker_tags=["e1"])
    builds.wait(repo, good["id"])
    bad = builds.start_dockerfile(repo, "FROM scratch\nRUN false\n")
    builds.wait(repo, bad["id"])
    rows = builds.server.sql("SELECT kind, payload FROM event WHERE repository = ? AND kind LIKE ? ORDER BY id",
                             repo, "build_%")
    by_build = {}
    for kind, payload in rows:
        payload = json.loads(payload)
        by_build.setdefault(payload["build_id"], []).append((kind, payload))
    assert [k for k, _ in by_build[good["id"]]] == ["build_queued", "build_start", "build_success"]
    assert [k for k, _ in by_build[bad["id"]]] == ["build_queued", "build_start", "build_failure"]
    success = by_build[good["id"]][-1][1]
    assert success["docker_tags"] == ["e1"] and success["repository"] == repo and success["name"] == "evented"
    assert success["namespace"] == "admin" and success["docker_url"].endswith(f"/{repo}")
    assert success["image_id"].startswith("sha256:") and len(success["manifest_digests"]) == 1
    assert success["homepage"].endswith(f"/repository/{repo}/build/{good['id']}")
    assert {"trigger_kind", "trigger_id", "trigger_metadata"} <= set(success)
    assert by_build[bad["id"]][-1][1]["error_message"]
    pushes = builds.server.sql("SELECT payload FROM event WHERE repository = ? AND kind = 'repo_push'", repo)
    assert [json.loads(p[0])["updated_tags"] for p in pushes] == [["e1"]]


def test_layer_cache_in_the_registry_is_reused_by_the_next_build(builds):
    repo = builds.repo("cached")
    content = dockerfile(builds.base, 'RUN ["/bin/busybox", "sh", "-c", "echo slow-step > /step"]')
    first = builds.wait(repo, builds.start_dockerfile(repo, content)["id"])
    assert first["phase"] == "complete", builds.log_text(repo, first["id"])
    assert f"{repo}/buildcache" in [r["namespace"] + "/" + r["name"]
                                    for r in builds.admin.ok("GET", "/repository?namespace=admin")["repositories"]]
    import shutil

    builds.wait_worker_idle()  # its `buildah rmi` must not write the storage back while we wipe it
    shutil.rmtree(builds.server.build_root / "overlay")  # a fresh worker: no local layers
    second = builds.wait(repo, builds.start_dockerfile(repo, content)["id"])
    log = builds.log_text(repo, second["id"])
    assert second["phase"] == "complete", log
    assert "Using cache" in log, log


def test_a_finished_image_stays_as_the_last_steps_cache_when_its_build_name_goes(builds):
    """With --layers the finished image is also the last step's cache entry: a build of the same content may be
    committing onto it while the first build's worker cleans up. Deleting it made that build fail ("image not
    known"; CI saw it), so only the build's name goes and the image stays under a kept name."""
    repo = builds.repo("kept")
    done = builds.wait(repo, builds.start_dockerfile(repo, dockerfile(builds.base, "LABEL kept=yes"))["id"])
    assert done["phase"] == "complete", builds.log_text(repo, done["id"])
    builds.wait_worker_idle()
    image_id = done["image_id"]
    stored = json.loads((builds.server.build_root / "overlay" / "storage" / "overlay-images" / "images.json")
                        .read_text())
    names = {image["id"]: image.get("names", []) for image in stored}
    digest = image_id.removeprefix("sha256:")
    assert names.get(digest) == [f"localhost/slipway-layer:{digest}"]
    assert not [n for ns in names.values() for n in ns if "slipway-build-" in n]


def test_private_base_images_are_pulled_as_the_requester_or_the_pull_robot(builds, tmp_path):
    from tests.images import make_oci_layout

    layout = tmp_path / "private-base"
    make_oci_layout(layout, labels={"from": "private"})
    builds.tools.skopeo("copy", "--dest-tls-verify=false", "--dest-creds", f"admin:{builds.admin.auth[1]}",
                        f"oci:{layout}:latest", f"docker://{builds.server.host}/admin/private-base:1")
    robot = builds.admin.ok("PUT", "/user/robots/puller", {"description": "pulls base images"})
    builds.admin.ok("PUT", "/repository/admin/private-base/permissions/user/admin+puller", {"role": "read"})
    repo = builds.repo("on-private-base")
    content = f"FROM {builds.server.host}/admin/private-base:1\nLABEL built=yes\n"
    # Started by hand: the requester (admin) can read the private base, so no robot is needed (issue 10).
    without = builds.wait(repo, builds.start_dockerfile(repo, content)["id"])
    assert without["phase"] == "complete", builds.log_text(repo, without["id"])
    with_robot = builds.wait(repo, builds.start_dockerfile(repo, content, pull_robot="admin+puller")["id"])
    assert with_robot["phase"] == "complete", builds.log_text(repo, with_robot["id"])
    assert with_robot["pull_robot"]["name"] == "admin+puller"
    labels = builds.inspect(f"{repo}:latest")["Labels"]
    assert labels["from"] == "private" and labels["built"] == "yes"
    assert robot["token"] not in builds.log_text(repo, with_robot["id"])


def test_a_private_base_image_in_the_shared_store_is_not_reused_without_access(builds):
    # The previous test pulled admin/private-base with a robot into the worker's store.
    builds.admin.ok("POST", "/superuser/users/", {"username": "mallory", "password": PASSWORD})
    mallory = Api(builds.server, ("mallory", PASSWORD))
    mallory.ok("POST", "/repository", {"repository": "steal", "visibility": "private"})
    build = builds.start_dockerfile("mallory/steal", f"FROM {builds.server.host}/admin/private-base:1\n",
                                    api=mallory)
    done = builds.wait("mallory/steal", build["id"])
    assert done["phase"] == "error" and "Could not pull base image" in done["error"]
    assert builds.tags("mallory/steal") == []
