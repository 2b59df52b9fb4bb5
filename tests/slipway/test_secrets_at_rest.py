"""Secrets users give (webhook and Slack URLs, git sources with passwords, build arguments, archive URLs) are
encrypted in the database and redacted wherever they are shown: API answers, audit entries, errors, logs."""
from __future__ import annotations

import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from tests.api import Api
from tests.conftest import ADMIN_PASSWORD, USE_PG, SlipwayServer, free_port

HOOK_PASSWORD = "hookpass-SECRET1"
HOOK_TOKEN = "querytoken-SECRET2"
SLACK_TOKEN = "slacktoken-SECRET3"
GIT_PASSWORD = "gitpass-SECRET4"
TRIGGER_ARG = "triggerarg-SECRET5"
ARCHIVE_PASSWORD = "archivepass-SECRET6"
ARCHIVE_SIGNATURE = "presigned-SECRET7"
BUILD_ARG = "buildarg-SECRET8"
EXPORT_TOKEN = "exporttoken-SECRET9"
SECRETS = [HOOK_PASSWORD, HOOK_TOKEN, SLACK_TOKEN, GIT_PASSWORD, TRIGGER_ARG, ARCHIVE_PASSWORD, ARCHIVE_SIGNATURE,
           BUILD_ARG, EXPORT_TOKEN]


class Listener:
    """Receives what Slipway sends (webhooks, archive downloads, git), answers with failures, records requests."""

    def __init__(self):
        self.requests: list[dict] = []
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                listener.requests.append({"method": self.command, "path": self.path,
                                          "authorization": self.headers.get("Authorization")})
                if self.path.startswith("/repo.git") and not self.headers.get("Authorization"):
                    status, body, extra = 401, b"who?", {"WWW-Authenticate": 'Basic realm="git"'}
                elif self.path.startswith("/hook"):  # a receiver that quotes the request back in its error
                    status, body, extra = 500, f"refused {self.path}".encode(), {}
                else:
                    status, body, extra = 404, b"no", {}
                self.send_response(status)
                for key, value in extra.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()


@pytest.fixture(scope="module")
def listener():
    srv = Listener()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def secret_server(tmp_path_factory):
    srv = SlipwayServer(tmp_path_factory.mktemp("secrets"), extra_env={
        "SLIPWAY_NETWORK__ALLOWLIST": "127.0.0.1/32",
        "SLIPWAY_BUILDS__LEASE_SECONDS": "3",
    }).start()
    yield srv
    srv.stop()


