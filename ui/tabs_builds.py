"""The repository's Builds tab (history, "Start a build") and the build page with its live log.

Starting a build from the page does what ``POST /api/v1/repository/<repo>/build/`` does with a multipart
upload: ``builder.filedrops.store`` keeps the file, ``builder.handlers.build_request`` reads the fields,
``builder.builds.request_build`` queues it, ``builder.worker.wake`` wakes the workers. The build page
(``/repository/<ns>/<name>/build/<uuid>``, where notification payloads link) renders the build's facts;
``ui/static/build_log.js`` fills its log from ``/api/v1/.../build/<uuid>/logs/stream`` (Server-Sent Events,
resumed from the last entry number it holds) while the build runs, or from ``.../logs`` once it is over.
"""
from __future__ import annotations

import json

from builder import builds, filedrops, queue
from builder.handlers import build_request
from builder.models import TERMINAL
from builder.worker import wake
from slipway.api import API
from slipway.db import now_ms
from slipway.errors import DomainError, Invalid

from .form_errors import field_of
from .repository import REPO_PATH, RepositoryHandler, RepositoryPage, RepositoryTab

HISTORY = 50
BUILD_UUID = r"(?P<build_uuid>[0-9a-f-]{36})"

BUILD_FIELDS = (("docker_tags", ("tag",)), ("build_args", ("build_args", "build argument")),
               ("pull_robot", ("robot",)), ("dockerfile_path", ("dockerfile_path",)),
               ("context", ("context",)))


def duration(build) -> int | None:
    """Seconds from start (or request) to the end, or to now while it runs; None before it starts."""
    if not build.started_at:
        return None
    return max(0, ((build.completed_at or now_ms()) - build.started_at) // 1000)


def duration_text(seconds: int | None) -> str:
    if seconds is None:
        return "—"
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {seconds:02d}s" if minutes else f"{seconds}s"


def build_row(build, can_write: bool) -> dict:
    """What the history table and the build page show of a build (the API's view, plus times)."""
    view = builds.view(build, can_write)
    metadata = json.loads(build.trigger_metadata or "{}")
    commit = metadata.get("commit") or (metadata.get("git") or {}).get("commit")
    view.update(created_ms=build.created_at, started_ms=build.started_at, completed_ms=build.completed_at,
                duration=duration_text(duration(build)), commit=commit[:7] if commit else None, ref=metadata.get("ref"),
                terminal=build.phase in TERMINAL)
    return view


def parse_build_args(text: str) -> dict:
    """``NAME=value`` lines (blank lines and ``#`` comments skipped) as the API's build_args object."""
    args = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not sep or not name.strip():
            raise Invalid(f"Build argument line {number} is not NAME=value")
        args[name.strip()] = value
    return args


class BuildsTab(RepositoryTab):
    name = "builds"
    label = "Builds"
    role = "read"

    async def get(self, page, repo, errors: dict | None = None, values: dict | None = None) -> None:
        await self.show(page, repo, 400 if errors else 200, values, errors)

    async def show(self, page, repo, status: int = 200, values: dict | None = None, errors: dict | None = None):
        can_write = page.can("write", repo)
        rows = await page.in_thread(builds.history, repo, HISTORY)
        page.render_tab("repo_builds.html", status=status, builds=[build_row(b, can_write) for b in rows],
                        values=values or {"docker_tags": "latest"}, errors=errors or {})


class BuildStartHandler(RepositoryPage):
    """``POST /repository/<ns>/<name>/build``: the "Start a build" form (multipart, up to the build context limit)."""

    login_required = True

    def body_limit(self) -> int:
        if self.signed_in and self.request.headers.get("Content-Type", "").startswith("multipart/form-data"):
            return self.config.builds.max_context_bytes
        return super().body_limit()

    async def get(self, namespace: str, repository: str) -> None:
        self.redirect(self.repo_url(self.repository("read"), "builds"))

    async def post(self, namespace: str, repository: str) -> None:
        repo = self.repository("write")
        tab = self.tabs().tabs["builds"]
        self._repo, self._tab = repo, tab
        fields = ("docker_tags", "dockerfile_path", "context", "target", "pull_robot", "build_args")
        values = {name: self.form(name) for name in fields}
        uploads = self.request.files.get("file")
        errors = {}
        if not uploads or not uploads[0]["body"]:
            errors["file"] = "Choose a Dockerfile or an archive (.tar, .tar.gz) to build"
        else:
            try:
                body = {k: v for k, v in values.items() if v and k != "build_args"}
                body["build_args"] = parse_build_args(values["build_args"])
                request = build_request(body)
                limit = self.config.builds.max_context_bytes
                request.file_id = await self.in_thread(filedrops.store, self.services.storage,
                                                       self.identity.account_id, uploads[0]["body"],
                                                       uploads[0]["content_type"], limit)
                build = await self.in_thread(builds.request_build, repo, self.identity, request,
                                             self.config.builds.max_queued_per_namespace, self.base_url(),
                                             self.client_ip)
            except DomainError as e:
                errors[field_of(e.message, BUILD_FIELDS)] = e.message
            else:
                wake()
                self.flash(f"Build {build.uuid[:7]} queued.", "success")
                self.redirect(f"/repository/{repo.full_name}/build/{build.uuid}")
                return
        await tab.show(self, repo, 400, values, errors)



class BuildPage(RepositoryHandler):
    """``/repository/<ns>/<name>/build/<uuid>``: a build's facts and its log; POST ``action=cancel`` cancels."""

    def build(self, action: str = "read"):
        repo = self.repository(action)
        return builds.get_build(repo, self.path_kwargs["build_uuid"])

    async def get(self, namespace: str, repository: str, build_uuid: str) -> None:
        build = await self.in_thread(self.build)
        repo = build.repository
        can_write = self.can("write", repo)
        sees_log = can_write or self.config.builds.readers_see_logs
        api = f"{API}/repository/{repo.full_name}/build/{build.uuid}"
        self.render("build.html", repo=repo, build=build_row(build, can_write), can_write=can_write,
                    sees_log=sees_log, api=api, repo_url=f"/repository/{repo.full_name}")

    async def post(self, namespace: str, repository: str, build_uuid: str) -> None:
        build = await self.in_thread(self.build, "write")
        if self.form("action") != "cancel":
            raise Invalid("Unknown action: the build page's form cancels a build (action=cancel)")
        phase = await self.in_thread(queue.cancel, build, self.base_url(), self.config.builds.max_log_bytes,
                                     self.identity, self.client_ip)
        wake()
        self.flash(f"Build {build.uuid[:7]} cancelled (it was {phase}).", "success")
        self.redirect(f"/repository/{build.repository.full_name}/build/{build.uuid}")


default_handlers = [
    (rf"{REPO_PATH}/build/?", BuildStartHandler),
    (rf"{REPO_PATH}/build/{BUILD_UUID}/?", BuildPage),
]
