"""The scanner end to end: a real server, images pushed with skopeo, feeds imported with
``slipway scanner update``, results read through Quay's security API, ``vulnerability_found`` delivered to a
real webhook receiver."""
from __future__ import annotations

import functools
import gzip
import hashlib
import io
import json
import subprocess
import sys
import tarfile
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.api import Api
from tests.conftest import ADMIN_PASSWORD, ROOT, SLIPWAY, ContainerTools, SlipwayServer, wait_for
from tests.images import layer_tar, make_oci_layout
from tests.receiver import Receiver

VULNDATA = Path(__file__).resolve().parents[3] / "shared" / "vulndata"
if not VULNDATA.is_dir():
    VULNDATA = Path("/work/shared/vulndata")
BOOKWORM_LAYER = VULNDATA / "fixtures" / "bookworm-scanner-fixture.tar.gz"
TRACKER = VULNDATA / "debian" / "bookworm-derived-tracker.json"
OLD_WHEELS = Path(__file__).with_name("old-wheels.txt")  # downloaded by scripts/install.sh test|bench
WHEELS = ROOT / ".cache" / "scanner-wheels"
LAYER_CAP_MB = 8  # the server's scanner.max_inflated_mb_per_layer; the largest good layer here: 1.5 MB (Go)
CREDS = f"admin:{ADMIN_PASSWORD}"
HELD_BACK = "CVE-2026-103111"  # pcre2 (libpcre2-8-0 10.42-1), fixed in 10.42-1+deb12u2: imported second
PERL_CVES = {"CVE-2025-15649", "CVE-2026-12087", "CVE-2026-13221", "CVE-2026-19487", "CVE-2026-42496",
             "CVE-2026-42497", "CVE-2026-48959", "CVE-2026-48962", "CVE-2026-57432", "CVE-2026-57433",
             "CVE-2026-7010", "CVE-2026-7017", "CVE-2026-8376"}

pytestmark = pytest.mark.skipif(not BOOKWORM_LAYER.exists(), reason="the shared vulndata is not here")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    base = tmp_path_factory.mktemp("scanner")
    receiver = Receiver()
    settings = {"SLIPWAY_NETWORK__ALLOWLIST": "127.0.0.1/32",
                "SLIPWAY_SCANNER__MAX_INFLATED_MB_PER_LAYER": str(LAYER_CAP_MB)}
    srv = SlipwayServer(base / "srv", extra_env=settings).start()
    tools = ContainerTools(base / "tools", srv.host)
    yield srv, tools, receiver, base
    srv.stop()
    receiver.httpd.shutdown()


def push(env, layers: list[bytes], ref: str, compressed: bool = False) -> str:
    """Push an image of ``layers`` (tars; with ``compressed``, gzip blobs pushed as they are) with skopeo."""
    srv, tools, _, base = env
    layout = base / f"layout-{time.monotonic_ns()}"
    info = make_oci_layout(layout, layers=layers, labels={"stamp": str(time.time())}, compressed=compressed)
    tools.skopeo("copy", "--dest-tls-verify=false", "--dest-creds", CREDS, f"oci:{layout}:latest",
                 f"docker://{srv.host}/{ref}")
    return info["manifest_digest"]


def security(api: Api, repo: str, digest: str, vulnerabilities: bool = True) -> dict:
    r = api.get(f"/repository/{repo}/manifest/{digest}/security",
                params={"vulnerabilities": "true" if vulnerabilities else "false"})
    assert r.status_code == 200, r.text
    return r.json()


def settled(api: Api, repo: str, digest: str) -> dict:
    return wait_for(lambda: (lambda body: body if body["status"] != "queued" else None)(
        security(api, repo, digest)), timeout=60, what=f"the scan of {digest}")


def vulnerabilities(body: dict) -> dict:
    return {v["Name"]: (f["Name"], v) for f in body["data"]["Layer"]["Features"] for v in f.get("Vulnerabilities", [])}


