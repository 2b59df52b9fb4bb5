"""The audit log: one entry per security-relevant action, listed, aggregated and exported in Quay's shapes.

Actions taken through the API are recorded in the same transaction as the
change. Pulls and pushes are recorded through a small in-memory buffer flushed
every second (or every few hundred entries), so the registry's hot path does not
wait for a database write per request.
"""
from __future__ import annotations

import base64
import json
import logging
import threading
from datetime import datetime, timezone
from email.utils import formatdate
from itertools import chain
from typing import Iterator

from slipway.db import database, now_ms
from slipway.errors import Invalid

from .identity import Identity
from .models import Account, LogEntry

log = logging.getLogger(__name__)
PAGE_SIZE = 100
FLUSH_AT = 500
INSERT_ROWS = 90  # rows per INSERT statement: 990 parameters, under SQLite's limit before 3.32 (999)
_metadata_json = json.JSONEncoder(sort_keys=True).encode  # json.dumps(sort_keys=True) builds an encoder per call
MAX_KEPT = 100_000  # entries kept for a retry while the database cannot be written


COLUMNS = ("kind", "namespace_id", "namespace", "performer_id", "performer", "performer_kind", "repository_id",
           "repository", "created_at", "ip", "metadata")


def _row(kind: str, performer: Identity | None, namespace, repository, ip: str | None, metadata: dict | None,
         when: int | None = None) -> tuple:
    """One entry as a tuple in ``COLUMNS`` order."""
    namespace_id, namespace_name = _pair(namespace)
    repository_id, repository_name = _pair(repository)
    if performer is None:
        performer_id = performer_name = performer_kind = None
    else:
        performer_id, performer_kind = performer.account_id, performer.audit_kind
        performer_name = None if performer.anonymous else performer.name
    return (kind, namespace_id, namespace_name, performer_id, performer_name, performer_kind, repository_id,
            repository_name, when or now_ms(), ip, _metadata_json(metadata or {}))


def _pair(value) -> tuple[int | None, str | None]:
    """(id, name) from an Account, a Repository-like object, a tuple, or None."""
    if value is None:
        return None, None
    if isinstance(value, tuple):
        return value
    if isinstance(value, Account):
        return value.id, value.name
    return value.id, getattr(value, "full_name", None) or value.name


def record(kind: str, performer: Identity | None = None, namespace=None, repository=None, ip: str | None = None,
           metadata: dict | None = None) -> None:
    """Write one entry now (inside the caller's transaction, if any)."""
    LogEntry.insert(dict(zip(COLUMNS, _row(kind, performer, namespace, repository, ip, metadata)))).execute()


def record_later(kind: str, performer: Identity | None = None, namespace=None, repository=None,
                 ip: str | None = None, metadata: dict | None = None) -> None:
    """Queue one entry in this process's buffer (``BUFFER``) for the next flush (the hot path: pulls and pushes)."""
    BUFFER.add(_row(kind, performer, namespace, repository, ip, metadata))


def flush() -> int:
    """Write the entries waiting in this process's buffer now."""
    return BUFFER.flush()


def _insert_sql(count: int) -> str:
    quoted = ", ".join('"%s"' % LogEntry._meta.fields[name].column_name for name in COLUMNS)
    one = "(" + ", ".join([database.param] * len(COLUMNS)) + ")"
    return f'INSERT INTO "{LogEntry._meta.table_name}" ({quoted}) VALUES ' + ", ".join([one] * count)


class Buffer:
    """Entries waiting to be written, and the :class:`Writer` (if one runs) that writes them.

    With a writer running (``slipway serve``) a request never writes: the writer's thread does.
    Without one, the request that fills the buffer flushes it.
    """

    def __init__(self, flush_at: int = FLUSH_AT):
        self.flush_at = flush_at
        self.writer: Writer | None = None
        self._rows: list[tuple] = []
        self._lock = threading.Lock()

    def add(self, row: tuple) -> None:
        with self._lock:
            self._rows.append(row)
            full = len(self._rows) >= self.flush_at
        if full:
            writer = self.writer
            if writer is not None:
                writer.wake.set()
            else:
                self.flush()

    def flush(self) -> int:
        """Write the buffered entries: multi-row INSERTs of up to ``INSERT_ROWS`` rows each.

        peewee would build the SQL text of every row again, and ``executemany`` hands
        the GIL back and forth with the event loop once per row (about 3,000 times a
        second under a pull benchmark); a multi-row statement does it once per statement.
        If the write fails, the entries go back to the buffer for the next flush.
        """
        with self._lock:
            rows = self._rows[:]
            self._rows.clear()
        if not rows:
            return 0
        try:
            with database.atomic():
                cursor = database.cursor()
                for start in range(0, len(rows), INSERT_ROWS):
                    chunk = rows[start:start + INSERT_ROWS]
                    cursor.execute(_insert_sql(len(chunk)), list(chain.from_iterable(chunk)))
        except Exception:
            with self._lock:
                self._rows[:0] = rows[-MAX_KEPT:]  # keep the newest if the database stays away
            raise
        return len(rows)


class Writer:
    """A thread that writes a buffer's entries every ``interval`` seconds, or at once when it fills.

    sqlite3 and psycopg2 release the GIL while the database works, so the
    event loop keeps serving requests during a flush instead of stalling on it.
    ``start()`` attaches it to its buffer, ``stop()`` detaches it and writes what is left.
    """

    def __init__(self, interval: float = 1.0, buffer: Buffer | None = None):
        self.interval = interval
        self.buffer = buffer if buffer is not None else BUFFER
        self.wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)

    def start(self) -> "Writer":
        self.buffer.writer = self
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.wake.wait(self.interval)
            self.wake.clear()
            try:
                self.buffer.flush()
            except Exception:
                log.exception("writing audit log entries failed; retrying in %.0f s", self.interval)
                database.close()

    def stop(self) -> None:
        """Stop the thread and write what is left (from the caller's thread)."""
        self._stop.set()
        self.wake.set()
        self._thread.join(timeout=10)
        if self.buffer.writer is self:
            self.buffer.writer = None
        self.buffer.flush()


