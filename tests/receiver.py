"""An HTTP endpoint on loopback that records what it is sent: the receiver of webhook and Slack
notifications in tests, in-process or from a server process."""
from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    """An HTTP endpoint that records what it is sent and answers ``status``."""

    def __init__(self):
        self.requests: list[dict] = []
        self.status = 200
        self.scripted: dict[str, list[int]] = {}  # path -> the statuses of its next requests, then ``status``
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.requests.append({"path": self.path, "headers": dict(self.headers), "body": body,
                                       "at": time.time()})
                scripted = outer.scripted.get(self.path)
                self.send_response(scripted.pop(0) if scripted else outer.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"

    def wait(self, count: int, path: str | None = None, timeout: float = 30) -> list[dict]:
        deadline = time.time() + timeout
        while time.time() < deadline:
            got = [r for r in self.requests if path is None or r["path"] == path]
            if len(got) >= count:
                return got
            time.sleep(0.1)
        raise AssertionError(f"expected {count} requests at {path}, got {len(self.requests)}")