def test_debian_image_scanned_and_a_feed_update_announces_a_new_vulnerability_once(env, tmp_path):
    srv, _, receiver, _ = env
    api = Api(srv, auth=("admin", ADMIN_PASSWORD))
    # The tracker without one CVE first; the full tracker later adds it.
    tracker = json.loads(TRACKER.read_text())
    partial = {source: {cve: v for cve, v in cves.items() if cve != HELD_BACK} for source, cves in tracker.items()}
    partial_path = tmp_path / "bookworm-partial.json"
    partial_path.write_text(json.dumps(partial))
    out = srv.cli("scanner", "update", str(partial_path)).stdout
    assert "0 changed" in out, out

    api.ok("POST", "/repository", {"repository": "debian", "visibility": "private", "namespace": "admin"})
    api.ok("POST", "/repository/admin/debian/notification/",
           {"event": "vulnerability_found", "method": "webhook", "config": {"url": f"{receiver.url}/vuln"},
            "eventConfig": {}})
    api.ok("POST", "/repository/admin/debian/notification/",
           {"event": "vulnerability_found", "method": "webhook", "config": {"url": f"{receiver.url}/high"},
            "eventConfig": {"level": "High"}})
    digest = push(env, [gzip.decompress(BOOKWORM_LAYER.read_bytes())], "admin/debian:12")

    body = settled(api, "admin/debian", digest)
    assert body["status"] == "scanned", body
    layer = body["data"]["Layer"]
    assert layer["Name"] == digest and layer["NamespaceName"] == "debian:12"
    names = {f["Name"]: f for f in layer["Features"]}
    assert len(names) >= 80 and names["perl-base"]["Version"] == "5.36.0-7+deb12u3"
    assert names["perl-base"]["VersionFormat"] == "dpkg" and names["perl-base"]["AddedBy"].startswith("sha256:")
    found = vulnerabilities(body)
    assert set(found) == PERL_CVES, sorted(found)
    package, vuln = found["CVE-2026-7010"]
    assert package == "perl-base" and vuln["FixedBy"] == "5.36.0-7+deb12u4" and vuln["Severity"] == "Unknown"
    assert vuln["NamespaceName"].startswith("debian")
    [tag] = api.ok("GET", "/repository/admin/debian/tag/")["tags"]
    assert tag["security"] == {"status": "scanned", "vulnerabilities": {"Unknown": len(PERL_CVES)},
                               "fixable": len(PERL_CVES)}
    without = security(api, "admin/debian", digest, vulnerabilities=False)
    assert all("Vulnerabilities" not in f for f in without["data"]["Layer"]["Features"])

    # One delivery per vulnerability to the notification without a level, none below High to the other.
    hits = receiver.wait(len(PERL_CVES), "/vuln", timeout=60)
    payloads = [json.loads(h["body"]) for h in hits]
    assert {p["vulnerability"]["id"] for p in payloads} == PERL_CVES
    first = payloads[0]
    assert first["repository"] == "admin/debian" and first["namespace"] == "admin" and first["name"] == "debian"
    assert first["tags"] == ["12"] and first["docker_url"].endswith("/admin/debian") and first["homepage"]
    assert set(first["vulnerability"]) >= {"id", "description", "link", "priority", "has_fix"}
    assert first["vulnerability"]["has_fix"] is True

    # The full tracker adds one advisory: matched from the stored index, announced once.
    out = srv.cli("scanner", "update", str(TRACKER)).stdout
    assert "1 new, 0 changed" in out and "1 images matched again" in out, out
    hits = receiver.wait(len(PERL_CVES) + 1, "/vuln", timeout=60)
    new = [json.loads(h["body"]) for h in hits if json.loads(h["body"])["vulnerability"]["id"] == HELD_BACK]
    assert len(new) == 1
    package, vuln = vulnerabilities(security(api, "admin/debian", digest))[HELD_BACK]
    assert package == "libpcre2-8-0" and vuln["FixedBy"] == "10.42-1+deb12u2"

    # The same update again changes nothing and announces nothing.
    events_before = srv.sql("SELECT COUNT(*) FROM event WHERE kind = 'vulnerability_found'")
    out = srv.cli("scanner", "update", str(TRACKER)).stdout
    assert "0 new, 0 changed" in out, out
    assert srv.sql("SELECT COUNT(*) FROM event WHERE kind = 'vulnerability_found'") == events_before
    [[last_event]] = srv.sql("SELECT MAX(id) FROM event")
    wait_for(lambda: srv.sql("SELECT last_id FROM event_cursor WHERE name = ?", "notifications")[0][0] >= last_event,
             timeout=60, what="the notifications to pass every event")
    assert len([h for h in receiver.requests if h["path"] == "/vuln"]) == len(PERL_CVES) + 1
    assert not [h for h in receiver.requests if h["path"] == "/high"]  # every one is Unknown


