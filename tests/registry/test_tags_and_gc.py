"""Tag expiry (quay.expires-after), the time machine, labels, the tag API, and garbage collection on disk."""
from __future__ import annotations

import hashlib
import json
import threading
import time

import pytest

from tests.api import Api
from tests.builder.conftest import FAST_QUEUE, Builds
from tests.conftest import ADMIN_PASSWORD, ContainerTools, SlipwayServer, wait_for
from tests.images import layer_tar, make_oci_layout

CREDS = f"admin:{ADMIN_PASSWORD}"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    base = tmp_path_factory.mktemp("tags")
    srv = SlipwayServer(base / "srv", extra_env={**FAST_QUEUE, "SLIPWAY_GC__GRACE_SECONDS": "3",
                                                  "SLIPWAY_TAGS__MIN_EXPIRATION_SECONDS": "60"}).start()
    builds = Builds(srv, ContainerTools(base / "tools", srv.host)).setup(base)
    yield builds, base
    srv.stop()


def blob_path(server, digest: str):
    hexpart = digest.split(":")[1]
    return server.data_dir / "storage" / "blobs" / "sha256" / hexpart[:2] / hexpart


def push_layout(builds: Builds, tmp, repo_tag: str, layers=None, labels=None, annotations=None) -> dict:
    info = make_oci_layout(tmp, layers=layers, labels=labels, annotations=annotations)
    builds.tools.skopeo("copy", "--dest-tls-verify=false", "--dest-creds", CREDS, f"oci:{tmp}:latest",
                        f"docker://{builds.server.host}/{repo_tag}")
    return info


def age_registry_rows(server, seconds: float) -> None:
    """What waiting ``seconds`` does for garbage collection's grace, without the wait: every blob,
    blob link and manifest is made that much older (the grace reads only these creation times)."""
    for table in ("blob", "repository_blob", "manifest"):
        server.sql(f"UPDATE {table} SET created_at = created_at - ?", int(seconds * 1000))


def pull_status(builds: Builds, repo: str, ref: str) -> int:
    token = builds.server.token(f"repository:{repo}:pull")
    return builds.server.v2("GET", f"/v2/{repo}/manifests/{ref}", token,
                            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}).status_code


def test_expires_after_label_from_a_dockerfile_then_restore(env):
    builds, _ = env
    repo = builds.repo("ephemeral")
    build = builds.start_dockerfile(repo, f"FROM {builds.base}\nLABEL quay.expires-after=2s\n", docker_tags=["short"])
    done = builds.wait(repo, build["id"])
    assert done["phase"] == "complete"
    [tag] = builds.admin.ok("GET", f"/repository/{repo}/tag/?specificTag=short&onlyActiveTags=true")["tags"]
    assert "expiration" in tag and tag["end_ts"] - tag["start_ts"] == 2
    expires_at = tag["end_ts"]  # whole seconds: the expiry is within the second after it
    while True:  # pulled until its expiry, then gone at that time, not at a later job run
        asked = time.time()
        status = pull_status(builds, repo, "short")
        if status == 404:
            break
        assert status == 200 and asked < expires_at + 1.2
        time.sleep(0.05)
    assert asked >= expires_at - 0.3
    token = builds.server.token(f"repository:{repo}:pull")
    assert "short" not in builds.server.v2("GET", f"/v2/{repo}/tags/list", token).json()["tags"]
    history = builds.admin.ok("GET", f"/repository/{repo}/tag/?specificTag=short")["tags"]
    assert len(history) == 1 and "expiration" not in history[0]
    builds.admin.ok("POST", f"/repository/{repo}/tag/short/restore", {"manifest_digest": tag["manifest_digest"]})
    assert pull_status(builds, repo, "short") == 200
    [restored] = builds.admin.ok("GET", f"/repository/{repo}/tag/?specificTag=short&onlyActiveTags=true")["tags"]
    assert "end_ts" not in restored  # restored without the expiry
    kinds = [r[0] for r in builds.server.sql("SELECT kind FROM log_entry WHERE repository = ? ORDER BY id", repo)]
    assert "revert_tag" in kinds


