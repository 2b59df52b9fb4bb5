"""/api/v1 audit logs for users, organizations and repositories: list, aggregate, export (Quay's shapes).

Listing covers a date range (``starttime`` / ``endtime`` as MM/DD/YYYY, UTC; the
last 7 days by default), newest first, at most 100 entries a page with an opaque
``next_page`` token. Export writes the range as JSON lines: downloaded directly
(``GET .../exportlogs``) or prepared in the background and announced to a
``callback_url`` (``POST .../exportlogs``, as Quay).
"""
from __future__ import annotations

import logging
import os
import secrets
from concurrent.futures import ThreadPoolExecutor

from slipway import outgoing, redact
from slipway.api import API, ApiHandler
from slipway.db import database, now_ms
from slipway.errors import Invalid, NotFound

from . import audit, users
from .orgs import get_org
from .permissions import is_namespace_admin

log = logging.getLogger("slipway.audit.export")
NAME = r"[^/]+"
DAY_MS = 86400 * 1000
_exporter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="log-export")


class LogsBase(ApiHandler):
    """Subclasses say whose logs these are by returning the filter (namespace/repository/performer ids)."""

    def log_scope(self) -> dict:
        raise NotImplementedError

    def date_range(self) -> tuple[int, int]:
        end = audit.parse_day(self.get_argument("endtime", None), now_ms(), end_of_day=True)
        start = audit.parse_day(self.get_argument("starttime", None), end - 7 * DAY_MS)
        if start > end:
            raise Invalid("starttime is after endtime")
        return start, end


class LogsHandler(LogsBase):
    async def get(self, **path) -> None:
        """Audit log entries, newest first, 100 a page."""
        scope = self.log_scope()
        start, end = self.date_range()
        rows, next_page = audit.page(start, end, self.get_argument("next_page", None), **scope)
        body = {"start_time": audit.quay_date(start), "end_time": audit.quay_date(end),
                "logs": [audit.view(r) for r in rows]}
        if next_page:
            body["next_page"] = next_page
        self.send(body)


class AggregateLogsHandler(LogsBase):
    async def get(self, **path) -> None:
        """Counts of audit log entries per kind and day."""
        scope = self.log_scope()
        start, end = self.date_range()
        self.send({"aggregated": audit.aggregate(start, end, **scope)})


class ExportLogsHandler(LogsBase):
    schemas = {"post": {"type": "object", "required": ["callback_url"], "properties": {
        "callback_url": {"type": "string"}, "starttime": {"type": "string"}, "endtime": {"type": "string"}}}}

    async def get(self, **path) -> None:
        """Download the audit log entries of a date range as JSON lines."""
        scope = self.log_scope()
        start, end = self.date_range()
        self.set_header("Content-Type", "application/x-ndjson")
        self.set_header("Content-Disposition", 'attachment; filename="audit-log.jsonl"')
        for line in audit.export_lines(start, end, **scope):
            self.write(line)
        self.finish()

    async def post(self, **path) -> None:
        """Prepare an export in the background; the callback URL is told where to fetch it."""
        scope = self.log_scope()
        body = self.json_body()
        start = audit.parse_day(body.get("starttime"), now_ms() - 30 * DAY_MS)
        end = audit.parse_day(body.get("endtime"), now_ms(), end_of_day=True)
        callback = body["callback_url"]
        outgoing.check_url(callback, self.config.network)
        export_id = secrets.token_hex(16)
        url = f"{self.base_url()}{API}/exportedlogs/{export_id}"
        _exporter.submit(run_export, self.config, export_id, start, end, scope, callback, url)
        self.send({"export_id": export_id}, 202)


def export_path(config, export_id: str):
    return config.data_path / "exports" / f"{export_id}.jsonl"


def run_export(config, export_id: str, start: int, end: int, scope: dict, callback: str, url: str) -> None:
    """Write the export file, then POST ``{"export_id", "status", "exported_data_url"}`` to the callback."""
    status = "success"
    try:
        path = export_path(config, export_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".part")
        with open(tmp, "w") as f:
            for line in audit.export_lines(start, end, **scope):
                f.write(line)
        os.replace(tmp, path)
    except Exception:
        log.exception("log export %s failed", export_id)
        status = "failed"
    finally:
        database.close()
    try:
        outgoing.post(callback, config.network, json={"export_id": export_id, "status": status,
                                                      "exported_data_url": url if status == "success" else None})
    except Exception as e:  # the callback's problem, not ours: note it
        log.warning("log export %s: callback %s failed: %s", export_id, redact.url(callback),
                    redact.text(str(e), callback))


class ExportedLogsHandler(ApiHandler):
    async def get(self, export_id: str) -> None:
        """Fetch a prepared export (the unguessable id is the credential, as Quay's links)."""
        if not all(c in "0123456789abcdef" for c in export_id) or len(export_id) != 32:
            raise NotFound("No such export")
        path = export_path(self.config, export_id)
        if not path.exists():
            raise NotFound("No such export (it may still be in preparation)")
        self.set_header("Content-Type", "application/x-ndjson")
        with open(path) as f:
            self.finish(f.read())


# Whose logs: a mixin that says so (``log_scope``), combined below with each of the three handlers.

class UserLogs:
    def log_scope(self) -> dict:
        identity = self.require_login()
        self.require_scope("user:admin")
        if identity.kind != "user":
            raise self.deny("Only users have user logs")
        return {"namespace_id": identity.account_id, "since": users.get_account(identity.account_id).created_at}


class OrgLogs:
    def log_scope(self) -> dict:
        org = get_org(self.path_kwargs["orgname"])
        if not is_namespace_admin(self.identity, org):
            raise self.deny(f"You must be an administrator of organization '{org.name}'")
        self.require_scope("org:admin")
        return {"namespace_id": org.id, "since": org.created_at}


class UserLogsHandler(UserLogs, LogsHandler):
    pass


class UserAggregateLogsHandler(UserLogs, AggregateLogsHandler):
    pass


class UserExportLogsHandler(UserLogs, ExportLogsHandler):
    pass


class OrgLogsHandler(OrgLogs, LogsHandler):
    pass


class OrgAggregateLogsHandler(OrgLogs, AggregateLogsHandler):
    pass


class OrgExportLogsHandler(OrgLogs, ExportLogsHandler):
    pass


def log_routes(prefix: str, logs: type, aggregate: type, export: type) -> list:
    """The three log routes under ``prefix``, served by one owner's three handlers."""
    return [(rf"{prefix}/logs", logs), (rf"{prefix}/aggregatelogs", aggregate), (rf"{prefix}/exportlogs", export)]


default_handlers = (log_routes(rf"{API}/user", UserLogsHandler, UserAggregateLogsHandler, UserExportLogsHandler)
                    + log_routes(rf"{API}/organization/(?P<orgname>{NAME})", OrgLogsHandler,
                                 OrgAggregateLogsHandler, OrgExportLogsHandler)
                    + [(rf"{API}/exportedlogs/(?P<export_id>{NAME})", ExportedLogsHandler)])
