"""An existing database is upgraded in place: data kept, schema equal to a fresh install's."""
from slipway import db as slipway_db
from slipway import migrate
from slipway.app import migrations
from tests.conftest import new_database_url


def schema(database) -> dict:
    tables = {}
    for table in sorted(database.get_tables()):
        if table == "schema_migration":
            continue
        columns = sorted((c.name, c.null) for c in database.get_columns(table))
        indexes = sorted((i.name, tuple(i.columns), i.unique) for i in database.get_indexes(table))
        tables[table] = (columns, indexes)
    return tables


def test_first_release_database_upgrades_in_place(tmp_path):
    database = slipway_db.bind(slipway_db.open_database(new_database_url(tmp_path / "old")))
    # The schema as the first release left it, with data in it.
    applied = migrate.migrate(migrations(), up_to={"accounts": 1, "registry": 1})
    assert applied == ["accounts:1:accounts", "registry:1:registry"]
    assert "token_hash" not in migrate.column_names("account")
    p = slipway_db.param()
    database.execute_sql(f"INSERT INTO account (name, kind, superuser, enabled, description, created_at) "
                         f"VALUES ({p}, 'user', {p}, {p}, '', 1)", ("olduser", False, True))
    database.execute_sql("INSERT INTO repository (namespace_id, name, visibility, state, description, created_at) "
                         "VALUES (1, 'app', 'private', 'normal', 'kept', 1)")
    upgraded = migrate.migrate(migrations())
    assert {"accounts:2:tenancy", "registry:2:permissions"} <= set(upgraded)

    from accounts.models import DEFAULT_TIME_MACHINE, Account
    from registry.models import Repository, RepositoryPermission

    user = Account.get(Account.name == "olduser")
    assert user.time_machine_s == DEFAULT_TIME_MACHINE and user.token_hash is None
    repo = Repository.get(Repository.name == "app")
    assert repo.description == "kept"
    RepositoryPermission.create(repository=repo, account=user, role="read")  # the new tables work
    upgraded_schema = schema(database)
    database.close()

    fresh = slipway_db.bind(slipway_db.open_database(new_database_url(tmp_path / "fresh")))
    migrate.migrate(migrations())
    assert schema(fresh) == upgraded_schema
    fresh.close()
