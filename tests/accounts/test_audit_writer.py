"""The audit writer thread: pull/push entries reach the database without the request writing them."""
from __future__ import annotations

import time

import pytest

from accounts import audit
from accounts.identity import Identity
from accounts.models import LogEntry

ROBOT = Identity(kind="robot", account_id=7, name="org+bot")


def wait_for(predicate, timeout: float = 5.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def test_the_writer_thread_writes_buffered_entries_and_the_rest_on_stop(db):
    writer = audit.Writer(interval=0.05).start()
    try:
        audit.record_later("pull_repo", ROBOT, (1, "org"), (2, "org/app"), "10.0.0.1", {"tag": "v1"})
        wait_for(lambda: LogEntry.select().count() == 1)
        entry = LogEntry.get()
        assert (entry.kind, entry.performer, entry.performer_kind, entry.repository, entry.ip) == (
            "pull_repo", "org+bot", "robot", "org/app", "10.0.0.1")
        assert entry.metadata == '{"tag": "v1"}'
        writer.interval = 60  # from now on only a full buffer or stop() writes
        time.sleep(0.1)
        audit.record_later("push_repo", ROBOT, (1, "org"), (2, "org/app"), "10.0.0.1", {"tag": "v2"})
    finally:
        writer.stop()
    assert [e.kind for e in LogEntry.select().order_by(LogEntry.id)] == ["pull_repo", "push_repo"]
    assert audit.BUFFER.writer is None


def test_a_full_buffer_wakes_the_writer_instead_of_writing_in_the_request(db, monkeypatch):
    monkeypatch.setattr(audit.BUFFER, "flush_at", 3)
    writer = audit.Writer(interval=60).start()
    calls = []
    real_flush = audit.BUFFER.flush
    monkeypatch.setattr(audit.BUFFER, "flush", lambda: calls.append(threading_name()) or real_flush())
    try:
        for i in range(3):
            audit.record_later("pull_repo", ROBOT, (1, "org"), (2, "org/app"), None, {"tag": f"t{i}"})
        wait_for(lambda: LogEntry.select().count() == 3)
        assert calls and all(name == "audit-writer" for name in calls)
    finally:
        writer.stop()


def test_a_failed_write_keeps_the_entries_for_the_next_flush(db, monkeypatch):
    audit.record_later("pull_repo", ROBOT, (1, "org"), (2, "org/app"), None, {"tag": "kept"})

    def broken(*args, **kwargs):
        raise RuntimeError("database unavailable")

    with monkeypatch.context() as patch:
        patch.setattr(type(audit.database.obj), "cursor", broken)
        with pytest.raises(RuntimeError):
            audit.flush()
    assert LogEntry.select().count() == 0
    assert audit.flush() == 1
    assert LogEntry.get().metadata == '{"tag": "kept"}'


def threading_name() -> str:
    import threading

    return threading.current_thread().name


def test_a_flush_writes_every_entry_in_several_multi_row_statements(db, monkeypatch):
    monkeypatch.setattr(audit, "INSERT_ROWS", 2)
    for i in range(5):
        audit.record_later("pull_repo", ROBOT, (1, "org"), (2, "org/app"), f"10.0.0.{i}", {"tag": f"t{i}"})
    assert audit.flush() == 5
    entries = list(LogEntry.select().order_by(LogEntry.id))
    assert [(e.ip, e.metadata, e.performer, e.performer_id) for e in entries] == [
        (f"10.0.0.{i}", f'{{"tag": "t{i}"}}', "org+bot", 7) for i in range(5)]
    assert audit.flush() == 0
