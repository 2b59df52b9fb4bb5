"""Starting builds, showing them (Quay's shapes), their events, and the short-lived build credential."""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field

from accounts import audit
from accounts.identity import Identity
from accounts.models import ROBOT, Account
from accounts.permissions import is_namespace_admin
from registry import repos
from registry.models import Repository
from registry.names import TAG_RULE, is_tag
from slipway import crypto, events, redact, urls
from slipway.db import database, now_ms
from slipway.errors import Forbidden, Invalid, NotFound, TooMany

from .models import CANCELLED, COMPLETE, ERROR, INTERNAL_ERROR, RUNNING, TERMINAL, WAITING, Build, BuildJob, FileDrop

EVENT_FOR_PHASE = {COMPLETE: events.BUILD_SUCCESS, ERROR: events.BUILD_FAILURE,
                   INTERNAL_ERROR: events.BUILD_FAILURE, CANCELLED: events.BUILD_CANCELLED}
CACHE_SUFFIX = repos.CACHE_SEGMENT
BUILD_USER = "$build"
# Builds a push starts are requested by the trigger itself: Identity(kind="trigger", name="trigger/<uuid>").
TRIGGER_PERFORMER_PREFIX = "trigger/"


@dataclass
class BuildRequest:
    """What to build. Exactly one source: an uploaded file (``file_id``), an ``archive_url``, or git (triggers)."""

    docker_tags: list = field(default_factory=lambda: ["latest"])
    dockerfile_path: str = "Dockerfile"
    context: str = ""
    build_args: dict = field(default_factory=dict)
    target: str | None = None
    pull_robot: str | None = None
    file_id: str | None = None
    archive_url: str | None = None
    git: dict | None = None  # {"url", "commit", "ref"} for trigger builds
    trigger_id: int | None = None
    trigger_uuid: str | None = None
    trigger_kind: str | None = None
    trigger_metadata: dict = field(default_factory=dict)


def _check(req: BuildRequest) -> None:
    if not req.docker_tags:
        req.docker_tags = ["latest"]
    for tag in req.docker_tags:
        if not is_tag(tag):
            raise Invalid(f"Invalid tag '{tag}': {TAG_RULE}")
    for name, path in (("dockerfile_path", req.dockerfile_path), ("context", req.context)):
        if ".." in path.replace("\\", "/").split("/"):
            raise Invalid(f"Invalid {name} '{path}': it may not contain '..'")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in req.build_args.items()):
        raise Invalid("build_args must map names to string values")
    sources = [s for s in (req.file_id, req.archive_url, req.git) if s]
    if len(sources) != 1:
        raise Invalid("Give exactly one of file_id (an uploaded Dockerfile or archive) and archive_url")


def resolve_pull_robot(repo: Repository, requester: Identity, name: str | None, trusted: bool) -> Account | None:
    """The robot whose credentials pull base images: one of the repository's namespace; unless ``trusted``,
    only namespace administrators may lend it."""
    if not name:
        return None
    robot = Account.get_or_none((Account.name == name) & (Account.kind == ROBOT))
    if robot is None:
        raise NotFound(f"Robot '{name}' does not exist")
    if robot.owner_id != repo.namespace_id:
        raise Invalid(f"Robot '{name}' belongs to another namespace than {repo.full_name}")
    if not trusted and not is_namespace_admin(requester, repo.namespace):
        raise Forbidden(f"Only administrators of namespace '{repo.namespace.name}' may build with robot '{name}'")
    return robot


