"""Schema migrations: every package lists numbered steps; each runs once, in order.

A package's ``migrations.py`` holds ``MIGRATIONS = [(number, name, function)]``, which its
``includeme`` registers; the composition root hands the registered ``[(component, steps)]``,
in dependency order, to ``migrate``, and every applied step is recorded in
``schema_migration``. A step creates its tables from frozen copies of the models as they were
at that step (``frozen_meta``), never from the live models, and later steps add columns
(``add_column_if_missing``) or rewrite data: a fresh install walks the same steps as an
upgrade, so both reach the same schema.
"""
from __future__ import annotations

import logging
import re

from peewee import CharField, IntegerField, Model

from .db import TimestampField, database, now_ms

log = logging.getLogger("slipway.migrate")


class SchemaMigration(Model):
    component = CharField()
    version = IntegerField()
    name = CharField()
    applied_at = TimestampField()

    class Meta:
        database = database
        table_name = "schema_migration"
        indexes = ((("component", "version"), True),)


def ordered_steps(component: str, steps: list) -> list:
    steps = sorted(steps, key=lambda s: s[0])
    numbers = [s[0] for s in steps]
    if len(set(numbers)) != len(numbers):
        raise RuntimeError(f"{component}.migrations has duplicate step numbers")
    return steps


def pending(components: list) -> list[tuple[str, int, str, object]]:
    """The steps not yet applied; ``components = [(component, steps)]``, in the order they migrate (later
    packages reference tables of earlier ones)."""
    database.create_tables([SchemaMigration], safe=True)
    done = {(m.component, m.version) for m in SchemaMigration.select()}
    todo = []
    for component, steps in components:
        for number, name, fn in ordered_steps(component, steps):
            if (component, number) not in done:
                todo.append((component, number, name, fn))
    return todo


MIGRATE_LOCK = 7_311_978  # the PostgreSQL advisory lock id held while migrating


def migrate(components: list, up_to: dict | None = None) -> list[str]:
    """Apply every pending step of ``components = [(component, steps)]`` (or only steps up to
    ``up_to[component]``); return their names.

    Any number of processes may call this at once on one database (nodes started together): on
    PostgreSQL they take turns on an advisory lock for the whole run; on SQLite each step runs in a
    transaction holding the write lock, and a step another process applied meanwhile is skipped. The
    ones that wait find nothing left to do and go on.
    """
    applied = []
    sqlite = not _pg()
    if sqlite:  # no cascading surprises while tables change (only settable outside a transaction)
        database.execute_sql("PRAGMA foreign_keys = OFF")
    else:
        database.execute_sql("SELECT pg_advisory_lock(%s)", (MIGRATE_LOCK,))
    try:
        applied = _apply(components, up_to)
    finally:
        if sqlite:
            database.execute_sql("PRAGMA foreign_keys = ON")
        else:
            database.execute_sql("SELECT pg_advisory_unlock(%s)", (MIGRATE_LOCK,))
    return applied


def _apply(components: list, up_to: dict | None) -> list[str]:
    applied = []
    for component, number, name, fn in pending(components):
        if up_to is not None and number > up_to.get(component, 0):
            continue
        with database.atomic():
            if SchemaMigration.select().where((SchemaMigration.component == component)
                                              & (SchemaMigration.version == number)).exists():
                continue  # applied by another process since ``pending`` looked (SQLite)
            log.info("migrating %s to %d (%s)", component, number, name)
            fn()
            SchemaMigration.create(component=component, version=number, name=name, applied_at=now_ms())
        applied.append(f"{component}:{number}:{name}")
    return applied


def frozen_meta(table: str, indexes: tuple = ()) -> type:
    """The Meta of a table snapshot in a migration: named (tables and indexes) as the live model is."""
    return type("Meta", (), {"database": database, "table_name": table, "indexes": indexes,
                             "legacy_table_names": False})


def column_names(table: str) -> set[str]:
    return {c.name for c in database.get_columns(table)}


