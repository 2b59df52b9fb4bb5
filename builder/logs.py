"""Build logs: numbered entries written durably as a build runs, read back by number.

An entry is Quay's ``{"message", "type"?, "data"?}``: ``phase`` for phase changes
(data: the time), ``command`` for Dockerfile steps (buildah's ``STEP 2/5: RUN ...``, in
multi-stage builds ``[1/2] STEP 2/5: ...``; docker's ``Step 2/5 : RUN ...``), ``error``
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

# Groups: the stage prefix of a multi-stage buildah build ("[1/2] "), the step number, the steps in all.
STEP_RE = re.compile(r"^(\[\d+/\d+\] )?(?:STEP|Step) (\d+)(?:/(\d+))? ?: ")
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
        # Dockerfile steps started in this attempt, and in all (once the Dockerfile is read).
        self.steps = 0
        self.total_steps: int | None = None
        self.pending: list[dict] = []
        self.last_flush = 0.0
        self.lock = threading.Lock()

    def line(self, text: str) -> None:
        text = text.rstrip("\n")
        step = STEP_RE.match(text)
        if step:
            with self.lock:
                self._count_step(step)
        self._add(text, "command" if step else "", None, force=False)

    def _count_step(self, step: re.Match) -> None:
        stage, number, total = step.groups()
        if stage is None and total:
            # One stage (buildah) or numbered across stages (docker): the line says where the build is.
            self.steps, self.total_steps = int(number), int(total)
        else:
            # buildah numbers steps per stage: count them, against the total read from the Dockerfile.
            self.steps += 1
            self.total_steps = max(self.total_steps or 0, self.steps)

    def expect_steps(self, total: int) -> None:
        """The Dockerfile has ``total`` steps (the build's status shows them; steps restart at 0)."""
        with self.lock:
            self.total_steps, self.steps = total, 0
            self._flush(always=True)

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

    def _flush(self, always: bool = False) -> None:
        if not self.pending and not always:
            return
        rows, self.pending = self.pending, []
        with database.atomic():
            if rows:
                BuildLog.insert_many(rows).execute()
            Build.update(log_count=self.seq, log_bytes=self.bytes, log_truncated=self.truncated,
                         current_step=self.steps or None, total_steps=self.total_steps).where(
                Build.id == self.build_id).execute()
        self.last_flush = time.monotonic()
