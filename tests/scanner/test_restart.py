"""The whole server killed (its process tree, SIGKILL) while it scans a large image, then started again on the
same data: the scan is finished by the new processes, once, with the result an uninterrupted scan of the same
packages gives, and each vulnerability is announced (and delivered) once."""
from __future__ import annotations

import gzip
import hashlib
import json
import signal
import tarfile

import pytest

from tests.api import Api
from tests.conftest import ADMIN_PASSWORD, ContainerTools, SlipwayServer, wait_for
from tests.receiver import Receiver

from .test_scanner import BOOKWORM_LAYER, CREDS, HELD_BACK, PERL_CVES, TRACKER, security, settled, vulnerabilities

pytestmark = pytest.mark.skipif(not BOOKWORM_LAYER.exists(), reason="the shared vulndata is not here")

CHUNK = 64 << 20
BIG_CHUNKS = 40  # 2.5 GiB inflated (2.6 MB compressed): a few seconds of scanning on this machine


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def zeros_layer(path) -> tuple[str, str, int]:
    """A gzip tar layer of one large file of zeros, written as repeated gzip members (a valid multi-member gzip
    stream) so it is made in a moment; returns (blob digest, diff id, size)."""
    size = BIG_CHUNKS * CHUNK
    info = tarfile.TarInfo("var/cache/zeros")
    info.size, info.mode = size, 0o644
    header, tail = info.tobuf(format=tarfile.PAX_FORMAT), bytes((-size) % 512) + bytes(1024)
    diff, blob, zeros = hashlib.sha256(header), hashlib.sha256(), bytes(CHUNK)
    for _ in range(BIG_CHUNKS):
        diff.update(zeros)
    diff.update(tail)
    member = gzip.compress(zeros, compresslevel=1, mtime=0)
    with open(path, "wb") as out:
        for part in [gzip.compress(header, mtime=0)] + [member] * BIG_CHUNKS + [gzip.compress(tail, mtime=0)]:
            out.write(part)
            blob.update(part)
    return "sha256:" + blob.hexdigest(), "sha256:" + diff.hexdigest(), path.stat().st_size


def layout_with(directory, with_big_layer: bool, label: str) -> str:
    """An OCI layout: the Debian fixture's layer, then (``with_big_layer``) the large one; its manifest digest."""
    blobs = directory / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    fixture = BOOKWORM_LAYER.read_bytes()
    (blobs / sha256(fixture)[7:]).write_bytes(fixture)
    layers = [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha256(fixture),
               "size": len(fixture)}]
    diff_ids = [sha256(gzip.decompress(fixture))]
    if with_big_layer:
        staged = directory / "big.tar.gz"
        digest, diff_id, size = zeros_layer(staged)
        staged.rename(blobs / digest[7:])
        layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest, "size": size})
        diff_ids.append(diff_id)
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Labels": {"which": label}},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    (blobs / sha256(config)[7:]).write_bytes(config)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": sha256(config), "size": len(config)},
                           "layers": layers}).encode()
    (blobs / sha256(manifest)[7:]).write_bytes(manifest)
    (directory / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    (directory / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha256(manifest),
         "size": len(manifest), "annotations": {"org.opencontainers.image.ref.name": "latest"}}]}))
    return sha256(manifest)