def test_from_scratch_busybox_is_unsupported(env):
    srv = env[0]
    api = Api(srv, auth=("admin", ADMIN_PASSWORD))
    digest = push(env, None, "admin/busybox:latest")
    body = settled(api, "admin/busybox", digest)
    assert body["status"] == "unsupported" and body["data"] is None, body


def test_a_layer_that_is_not_a_tar_fails_with_its_reason_and_the_next_good_push_scans(env):
    srv = env[0]
    api = Api(srv, auth=("admin", ADMIN_PASSWORD))
    bad = push(env, [b"this is not a tar archive at all\n" * 64], "admin/broken:bad")
    body = settled(api, "admin/broken", bad)
    assert body["status"] == "failed" and "layer 1" in body["reason"], body
    good = push(env, [layer_tar(SMALL_DEBIAN)], "admin/broken:good")
    body = settled(api, "admin/broken", good)
    assert body["status"] == "scanned", body
    assert [f["Name"] for f in body["data"]["Layer"]["Features"]] == ["perl-base"]


def test_security_api_permissions_and_rescan(env):
    srv = env[0]
    admin = Api(srv, auth=("admin", ADMIN_PASSWORD))
    digest = push(env, None, "admin/private:latest")
    settled(admin, "admin/private", digest)
    path = f"/repository/admin/private/manifest/{digest}/security"
    assert Api(srv).get(path).status_code in (401, 403)  # anonymous, private repository
    srv.create_user("mallory", "mallory-password")
    assert Api(srv, auth=("mallory", "mallory-password")).get(path).status_code == 404
    assert admin.get(f"/repository/admin/private/manifest/sha256:{'0' * 64}/security").status_code == 404
    assert Api(srv, auth=("mallory", "mallory-password")).post(path).status_code == 404
    assert admin.ok("POST", path)["status"] == "queued"
    assert settled(admin, "admin/private", digest)["status"] == "unsupported"


def test_a_corrupt_feed_changes_nothing_and_says_why(env, tmp_path):
    srv = env[0]
    before = srv.sql("SELECT COUNT(*) FROM scanner_advisory")
    truncated = tmp_path / "truncated.json"
    truncated.write_text(TRACKER.read_text()[:5000])
    result = srv.cli("scanner", "update", str(TRACKER), str(truncated), check=False)
    assert result.returncode == 1 and "nothing was changed" in result.stderr and "truncated" in result.stderr, \
        result.stderr
    assert srv.sql("SELECT COUNT(*) FROM scanner_advisory") == before


