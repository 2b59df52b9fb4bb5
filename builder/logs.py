"""Build logs: numbered entries written durably as a build runs, read back by number.

An entry is Quay's ``{"message", "type"?, "data"?}``: ``phase`` for phase changes
(data: the time), ``command`` for Dockerfile steps (``STEP 2/5: RUN ...``), ``error``
for errors, and no type for other output. Entries are numbered from 0 per build,
so a reader can resume after the last number it saw without losing or repeating
a line.
"""
from __future__ import annotations

import json
import re
import threading
import time
from datetime import datetime, timezone

from slipway import redact
from slipway.db import database, now_ms

from .models import Build, BuildLog

STEP_RE = re.compile(r"^STEP \d+(/\d+)?: ")
FLUSH_SECONDS = 0.05
FLUSH_LINES = 200


def entry_view(row: BuildLog) -> dict:
    entry = {"message": row.message}
    if row.type:
        entry["type"] = row.type
    if row.data:
        entry["data"] = json.loads(row.data)
    return entry


def read(build: Build, start: int = 0, limit: int | None = None) -> list[BuildLog]:
    query = BuildLog.select().where((BuildLog.build == build.id) & (BuildLog.seq >= start)).order_by(BuildLog.seq)
    if limit is not None:
        query = query.limit(limit)
    return list(query)


def total(build_id: int) -> int:
    last = (BuildLog.select(BuildLog.seq).where(BuildLog.build == build_id)
            .order_by(BuildLog.seq.desc()).limit(1).scalar())
    return 0 if last is None else last + 1


class LogWriter:
    """Appends a build's entries in small batches (a line waits at most FLUSH_SECONDS).

    Thread-safe: the output reader and the phase changes of one build share it.
    Past ``max_bytes`` the log ends with one truncation marker; later lines are dropped
    (phase changes and errors still get through, so the outcome stays readable).
    Every entry is redacted (``slipway.redact.text``): URLs lose their credentials, and the
    build's ``archive_url`` secrets are hidden wherever a message quotes them.
    """

    def __init__(self, build: Build, max_bytes: int):
        self.build_id = build.id
        self.secret_urls = [build.archive_url] if build.archive_url else []
        self.max_bytes = max_bytes
        self.seq = total(build.id)
        self.bytes = build.log_bytes or 0
        self.truncated = bool(build.log_truncated)
        self.pending: list[dict] = []
        self.last_flush = 0.0
        self.lock = threading.Lock()

    def line(self, text: str) -> None:
        text = text.rstrip("\n")
        kind = "command" if STEP_RE.match(text) else ""
        self._add(text, kind, None, force=False)

    def phase(self, phase: str) -> None:
        stamp = datetime.now(timezone.utc).isoformat()
        self._add(phase, "phase", {"datetime": stamp}, force=True)

    def error(self, message: str) -> None:
        self._add(message, "error", None, force=True)

    def _add(self, message: str, kind: str, data: dict | None, force: bool) -> None:
        message = redact.text(message, *self.secret_urls)
        with self.lock:
            if self.truncated and not force:
                return
            size = len(message.encode("utf-8", "replace"))
            if not force and self.bytes + size > self.max_bytes:
                self.truncated = True
                message = f"[log truncated: this build's log reached the limit of {self.max_bytes} bytes; " \
                          "later output is not kept]"
                kind = "error"
            self.bytes += size
            self.pending.append({"build": self.build_id, "seq": self.seq, "type": kind, "message": message,
                                 "data": json.dumps(data) if data else None, "created_at": now_ms()})
            self.seq += 1
            if force or len(self.pending) >= FLUSH_LINES or time.monotonic() - self.last_flush >= FLUSH_SECONDS:
                self._flush()

    def flush(self) -> None:
        with self.lock:
            self._flush()

    def _flush(self) -> None:
        if not self.pending:
            return
        rows, self.pending = self.pending, []
        with database.atomic():
            BuildLog.insert_many(rows).execute()
            Build.update(log_count=self.seq, log_bytes=self.bytes, log_truncated=self.truncated).where(
                Build.id == self.build_id).execute()
        self.last_flush = time.monotonic()