def test_a_server_killed_mid_scan_finishes_it_after_a_restart_once(tmp_path):
    receiver = Receiver()
    srv = SlipwayServer(tmp_path / "srv", extra_env={
        "SLIPWAY_NETWORK__ALLOWLIST": "127.0.0.1/32",
        "SLIPWAY_SCANNER__LEASE_SECONDS": "4",  # the dead processes' claim lapses soon after the restart
        "SLIPWAY_SCANNER__MAX_INFLATED_MB_PER_LAYER": "8192"}).start()
    try:
        tools = ContainerTools(tmp_path / "tools", srv.host)
        api = Api(srv, auth=("admin", ADMIN_PASSWORD))
        srv.cli("scanner", "update", str(TRACKER))
        for repo in ("big", "reference"):
            api.ok("POST", "/repository", {"repository": repo, "visibility": "private", "namespace": "admin"})
        api.ok("POST", "/repository/admin/big/notification/",
               {"event": "vulnerability_found", "method": "webhook", "config": {"url": f"{receiver.url}/vuln"},
                "eventConfig": {}})
        digest = layout_with(tmp_path / "layout", True, "big")
        tools.skopeo("copy", "--dest-tls-verify=false", "--dest-creds", CREDS, f"oci:{tmp_path / 'layout'}:latest",
                     f"docker://{srv.host}/admin/big:1")
        [[big_layer]] = srv.sql("SELECT b.digest FROM blob b JOIN manifest_blob mb ON mb.blob_id = b.id "
                                "JOIN manifest m ON m.id = mb.manifest_id WHERE m.digest = ? AND b.size > ?",
                                digest, 1 << 20)

        def scanning():
            claimed = srv.sql("SELECT attempts FROM scanner_job WHERE digest = ? AND lease_owner IS NOT NULL", digest)
            return claimed == [(1,)]

        wait_for(scanning, timeout=120, what="the scan to be claimed", interval=0.01)
        srv.stop(signal.SIGKILL)  # the process group: HTTP processes, the background process and its scan thread
        # It was killed in the middle: the claim is there, no result, the large layer not indexed.
        assert srv.sql("SELECT status FROM scanner_manifest WHERE digest = ?", digest) == [("queued",)]
        assert srv.sql("SELECT attempts FROM scanner_job WHERE digest = ?", digest) == [(1,)]
        assert srv.sql("SELECT COUNT(*) FROM scanner_layer_index WHERE layer_digest = ?", big_layer) == [(0,)]
        assert srv.sql("SELECT COUNT(*) FROM event WHERE kind = 'vulnerability_found'") == [(0,)]

        srv.start()
        body = wait_for(lambda: (lambda b: b if b["status"] != "queued" else None)(security(api, "admin/big", digest)),
                        timeout=180, what="the scan to finish after the restart")
        assert body["status"] == "scanned", body
        wait_for(lambda: srv.sql("SELECT COUNT(*) FROM scanner_job WHERE digest = ?", digest) == [(0,)],
                 what="the job to be done")  # no job left: nothing will scan it again
        assert srv.sql("SELECT COUNT(*) FROM scanner_layer_index WHERE layer_digest = ?", big_layer) == [(1,)]
        expected = PERL_CVES | {HELD_BACK}
        assert set(vulnerabilities(body)) == expected

        # The same packages scanned without an interruption (the fixture's layer alone) give the same report.
        reference = layout_with(tmp_path / "reference", False, "reference")
        tools.skopeo("copy", "--dest-tls-verify=false", "--dest-creds", CREDS,
                     f"oci:{tmp_path / 'reference'}:latest", f"docker://{srv.host}/admin/reference:1")
        plain = settled(api, "admin/reference", reference)
        assert plain["status"] == "scanned"
        assert body["data"]["Layer"]["Features"] == plain["data"]["Layer"]["Features"]

        # Each vulnerability announced once, delivered once.
        events = srv.sql("SELECT payload FROM event WHERE kind = 'vulnerability_found' AND repository = ?",
                         "admin/big")
        assert sorted(json.loads(p)["vulnerability"]["id"] for (p,) in events) == sorted(expected)
        [[last_event]] = srv.sql("SELECT MAX(id) FROM event")
        wait_for(lambda: srv.sql("SELECT last_id FROM event_cursor WHERE name = ?", "notifications")[0][0]
                 >= last_event, timeout=60, what="the notifications to pass every event")
        wait_for(lambda: srv.sql("SELECT COUNT(*) FROM notification_delivery WHERE status = 'pending'") == [(0,)],
                 timeout=60, what="every delivery to be sent")
        hits = [json.loads(h["body"])["vulnerability"]["id"] for h in receiver.requests if h["path"] == "/vuln"]
        assert sorted(hits) == sorted(expected)
    finally:
        srv.stop()
        receiver.httpd.shutdown()