def test_a_scan_whose_process_died_is_taken_again_once_its_lease_lapses(env):
    """A scan claimed by a process that died (its lease not renewed) is scanned by the server once the lease
    lapses, once: the job is gone and nothing is announced twice."""
    srv = env[0]
    api = Api(srv, auth=("admin", ADMIN_PASSWORD))
    digest = push(env, [gzip.decompress(BOOKWORM_LAYER.read_bytes())], "admin/crashed:1")
    assert settled(api, "admin/crashed", digest)["status"] == "scanned"
    announced = srv.sql("SELECT COUNT(*) FROM scanner_announced WHERE digest = ?", digest)
    # As if a process had claimed the scan again and died 59 s into its 60 s lease.
    lapses = int(time.time() * 1000) + 1000
    # (The job first: on PostgreSQL the push's event is read again for 10 s, and a queued scan without a job
    # would be queued afresh.)
    srv.sql("INSERT INTO scanner_job (digest, available_at, lease_owner, lease_expires, attempts, created_at) "
            "VALUES (?, 0, 'dead-host:1:x', ?, 1, 0)", digest, lapses)
    srv.sql("UPDATE scanner_manifest SET status = 'queued' WHERE digest = ?", digest)
    assert security(api, "admin/crashed", digest)["status"] == "queued"
    body = settled(api, "admin/crashed", digest)
    assert body["status"] == "scanned" and time.time() * 1000 >= lapses
    wait_for(lambda: srv.sql("SELECT COUNT(*) FROM scanner_job WHERE digest = ?", digest) == [(0,)],
             what="the job to be done")  # the result is written, then the job is deleted
    assert srv.sql("SELECT COUNT(*) FROM scanner_announced WHERE digest = ?", digest) == announced


SMALL_DEBIAN = {"etc/os-release": b'ID=debian\nVERSION_ID="12"\nVERSION_CODENAME=bookworm\n',
                "var/lib/dpkg/status": b"Package: perl-base\nStatus: install ok installed\n"
                                       b"Version: 5.36.0-7+deb12u3\nSource: perl\nArchitecture: amd64\n\n"}


def test_an_index_answers_per_platform_and_its_tag_sums_them(env):
    srv, tools, _, base = env
    api = Api(srv, auth=("admin", ADMIN_PASSWORD))
    descriptors = []
    for arch, layers in (("amd64", [layer_tar(SMALL_DEBIAN)]), ("arm64", None)):
        layout = base / f"multi-{arch}"
        info = make_oci_layout(layout, layers=layers, labels={"arch": arch})
        tools.skopeo("copy", "--dest-tls-verify=false", "--dest-creds", CREDS, f"oci:{layout}:latest",
                     f"docker://{srv.host}/admin/multi@{info['manifest_digest']}")
        descriptors.append({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                            "digest": info["manifest_digest"], "size": len(info["manifest"]),
                            "platform": {"architecture": arch, "os": "linux"}})
    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": descriptors}).encode()
    token = srv.token("repository:admin/multi:push,pull")
    r = srv.v2("PUT", "/v2/admin/multi/manifests/latest", token, data=index,
               headers={"Content-Type": "application/vnd.oci.image.index.v1+json"})
    assert r.status_code == 201, r.text
    digest = r.headers["Docker-Content-Digest"]
    body = wait_for(lambda: (lambda b: b if all(m["status"] != "queued" for m in b["manifests"]) else None)(
        security(api, "admin/multi", digest)), timeout=60, what="both platform scans")
    assert body["status"] == "scanned"
    by_arch = {m["platform"]["architecture"]: m for m in body["manifests"]}
    assert by_arch["amd64"]["status"] == "scanned" and by_arch["arm64"]["status"] == "unsupported"
    assert {v["Name"] for f in by_arch["amd64"]["data"]["Layer"]["Features"] for v in f["Vulnerabilities"]} \
        >= PERL_CVES
    [tag] = api.ok("GET", "/repository/admin/multi/tag/")["tags"]
    assert tag["is_manifest_list"] and tag["security"]["status"] == "scanned"
    assert tag["security"]["vulnerabilities"]["Unknown"] >= len(PERL_CVES)


