"""Reading the feeds: every format of ../shared/vulndata, progress, and the feeds refused with their reason."""
from __future__ import annotations

import json
import zipfile

import pytest

from scanner.feeds import SEVERITIES, FeedError, read_feeds

from .conftest import VULNDATA

pytestmark = pytest.mark.inprocess


def read_all(paths, progress=None):
    return {name: list(advisories) for name, advisories in read_feeds(paths, progress)}


def test_every_feed_of_vulndata_is_read_with_progress():
    seen = []
    feeds = read_all([VULNDATA], lambda name, count: seen.append((name, count)))
    counts = {name: len(advisories) for name, advisories in feeds.items()}
    assert counts["vulndata/debian/bookworm-derived-tracker.json"] == 75
    assert counts["vulndata/osv/PyPI-all.zip"] > 2500
    assert counts["vulndata/osv/Go-all.zip"] > 4000
    assert counts["vulndata/debian/DSA-list"] > 5000 and counts["vulndata/debian/DLA-list"] > 3000
    assert counts["vulndata/alpine-secdb/v3.4/main.json"] > 500
    assert counts["vulndata/alpine-secdb/v3.3/community.json"] == 0  # "packages": null
    assert not any(name.startswith("vulndata/fixtures") for name in feeds)
    # the last report of each feed is its total
    assert {name: count for name, count in seen} == counts
    everything = [a for advisories in feeds.values() for a in advisories]
    assert {a.severity for a in everything} <= set(SEVERITIES)
    assert all(len(a.digest) == 64 for a in everything)
    ecosystems = {a.ecosystem.split(":")[0] for a in everything}
    assert ecosystems == {"debian", "alpine", "PyPI", "Go"}


def test_digests_change_with_content_only():
    first = read_all([VULNDATA / "alpine-secdb" / "v3.4" / "main.json"])
    again = read_all([VULNDATA / "alpine-secdb" / "v3.4" / "main.json"])
    assert [a.digest for a in next(iter(first.values()))] == [a.digest for a in next(iter(again.values()))]


def test_truncated_zip(tmp_path):
    data = (VULNDATA / "osv" / "PyPI-all.zip").read_bytes()
    cut = tmp_path / "PyPI-all.zip"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(FeedError, match="PyPI-all.zip: not a readable zip"):
        read_all([cut])


def test_corrupt_member_in_a_zip(tmp_path):
    path = tmp_path / "Go-all.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("GO-1.json", json.dumps({"id": "GO-1", "affected": []}))
        archive.writestr("GO-2.json", '{"id": "GO-2", "affec')
    with pytest.raises(FeedError, match="GO-2.json: not valid JSON"):
        read_all([path])


def test_truncated_json_and_unknown_formats(tmp_path):
    tracker = (VULNDATA / "debian" / "bookworm-derived-tracker.json").read_text()
    (tmp_path / "tracker.json").write_text(tracker[: len(tracker) // 2])
    with pytest.raises(FeedError, match="tracker.json: not valid JSON"):
        read_all([tmp_path / "tracker.json"])
    (tmp_path / "other.json").write_text('{"hello": "world"}')
    with pytest.raises(FeedError, match="no known feed format"):
        read_all([tmp_path / "other.json"])
    with pytest.raises(FeedError, match="no such file"):
        read_all([tmp_path / "missing"])


def test_dsa_list_that_does_not_parse(tmp_path):
    (tmp_path / "DSA-list").write_text("[01 Jan 2023] DSA-1-1 foo - update\n\t[bookworm] foo\n")
    with pytest.raises(FeedError, match="DSA-list: line 2 does not parse"):
        read_all([tmp_path / "DSA-list"])
