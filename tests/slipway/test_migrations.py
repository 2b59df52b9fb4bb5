"""Schema migrations: a fresh database reaches the current schema; running again changes nothing."""
from slipway import migrate
from slipway.app import migrations
from slipway.db import database


def test_fresh_database_has_every_table_and_records_steps(db):
    tables = set(database.get_tables())
    assert {"account", "repository", "blob", "repository_blob", "manifest", "manifest_blob", "manifest_child",
            "tag", "upload", "schema_migration"} <= tables
    steps = {(m.component, m.version) for m in migrate.SchemaMigration.select()}
    assert ("accounts", 1) in steps and ("registry", 1) in steps


def test_migrating_again_is_a_no_op(db):
    assert migrate.migrate(migrations()) == []
    assert migrate.pending(migrations()) == []


def test_one_alive_row_per_tag_is_enforced_by_the_database(db):
    import pytest
    from peewee import IntegrityError

    from accounts.models import Account
    from registry.models import Manifest, Repository, Tag

    owner = Account.create(name="owner")
    repo = Repository.create(namespace=owner, name="r")
    m = Manifest.create(repository=repo, digest="sha256:" + "a" * 64, media_type="x", content=b"{}", size=2)
    Tag.create(repository=repo, name="latest", manifest=m)
    with pytest.raises(IntegrityError):
        with database.atomic():
            Tag.create(repository=repo, name="latest", manifest=m)
    Tag.create(repository=repo, name="latest", manifest=m, lifetime_end=1)  # history rows are fine


def test_the_suite_runs_on_the_database_it_was_asked_for(db):
    from peewee import PostgresqlDatabase, SqliteDatabase

    from tests.conftest import USE_PG

    assert isinstance(database.obj, PostgresqlDatabase if USE_PG else SqliteDatabase)
    if not USE_PG:
        assert database.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"