def test_feeds_from_urls_go_through_the_outgoing_rules(env, tmp_path):
    srv = env[0]
    (tmp_path / "tracker.json").write_bytes(TRACKER.read_bytes())
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_port}/tracker.json"
        out = srv.cli("scanner", "update", url).stdout  # the server's settings allow 127.0.0.1/32
        assert "tracker.json: 75 advisories" in out, out
        env_without = {k: v for k, v in srv.env.items() if k != "SLIPWAY_NETWORK__ALLOWLIST"}
        refused = subprocess.run(SLIPWAY + ["scanner", "update", url], env=env_without, cwd=str(ROOT), text=True,
                                 capture_output=True, timeout=120)
        assert refused.returncode == 1 and "nothing was changed" in refused.stderr, refused.stderr
        assert "private" in refused.stderr or "allow" in refused.stderr, refused.stderr
    finally:
        httpd.shutdown()


def test_alpine_and_go_images_end_to_end(env, tmp_path):
    """The other package kinds pushed with skopeo and read through the security API: an Alpine 3.4 image (its
    branch from os-release), a Go binary (built offline, when a Go toolchain is here)."""
    from .conftest import layer
    from .test_match import _build_go_binary, _go

    srv = env[0]
    api = Api(srv, auth=("admin", ADMIN_PASSWORD))
    srv.cli("scanner", "update", str(VULNDATA / "alpine-secdb" / "v3.4"), str(VULNDATA / "alpine-secdb" / "v3.5"),
            str(VULNDATA / "osv" / "Go-all.zip"))

    root = VULNDATA / "fixtures" / "alpine34"
    alpine = push(env, [layer({str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
                               if p.is_file()}, compress=None)], "admin/alpine:3.4")
    body = settled(api, "admin/alpine", alpine)
    assert body["status"] == "scanned" and body["data"]["Layer"]["NamespaceName"].startswith("alpine:3.4"), body
    found = vulnerabilities(body)
    assert found and all(v["NamespaceName"] == "alpine:v3.4" and v["Severity"] == "Unknown"
                         for _, v in found.values())
    vulnerable = {f["Name"] for f in body["data"]["Layer"]["Features"] if f["Vulnerabilities"]}
    assert {"libcrypto1.0", "libssl1.0"} <= vulnerable  # by their origin, the openssl aport

    if _go() is None:
        return
    binary = _build_go_binary(tmp_path).read_bytes()
    go = push(env, [layer({"usr/local/bin/hello": (b"x", binary)}, compress=None)], "admin/go:hello")
    body = settled(api, "admin/go", go)
    assert body["status"] == "scanned", body
    features = {f["Name"]: f for f in body["data"]["Layer"]["Features"]}
    assert features["golang.org/x/text"]["Version"] == "v0.3.7" and "stdlib" in features
    package, vuln = vulnerabilities(body)["GO-2022-1059"]
    assert package == "golang.org/x/text" and vuln["FixedBy"] == "0.3.8"


def pip_install_target(tmp_path: Path) -> Path:
    """The old releases of tests/scanner/old-wheels.txt installed by pip, as ``pip install --target`` leaves them
    (from the wheels scripts/install.sh downloaded: no network here)."""
    requirements = [line for line in OLD_WHEELS.read_text().splitlines() if line and not line.startswith("#")]
    site = tmp_path / "site-packages"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--no-index",
                           "--no-deps", "--find-links", str(WHEELS), "--target", str(site), *requirements],
                          capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        pytest.fail(f"the wheels of {OLD_WHEELS.name} are not in {WHEELS}: run `bash scripts/install.sh test` "
                    f"(it downloads them once from PyPI)\n{done.stderr}")
    return site


