"""Fixtures of the registry's tests."""
from __future__ import annotations

import pytest

from tests.conftest import SlipwayServer

#: server.read_path on (the default: manifest GET/HEAD and GET /v2/ answered by registry/readpath.py)
#: and off (every request through the regular handlers).
READ_PATH_SETTINGS = {"read path": {}, "handlers only": {"SLIPWAY_SERVER__READ_PATH": "false"}}


@pytest.fixture(scope="module", params=list(READ_PATH_SETTINGS))
def server_both_paths(request, tmp_path_factory):
    """A server for a module whose tests run twice: with the registry's read path and without it."""
    srv = SlipwayServer(tmp_path_factory.mktemp("slipway"), READ_PATH_SETTINGS[request.param]).start()
    yield srv
    srv.stop()
