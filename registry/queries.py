"""Hand-written SQL for the pull path, where building queries through the ORM costs more than running them.

Each is one indexed lookup joined from the namespace and repository names, so a
request needs a single round trip whatever it asks for.
"""
from __future__ import annotations

from functools import lru_cache

from slipway.db import database, param

from .models import Tag, alive

_REPO = """
  JOIN repository r ON r.id = {alias}.repository_id
  JOIN account a ON a.id = r.namespace_id
 WHERE a.name = ? AND r.name = ?"""

_SQL = {
    "manifest_by_tag": """
SELECT m.digest, m.media_type, m.content, r.id, a.id FROM tag t
  JOIN manifest m ON m.id = t.manifest_id""" + _REPO.format(alias="t") + """
   AND t.name = ? AND {alive}
 ORDER BY t.lifetime_start DESC LIMIT 1""",
    "manifest_by_digest": """
SELECT m.digest, m.media_type, m.content, r.id, a.id FROM manifest m""" + _REPO.format(alias="m") + """
   AND m.digest = ? AND m.deleted_at IS NULL""",
    "blob_size": """
SELECT b.size FROM repository_blob rb
  JOIN blob b ON b.id = rb.blob_id""" + _REPO.format(alias="rb") + """
   AND b.digest = ?""",
    "tags_page": """
SELECT DISTINCT t.name {collate} FROM tag t""" + _REPO.format(alias="t") + """
   AND {alive} AND t.name {collate} > ?
 ORDER BY 1 LIMIT ?""",
    "repository_id": """
SELECT r.id FROM repository r JOIN account a ON a.id = r.namespace_id
 WHERE a.name = ? AND r.name = ?""",
}


@lru_cache(maxsize=None)
def _sql(name: str, placeholder: str) -> str:
    # OCI wants tags in lexical (byte) order; PostgreSQL would sort by the database's locale.
    collate = 'COLLATE "C"' if placeholder == "%s" else ""
    return _SQL[name].replace("{alive}", _alive_sql()).replace("?", placeholder).replace("{collate}", collate)


def _alive_sql() -> str:
    """``models.alive`` (the one alive-tag predicate) as SQL text on the tag alias ``t``, its time a parameter."""
    sql, _ = database.get_sql_context().sql(alive(0, Tag.alias("t"))).query()
    return sql


def run(name: str, *params) -> list[tuple]:
    cursor = database.execute_sql(_sql(name, param()), params)
    try:
        return cursor.fetchall()
    finally:
        cursor.close()


def one(name: str, *params) -> tuple | None:
    rows = run(name, *params)
    return rows[0] if rows else None