def test_python_packages_installed_by_pip_end_to_end(env, tmp_path):
    """Old releases installed by a real ``pip install --target`` into a layer at a site-packages path, pushed
    with skopeo: their advisories from the PyPI OSV feed with their FixedBy; an advisory fixed before (or in
    exactly) the installed version, or introduced after it, is not reported."""
    srv = env[0]
    api = Api(srv, auth=("admin", ADMIN_PASSWORD))
    srv.cli("scanner", "update", str(VULNDATA / "osv" / "PyPI-all.zip"))
    site = pip_install_target(tmp_path)
    assert (site / "jinja2" / "__init__.py").is_file() and (site / "requests-2.19.0.dist-info").is_dir()

    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w", format=tarfile.PAX_FORMAT) as archive:
        archive.add(site, arcname="usr/local/lib/python3.11/site-packages")
    layer_digest = "sha256:" + hashlib.sha256(gzip.compress(tar.getvalue(), mtime=0)).hexdigest()
    digest = push(env, [tar.getvalue()], "admin/python:old")
    body = settled(api, "admin/python", digest)
    assert body["status"] == "scanned", body
    features = {f["Name"]: f for f in body["data"]["Layer"]["Features"]}
    assert {name: (f["Version"], f["VersionFormat"], f["AddedBy"]) for name, f in features.items()} == {
        "Jinja2": ("2.10", "pypi", layer_digest), "urllib3": ("1.23", "pypi", layer_digest),
        "requests": ("2.19.0", "pypi", layer_digest)}
    fixed_by = {name: {v["Name"]: v["FixedBy"] for v in f["Vulnerabilities"]} for name, f in features.items()}
    # Jinja2: not PYSEC-2014-8 (fixed in 2.7.2) nor PYSEC-2019-220 (2.8.1).
    assert fixed_by["Jinja2"] == {"PYSEC-2019-217": "2.10.1", "PYSEC-2021-66": "2.11.3"}
    # requests: not PYSEC-2014-13/14 (fixed in 2.3.0) nor PYSEC-2015-17 (2.6.0).
    assert fixed_by["requests"] == {"PYSEC-2018-28": "2.20.0", "PYSEC-2023-74": "2.31.0"}
    # urllib3: not PYSEC-2018-32 (fixed in exactly 1.23), nor PYSEC-2020-149 / PYSEC-2021-59 (introduced in
    # 1.25.2 / 1.26.0); PYSEC-2023-192 is fixed in 2.0.6 and 1.26.17: the 1.x line's fix is this one's.
    assert fixed_by["urllib3"] == {"PYSEC-2019-132": "1.24.3", "PYSEC-2019-133": "1.24.2",
                                   "PYSEC-2020-148": "1.25.9", "PYSEC-2021-108": "1.26.5",
                                   "PYSEC-2023-192": "1.26.17", "PYSEC-2023-207": "1.24.2",
                                   "PYSEC-2023-212": "1.26.18"}
    _, jinja = vulnerabilities(body)["PYSEC-2019-217"]
    assert jinja["NamespaceName"] == "PyPI" and jinja["Severity"] == "Unknown"  # no severity in this entry
    assert jinja["Description"] == "In Pallets Jinja before 2.10.1, str.format_map allows a sandbox escape."


@pytest.mark.parametrize("files, reason", [
    ({"etc/os-release": ("symlink", "../usr/lib/os-release"), "usr/lib/os-release": ("symlink", "/etc/os-release")},
     "symbolic link loop"),
    ({"var/lib/dpkg/status": b"Package: a\nVersion: 1\nthis is not a field\n"},
     "var/lib/dpkg/status does not parse: line 3"),
])
def test_bad_layers_fail_with_their_reason(env, files, reason):
    from .conftest import layer

    srv = env[0]
    api = Api(srv, auth=("admin", ADMIN_PASSWORD))
    digest = push(env, [layer(files, compress=None)], "admin/bad:latest")
    body = settled(api, "admin/bad", digest)
    assert body["status"] == "failed" and reason in body["reason"] and "layer 1" in body["reason"], body


class _Zeros:
    def read(self, n: int) -> bytes:
        return bytes(n)


def zeros_bomb(size: int) -> bytes:
    """A gzip tar holding one file of ``size`` zero bytes, compressed as it is written (to about 1/1000)."""
    blob = io.BytesIO()
    with gzip.GzipFile(fileobj=blob, mode="wb", mtime=0) as compressed, \
            tarfile.open(fileobj=compressed, mode="w") as archive:
        info = tarfile.TarInfo("var/cache/zeros")
        info.size = size
        archive.addfile(info, _Zeros())
    return blob.getvalue()


