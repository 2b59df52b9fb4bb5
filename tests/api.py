"""A small client for /api/v1 in tests."""
from __future__ import annotations

import requests


class Api:
    def __init__(self, server, auth=None, bearer: str | None = None):
        self.server = server
        self.auth = auth
        self.bearer = bearer

    def request(self, method: str, path: str, json=None, **kwargs) -> requests.Response:
        headers = kwargs.pop("headers", {})
        if self.bearer:
            headers["Authorization"] = f"Bearer {self.bearer}"
        return requests.request(method, f"{self.server.url}/api/v1{path}", json=json, auth=self.auth,
                                headers=headers, timeout=60, verify=self.server.verify, **kwargs)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, json=None, **kw):
        return self.request("POST", path, json=json, **kw)

    def put(self, path, json=None, **kw):
        return self.request("PUT", path, json=json, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    def ok(self, method: str, path: str, json=None, status: int | tuple = (200, 201, 202, 204)) -> dict | None:
        r = self.request(method, path, json=json)
        statuses = status if isinstance(status, tuple) else (status,)
        assert r.status_code in statuses, f"{method} {path} -> {r.status_code} {r.text}"
        return r.json() if r.content and r.headers.get("Content-Type", "").startswith("application/json") else None