def test_invalid_label_is_ignored_and_noted_and_index_rules(env, tmp_path):
    builds, _ = env
    repo = "admin/labelled"
    info = push_layout(builds, tmp_path / "a", f"{repo}:weird", labels={"quay.expires-after": "soon"})
    [tag] = builds.admin.ok("GET", f"/repository/{repo}/tag/?specificTag=weird")["tags"]
    assert "end_ts" not in tag
    def noted():  # registry audit entries are written in batches
        notes = builds.server.sql("SELECT metadata FROM log_entry WHERE kind = 'invalid_tag_expiration'")
        return any(json.loads(m[0])["value"] == "soon" for m in notes)

    wait_for(noted, what="the invalid_tag_expiration entry")
    # annotations count too, and a new tag on an existing manifest gets the expiry
    annotated = push_layout(builds, tmp_path / "b", f"{repo}:annotated", annotations={"quay.expires-after": "1h"},
                            labels={"x": "1"})
    builds.admin.ok("PUT", f"/repository/{repo}/tag/second", {"manifest_digest": annotated["manifest_digest"]})
    for name in ("annotated", "second"):
        [row] = builds.admin.ok("GET", f"/repository/{repo}/tag/?specificTag={name}")["tags"]
        assert row["end_ts"] - row["start_ts"] == 3600
    token = builds.server.token(f"repository:{repo}:pull,push")

    def put_index(tag, children):
        doc = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                          "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d,
                                         "size": s} for d, s in children]}).encode()
        r = builds.server.v2("PUT", f"/v2/{repo}/manifests/{tag}", token, data=doc,
                             headers={"Content-Type": "application/vnd.oci.image.index.v1+json"})
        assert r.status_code == 201

    sized = [(annotated["manifest_digest"], len(annotated["manifest"]))]
    put_index("all-labelled", sized)
    put_index("mixed", sized + [(info["manifest_digest"], len(info["manifest"]))])
    [all_labelled] = builds.admin.ok("GET", f"/repository/{repo}/tag/?specificTag=all-labelled")["tags"]
    [mixed] = builds.admin.ok("GET", f"/repository/{repo}/tag/?specificTag=mixed")["tags"]
    assert all_labelled["end_ts"] - all_labelled["start_ts"] == 3600 and "end_ts" not in mixed


def test_labels_api(env, tmp_path):
    builds, _ = env
    repo = "admin/with-labels"
    info = push_layout(builds, tmp_path / "l", f"{repo}:v1", labels={"maintainer": "team-a"})
    base = f"/repository/{repo}/manifest/{info['manifest_digest']}/labels"
    listed = builds.admin.ok("GET", base)["labels"]
    assert [(x["key"], x["value"], x["source_type"]) for x in listed] == [("maintainer", "team-a", "manifest")]
    added = builds.admin.ok("POST", base, {"label": "stage=prod"})
    assert added["key"] == "stage" and added["value"] == "prod" and added["source_type"] == "api"
    r = builds.admin.post(base, {"label": "no-equals-sign"})
    assert r.status_code == 400 and r.json()["detail"] == "Invalid label format, must be key value separated by ="
    builds.admin.ok("POST", base, {"key": "config", "value": '{"a": 1}', "media_type": "application/json"})
    assert builds.admin.post(base, {"key": "bad", "value": "{", "media_type": "application/json"}).status_code == 400
    assert [x["key"] for x in builds.admin.ok("GET", f"{base}?filter=st")["labels"]] == ["stage"]
    builds.admin.ok("DELETE", f"{base}/{added['id']}")
    assert "stage" not in [x["key"] for x in builds.admin.ok("GET", base)["labels"]]


def test_tag_api_history_clamped_expiry_delete_and_permanent_expire(env, tmp_path):
    builds, _ = env
    repo = "admin/tagged"
    one = push_layout(builds, tmp_path / "1", f"{repo}:v1", labels={"n": "1"})
    two = push_layout(builds, tmp_path / "2", f"{repo}:v2", labels={"n": "2"})
    builds.admin.ok("PUT", f"/repository/{repo}/tag/v1", {"manifest_digest": two["manifest_digest"]})
    history = builds.admin.ok("GET", f"/repository/{repo}/tag/?specificTag=v1")["tags"]
    assert [h["manifest_digest"] for h in history] == [two["manifest_digest"], one["manifest_digest"]]
    assert "end_ts" in history[1]
    r = builds.admin.put(f"/repository/{repo}/tag/v1", {"manifest_digest": "sha256:" + "0" * 64})
    assert r.status_code == 404
    past = int(time.time()) - 3600
    clamped = builds.admin.ok("PUT", f"/repository/{repo}/tag/v2", {"expiration": past})
    assert clamped["end_ts"] >= int(time.time()) + 55  # clamped up to the 60 s minimum
    far = builds.admin.ok("PUT", f"/repository/{repo}/tag/v2", {"expiration": int(time.time()) + 10 * 365 * 86400})
    assert far["end_ts"] <= int(time.time()) + 2 * 365 * 86400 + 5
    cleared = builds.admin.ok("PUT", f"/repository/{repo}/tag/v2", {"expiration": None})
    assert "end_ts" not in cleared
    builds.admin.ok("DELETE", f"/repository/{repo}/tag/v2")
    assert pull_status(builds, repo, "v2") == 404
    builds.admin.ok("POST", f"/repository/{repo}/tag/v2/restore", {"manifest_digest": two["manifest_digest"]})
    assert pull_status(builds, repo, "v2") == 200
    builds.admin.ok("POST", f"/repository/{repo}/tag/v2/expire")
    r = builds.admin.post(f"/repository/{repo}/tag/v2/restore", {"manifest_digest": two["manifest_digest"]})
    assert r.status_code == 400 and "time machine window" in r.json()["detail"]
    assert builds.admin.delete(f"/repository/{repo}/tag/nope").status_code == 404