def wait_for(condition, timeout: float = 60, what: str = "condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def database_text(server) -> str:
    """Every row of every table, as text (what someone reading the database sees)."""
    if USE_PG:
        tables = [r[0] for r in server.sql("SELECT table_name FROM information_schema.tables "
                                           "WHERE table_schema = 'public'")]
    else:
        tables = [r[0] for r in server.sql("SELECT name FROM sqlite_master WHERE type = 'table'")]
    return "\n".join(f"{table}: {row}" for table in tables for row in server.sql(f'SELECT * FROM "{table}"'))


def database_bytes(server) -> bytes:
    """The SQLite database and its WAL as bytes (free pages and old row versions included)."""
    files = [server.data_dir / name for name in ("slipway.db", "slipway.db-wal")]
    return b"".join(f.read_bytes() for f in files if f.exists())


def test_secrets_are_encrypted_at_rest_and_redacted_where_shown(secret_server, listener):
    server, port = secret_server, listener.port
    admin = Api(server, ("admin", ADMIN_PASSWORD))
    admin.ok("POST", "/repository", {"repository": "app", "visibility": "private"})
    base = "/repository/admin/app"

    # Notifications: a webhook URL with a password and a query token, a Slack-style URL with a token.
    hook_url = f"http://hookuser:{HOOK_PASSWORD}@127.0.0.1:{port}/hook?token={HOOK_TOKEN}"
    hook = admin.ok("POST", f"{base}/notification/", {"event": "repo_push", "method": "webhook",
                                                      "config": {"url": hook_url}})
    slack_url = f"http://127.0.0.1:{port}/slack?t={SLACK_TOKEN}"
    slack = admin.ok("POST", f"{base}/notification/", {"event": "repo_push", "method": "slack",
                                                       "config": {"url": slack_url}})
    assert hook["config"]["url"] == f"http://***@127.0.0.1:{port}/hook?token=***"
    assert slack["config"]["url"] == f"http://127.0.0.1:{port}/slack?t=***"
    admin.ok("POST", f"{base}/notification/{hook['uuid']}/test")

    # A trigger whose git source has a password, with a secret build argument; run by hand.
    source = f"http://gituser:{GIT_PASSWORD}@127.0.0.1:{port}/repo.git"
    trigger = admin.ok("POST", f"{base}/trigger/", {"service": "custom-git", "config": {
        "build_source": source, "build_args": {"TOKEN": TRIGGER_ARG}}})
    assert trigger["build_source"] == trigger["config"]["build_source"] == f"http://***@127.0.0.1:{port}/repo.git"
    # Its configuration sent back as shown (a client editing one field) keeps the real source.
    admin.ok("PUT", f"{base}/trigger/{trigger['id']}", {"config": trigger["config"]})
    admin.ok("POST", f"{base}/trigger/{trigger['id']}/activate", {})
    manual = admin.ok("POST", f"{base}/trigger/{trigger['id']}/start", {"commit_sha": "a" * 40})
    assert manual["trigger_metadata"]["git_url"] == f"http://***@127.0.0.1:{port}/repo.git"

    # A build from an archive URL with a password and a presigned query, with a secret build argument.
    archive = (f"http://arcuser:{ARCHIVE_PASSWORD}@127.0.0.1:{port}/ctx.tar.gz"
               f"?X-Amz-Signature={ARCHIVE_SIGNATURE}")
    build = admin.ok("POST", f"{base}/build/", {"archive_url": archive, "build_args": {"KEY": BUILD_ARG}})
    assert build["archive_url"] == f"http://***@127.0.0.1:{port}/ctx.tar.gz?X-Amz-Signature=***"
    assert build["build_args"] == {"KEY": BUILD_ARG}  # writers see the arguments they gave

    # A file drop: its upload URL carries a signature, which the access log must not keep.
    drop = admin.ok("POST", "/filedrop/", {"mimeType": "text/plain"})
    signature = drop["url"].split("signature=")[1]
    assert requests.put(drop["url"], data=b"FROM scratch\n", timeout=30).status_code == 200

    # An audit-log export whose callback URL (nobody listening) carries a token.
    admin.ok("POST", "/user/exportlogs", {"callback_url": f"http://127.0.0.1:{free_port()}/done?token={EXPORT_TOKEN}"})

    # Everything is used with its real secrets...
    for build_id in (manual["id"], build["id"]):
        wait_for(lambda build_id=build_id: admin.ok("GET", f"{base}/build/{build_id}")["phase"] == "error",
                 what=f"build {build_id}")
    wait_for(lambda: admin.ok("GET", f"{base}/notification/{hook['uuid']}/deliveries")["deliveries"][0]["attempts"],
             what="a webhook attempt")
    seen = {r["path"].split("?")[0]: r for r in listener.requests}
    assert any(r["path"] == f"/hook?token={HOOK_TOKEN}" for r in listener.requests)
    assert seen["/hook"]["authorization"] == "Basic " + base64.b64encode(f"hookuser:{HOOK_PASSWORD}".encode()).decode()
    assert seen["/ctx.tar.gz"]["authorization"] == \
        "Basic " + base64.b64encode(f"arcuser:{ARCHIVE_PASSWORD}".encode()).decode()
    assert any(r["authorization"] == "Basic " + base64.b64encode(f"gituser:{GIT_PASSWORD}".encode()).decode()
               for r in listener.requests if r["path"].startswith("/repo.git"))

    # ... and shown without them: errors, logs, deliveries, audit entries.
    shown = []
    for build_id in (manual["id"], build["id"]):
        view = admin.ok("GET", f"{base}/build/{build_id}")
        assert view["error"], view
        shown += [json.dumps(view), json.dumps(admin.ok("GET", f"{base}/build/{build_id}/logs"))]
    assert f"http://***@127.0.0.1:{port}/repo.git" in shown[0]
    deliveries = admin.ok("GET", f"{base}/notification/{hook['uuid']}/deliveries")
    assert "HTTP 500" in deliveries["deliveries"][0]["attempts"][0]["error"]
    shown += [json.dumps(deliveries), json.dumps(admin.ok("GET", f"{base}/notification/")),
              json.dumps(admin.ok("GET", f"{base}/trigger/")), json.dumps(admin.ok("GET", f"{base}/logs")),
              json.dumps(admin.ok("GET", f"{base}/build/"))]
    server_log = wait_for(lambda: "callback" in server.log_text() and server.log_text(), what="the export's failure")
    assert "/api/v1/filedrop/" in server_log  # the access log has the upload...
    for secret in SECRETS:
        for text in shown:
            assert secret not in text or secret in (TRIGGER_ARG, BUILD_ARG) and '"build_args"' in text, \
                (secret, text[:2000])
        assert secret not in server_log, secret
    assert signature not in server_log  # ... without its signature
    audit = json.dumps(admin.ok("GET", f"{base}/logs"))
    assert TRIGGER_ARG not in audit and BUILD_ARG not in audit

    # Nothing in the database is readable: neither through SQL nor in the files' bytes.
    dump = database_text(server)
    for secret in SECRETS:
        assert secret not in dump, secret
    if not USE_PG:
        raw = database_bytes(server)
        for secret in SECRETS:
            assert secret.encode() not in raw, secret
