"""The database: one peewee proxy, opened from a URL (SQLite WAL or PostgreSQL)."""
from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from peewee import BigIntegerField, Database, DatabaseProxy, Model, PostgresqlDatabase, SqliteDatabase
from playhouse.db_url import connect as connect_url

from . import clock, extras
from .clock import now_ms  # noqa: F401  (every timestamp is stored as clock.now_ms())

database = DatabaseProxy()


class BaseModel(Model):
    class Meta:
        database = database
        legacy_table_names = False


def database_now_ms() -> int:
    """The database's clock in integer milliseconds: what leases and claims compare, so that nodes whose
    clocks disagree still agree on when a lease lapses (SQLite's is this machine's, as the database is)."""
    override = clock.database_override_ms()
    if override is not None:
        return override
    if is_postgres():
        sql = "SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)"
    else:
        # Rounded: SQLite keeps 'now' in whole milliseconds, but the Julian-day arithmetic can land a hair
        # below one (…122.9998), and a truncated value made a row stamped this millisecond not yet due.
        sql = "SELECT CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER)"
    return int(database.execute_sql(sql).fetchone()[0])


class TimestampField(BigIntegerField):
    """Milliseconds since the epoch (UTC); compares fast in SQL on both engines."""


def open_database(url: str) -> Database:
    """Open (lazily) the database named by ``url`` without binding the proxy."""
    scheme = urlparse(url).scheme
    if scheme == "sqlite":
        path = url[len("sqlite:///"):]
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # Every transaction takes the write lock when it begins (BEGIN IMMEDIATE): a deferred one
        # that reads and then writes fails at once with "database is locked" if another connection
        # wrote in between, instead of waiting its turn.
        return SqliteDatabase(
            path,
            timeout=30,
            lock_type="IMMEDIATE",
            pragmas={
                "journal_mode": "wal",
                "synchronous": "normal",
                "foreign_keys": 1,
                "busy_timeout": 30000,
                "cache_size": -32000,
                "temp_store": "memory",
            },
            check_same_thread=False,
        )
    if scheme in ("postgres", "postgresql"):
        extras.require("postgres", "A PostgreSQL database (database.url)")
        db = connect_url(url)
        return db
    raise ValueError(f"unsupported database URL {url!r}: use sqlite:///path or postgresql://user:pass@host/db")


def bind(db: Database) -> Database:
    database.initialize(db)
    return db


def is_postgres() -> bool:
    return isinstance(database.obj, PostgresqlDatabase)


def param() -> str:
    """The driver's parameter placeholder, for the few hand-written hot-path queries."""
    return "%s" if is_postgres() else "?"
