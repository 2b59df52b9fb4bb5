"""The in-process layer: use cases run against a fresh database (tests/conftest.py's ``db``) and a
filesystem store in a temporary directory, with the clock under the test's control; no server
process, no sleeps. Every test here is marked ``inprocess`` (``pytest tests/unit`` or ``-m inprocess``)."""
from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
PASSWORD = "correct-horse-1"


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.inprocess)


@pytest.fixture
def storage(tmp_path):
    from registry.storage import FilesystemStorage

    return FilesystemStorage(tmp_path / "storage")


@pytest.fixture
def admin(db):
    """A superuser and the identity it acts as (no password: hashing one costs a quarter of a second)."""
    from accounts import users

    return users.identity_for(users.create_user("admin", None, superuser=True), "password")
