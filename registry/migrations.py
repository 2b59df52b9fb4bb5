from slipway.db import database

from .models import MODELS, Tag


def initial():
    database.create_tables(MODELS, safe=True)
    # At most one open-ended row per tag name: concurrent pushes of one tag cannot both win.
    database.execute_sql(
        f"CREATE UNIQUE INDEX IF NOT EXISTS tag_one_alive ON {Tag._meta.table_name} "
        "(repository_id, name) WHERE lifetime_end IS NULL")


MIGRATIONS = [
    (1, "registry", initial),
]
