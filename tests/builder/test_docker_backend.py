"""The Docker-engine backend, against a fake engine speaking the Docker Engine API on loopback.

No Docker engine can run on this machine (no daemon, no privileges for one), so
this is the one place where a stand-in is used: a small HTTP server answering
the engine endpoints the docker SDK calls. It checks what the backend sends
(build context, build args, target, registry credentials) and streams answers
the way the engine does.
"""
from __future__ import annotations

import base64
import io
import json
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from builder.backends import BuildFailed, DockerBackend, Job


class FakeEngine(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # the engine streams progress as chunked JSON lines
    calls: list = []
    fail_build = False

    def log_message(self, *args):
        pass

    def _stream(self, items):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for item in items:
            data = json.dumps(item).encode() + b"\r\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.write(b"0\r\n\r\n")

    def _json(self, value, status=200):
        body = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        path = urlparse(self.path).path
        if path.endswith("/version"):
            return self._json({"ApiVersion": "1.41", "Version": "24.0.0", "MinAPIVersion": "1.12"})
        if path.endswith("/json"):
            return self._json({"Id": "sha256:" + "c" * 64})
        self._json({"message": "not found"}, 404)

    def do_POST(self):
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        auth = self.headers.get("X-Registry-Auth")
        credentials = json.loads(base64.urlsafe_b64decode(auth + "==")) if auth else None
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.headers.get("Transfer-Encoding") == "chunked":
            body = self._read_chunked()
        self.calls.append({"path": url.path, "query": query, "credentials": credentials, "body": body})
        if url.path.endswith("/build"):
            if self.fail_build:
                return self._stream([{"stream": "Step 1/2 : FROM base\n"},
                                     {"error": "The command '/bin/sh -c false' returned a non-zero code: 1",
                                      "errorDetail": {"code": 1}}])
            return self._stream([{"stream": "Step 1/2 : FROM base\n"}, {"stream": " ---> 1234\n"},
                                 {"stream": "Step 2/2 : RUN make\n"}, {"aux": {"ID": "sha256:" + "c" * 64}},
                                 {"stream": "Successfully built cccc\n"}])
        if url.path.endswith("/images/create"):
            return self._stream([{"status": f"Pulling from {query['fromImage']}"}, {"status": "Download complete"}])
        if url.path.endswith("/tag"):
            self.send_response(201)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        if url.path.endswith("/push"):
            return self._stream([{"status": "Pushing"}, {"status": "latest: digest: sha256:ddd size: 528"},
                                 {"aux": {"Tag": query.get("tag"), "Digest": "sha256:" + "d" * 64, "Size": 528}}])
        self._json({"message": "not found"}, 404)

    def do_DELETE(self):
        self.calls.append({"path": urlparse(self.path).path, "query": {}, "credentials": None, "body": b""})
        self._json([{"Deleted": "sha256:" + "c" * 64}])

    def _read_chunked(self) -> bytes:
        data = b""
        while True:
            size = int(self.rfile.readline().strip(), 16)
            if size == 0:
                self.rfile.readline()
                return data
            data += self.rfile.read(size)
            self.rfile.readline()


@pytest.fixture
def engine():
    FakeEngine.calls = []
    FakeEngine.fail_build = False
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeEngine)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"tcp://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()


def make_job(tmp_path: Path, lines: list) -> Job:
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM base\nRUN make\n")
    (context / "Makefile").write_text("all:\n")
    return Job(context_dir=context, dockerfile=context / "Dockerfile", image="localhost/slipway-build-x",
               build_args={"VERSION": "1.2"}, target="final", on_line=lines.append)


def test_build_pull_push_through_the_engine_api(engine, tmp_path):
    lines = []
    backend = DockerBackend(engine)
    backend.use_credentials({"registry.local:8080": {"username": "$build", "password": "s3cret"}})
    job = make_job(tmp_path, lines)
    backend.pull(job, "registry.local:8080/ns/base:1")
    backend.build(job)
    digest = backend.push(job, "registry.local:8080/ns/app:v1")
    assert digest == "sha256:" + "d" * 64
    assert backend.config_digest(job) == "sha256:" + "c" * 64
    backend.remove(job)

    pull, build, tag, push = FakeEngine.calls[:4]
    assert pull["query"] == {"fromImage": "registry.local:8080/ns/base", "tag": "1"}
    assert pull["credentials"]["password"] == "s3cret"
    assert json.loads(build["query"]["buildargs"]) == {"VERSION": "1.2"}
    assert build["query"]["target"] == "final" and build["query"]["t"] == "localhost/slipway-build-x"
    assert build["query"]["dockerfile"] == "Dockerfile"
    with tarfile.open(fileobj=io.BytesIO(build["body"])) as context:
        assert sorted(context.getnames()) == ["Dockerfile", "Makefile"]
    assert tag["query"]["repo"] == "registry.local:8080/ns/app" and tag["query"]["tag"] == "v1"
    assert push["credentials"]["username"] == "$build" and push["query"]["tag"] == "v1"
    assert FakeEngine.calls[-1]["path"].endswith("/images/localhost/slipway-build-x")
    assert "Step 2/2 : RUN make" in lines and "Pulling from registry.local:8080/ns/base" in lines


def test_an_engine_error_is_a_build_failure_with_its_message(engine, tmp_path):
    FakeEngine.fail_build = True
    lines = []
    with pytest.raises(BuildFailed, match="returned a non-zero code: 1"):
        DockerBackend(engine).build(make_job(tmp_path, lines))
    assert lines == ["Step 1/2 : FROM base"]
