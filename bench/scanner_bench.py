#!/usr/bin/env python3
"""On-demand micro-benchmark of the scanner's pure core (issue 14): indexing and matching layers, and parsing
the advisory feeds. No database, no server: what the scan job and the feed import spend outside SQL.

Targets of the issue this measures the core's share of: index + match of a Debian 12 minbase image in under 2 s;
an import of all of ../shared/vulndata in under 60 s (the database writes are the service's, measured there).

What it runs (wall times; the median of ``--repeat`` runs, min and max beside it):

* ``feeds``: ``scanner.feeds.read_feeds`` over ``--vulndata`` (every Debian, Alpine and OSV feed), iterated to the
  end, advisories counted per ecosystem. The advisories are then kept in a dict keyed as the service's table is
  (ecosystem, package) and serve as the lookup of the matches below (lookups are dict hits, not SQL).
* ``fixture``: ``index_layer`` + ``combine`` + ``match`` of ``fixtures/bookworm-scanner-fixture.tar.gz`` (a real
  os-release and dpkg status of 88 packages).
* ``tree``: the same for each ``--tree DIR``, made into one gzipped layer (the paths below DIR): e.g. old Python
  packages from ``pip install --no-deps --target DIR/usr/local/lib/python3.11/site-packages jinja2==2.10 ...``,
  or a Go binary copied to ``DIR/usr/local/bin/``.
* ``image``: the same for ``--image`` (a tar, gzip or zstd layer, e.g. made with
  ``mmdebstrap --variant=minbase bookworm /tmp/x.tar http://deb.debian.org/debian``); a plain tar is gzipped
  (level 6, as buildah does) once before timing, so the time includes decompression as a pushed layer's would.

With ``--service`` it also runs the scanner's service in-process, database included (a fresh SQLite file and a
filesystem store in a temporary directory, no HTTP), where the issue's service figures are:

* ``import``: ``slipway scanner update``'s work (``scanner.jobs.update_feeds``) for all of ``--vulndata`` into the
  empty database, then the same again (nothing changed: nothing written);
* ``cold``: ``scan_manifest`` of an image whose only layer is ``--image`` (pushed through the registry's own
  functions), its layer index deleted before each run so the layer is read every time;
* ``per pushed manifest``: the background work a push causes, in CPU and wall time per manifest: queueing its
  scan (``queue_pushed``), then claiming, scanning and recording it (``run_next``), for 200 pushed images whose
  1 MiB random layer fails at once as "not a tar" (as ``registry_bench.py --scanner`` pushes them);
* ``shared base``: ``scan_manifest`` of a second image made of the same base layer plus a small layer of its own
  (new each run, so it is read): the base layer's stored index is reused, not read again.

It prints the peak RSS of the process at the end (``ru_maxrss``), which includes the feeds held in memory.

    /work/main/.venv/bin/python bench/scanner_bench.py [--image /tmp/x.tar] [--repeat 5] [--service]
"""
from __future__ import annotations

import argparse
import gzip
import resource
import statistics
import sys
import tarfile
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scanner.feeds import read_feeds  # noqa: E402
from scanner.index import Limits, combine, index_layer  # noqa: E402
from scanner.match import match  # noqa: E402

DEFAULT_VULNDATA = ROOT.parent / "shared" / "vulndata"
LIMITS = Limits(max_inflated_bytes_per_layer=4 << 30, max_file_bytes=64 << 20)


def timed(function, repeat: int):
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return result, times


def report(label: str, times: list[float], extra: str = "") -> None:
    print(f"{label:<28} median {statistics.median(times):7.3f} s   min {min(times):7.3f}   max {max(times):7.3f}"
          f"   ({len(times)} runs){'   ' + extra if extra else ''}")


def load_feeds(vulndata: Path):
    table: dict = defaultdict(list)
    counts: Counter = Counter()
    for _, advisories in read_feeds([vulndata]):
        for advisory in advisories:
            table[(advisory.ecosystem, advisory.package)].append(advisory)
            counts[advisory.ecosystem.split(":")[0]] += 1
    return table, counts