def test_gc_frees_bytes_after_the_window_while_a_push_sharing_a_layer_goes_on(env, tmp_path):
    builds, _ = env
    srv = builds.server
    admin = builds.admin
    admin.ok("POST", "/organization/", {"name": "gcorg", "email": "g@g.io"})
    admin.ok("PUT", "/organization/gcorg", {"tag_expiration_s": 0})  # no time machine: gone once deleted
    shared = layer_tar({"shared/data.bin": b"S" * 300000})
    unique_a = layer_tar({"a/data.bin": b"A" * 200000 + str(time.time()).encode()})
    a = push_layout(builds, tmp_path / "a", "gcorg/app:old", layers=[shared, unique_a])
    other = push_layout(builds, tmp_path / "k", "gcorg/keep:v1", layers=[shared])
    shared_digest, unique_digest = a["layer_digests"]
    assert blob_path(srv, unique_digest).exists()
    age_registry_rows(srv, 3.5)  # older than the 3 s grace
    admin.ok("DELETE", "/repository/gcorg/app/tag/old")

    unique_b = layer_tar({"b/data.bin": b"B" * 200000 + str(time.time()).encode()})
    errors = []

    def push_b():
        try:
            push_layout(builds, tmp_path / "b", "gcorg/app:new", layers=[shared, unique_b])
        except AssertionError as e:
            errors.append(e)

    pusher = threading.Thread(target=push_b)
    pusher.start()
    result = srv.cli("admin", "gc")
    pusher.join()
    assert errors == []
    assert "freed" in result.stdout and unique_digest in result.stdout
    assert not blob_path(srv, unique_digest).exists()  # the bytes are gone from disk
    assert blob_path(srv, shared_digest).exists()  # still used by gcorg/keep and the new push
    out = tmp_path / "pulled"
    builds.tools.skopeo("copy", "--src-tls-verify=false", "--src-creds", CREDS,
                        f"docker://{srv.host}/gcorg/app:new", f"oci:{out}:x")
    assert pull_status(builds, "gcorg/keep", "v1") == 200
    assert pull_status(builds, "gcorg/app", a["manifest_digest"]) == 404
    assert other["layer_digests"] == [shared_digest]


def test_deleting_a_repository_frees_everything_in_it(env, tmp_path):
    builds, _ = env
    srv = builds.server
    layer = layer_tar({"only/here.bin": b"X" * 100000 + str(time.time()).encode()})
    info = push_layout(builds, tmp_path / "d", "admin/doomed:v1", layers=[layer])
    builds.admin.ok("DELETE", "/repository/admin/doomed")
    age_registry_rows(srv, 3.5)
    srv.cli("admin", "gc")
    assert not blob_path(srv, info["layer_digests"][0]).exists()
    assert not blob_path(srv, info["config_digest"]).exists()
    digest = "sha256:" + hashlib.sha256(info["manifest"]).hexdigest()
    assert srv.sql("SELECT COUNT(*) FROM manifest WHERE digest = ?", digest)[0][0] == 0


def test_time_machine_window_bounds_restores(env, tmp_path):
    builds, _ = env
    builds.admin.ok("POST", "/organization/", {"name": "tmorg", "email": "t@t.io"})
    builds.admin.ok("PUT", "/organization/tmorg", {"tag_expiration_s": 0})
    info = push_layout(builds, tmp_path / "t", "tmorg/app:v1", labels={"t": "1"})
    builds.admin.ok("DELETE", "/repository/tmorg/app/tag/v1")
    [(ended,)] = builds.server.sql("SELECT lifetime_end FROM tag WHERE name = 'v1' AND repository_id = "
                                   "(SELECT id FROM repository WHERE name = 'app' AND namespace_id = "
                                   "(SELECT id FROM account WHERE name = 'tmorg'))")
    wait_for(lambda: time.time() * 1000 > ended + 1, what="the millisecond after the deletion")
    r = builds.admin.post("/repository/tmorg/app/tag/v1/restore", {"manifest_digest": info["manifest_digest"]})
    assert r.status_code == 400 and "time machine window (0 s)" in r.json()["detail"]
    assert Api(builds.server).get("/repository/tmorg/app/tag/").status_code == 401