def add_column_if_missing(model, field_name: str) -> None:
    """Add one column of ``model`` to an existing table (no-op on a fresh table).

    Plain ``ALTER TABLE ... ADD COLUMN`` on both engines, with the field's constant
    default as the SQL default for NOT NULL columns. (peewee's SQLite migrator would
    rebuild the table for NOT NULL, and dropping a table cascades to its children.)
    """
    table = model._meta.table_name
    field = model._meta.fields[field_name]
    if field.column_name in column_names(table):
        return
    ctx = database.obj.get_sql_context()
    column = ctx.sql(field.ddl(ctx)).query()[0]
    if not field.null:
        default = field.default() if callable(field.default) else field.default
        if default is None:
            raise RuntimeError(f"cannot add NOT NULL column {table}.{field_name} without a constant default")
        column += f" DEFAULT {_literal(default)}"
    database.execute_sql(f'ALTER TABLE "{table}" ADD COLUMN {column}')


def rewrite_column(table: str, column: str, fn, where: str = "", like: str | None = None) -> int:
    """A data step: replace each non-null ``table.column`` value by ``fn(value)`` (encrypting a column
    that held plaintext, redacting stored text). ``where`` (plain SQL without parameters) and ``like``
    (a LIKE pattern for the column) narrow the rows. Returns the number of rows changed."""
    from .db import param

    p = param()
    condition = f'"{column}" IS NOT NULL' + (f" AND ({where})" if where else "")
    params: tuple = ()
    if like is not None:
        condition += f' AND "{column}" LIKE {p}'
        params = (like,)
    changed = 0
    rows = database.execute_sql(f'SELECT id, "{column}" FROM "{table}" WHERE {condition}', params).fetchall()
    for row_id, value in rows:
        new = fn(value)
        if new != value:
            database.execute_sql(f'UPDATE "{table}" SET "{column}" = {p} WHERE id = {p}', (new, row_id))
            changed += 1
    return changed


def sqlite_autoincrement(table: str, remembered: list[tuple[str, str]] = ()) -> None:
    """Make ``table``'s integer primary key AUTOINCREMENT on SQLite (ids never reused); no-op elsewhere.

    SQLite cannot alter a column, so the table is rebuilt from its own schema text (the
    documented procedure: new table, copy, drop, rename, indexes), with foreign keys off
    (``migrate`` turns them off, so dropping the old table cascades nowhere). The sequence
    starts above the highest id found in the table or in the ``(table, column)`` pairs of
    ``remembered`` (columns that keep ids of deleted rows).
    """
    if _pg():
        return  # serial/identity sequences never hand out an id twice
    row = database.execute_sql("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone()
    if row is None or "AUTOINCREMENT" in row[0].upper():
        return
    new = f"{table}__autoincrement"
    create, count = re.subn(r'("id"\s+INTEGER\s+NOT\s+NULL\s+PRIMARY\s+KEY)', r"\1 AUTOINCREMENT", row[0],
                            count=1, flags=re.IGNORECASE)
    if count != 1:
        raise RuntimeError(f"cannot find the integer primary key of {table} in: {row[0]}")
    create = create.replace(f'CREATE TABLE "{table}"', f'CREATE TABLE "{new}"', 1)
    indexes = [r[0] for r in database.execute_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL", (table,))]
    highest = database.execute_sql(f'SELECT COALESCE(MAX(id), 0) FROM "{table}"').fetchone()[0]
    for other, column in remembered:
        if column in column_names(other):
            found = database.execute_sql(f'SELECT COALESCE(MAX("{column}"), 0) FROM "{other}"').fetchone()[0]
            highest = max(highest, found or 0)
    database.execute_sql(create)
    database.execute_sql(f'INSERT INTO "{new}" SELECT * FROM "{table}"')
    database.execute_sql(f'DROP TABLE "{table}"')
    database.execute_sql(f'ALTER TABLE "{new}" RENAME TO "{table}"')
    for sql in indexes:
        database.execute_sql(sql)
    database.execute_sql("DELETE FROM sqlite_sequence WHERE name = ?", (table,))
    database.execute_sql("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (table, highest))


def _literal(value) -> str:
    if isinstance(value, bool):
        return ("TRUE" if value else "FALSE") if _pg() else str(int(value))
    if isinstance(value, (int, float)):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def _pg() -> bool:
    from .db import is_postgres

    return is_postgres()
