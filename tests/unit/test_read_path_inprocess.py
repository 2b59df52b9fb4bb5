"""The registry's read path (registry/readpath.py) against the regular handlers, in-process: the same
application served twice, once behind ``ReadPath`` and once alone, asked the same requests. The read
path must answer exactly what the handlers answer (status, headers in order, body, audit entry,
keep-alive), take the successful manifest GET/HEAD and ``GET /v2/`` itself, and hand everything else
to the handlers (the boundary: which requests it counts as answered)."""
from __future__ import annotations

import base64
import json
import socket

from tornado.httpserver import HTTPServer
from tornado.iostream import IOStream
from tornado.testing import bind_unused_port, gen_test

from accounts import audit, tokens, users
from accounts.models import Account, LogEntry
from registry import repos
from registry.readpath import ReadPath
from slipway.app import make_app

from .steps import OCI_MANIFEST, digest_of, push_image
from .test_handlers_inprocess import AppTestCase


class TestReadPath(AppTestCase):
    def get_http_server(self):
        self.read_path = ReadPath(self._app, self.services)
        return HTTPServer(self.read_path, **self.get_httpserver_options())

    def setUp(self):
        super().setUp()
        # The same application without the read path, on a port of its own.
        sock, self.regular_port = bind_unused_port()
        self.regular = HTTPServer(make_app(self.services))
        self.regular.add_sockets([sock])
        admin = users.identity_for(Account.get(Account.name == "admin"), "password")
        self.admin = admin
        push_image(self.services.storage, repos.create("admin/app", admin)[0], "v1")

    def tearDown(self):
        self.regular.stop()
        super().tearDown()

    def both(self, path: str, method: str = "GET", headers: dict | None = None, body=None):
        """The answer of the read-path server and of the regular one, and whether the read path took it."""
        before = self.read_path.answered
        fast = self.fetch(path, method=method, headers=headers, body=body, allow_nonstandard_methods=True)
        taken = self.read_path.answered - before
        regular = self.fetch(f"http://127.0.0.1:{self.regular_port}{path}", method=method, headers=headers,
                             body=body, allow_nonstandard_methods=True)
        return fast, regular, taken

    def assert_same(self, fast, regular) -> None:
        assert fast.code == regular.code, (fast.code, regular.code, fast.body, regular.body)
        strip = {"Date", "Www-Authenticate"}  # the challenge names the port asked, which differs

        def listed(r):
            return [(k, v) for k, v in r.headers.get_all() if k not in strip]

        assert listed(fast) == listed(regular)
        assert fast.body == regular.body
        if "Www-Authenticate" in regular.headers:
            port = str(self.get_http_port())
            assert fast.headers["Www-Authenticate"] == regular.headers["Www-Authenticate"].replace(
                str(self.regular_port), port)

    def bearer(self, scope: str) -> dict:
        return {"Authorization": f"Bearer {self.registry_token(scope)}"}

    def test_the_read_path_answers_pulls_and_the_base_check_exactly_as_the_handlers_do(self):
        pull = self.bearer("repository:admin/app:pull")
        digest = self.manifest_digest(pull)
        taken_requests = [
            ("/v2/admin/app/manifests/v1", "GET", {**pull, "Accept": OCI_MANIFEST}),
            ("/v2/admin/app/manifests/v1", "HEAD", pull),
            (f"/v2/admin/app/manifests/{digest}", "GET", pull),
            (f"/v2/admin/app/manifests/{digest}", "HEAD", pull),
            ("/v2/admin/app/manifests/v1?ignored=1", "GET", pull),
            ("/v2/", "GET", pull),
            ("/v2", "GET", pull),
            ("/v2/", "GET", self.bearer("repository:admin/other:pull")),
        ]
        for path, method, headers in taken_requests:
            fast, regular, taken = self.both(path, method, headers)
            assert fast.code == 200 and taken == 1, (path, method, fast.code, taken)
            self.assert_same(fast, regular)

    def manifest_digest(self, headers) -> str:
        return self.fetch("/v2/admin/app/manifests/v1", method="HEAD", headers=headers).headers[
            "Docker-Content-Digest"]

    def test_everything_else_goes_to_the_handlers_and_is_answered_as_before(self):
        pull = self.bearer("repository:admin/app:pull")
        digest = self.manifest_digest(pull)
        basic = {"Authorization": "Basic " + base64.b64encode(f"$app:{self.app_token}".encode()).decode()}
        handed_on = [
            ("/v2/admin/app/manifests/v2", "GET", pull, None),  # unknown tag: 404 MANIFEST_UNKNOWN
            ("/v2/admin/nothing/manifests/v1", "GET", self.bearer("repository:admin/nothing:pull"), None),
            ("/v2/admin/app/manifests/v1", "GET", {}, None),  # no token: 401 with the challenge
            ("/v2/admin/app/manifests/v1", "GET", {"Authorization": "Bearer not-a-token"}, None),
            ("/v2/admin/app/manifests/v1", "GET", self.bearer("repository:admin/other:pull"), None),  # 403
            ("/v2/admin/app/manifests/v1", "GET", basic, None),  # basic credentials: 200 by the handler
            ("/v2/admin/app/manifests/v1", "GET", {**pull, "If-None-Match": f'"{digest}"'}, None),  # 304
            ("/v2/admin/app/manifests/v1", "GET", {**pull, "If-None-Match": '"other"'}, None),
            ("/v2/admin/app/manifests/sha256:not-hex", "GET", pull, None),  # DIGEST_INVALID
            ("/v2/admin/app/manifests/sha256:" + "0" * 64, "GET", pull, None),
            ("/v2/Admin/App/manifests/v1", "GET", self.bearer("repository:Admin/App:pull"), None),  # NAME_INVALID
            ("/v2/admin%2Fapp/manifests/v1", "GET", pull, None),  # an escaped name: the handler decodes it
            ("/v2/admin/app/manifests/v1", "GET", {**pull, "Content-Length": "2"}, b"{}"),  # a body
            ("/v2/admin/app/manifests/v1", "DELETE", pull, None),
            ("/v2/admin/app/manifests/", "GET", pull, None),
            ("/v2/admin/app/blobs/" + digest_of(b"layer"), "GET", pull, None),
            ("/v2/", "GET", {}, None),  # the challenge
            ("/v2/", "HEAD", pull, None),
            ("/v2/", "GET", basic, None),
        ]
        for path, method, headers, body in handed_on:
            fast, regular, taken = self.both(path, method, headers, body)
            assert taken == 0, (path, method, fast.code)
            self.assert_same(fast, regular)

    def test_each_pull_on_the_read_path_leaves_the_audit_entry_the_handler_leaves(self):
        pull = self.bearer("repository:admin/app:pull")
        digest = self.manifest_digest(pull)
        for path in ("/v2/admin/app/manifests/v1", f"/v2/admin/app/manifests/{digest}"):
            for headers in (pull, {**pull, "X-Forwarded-For": "203.0.113.9"}):
                audit.flush()
                LogEntry.delete().execute()
                fast, regular, taken = self.both(path, "GET", headers)
                assert taken == 1
                audit.flush()
                rows = [(e.kind, e.namespace_id, e.namespace, e.performer_id, e.performer, e.performer_kind,
                         e.repository_id, e.repository, e.ip, e.metadata)
                        for e in LogEntry.select().order_by(LogEntry.id)]
                assert len(rows) == 2 and rows[0] == rows[1], rows
                assert rows[0][0] == "pull_repo" and rows[0][8] == headers.get("X-Forwarded-For", "127.0.0.1")
        audit.flush()
        LogEntry.delete().execute()
        self.both("/v2/admin/app/manifests/v1", "HEAD", pull)
        audit.flush()
        assert LogEntry.select().count() == 0  # a HEAD is no pull, on either path

    def test_a_revoked_token_stops_pulling_on_the_read_path_at_once(self):
        app_row = tokens.find(self.app_token, tokens.APP)
        pull = self.bearer("repository:admin/app:pull")
        fast, _, taken = self.both("/v2/admin/app/manifests/v1", "GET", pull)
        assert fast.code == 200 and taken == 1
        tokens.revoke(app_row, self.admin)
        fast, regular, taken = self.both("/v2/admin/app/manifests/v1", "GET", pull)
        assert fast.code == 401 and taken == 0
        self.assert_same(fast, regular)

    @gen_test
    async def test_a_connection_stays_open_across_read_path_and_handler_answers(self):
        auth_url = self.get_url("/v2/auth?service=localhost&scope=repository:admin/app:pull")
        answer = await self.http_client.fetch(auth_url, headers=self.basic("$app", self.app_token))
        pull = "Bearer " + json.loads(answer.body)["token"]
        sock = socket.create_connection(("127.0.0.1", self.get_http_port()))
        stream = IOStream(sock)
        requests = [f"GET /v2/admin/app/manifests/v1 HTTP/1.1\r\nHost: x\r\nAuthorization: {pull}\r\n\r\n",
                    f"GET /v2/admin/app/blobs/{digest_of(b'layer')} HTTP/1.1\r\nHost: x\r\nAuthorization: {pull}"
                    "\r\n\r\n",
                    f"HEAD /v2/admin/app/manifests/v1 HTTP/1.1\r\nHost: x\r\nAuthorization: {pull}\r\n\r\n",
                    "GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n",
                    f"GET /v2/ HTTP/1.1\r\nHost: x\r\nAuthorization: {pull}\r\n\r\n"]
        before = self.read_path.answered
        statuses = []
        for request in requests:  # one after the other on the one connection
            await stream.write(request.encode())
            head = (await stream.read_until(b"\r\n\r\n")).decode()
            statuses.append(int(head.split(" ", 2)[1]))
            length = int(next(line.split(":", 1)[1] for line in head.split("\r\n")
                              if line.lower().startswith("content-length:")))
            assert "connection: close" not in head.lower()
            if not request.startswith("HEAD") and length:
                await stream.read_bytes(length)
        stream.close()
        assert statuses == [200, 200, 200, 401, 200]
        assert self.read_path.answered - before == 3