def scan(path: Path, lookup):
    with open(path, "rb") as stream:
        layer = index_layer(stream, "application/vnd.oci.image.layer.v1.tar+gzip", LIMITS)
    image = combine([("sha256:bench", layer)])
    return image, match(image, lookup)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vulndata", type=Path, default=DEFAULT_VULNDATA)
    parser.add_argument("--image", type=Path, help="a layer (tar, tar.gz, tar.zst) to index and match")
    parser.add_argument("--tree", type=Path, action="append", default=[],
                        help="a directory to make into a layer, index and match (repeatable)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--service", action="store_true",
                        help="also the service in-process, database included: feed import, cold and shared-base scans")
    args = parser.parse_args()

    (table, counts), times = timed(lambda: load_feeds(args.vulndata), args.repeat)
    report("feeds: parse all", times, f"{sum(counts.values())} advisories: {dict(counts)}")

    def lookup(ecosystem, name):
        return table.get((ecosystem, name), ())

    fixture = args.vulndata / "fixtures" / "bookworm-scanner-fixture.tar.gz"
    (image, findings), times = timed(lambda: scan(fixture, lookup), args.repeat)
    report("fixture: index+match", times, f"{len(image.packages)} packages, {len(findings)} findings")

    for tree in args.tree:
        with tempfile.TemporaryDirectory() as tmp:
            layer = Path(tmp) / "layer.tar.gz"
            with tarfile.open(layer, "w:gz") as archive:
                for path in sorted(tree.iterdir()):
                    archive.add(path, arcname=path.name)
            (image, findings), times = timed(lambda layer=layer: scan(layer, lookup), args.repeat)
            kinds = Counter(p.kind for p in image.packages)
            report(f"tree {tree.name}: index+match", times,
                   f"{layer.stat().st_size / 1e6:.1f} MB compressed, packages {dict(kinds)}, {len(findings)} findings")

    if args.image:
        with tempfile.TemporaryDirectory() as tmp:
            layer = args.image
            with open(layer, "rb") as stream:
                magic = stream.read(4)
            if not magic.startswith((b"\x1f\x8b", b"\x28\xb5\x2f\xfd")):
                layer = Path(tmp) / "layer.tar.gz"
                with open(args.image, "rb") as source, gzip.open(layer, "wb", compresslevel=6) as target:
                    while chunk := source.read(1 << 20):
                        target.write(chunk)
            size = layer.stat().st_size
            (image, findings), times = timed(lambda: scan(layer, lookup), args.repeat)
            distribution = image.distribution
            report("image: index+match", times,
                   f"{size / 1e6:.1f} MB compressed, {args.image.stat().st_size / 1e6:.1f} MB tar, "
                   f"{len(image.packages)} packages, {len(findings)} findings, "
                   f"{distribution.id if distribution else None} {distribution.codename if distribution else ''}")
    if args.service:
        service(args)
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


def _gzipped(path: Path, directory: Path) -> Path:
    """``path`` itself if it is compressed already, else a gzip of it (level 6, as buildah writes layers)."""
    with open(path, "rb") as stream:
        if stream.read(4).startswith((b"\x1f\x8b", b"\x28\xb5\x2f\xfd")):
            return path
    layer = directory / "base.tar.gz"
    with open(path, "rb") as source, gzip.open(layer, "wb", compresslevel=6) as target:
        while chunk := source.read(1 << 20):
            target.write(chunk)
    return layer


