"""The ``slipway`` command line, run as a real process beside a real server: it finds the server's data
from any directory (or refuses), and the administrator's commands work on that data."""
from __future__ import annotations

import subprocess

import pytest
import requests

from slipway import __version__
from tests.conftest import ADMIN_PASSWORD, ROOT, SLIPWAY, USE_PG, free_port, new_database_url


def run(env: dict, *args: str, cwd, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(SLIPWAY + list(args), env=env, cwd=str(cwd), input=input, text=True, capture_output=True,
                          timeout=120)


def away_env(server) -> dict:
    """The server's environment without SLIPWAY_DATA_DIR (and, on SQLite, without the database URL naming
    the file in it): what someone typing the command in another directory has."""
    env = {k: v for k, v in server.env.items() if k != "SLIPWAY_DATA_DIR"}
    if not USE_PG:
        env.pop("SLIPWAY_DATABASE_URL")
    return env


def can_log_in(server, name: str, password: str) -> bool:
    r = requests.get(f"{server.url}/v2/auth", params={"service": server.host}, auth=(name, password), timeout=30)
    return r.status_code == 200


def test_version():
    result = subprocess.run(SLIPWAY + ["--version"], cwd=str(ROOT), text=True, capture_output=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == f"slipway {__version__}"


@pytest.mark.skipif(USE_PG, reason="the data directory holds the database only on SQLite")
def test_admin_commands_in_another_directory_refuse_instead_of_making_a_fresh_slipway(server, tmp_path):
    for args in (["admin", "create-user", "bob", "--password", "bob-password-1"], ["admin", "list-users"],
                 ["admin", "reset-password", "admin", "--generate"], ["admin", "gc"], ["worker"]):
        result = run(away_env(server), *args, cwd=tmp_path)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert result.stderr.strip() == (f"slipway: no Slipway data in {tmp_path / 'slipway-data'}; "
                                         "pass --data-dir or set SLIPWAY_DATA_DIR")
    assert list(tmp_path.iterdir()) == []
    assert not can_log_in(server, "bob", "bob-password-1")


def test_admin_commands_from_another_directory_act_on_the_servers_data_with_data_dir(server, tmp_path):
    env = away_env(server)
    # --data-dir before or after the command; a relative one is resolved against the current directory.
    created = run(env, "--data-dir", str(server.data_dir), "admin", "create-user", "carol", "--password",
                  "carol-password-1", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip() == "created user carol"
    assert can_log_in(server, "carol", "carol-password-1")
    relative = run(env, "admin", "list-users", "--data-dir", "data", cwd=server.data_dir.parent)
    assert relative.returncode == 0, relative.stderr
    assert "carol" in relative.stdout
    assert list(tmp_path.iterdir()) == []


def test_an_empty_database_is_not_taken_for_a_slipway(server, tmp_path):
    env = {**server.env, "SLIPWAY_DATA_DIR": str(tmp_path / "data"),
           "SLIPWAY_DATABASE_URL": new_database_url(tmp_path / "data")}
    result = run(env, "admin", "list-users", cwd=tmp_path)
    assert result.returncode == 1
    if USE_PG:
        assert result.stderr.startswith("slipway: no Slipway data in the database ")
        assert "run `slipway migrate` against it first" in result.stderr
    else:
        assert result.stderr.strip() == (f"slipway: no Slipway database at {tmp_path / 'data' / 'slipway.db'}; "
                                         "check SLIPWAY_DATABASE_URL (database.url)")
        assert not (tmp_path / "data").exists()


def test_list_users(server, tmp_path):
    server.create_user("dave", "dave-password-1", "--email", "dave@example.com")
    result = run(server.env, "admin", "list-users", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()]
    assert rows[0] == ["NAME", "EMAIL", "SUPERUSER", "ENABLED"]
    assert ["admin", "-", "yes", "yes"] in rows
    assert ["dave", "dave@example.com", "no", "yes"] in rows
    assert [row[0] for row in rows[1:]] == sorted(row[0] for row in rows[1:])


def test_reset_password_generated_or_given_and_the_old_one_stops_working(server, tmp_path):
    server.create_user("erin", "erin-password-1")
    generated = run(server.env, "admin", "reset-password", "erin", "--generate", cwd=tmp_path)
    assert generated.returncode == 0, generated.stderr
    assert generated.stdout.startswith("new password for erin: ")
    password = generated.stdout.strip().rsplit(": ", 1)[1]
    assert len(password) >= 12
    assert can_log_in(server, "erin", password)
    assert not can_log_in(server, "erin", "erin-password-1")

    given = run(server.env, "admin", "reset-password", "erin", cwd=tmp_path, input="erin-password-2\n")
    assert given.returncode == 0, given.stderr
    assert given.stdout.strip() == "new password for erin set"
    assert can_log_in(server, "erin", "erin-password-2") and not can_log_in(server, "erin", password)

    short = run(server.env, "admin", "reset-password", "erin", "--password", "short", cwd=tmp_path)
    assert short.returncode == 1 and "at least 8 characters" in short.stderr
    missing = run(server.env, "admin", "reset-password", "nobody", "--generate", cwd=tmp_path)
    assert missing.returncode == 1 and "User 'nobody' does not exist" in missing.stderr
    assert can_log_in(server, "admin", ADMIN_PASSWORD)


def test_an_unreachable_database_is_named_without_its_password(server, tmp_path):
    env = {**server.env, "SLIPWAY_DATABASE_URL": f"postgresql://slipway:secret-pw@127.0.0.1:{free_port()}/slipway"}
    result = run(env, "admin", "list-users", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith("slipway: cannot open the database 127.0.0.1:")
    assert "secret-pw" not in result.stderr and "Traceback" not in result.stderr


def test_a_bad_admin_password_stops_the_first_start_with_a_plain_message(tmp_path):
    from tests.conftest import SlipwayServer

    srv = SlipwayServer(tmp_path, extra_env={"SLIPWAY_ADMIN_PASSWORD": "0755"})
    with pytest.raises(RuntimeError) as failed:
        srv.start(timeout=30)
    text = str(failed.value)
    assert "exited with 2" in text and "cannot create the administrator 'admin'" in text
    assert "SLIPWAY_ADMIN_PASSWORD" in text and "Traceback" not in text