def request_build(repo: Repository, requester: Identity, req: BuildRequest, max_queued: int,
                  base: str, ip: str | None = None, trusted_pull_robot: bool = False) -> Build:
    """Queue a build (write permission on ``repo`` was checked by the caller).

    ``trusted_pull_robot``: the robot comes from a trigger an administrator saved, not from this request.
    """
    _check(req)
    robot = resolve_pull_robot(repo, requester, req.pull_robot, trusted_pull_robot)
    if req.file_id:
        # Only the uploader's own file: a file id seen elsewhere (a log, a shared link) is not a way in.
        drop = FileDrop.get_or_none((FileDrop.file_id == req.file_id) & FileDrop.uploaded
                                    & (FileDrop.owner == requester.account_id))
        if drop is None:
            raise NotFound(f"Uploaded file '{req.file_id}' does not exist (or its upload did not finish)")
    queued = BuildJob.select().where((BuildJob.namespace_id == repo.namespace_id)
                                     & BuildJob.lease_owner.is_null()).count()
    if queued >= max_queued:
        raise TooMany("Maximum queued build rate exceeded.")
    source = "upload" if req.file_id else "archive_url" if req.archive_url else "git"
    with database.atomic():
        build = Build.create(
            uuid=str(uuid.uuid4()), repository=repo, phase=WAITING, docker_tags=json.dumps(req.docker_tags),
            dockerfile_path=req.dockerfile_path or "Dockerfile", context=req.context or "",
            build_args=json.dumps(req.build_args, sort_keys=True), target=req.target or None, pull_robot=robot,
            source=source, resource_key=req.file_id, archive_url=req.archive_url,
            trigger_id=req.trigger_id, trigger_uuid=req.trigger_uuid, trigger_kind=req.trigger_kind,
            trigger_metadata=json.dumps(req.trigger_metadata or ({"git": req.git} if req.git else {})),
            requested_by=requester.account_id, requested_by_name=requester.name or None)
        BuildJob.create(build=build, repository_id=repo.id, namespace_id=repo.namespace_id)
        build.repository = repo
        events.emit(events.BUILD_QUEUED, repo, event_payload(build, base))
        audit.record("build_dockerfile", requester, namespace=repo.namespace, repository=repo, ip=ip,
                     metadata={"build_uuid": build.uuid, "docker_tags": req.docker_tags, "source": source,
                               "trigger_kind": req.trigger_kind})
    return build


def get_build(repo: Repository, build_uuid: str) -> Build:
    build = Build.get_or_none((Build.uuid == build_uuid) & (Build.repository == repo.id))
    if build is None:
        raise NotFound(f"Build {build_uuid} does not exist in {repo.full_name}")
    build.repository = repo
    return build


def phase_of(build_id: int) -> str | None:
    """A build's phase as it is now in the database."""
    return Build.select(Build.phase).where(Build.id == build_id).scalar()


def history(repo: Repository, limit: int = 25) -> list[Build]:
    rows = list(Build.select().where(Build.repository == repo.id).order_by(Build.created_at.desc(), Build.id.desc())
                .limit(limit))
    for row in rows:
        row.repository = repo
    return rows


def started_by_trigger(trigger_id: int, repo: Repository, limit: int = 25) -> list[Build]:
    """The builds a trigger of ``repo`` started, newest first."""
    rows = list(Build.select().where(Build.trigger_id == trigger_id).order_by(Build.created_at.desc()).limit(limit))
    for row in rows:
        row.repository = repo
    return rows


# -- shapes ---------------------------------------------------------------------------------------------

def manual_user(build: Build) -> str | None:
    """Who started the build by hand (an upload, an archive URL, or a trigger run from the API), as Quay;
    None for a build a git push started (its requester is the trigger itself)."""
    name = build.requested_by_name
    if not name or name.startswith(TRIGGER_PERFORMER_PREFIX):
        return None
    return name


def status(build: Build) -> dict:
    """Quay's build status: Dockerfile steps in all (``total_commands``) and the step running or last run
    (``current_command``, from 1; None before the first)."""
    return {"total_commands": build.total_steps or 0, "current_command": build.current_step or None}


