"""Helpers of the scanner core's tests (test_index, test_feeds, test_match: marker ``inprocess``, as tests/unit):
real layers built in memory from the fixtures of ../shared/vulndata, real advisory feeds, no database, no
server."""
from __future__ import annotations

import gzip
import io
import tarfile
from collections import defaultdict
from pathlib import Path

import pytest

VULNDATA = Path(__file__).resolve().parents[3] / "shared" / "vulndata"
if not VULNDATA.is_dir():
    VULNDATA = Path("/work/shared/vulndata")
BOOKWORM_LAYER = VULNDATA / "fixtures" / "bookworm-scanner-fixture.tar.gz"


def layer(entries: dict, compress=gzip.compress) -> bytes:
    """A layer tar from ``{path: bytes | (b"x", executable bytes) | ("symlink" or "hardlink", target) | ("dir",)}``,
    gzip-compressed by default."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for path, content in entries.items():
            info = tarfile.TarInfo(path)
            if isinstance(content, tuple) and content[0] in ("symlink", "hardlink"):
                info.type = tarfile.SYMTYPE if content[0] == "symlink" else tarfile.LNKTYPE
                info.linkname = content[1]
                archive.addfile(info)
            elif isinstance(content, tuple) and content[0] == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                archive.addfile(info)
            else:
                mode = 0o755 if isinstance(content, tuple) else 0o644
                data = content[1] if isinstance(content, tuple) else content
                info.size, info.mode = len(data), mode
                archive.addfile(info, io.BytesIO(data))
    raw = buffer.getvalue()
    return compress(raw) if compress else raw


def tree_layer(root: Path, prefix: str = "") -> bytes:
    return layer({prefix + str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()})


class Advisories:
    """Real feeds read once per session, by file, and looked up as the service's database would."""

    def __init__(self):
        self._by_file: dict[str, dict] = {}

    def load(self, *relative: str):
        from scanner.feeds import read_feeds

        table: dict = defaultdict(list)
        for name in relative:
            if name not in self._by_file:
                found: dict = defaultdict(list)
                for _, advisories in read_feeds([VULNDATA / name]):
                    for advisory in advisories:
                        found[(advisory.ecosystem, advisory.package)].append(advisory)
                self._by_file[name] = found
            for key, values in self._by_file[name].items():
                table[key].extend(values)
        return lambda ecosystem, package: table.get((ecosystem, package), ())


@pytest.fixture(scope="session")
def advisories():
    return Advisories()