def service(args) -> None:
    """The service's figures, database included (see the module's docstring)."""
    import hashlib
    import io
    import json
    import os

    from accounts import users
    from registry import blobs, content, manifests, repos
    from registry.storage import FilesystemStorage
    from scanner import jobs, scans
    from scanner.models import LayerIndexRow
    from slipway import crypto, db, migrate
    from slipway.app import migrations
    from slipway.config import Config

    def push_blob(storage, repo, stream) -> tuple[str, int]:
        upload = blobs.start_upload(storage, repo)
        receiver = blobs.ChunkReceiver(storage, upload.uuid, 0)
        digest = hashlib.sha256()
        while chunk := stream.read(1 << 20):
            receiver.write(chunk)
            digest.update(chunk)
        size = receiver.close()
        blobs.verify_and_commit(storage, repo, upload.uuid, "sha256:" + digest.hexdigest(), size, upload)
        return "sha256:" + digest.hexdigest(), size

    def push_image(storage, repo, tag: str, layers: list[tuple[str, int]]) -> str:
        config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Labels": {"tag": tag}},
                             "rootfs": {"type": "layers", "diff_ids": [d for d, _ in layers]}}).encode()
        config_digest, config_size = push_blob(storage, repo, io.BytesIO(config))
        raw = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                          "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                     "digest": config_digest, "size": config_size},
                          "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d,
                                      "size": n} for d, n in layers]}).encode()
        parsed = manifests.parse(raw, "application/vnd.oci.image.manifest.v1+json")
        return content.put_manifest(repo, parsed, tag, storage).manifest.digest

    def top_layer(n: int) -> bytes:
        """A small layer of the image's own: an application and one Python distribution."""
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
            for path, data in ((f"srv/app/run-{n}.sh", b"#!/bin/sh\nexec python3 -m app\n"),
                               ("usr/lib/python3/dist-packages/urllib3-1.23.dist-info/METADATA",
                                b"Metadata-Version: 2.1\nName: urllib3\nVersion: 1.23\n")):
                info = tarfile.TarInfo(path)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
        return buffer.getvalue()

    with tempfile.TemporaryDirectory(prefix="scanner-bench-") as tmp:
        tmp = Path(tmp)
        crypto.configure("bench")
        db.bind(db.open_database(f"sqlite:///{tmp / 'bench.db'}"))
        migrate.migrate(migrations())
        config = Config()
        start = time.perf_counter()
        result = jobs.update_feeds(config, [str(args.vulndata)])
        first = time.perf_counter() - start
        start = time.perf_counter()
        again = jobs.update_feeds(config, [str(args.vulndata)])
        second = time.perf_counter() - start
        print(f"{'service: import all':<28} {first:7.3f} s   {result.added} advisories added")
        print(f"{'service: import again':<28} {second:7.3f} s   {again.added} added, {again.changed} changed, "
              f"{again.withdrawn} withdrawn")
        storage = FilesystemStorage(tmp / "storage")
        identity = users.identity_for(users.create_user("bench", None, superuser=True), "password")
        repo = repos.create("bench/app", identity)[0]
        limits = scans.ScanLimits(4 << 30, 16 << 30)

        # The background work per pushed manifest, the layer failing at once (what registry_bench --scanner pushes).
        pushed = 200
        for n in range(pushed):
            push_image(storage, repo, f"noise-{n}", [push_blob(storage, repo, io.BytesIO(os.urandom(1 << 20)))])
        cpu, wall = time.process_time(), time.perf_counter()
        while scans.queue_pushed(batch=50):
            pass
        queued = time.process_time() - cpu, time.perf_counter() - wall
        cpu, wall = time.process_time(), time.perf_counter()
        while scans.run_next(storage, limits, "bench", 60, batch=jobs.CLAIM_BATCH):
            pass
        scanned = time.process_time() - cpu, time.perf_counter() - wall
        print(f"{'service: per pushed manifest':<28} queue {1000 * queued[0] / pushed:.2f} ms CPU "
              f"({1000 * queued[1] / pushed:.2f} ms wall), claim + scan + result {1000 * scanned[0] / pushed:.2f} ms "
              f"CPU ({1000 * scanned[1] / pushed:.2f} ms wall); {pushed} manifests, a 1 MiB layer that is not a tar")
        if not args.image:
            return
        with open(_gzipped(args.image, tmp), "rb") as stream:
            base = push_blob(storage, repo, stream)
        digest = push_image(storage, repo, "base", [base])

        def cold():
            LayerIndexRow.delete().where(LayerIndexRow.layer_digest == base[0]).execute()
            scans.queue(digest, force=True)
            return scans.scan_manifest(digest, storage, limits)

        status, times = timed(cold, args.repeat)
        report("service: cold image", times, f"{status}; {base[1] / 1e6:.1f} MB layer read each run")
        runs = iter(range(args.repeat))

        def shared():
            n = next(runs)
            own = push_blob(storage, repo, io.BytesIO(top_layer(n)))
            second = push_image(storage, repo, f"app-{n}", [base, own])
            scans.queue(second)
            start = time.perf_counter()
            status = scans.scan_manifest(second, storage, limits)
            return status, time.perf_counter() - start

        measured = [shared() for _ in range(args.repeat)]
        report("service: shared base", [t for _, t in measured],
               f"{measured[-1][0]}; the base layer's stored index reused, the image's own small layer read")
        db.database.close()


if __name__ == "__main__":
    main()