@pytest.mark.parametrize("case", ["truncated", "bomb"])
def test_a_truncated_layer_and_a_decompression_bomb_fail_naming_the_layer_and_the_next_push_scans(env, case):
    """Gzip layers pushed as they are, each after a good layer: a valid gzip tar cut in half (its digest the cut
    bytes'), a tar of zeros inflating to 8 times the server's cap per layer. The scan fails naming the bad
    layer and why; the next push into the same server, a layer never read before, is scanned."""
    srv = env[0]
    api = Api(srv, auth=("admin", ADMIN_PASSWORD))
    if case == "truncated":
        whole = BOOKWORM_LAYER.read_bytes()
        bad, reason = whole[: len(whole) // 2], "the layer is truncated"
    else:
        bad, reason = zeros_bomb(8 * LAYER_CAP_MB << 20), f"the layer inflates to more than {LAYER_CAP_MB << 20} bytes"
        assert len(bad) < 1 << 20
    good = gzip.compress(layer_tar(SMALL_DEBIAN), mtime=0)
    digest = push(env, [good, bad], f"admin/badlayer:{case}", compressed=True)
    body = settled(api, "admin/badlayer", digest)
    bad_digest = "sha256:" + hashlib.sha256(bad).hexdigest()
    assert body["status"] == "failed" and body["reason"].startswith(f"layer 2 ({bad_digest}): {reason}"), body

    fresh = layer_tar({**SMALL_DEBIAN, f"etc/after-{case}": str(time.time_ns()).encode()})
    digest = push(env, [fresh], f"admin/badlayer:{case}-then-good")
    body = settled(api, "admin/badlayer", digest)
    assert body["status"] == "scanned", body
    assert [f["Name"] for f in body["data"]["Layer"]["Features"]] == ["perl-base"]


def test_a_helm_chart_is_unsupported_not_an_error(env):
    """An artifact (a Helm chart: its own config and layer media types) answers ``unsupported`` with a reason."""
    import hashlib

    srv = env[0]
    api = Api(srv, auth=("admin", ADMIN_PASSWORD))
    api.ok("POST", "/repository", {"repository": "charts", "visibility": "private", "namespace": "admin"})
    token = srv.token("repository:admin/charts:push,pull")
    descriptors = []
    for media_type, data in (("application/vnd.cncf.helm.config.v1+json", b"{}"),
                             ("application/vnd.cncf.helm.chart.content.v1.tar+gzip", gzip.compress(b"chart"))):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        r = srv.v2("POST", f"/v2/admin/charts/blobs/uploads/?digest={digest}", token, data=data,
                   headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 201, r.text
        descriptors.append({"mediaType": media_type, "digest": digest, "size": len(data)})
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": descriptors[0], "layers": descriptors[1:]}).encode()
    r = srv.v2("PUT", "/v2/admin/charts/manifests/0.1.0", token, data=manifest,
               headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 201, r.text
    body = settled(api, "admin/charts", r.headers["Docker-Content-Digest"])
    assert body["status"] == "unsupported" and body["data"] is None, body
    assert "not a container image" in body["reason"] and "helm" in body["reason"], body


def test_binnmu_epoch_fixed_exactly_and_later_layers_removing_packages_end_to_end(env):
    """The matching cases of the issue's proof through a push and the security API: a binNMU compared by its
    source version, a package fixed in exactly the installed version (not vulnerable), an epoch (a DSA), and a
    later layer removing a vulnerable Debian package (its status rewritten) and a vulnerable Python distribution
    (a whiteout): neither is reported."""
    from .conftest import layer

    srv, tools, _, base = env
    api = Api(srv, auth=("admin", ADMIN_PASSWORD))
    srv.cli("scanner", "update", str(TRACKER), str(VULNDATA / "debian" / "DSA-list"),
            str(VULNDATA / "osv" / "PyPI-all.zip"))

    def status(*entries: str) -> bytes:
        return "".join(f"Package: {e.split()[0]}\nStatus: install ok installed\nVersion: {e.split()[1]}\n"
                       f"Source: {' '.join(e.split()[2:])}\nArchitecture: amd64\n\n" for e in entries).encode()

    site = "usr/local/lib/python3.11/site-packages"
    first = layer({"etc/os-release": b'ID=debian\nVERSION_ID="12"\nVERSION_CODENAME=bookworm\n',
                   "var/lib/dpkg/status": status("libexpat1 2.5.0-1+b1 expat (2.5.0-1)",
                                                 "libpcre2-8-0 10.42-1+deb12u2 pcre2",
                                                 "perl-base 5.36.0-7+deb12u3 perl"),
                   f"{site}/Jinja2-2.10.dist-info/METADATA": b"Metadata-Version: 2.1\nName: Jinja2\nVersion: 2.10\n"},
                  compress=None)
    second = layer({"var/lib/dpkg/status": status("libexpat1 2.5.0-1+b1 expat (2.5.0-1)",
                                                  "libpcre2-8-0 10.42-1+deb12u2 pcre2"),  # perl-base removed
                    f"{site}/.wh.Jinja2-2.10.dist-info": b""}, compress=None)
    layout = base / "layout-cases"
    info = make_oci_layout(layout, layers=[first, second], labels={"case": "matching"})
    tools.skopeo("copy", "--dest-tls-verify=false", "--dest-creds", CREDS, f"oci:{layout}:latest",
                 f"docker://{srv.host}/admin/cases:bookworm")
    body = settled(api, "admin/cases", info["manifest_digest"])
    assert body["status"] == "scanned", body
    features = {f["Name"]: f for f in body["data"]["Layer"]["Features"]}
    assert set(features) == {"libexpat1", "libpcre2-8-0"}  # perl-base and Jinja2 gone in the second layer
    assert features["libexpat1"]["AddedBy"] == info["layer_digests"][0]
    expat = {v["Name"]: v for v in features["libexpat1"]["Vulnerabilities"]}
    assert len(expat) == 27 and expat["CVE-2026-50219"]["FixedBy"] == "2.5.0-1+deb12u3"
    assert features["libpcre2-8-0"]["Vulnerabilities"] == []  # fixed in exactly 10.42-1+deb12u2

    bullseye = layer({"etc/os-release": b'ID=debian\nVERSION_ID="11"\nVERSION_CODENAME=bullseye\n',
                      "var/lib/dpkg/status": status("ruby-activesupport 2:6.0.3.7+dfsg-2 rails",
                                                    "ruby-rack 6.1.7+dfsg-1 rails")}, compress=None)
    layout = base / "layout-epoch"
    info = make_oci_layout(layout, layers=[bullseye], labels={"case": "epoch"})
    tools.skopeo("copy", "--dest-tls-verify=false", "--dest-creds", CREDS, f"oci:{layout}:latest",
                 f"docker://{srv.host}/admin/cases:bullseye")
    body = settled(api, "admin/cases", info["manifest_digest"])
    assert body["status"] == "scanned" and body["data"]["Layer"]["NamespaceName"] == "debian:11", body
    features = {f["Name"]: f for f in body["data"]["Layer"]["Features"]}
    dsa = {v["Name"]: v for v in features["ruby-activesupport"]["Vulnerabilities"]}["DSA-5372-1"]
    assert dsa["FixedBy"] == "2:6.0.3.7+dfsg-2+deb11u1"
    # 6.1.7 with epoch 0 sorts before 2:6.0.3.7: vulnerable too, though its upstream version is higher
    assert "DSA-5372-1" in {v["Name"] for v in features["ruby-rack"]["Vulnerabilities"]}
