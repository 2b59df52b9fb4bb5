"""Who this Slipway is, for processes on many nodes: the storage that holds its blobs, and the addresses
its nodes serve at.

**Storage.** Recorded in the database at first start, checked by every process that serves, writes or
collects.

A process whose storage settings name other storage (a node without the shared mount, ``slipway admin gc``
run without the storage settings) would otherwise serve 404s, write blobs nobody else sees, or delete rows
whose bytes it cannot reach. The database keeps the driver, the location and a random marker; the marker is
also written as an object in the storage (``storage.MARKER``). The marker decides: the same storage reached
by another path (another mount point, another endpoint name) is accepted, an empty directory at the right
path is not.

**Addresses.** Each ``slipway serve`` records ``host:port`` for its host name, its fully qualified name and
their addresses (``announce``); build workers take every recorded one as a name of this Slipway's registry,
so ``FROM <any node>:<port>/...`` is pulled from ``builds.registry_url`` like ``FROM localhost:<port>/...``.
"""
from __future__ import annotations

import socket
import uuid

from peewee import CharField

from slipway.db import BaseModel, TimestampField, database, is_postgres, now_ms

from .models import Blob
from .storage import MARKER, Storage


class StorageIdentity(BaseModel):
    driver = CharField(max_length=16)
    location = CharField(max_length=1024)
    marker = CharField(max_length=64, unique=True)
    created_at = TimestampField(default=now_ms)


class StorageMismatch(Exception):
    """This process's storage is not the storage this database's blobs are in."""


def ensure(storage: Storage) -> StorageIdentity:
    """Record the storage's identity (the first process to get here) or check it (every later one)."""
    recorded = StorageIdentity.select().order_by(StorageIdentity.id).first()
    if recorded is None:
        recorded = _record(storage)
        if recorded is not None:
            return recorded
        recorded = StorageIdentity.select().order_by(StorageIdentity.id).first()  # another process's
    found = storage.read_marker()  # written before its row was committed (``_record``)
    if found != recorded.marker:
        what = "no marker object" if found is None else f"the marker object of another Slipway ({found})"
        raise StorageMismatch(
            f"this process's storage ({storage.driver} at {storage.location()}, {what}) is not the storage "
            f"this database's blobs are in ({recorded.driver} at {recorded.location}, marker {MARKER} = "
            f"{recorded.marker}); set {storage.setting} (storage.driver: {recorded.driver}) to the storage every "
            "node shares")
    return recorded


BLOBS_SAMPLED = 5  # of the database's newest blobs, at least one must be in storage adopted at first start


def _record(storage: Storage) -> StorageIdentity | None:
    """First start: record this storage, its marker written before the row commits (a failed or interrupted
    write leaves no row, and the next start records it again), one process at a time (the write lock on
    SQLite, a table lock on PostgreSQL). None if another process recorded one first.

    A database that already has blobs (a deployment upgraded in place) adopts only storage holding some of
    them: the first process after an upgrade may be ``slipway admin gc`` without the storage settings."""
    with database.atomic():
        if is_postgres():
            database.execute_sql("LOCK TABLE storage_identity IN SHARE ROW EXCLUSIVE MODE")
        if StorageIdentity.select().exists():
            return None
        marker = storage.read_marker()
        if marker is None:
            sample = [b.digest for b in Blob.select(Blob.digest).order_by(Blob.id.desc()).limit(BLOBS_SAMPLED)]
            if sample and all(storage.blob_size(digest) is None for digest in sample):
                raise StorageMismatch(
                    f"this process's storage ({storage.driver} at {storage.location()}) holds none of this "
                    f"database's newest blobs, so it is not the storage they are in; set {storage.setting} "
                    "to the storage every node shares")
            marker = uuid.uuid4().hex
            storage.write_marker(marker)
        # Storage that already has a marker (a database made afresh on used storage) keeps it.
        return StorageIdentity.create(driver=storage.driver, location=storage.location(), marker=marker)


class NodeAddress(BaseModel):
    name = CharField(max_length=300, unique=True)  # host:port, [v6]:port
    seen_at = TimestampField(default=now_ms)


def own_addresses(host: str, port: int) -> set[str]:
    """``host:port`` for the names and addresses this machine answers at (not loopback: that is every
    worker's own)."""
    names = {socket.gethostname(), socket.getfqdn()}
    if host not in ("", "0.0.0.0", "::"):
        names.add(host)
    for name in list(names):
        try:
            names |= {info[4][0] for info in socket.getaddrinfo(name, port, proto=socket.IPPROTO_TCP)}
        except OSError:
            pass
    found = set()
    for name in names:
        if not name or name in ("localhost", "::1") or name.startswith("127."):
            continue
        found.add(f"[{name}]:{port}" if ":" in name else f"{name}:{port}")
    return found


def announce(host: str, port: int) -> None:
    for name in own_addresses(host, port):
        NodeAddress.insert(name=name).on_conflict(conflict_target=[NodeAddress.name],
                                                  update={NodeAddress.seen_at: now_ms()}).execute()


def node_addresses() -> set[str]:
    return {row.name for row in NodeAddress.select(NodeAddress.name)}
