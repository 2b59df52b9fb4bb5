"""Advisories in the database: importing feeds (transactional, incremental) and looking them up for matching.

An import reads and parses every feed first (``scanner.feeds.read_feeds``), outside any transaction; a feed
that does not parse stops it before anything is written (``FeedError``, naming the feed and why). Then one
transaction writes what is new or changed, comparing each advisory's content digest with the stored one, so
a re-import of the same feeds writes nothing; an advisory a feed gave before and no longer gives is deleted
(withdrawn: each row remembers the feed that last gave it, by the feed's name). It returns the (ecosystem,
package) keys it touched, which ``scans.rematch`` matches again from stored indexes.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from peewee import chunked

from slipway import outgoing
from slipway.db import database, now_ms

from .feeds import Advisory, FeedError, read_feeds
from .index import ImageIndex
from .match import ecosystem_keys
from .models import AdvisoryRow

DOWNLOAD_TIMEOUT = 60


def _tuples(value):
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    return value


def advisory_from_json(text: str) -> Advisory:
    data = json.loads(text)
    data["affected_ranges"] = _tuples(data.get("affected_ranges") or [])
    return Advisory(**data)


def lookup_for(image: ImageIndex) -> Callable[[str, str], list[Advisory]]:
    """``lookup(ecosystem, package)`` over the advisories of every package of ``image``, read in a few queries."""
    wanted: dict[str, set[str]] = {}
    for package in image.packages:
        for ecosystem, name in ecosystem_keys(package, image.distribution):
            wanted.setdefault(ecosystem, set()).add(name)
    found: dict[tuple[str, str], list[Advisory]] = {}
    for ecosystem, names in wanted.items():
        for part in chunked(sorted(names), 500):
            for row in AdvisoryRow.select(AdvisoryRow.ecosystem, AdvisoryRow.package, AdvisoryRow.data).where(
                    (AdvisoryRow.ecosystem == ecosystem) & AdvisoryRow.package.in_(part)):
                found.setdefault((row.ecosystem, row.package), []).append(advisory_from_json(row.data))
    return lambda ecosystem, name: found.get((ecosystem, name), [])


@dataclass
class FeedResult:
    name: str
    advisories: int = 0
    added: int = 0
    changed: int = 0
    withdrawn: int = 0  # given last time by this feed, no longer: deleted


@dataclass
class ImportResult:
    feeds: list[FeedResult] = field(default_factory=list)
    keys: set = field(default_factory=set)  # (ecosystem, package) of new, changed or withdrawn advisories
    rematched: int = 0  # manifests matched again after the import (scans.rematch)
    announced: int = 0  # vulnerability_found events written

    @property
    def added(self) -> int:
        return sum(f.added for f in self.feeds)

    @property
    def changed(self) -> int:
        return sum(f.changed for f in self.feeds)

    @property
    def withdrawn(self) -> int:
        return sum(f.withdrawn for f in self.feeds)


def _content_digest(advisory: Advisory) -> str:
    if advisory.digest:
        return advisory.digest
    return hashlib.sha256(json.dumps(asdict(advisory), sort_keys=True, default=list).encode()).hexdigest()


def download(url: str, directory: Path, network) -> Path:
    """Fetch a feed over HTTP(S) through the outgoing-request rules, into ``directory``."""
    name = os.path.basename(urlsplit(url).path) or "feed"
    target = directory / name
    try:
        response = outgoing.get(url, network, timeout=DOWNLOAD_TIMEOUT, stream=True)
    except Exception as e:
        raise FeedError(f"{url}: {e}") from None
    with response:
        if response.status_code != 200:
            raise FeedError(f"{url}: HTTP {response.status_code}")
        with open(target, "wb") as out:
            shutil.copyfileobj(response.raw, out)
    return target


def import_feeds(sources: Iterable[str], network=None, on_progress: Callable[[str, int], None] | None = None
                 ) -> ImportResult:
    """Import advisories from files, directories, zips or URLs; raises FeedError (nothing written) on a bad feed."""
    with ExitStack() as stack:
        paths = []
        for source in sources:
            if source.startswith(("http://", "https://")):
                directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="slipway-feed-")))
                paths.append(download(source, directory, network))
            elif not Path(source).exists():
                raise FeedError(f"{source}: no such file or directory")
            else:
                paths.append(Path(source))
        parsed: list[tuple[str, dict]] = []
        for feed_name, advisories in read_feeds(paths, on_progress):
            by_key = {}
            for advisory in advisories:
                by_key[(advisory.ecosystem, advisory.package, advisory.id)] = advisory
            parsed.append((feed_name, by_key))
    result = ImportResult()
    everywhere = {key for _, by_key in parsed for key in by_key}  # what any feed of this import gives
    with database.atomic():
        for feed_name, by_key in parsed:
            feed = FeedResult(feed_name, len(by_key))
            result.feeds.append(feed)
            stored = {}
            for ecosystem in {k[0] for k in by_key}:
                for row in AdvisoryRow.select(AdvisoryRow.id, AdvisoryRow.package, AdvisoryRow.advisory_id,
                                              AdvisoryRow.digest, AdvisoryRow.feed).where(
                        AdvisoryRow.ecosystem == ecosystem):
                    stored[(ecosystem, row.package, row.advisory_id)] = (row.id, row.digest, row.feed)
            new_rows, claimed = [], []
            now = now_ms()
            for key, advisory in by_key.items():
                digest = _content_digest(advisory)
                old = stored.get(key)
                if old is not None and old[1] == digest:
                    if old[2] != feed_name:
                        claimed.append(old[0])  # the same advisory, now (also) from this feed
                    continue
                data = json.dumps(asdict(advisory), separators=(",", ":"), default=list)
                if old is None:
                    new_rows.append({"advisory_id": advisory.id, "ecosystem": advisory.ecosystem,
                                     "package": advisory.package, "digest": digest, "data": data,
                                     "feed": feed_name, "updated_at": now})
                    feed.added += 1
                else:
                    AdvisoryRow.update(digest=digest, data=data, feed=feed_name, updated_at=now).where(
                        AdvisoryRow.id == old[0]).execute()
                    feed.changed += 1
                result.keys.add((advisory.ecosystem, advisory.package))
            for ids in chunked(claimed, 500):
                AdvisoryRow.update(feed=feed_name).where(AdvisoryRow.id.in_(ids)).execute()
            for rows in chunked(new_rows, 100):
                AdvisoryRow.insert_many(rows).execute()
            _withdraw(feed, everywhere, result)
    return result


def _withdraw(feed: FeedResult, everywhere: set, result: ImportResult) -> None:
    """Delete the advisories this feed gave last time and no longer gives (nor any other feed of the import):
    withdrawn, they stop matching when the manifests holding their packages are matched again."""
    gone = [(row.id, row.ecosystem, row.package) for row in
            AdvisoryRow.select(AdvisoryRow.id, AdvisoryRow.ecosystem, AdvisoryRow.package, AdvisoryRow.advisory_id)
            .where(AdvisoryRow.feed == feed.name)
            if (row.ecosystem, row.package, row.advisory_id) not in everywhere]
    for part in chunked(gone, 500):
        AdvisoryRow.delete().where(AdvisoryRow.id.in_([i for i, _, _ in part])).execute()
    feed.withdrawn = len(gone)
    result.keys.update((ecosystem, package) for _, ecosystem, package in gone)