#: This process's buffer (``record_later`` and ``flush`` use it).
BUFFER = Buffer()


# -- reading -----------------------------------------------------------------------------------------

def quay_date(ms: int) -> str:
    return formatdate(ms / 1000.0, usegmt=False)


def parse_day(text: str | None, default_ms: int, end_of_day: bool = False) -> int:
    """Quay's MM/DD/YYYY (UTC) date parameters, as milliseconds."""
    if not text:
        return default_ms
    for fmt in ("%m/%d/%Y", "%Y-%m-%d"):
        try:
            day = datetime.strptime(text, fmt).replace(tzinfo=timezone.utc)
            break
        except ValueError:
            continue
    else:
        raise Invalid(f"Invalid date '{text}': use MM/DD/YYYY")
    ms = int(day.timestamp() * 1000)
    return ms + 86400 * 1000 - 1 if end_of_day else ms


def _filtered(namespace_id=None, repository_id=None, performer_id=None, start_ms=0, end_ms=None, since=0,
              kind=None):
    """Entries for one namespace / repository / performer (of one ``kind`` when given). ``since`` is when that
    thing was created: SQLite may give a new row the id of a deleted one, and its entries must not show up."""
    query = LogEntry.select().where(LogEntry.created_at >= since)
    if namespace_id is not None:
        query = query.where(LogEntry.namespace_id == namespace_id)
    if repository_id is not None:
        query = query.where(LogEntry.repository_id == repository_id)
    if performer_id is not None:
        query = query.where(LogEntry.performer_id == performer_id)
    query = query.where(LogEntry.created_at >= start_ms)
    if end_ms is not None:
        query = query.where(LogEntry.created_at <= end_ms)
    if kind:
        query = query.where(LogEntry.kind == kind)
    return query


def page(start_ms: int, end_ms: int, next_page: str | None = None, **scope) -> tuple[list[LogEntry], str | None]:
    """Up to PAGE_SIZE entries, newest first, and the token for the next page (None at the end)."""
    query = _filtered(start_ms=start_ms, end_ms=end_ms, **scope)
    if next_page:
        try:
            created, entry_id = (int(x) for x in base64.urlsafe_b64decode(next_page.encode()).decode().split(":"))
        except (ValueError, UnicodeDecodeError):
            raise Invalid("Invalid next_page token") from None
        query = query.where((LogEntry.created_at < created)
                            | ((LogEntry.created_at == created) & (LogEntry.id < entry_id)))
    rows = list(query.order_by(LogEntry.created_at.desc(), LogEntry.id.desc()).limit(PAGE_SIZE + 1))
    token = None
    if len(rows) > PAGE_SIZE:
        rows = rows[:PAGE_SIZE]
        last = rows[-1]
        token = base64.urlsafe_b64encode(f"{last.created_at}:{last.id}".encode()).decode()
    return rows, token


def daily_counts(start_ms: int, end_ms: int, kinds: tuple | None = None, **scope) -> dict[tuple[str, int], int]:
    """``{(kind, UTC day start in ms): count}`` of the entries in the range (only ``kinds``, if given)."""
    query = _filtered(start_ms=start_ms, end_ms=end_ms, **scope)
    if kinds is not None:
        query = query.where(LogEntry.kind.in_(list(kinds)))
    counts: dict[tuple[str, int], int] = {}
    for kind, created in query.select(LogEntry.kind, LogEntry.created_at).tuples().iterator():
        day = created // 86400000 * 86400000
        counts[(kind, day)] = counts.get((kind, day), 0) + 1
    return counts


def entries_of_kind(kind: str, start_ms: int, end_ms: int, **scope) -> list[LogEntry]:
    """The entries of one kind in the range, oldest first (the tag history page: which ends were deletions)."""
    return list(_filtered(start_ms=start_ms, end_ms=end_ms, **scope).where(LogEntry.kind == kind)
                .order_by(LogEntry.created_at, LogEntry.id))


def aggregate(start_ms: int, end_ms: int, **scope) -> list[dict]:
    """Counts per kind and UTC day, as Quay's aggregatelogs."""
    counts = daily_counts(start_ms, end_ms, **scope)
    return [{"kind": kind, "count": count, "datetime": quay_date(day)}
            for (kind, day), count in sorted(counts.items(), key=lambda kv: (kv[0][1], kv[0][0]))]


def export_lines(start_ms: int, end_ms: int, **scope) -> Iterator[str]:
    """Every entry of the range, oldest first, one JSON object per line."""
    query = _filtered(start_ms=start_ms, end_ms=end_ms, **scope).order_by(LogEntry.created_at, LogEntry.id)
    for entry in query.iterator():
        yield json.dumps(view(entry), sort_keys=True) + "\n"


def view(entry: LogEntry) -> dict:
    """One entry in Quay's shape."""
    result = {
        "kind": entry.kind,
        "metadata": json.loads(entry.metadata or "{}"),
        "ip": entry.ip,
        "datetime": quay_date(entry.created_at),
    }
    if entry.performer:
        result["performer"] = {"kind": entry.performer_kind, "name": entry.performer,
                               "is_robot": entry.performer_kind == "robot"}
    if entry.namespace:
        result["namespace"] = {"name": entry.namespace}
    if entry.repository:
        result["metadata"].setdefault("repo", entry.repository.split("/", 1)[-1])
        result["metadata"].setdefault("namespace", entry.namespace)
    return result
