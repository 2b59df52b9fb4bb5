"""Making small real images locally (no internet): an OCI layout with busybox-static in a scratch image."""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
import time
import zlib
from pathlib import Path

BUSYBOX = "/bin/busybox"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_tar(files: dict[str, bytes | str], symlinks: dict[str, str] | None = None) -> bytes:
    """An uncompressed tar layer; ``files`` maps paths to content (bytes) or to a host file to copy."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs = set()
        for path in sorted(list(files) + list((symlinks or {}).keys())):
            parts = path.strip("/").split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    info = tarfile.TarInfo(d)
                    info.type = tarfile.DIRTYPE
                    info.mode = 0o755
                    info.mtime = 0
                    tar.addfile(info)
        for path, data in sorted(files.items()):
            if isinstance(data, str):
                data = Path(data).read_bytes()
                mode = 0o755
            else:
                mode = 0o644
            info = tarfile.TarInfo(path.strip("/"))
            info.size = len(data)
            info.mode = mode
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
        for path, target in sorted((symlinks or {}).items()):
            info = tarfile.TarInfo(path.strip("/"))
            info.type = tarfile.SYMTYPE
            info.linkname = target
            info.mtime = 0
            tar.addfile(info)
    return buf.getvalue()


def _inflated_digest(blob: bytes) -> str:
    """The digest of what a gzip blob inflates to, read in steps (a decompression bomb is not inflated in memory
    at once); of the part that inflates when the blob is truncated."""
    inflate, digest, rest = zlib.decompressobj(wbits=31), hashlib.sha256(), blob
    while rest:
        digest.update(inflate.decompress(rest, 1 << 20))
        rest = inflate.unconsumed_tail
    digest.update(inflate.flush())
    return "sha256:" + digest.hexdigest()


def make_oci_layout(directory: str | os.PathLike, layers: list[bytes] | None = None, labels: dict | None = None,
                    cmd: list[str] | None = None, tag: str = "latest", annotations: dict | None = None,
                    compressed: bool = False, config_extra: dict | None = None) -> dict:
    """Write an OCI image layout; returns {"manifest_digest", "config_digest", "layer_digests"}.

    By default the image is busybox-static at /bin/busybox with /bin/sh linked to it. ``layers`` are tars,
    gzip-compressed here; with ``compressed``, gzip blobs stored as given (a truncated one, a bomb).
    """
    directory = Path(directory)
    blobs = directory / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    if layers is None:
        layers = [layer_tar({"bin/busybox": BUSYBOX}, {"bin/sh": "busybox", "bin/echo": "busybox"})]

    def put(data: bytes) -> str:
        digest = _digest(data)
        (blobs / digest.split(":")[1]).write_bytes(data)
        return digest

    layer_descs, diff_ids = [], []
    for raw in layers:
        blob = raw if compressed else gzip.compress(raw, mtime=0)
        diff_ids.append(_inflated_digest(blob) if compressed else _digest(raw))
        layer_descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                            "digest": put(blob), "size": len(blob)})
    config = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": cmd or ["/bin/sh"], "Labels": labels or {}, "Env": ["PATH=/bin"], **(config_extra or {})},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": "tests/images.py"} for _ in layers],
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_digest = put(config_bytes)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest,
                   "size": len(config_bytes)},
        "layers": layer_descs,
    }
    if annotations:
        manifest["annotations"] = annotations
    manifest_bytes = json.dumps(manifest).encode()
    manifest_digest = put(manifest_bytes)
    (directory / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    (directory / "index.json").write_text(json.dumps({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest,
                       "size": len(manifest_bytes), "annotations": {"org.opencontainers.image.ref.name": tag}}],
    }))
    return {"manifest_digest": manifest_digest, "config_digest": config_digest,
            "layer_digests": [d["digest"] for d in layer_descs], "manifest": manifest_bytes}