def view(build: Build, can_write: bool) -> dict:
    """A build in Quay's shape, plus Slipway's timings, build args and results."""
    quay_date = audit.quay_date
    repo = build.repository
    trigger_metadata = json.loads(build.trigger_metadata or "{}")
    phase = build.phase
    if phase == INTERNAL_ERROR and build.retries_remaining == 0:
        phase = "expired"
    return {
        "id": build.uuid,
        "phase": phase,
        "started": quay_date(build.created_at),
        "display_name": build.uuid[:7] if not trigger_metadata.get("commit") else trigger_metadata["commit"][:7],
        "status": status(build),
        "subdirectory": build.context or "",
        "dockerfile_path": build.dockerfile_path,
        "context": build.context or "/",
        "tags": json.loads(build.docker_tags),
        "manual_user": manual_user(build),
        "is_writer": can_write,
        "trigger": {"id": build.trigger_uuid, "service": build.trigger_kind} if build.trigger_id else None,
        "trigger_metadata": trigger_metadata if can_write else {},
        "resource_key": build.resource_key if can_write else None,
        "archive_url": redact.url(build.archive_url) if can_write else None,
        "pull_robot": {"name": build.pull_robot.name, "kind": "user", "is_robot": True} if build.pull_robot_id
        else None,
        "repository": {"namespace": repo.namespace.name, "name": repo.name},
        "error": build.error_message,
        "build_args": json.loads(build.build_args or "{}") if can_write else {},
        "target": build.target,
        "created": quay_date(build.created_at),
        "scheduled": quay_date(build.started_at) if build.started_at else None,
        "completed": quay_date(build.completed_at) if build.completed_at else None,
        "image_id": build.image_id,
        "manifest_digests": json.loads(build.manifest_digests or "[]"),
        "retries_remaining": build.retries_remaining,
    }


def event_payload(build: Build, base: str) -> dict:
    """Quay's build event fields."""
    repo = build.repository
    host = urls.host(base)
    payload = {
        "build_id": build.uuid,
        "build_name": build.uuid[:7],
        "docker_tags": json.loads(build.docker_tags),
        "trigger_kind": build.trigger_kind,
        "trigger_id": build.trigger_uuid if build.trigger_id else None,
        "trigger_metadata": json.loads(build.trigger_metadata or "{}"),
        "repository": repo.full_name,
        "namespace": repo.namespace.name,
        "name": repo.name,
        "docker_url": f"{host}/{repo.full_name}",
        "homepage": f"{base}/repository/{repo.full_name}/build/{build.uuid}",
    }
    if build.phase in (WAITING, *RUNNING):
        user = manual_user(build)
        payload.update(repo=repo.name, is_manual=user is not None, manual_user=user)
    if build.phase == COMPLETE:
        payload["image_id"] = build.image_id
        payload["manifest_digests"] = [f"{host}/{repo.full_name}@{d}"
                                       for d in json.loads(build.manifest_digests or "[]")]
    if build.phase in (ERROR, INTERNAL_ERROR):
        payload["error_message"] = build.error_message
    return payload


# -- the build credential -------------------------------------------------------------------------------

def issue_credential(build: Build) -> str:
    """A secret for ``$build`` logins, good while this build runs, for its repository and layer cache only."""
    secret = crypto.new_token(48)
    Build.update(credential_hash=crypto.hash_token(secret)).where(Build.id == build.id).execute()
    return secret


def revoke_credential(build: Build) -> None:
    Build.update(credential_hash=None).where(Build.id == build.id).execute()


# After a build completes its worker publishes its layer cache with a credential issued again for that alone.
CACHE_PUBLISH_MS = 30 * 60 * 1000


def build_identity(build: Build, repositories: tuple = (), read_repositories: tuple = ()) -> Identity:
    """The one identity a build acts as (its registry credential, the creator of its layer cache):
    ``build/<uuid>``, confined to ``repositories`` (push) and ``read_repositories`` (pull)."""
    return Identity(kind="build", name=f"build/{build.uuid}", via="build_token", repositories=tuple(repositories),
                    read_repositories=tuple(read_repositories))


def identity_for_build_secret(secret: str) -> Identity | None:
    build = Build.get_or_none(Build.credential_hash == crypto.hash_token(secret))
    if build is None:
        return None
    repo = build.repository
    cache = repos.find(f"{repo.full_name}/{CACHE_SUFFIX}")
    if build.phase == COMPLETE:  # publishing the layer cache: that repository only, for a while
        if cache is None or not build.completed_at or now_ms() - build.completed_at > CACHE_PUBLISH_MS:
            return None
        return build_identity(build, (cache.id,))
    if build.phase in TERMINAL or build.phase not in RUNNING:
        return None
    allowed = [repo.id]
    if cache is not None:
        allowed.append(cache.id)
    return build_identity(build, allowed, json.loads(build.base_repositories or "[]"))

