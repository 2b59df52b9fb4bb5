"""Triggers: saving and activating them, receiving their webhooks, running them by hand, counting failures."""
from __future__ import annotations

import hashlib
import json
import re
import uuid

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from peewee import IntegrityError

from accounts import audit
from accounts.identity import Identity
from accounts.permissions import is_namespace_admin
from builder import builds, sources
from builder.models import COMPLETE, ERROR, INTERNAL_ERROR, Build
from registry.models import Repository
from slipway import crypto, redact
from slipway.db import database, now_ms
from slipway.errors import Forbidden, Invalid, NotFound, Unauthenticated

from . import limits, payloads, rules, signatures, templates
from .models import KINDS, Delivery, Trigger

CONFIG_FIELDS = ("build_source", "dockerfile_path", "context", "branchtag_regex", "tag_templates",
                 "default_tag_from_ref", "latest_for_default_branch", "build_args", "included_paths", "ignored_paths",
                 "default_branch")
JSON_FIELDS = ("tag_templates", "build_args", "included_paths", "ignored_paths")
SHA_RE = re.compile(r"^[0-9a-fA-F]{7,40}\Z")
BRANCH_RE = re.compile(r"^[^\s~^:?*\[\\]{1,255}\Z")  # what git allows in a branch name, roughly


def get_trigger(repo: Repository, trigger_uuid: str) -> Trigger:
    trigger = Trigger.get_or_none((Trigger.uuid == trigger_uuid) & (Trigger.repository == repo.id))
    if trigger is None:
        raise NotFound(f"Trigger {trigger_uuid} does not exist in {repo.full_name}")
    trigger.repository = repo
    return trigger


def list_triggers(repo: Repository) -> list[Trigger]:
    """The repository's triggers, oldest first."""
    rows = list(Trigger.select().where(Trigger.repository == repo.id).order_by(Trigger.created_at))
    for row in rows:
        row.repository = repo
    return rows


def webhook_trigger(trigger_uuid: str) -> Trigger:
    """The trigger a webhook URL names (the webhook's credential and signature are checked later)."""
    trigger = Trigger.get_or_none(Trigger.uuid == trigger_uuid)
    if trigger is None:
        raise NotFound(f"Unknown trigger {trigger_uuid}")
    return trigger


def _apply_config(trigger: Trigger, config: dict) -> None:
    unknown = set(config) - set(CONFIG_FIELDS)
    if unknown:
        raise Invalid(f"Unknown trigger setting(s): {', '.join(sorted(unknown))}")
    if "tag_templates" in config:
        templates.check_templates(config["tag_templates"])
    if "branchtag_regex" in config:
        rules.check_regex(config["branchtag_regex"])
    if config.get("build_source"):  # refused now rather than when a build clones it
        sources.classify(config["build_source"], bool(_settings and _settings.triggers.allow_file_urls))
    for name in ("included_paths", "ignored_paths"):
        if name in config and (not isinstance(config[name], list) or not all(isinstance(p, str) for p in config[name])):
            raise Invalid(f"{name} must be a list of glob patterns")
    if "build_args" in config and (not isinstance(config["build_args"], dict)
                                   or not all(isinstance(v, str) for v in config["build_args"].values())):
        raise Invalid("build_args must map names to string values")
    for name in ("dockerfile_path", "context"):
        if ".." in str(config.get(name, "")).split("/"):
            raise Invalid(f"Invalid {name}: it may not contain '..'")
    if config.get("default_branch") and not BRANCH_RE.match(config["default_branch"]):
        raise Invalid(f"Invalid default_branch '{config['default_branch']}': give a branch name such as main")
    if trigger.build_source and config.get("build_source") == redact.url(trigger.build_source):
        config = {**config, "build_source": trigger.build_source}  # sent back as shown: keep its credentials
    for key, value in config.items():
        if key == "default_branch":
            value = value or None  # "" or null: unknown, found from the clone
        setattr(trigger, key, json.dumps(value) if key in JSON_FIELDS else value)


def _loggable(config: dict) -> dict:
    """Configuration for the audit log: build argument values may be secrets, so only their names; the
    source without its credentials."""
    config = {**config, "build_args": sorted(config["build_args"])} if "build_args" in config else dict(config)
    if isinstance(config.get("build_source"), str):
        config["build_source"] = redact.url(config["build_source"])
    return config


def create(repo: Repository, kind: str, config: dict, pull_robot: str | None, requester: Identity,
           ip: str | None = None) -> Trigger:
    if kind not in KINDS:
        raise Invalid(f"Unknown trigger service '{kind}': use one of {', '.join(KINDS)}")
    trigger = Trigger(uuid=str(uuid.uuid4()), repository=repo, kind=kind, created_by_name=requester.name)
    _apply_config(trigger, config or {})
    trigger.pull_robot = builds.resolve_pull_robot(repo, requester, pull_robot, trusted=False)
    with database.atomic():
        trigger.save(force_insert=True)
        audit.record("setup_repo_trigger", requester, repo.namespace, repo, ip,
                     {"trigger_id": trigger.uuid, "service": kind, "config": _loggable(config)})
    return trigger


SOURCE_FIELDS = ("build_source", "dockerfile_path", "context", "build_args")


def _guard_robot(trigger: Trigger, config: dict | None, requester: Identity) -> None:
    """A trigger builds with its pull robot's access: changing what it builds is for those who may lend the robot."""
    if trigger.pull_robot_id and config and set(config) & set(SOURCE_FIELDS) \
            and not is_namespace_admin(requester, trigger.repository.namespace):
        raise Forbidden(f"This trigger builds with robot {trigger.pull_robot.name}: only administrators of "
                        f"namespace '{trigger.repository.namespace.name}' may change what it builds")


def update(trigger: Trigger, config: dict | None, enabled: bool | None, pull_robot: str | None,
           requester: Identity, ip: str | None = None) -> Trigger:
    _guard_robot(trigger, config, requester)
    with database.atomic():
        if config:
            _apply_config(trigger, config)
        if pull_robot is not None:
            trigger.pull_robot = builds.resolve_pull_robot(trigger.repository, requester, pull_robot or None,
                                                               trusted=False)
        if enabled is not None and enabled != trigger.enabled:
            trigger.enabled = enabled
            if enabled:
                trigger.disabled_reason = None
                trigger.successive_user_errors = trigger.successive_internal_errors = 0
            else:
                trigger.disabled_reason = f"Disabled by {requester.name}"
        trigger.save()
        audit.record("update_repo_trigger", requester, trigger.repository.namespace, trigger.repository, ip,
                     {"trigger_id": trigger.uuid, "config": _loggable(config or {}), "enabled": enabled})
    return trigger


def activate(trigger: Trigger, config: dict | None, webhook_secret: str | None, requester: Identity,
             ip: str | None = None) -> Trigger:
    """Make the deploy key and the webhook credential (again, if already active)."""
    _guard_robot(trigger, config, requester)
    with database.atomic():
        if config:
            _apply_config(trigger, config)
        if not trigger.build_source and trigger.kind == "custom-git":
            raise Invalid("A custom git trigger needs config.build_source, the git URL to build from")
        key = ed25519.Ed25519PrivateKey.generate()
        private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                    serialization.NoEncryption()).decode()
        public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                               serialization.PublicFormat.OpenSSH).decode()
        trigger.private_key_encrypted = crypto.encrypt(private)
        trigger.public_key = f"{public} slipway-trigger-{trigger.uuid[:8]}"
        trigger.credential_encrypted = crypto.encrypt(crypto.new_token(32))
        if webhook_secret is not None:
            trigger.webhook_secret_encrypted = crypto.encrypt(webhook_secret) if webhook_secret else None
        trigger.activated = True
        trigger.save()
        audit.record("activate_repo_trigger", requester, trigger.repository.namespace, trigger.repository, ip,
                     {"trigger_id": trigger.uuid, "signed": bool(trigger.webhook_secret_encrypted)})
    return trigger


def delete(trigger: Trigger, requester: Identity, ip: str | None = None) -> None:
    with database.atomic():
        audit.record("delete_repo_trigger", requester, trigger.repository.namespace, trigger.repository, ip,
                     {"trigger_id": trigger.uuid, "service": trigger.kind})
        trigger.delete_instance()


def webhook_url(trigger: Trigger, base: str) -> str | None:
    if not trigger.credential_encrypted:
        return None
    scheme, _, host = base.partition("://")
    return f"{scheme}://$token:{crypto.decrypt(trigger.credential_encrypted)}@{host}/webhooks/push/trigger/{trigger.uuid}"


def private_key(trigger: Trigger) -> str | None:
    return crypto.decrypt(trigger.private_key_encrypted) if trigger.private_key_encrypted else None


# -- webhooks --------------------------------------------------------------------------------------------

def authenticate_webhook(trigger: Trigger, headers, body: bytes, credentials: tuple | None) -> None:
    """The URL credential and, when the trigger has a webhook secret, the payload signature."""
    if not trigger.activated:
        raise Invalid("This trigger is not activated yet")
    if credentials is not None:
        user, code = credentials
        expected = crypto.decrypt(trigger.credential_encrypted)
        if user == "" and crypto.same(code, expected):
            # The code is right but the user name is gone: a shell emptied an unquoted $token.
            raise Forbidden("Invalid webhook credentials: the user name must be $token (in a shell, put the "
                            "webhook URL in single quotes, or $token is replaced by an empty variable)")
        if user != "$token" or not crypto.same(code, expected):
            raise Forbidden("Invalid webhook credentials")
    if trigger.webhook_secret_encrypted:
        problem = signatures.verify(crypto.decrypt(trigger.webhook_secret_encrypted), headers, body)
        if problem:
            raise Unauthenticated(f"Invalid webhook signature: {problem}")
    elif credentials is None:
        raise Unauthenticated("This webhook needs credentials: use the URL shown when the trigger was activated "
                              "(https://$token:<code>@host/webhooks/push/trigger/<id>)")


def delivery_keys(event: payloads.Event, body: bytes, signed: bool) -> list[str]:
    """What identifies a delivery for de-duplication: the forge's retry key (the same on a retry), and the
    hash of the body, which is what a signature covers (the same when a captured delivery is replayed with
    its delivery-id header changed or removed). An unsigned custom-git payload re-sent on purpose builds
    again: its credential is in the URL, and re-sending is how a hook asks for a rebuild."""
    keys = []
    if event.retry_key:
        key = event.retry_key.strip()
        if len(key) > 180:
            key = "sha256-" + hashlib.sha256(key.encode()).hexdigest()
        keys.append(f"retry:{event.source}:{key}")
    if signed or event.source != "custom-git":
        keys.append("body:" + hashlib.sha256(body).hexdigest())
    return keys


def build_metadata(trigger: Trigger, push: payloads.Push) -> dict:
    """The push's metadata, and under ``pending`` what only the clone can settle: the default branch when
    neither the payload nor the trigger knows it, a tag's commit message and date, the changed files when
    path filters are set and the payload does not list them (see ``settle.settle``)."""
    if not push.default_branch and trigger.default_branch:
        push.default_branch = trigger.default_branch
    metadata = push.metadata()
    pending = {}
    if not push.default_branch:
        pending["default_branch"] = True
    info = metadata["commit_info"]
    if not info.get("message") or not info.get("date"):
        pending["commit_info"] = True
    if push.changed_files is None and (json.loads(trigger.included_paths) or json.loads(trigger.ignored_paths)):
        pending["paths"] = True
        if push.before:
            pending["before"] = push.before
    if pending:
        metadata["pending"] = pending
    return metadata


def receive(trigger: Trigger, headers, body: bytes, credentials: tuple | None, max_queued: int, base: str,
            ip: str | None = None, replay_window_seconds: int = 7 * 24 * 3600) -> dict:
    """Handle one webhook delivery: build each pushed ref that passes the rules, or say why not.

    Every outcome is audited."""
    repo = trigger.repository
    limits.check_body(body)  # before the signature is computed or the JSON parsed
    authenticate_webhook(trigger, headers, body, credentials)
    if not trigger.enabled:
        raise Invalid(f"This trigger is disabled: {trigger.disabled_reason or 'no reason given'}")
    performer = Identity(kind="trigger", name=f"{builds.TRIGGER_PERFORMER_PREFIX}{trigger.uuid}", via="webhook")

    def outcome(result: dict, pushes: list | None = None) -> dict:
        metadata = {"trigger_id": trigger.uuid, **result}
        if pushes and len(pushes) == 1:
            metadata.update(commit=pushes[0].commit, ref=pushes[0].ref)
        elif pushes:
            metadata["refs"] = [p.ref for p in pushes]
        audit.record("trigger_webhook", performer, repo.namespace, repo, ip, limits.bounded(metadata))
        return result

    try:
        event = payloads.parse(headers, body)
    except payloads.Skip as skip:
        return outcome({"status": "skipped", "reason": str(skip)})
    skipped = [{"ref": ref, "reason": reason} for ref, reason in event.skipped]
    to_build = []
    included, ignored = json.loads(trigger.included_paths), json.loads(trigger.ignored_paths)
    for push in event.pushes:
        reason = rules.skip_reason(push, trigger.branchtag_regex, included, ignored)
        if reason:
            skipped.append({"ref": push.ref, "reason": reason})
        else:
            to_build.append(push)
    several = len(event.pushes) + len(event.skipped) > 1
    if not to_build:
        reason = ("; ".join(f"{s['ref']}: {s['reason']}" for s in skipped) if several
                  else skipped[0]["reason"] if skipped else "the push names no branch or tag to build")
        return outcome({"status": "skipped", "reason": reason, **({"skipped": skipped} if several else {})},
                       event.pushes)
    keys = delivery_keys(event, body, bool(trigger.webhook_secret_encrypted))
    try:
        with database.atomic():
            # Remembered for a window: older rows go, so the table stays small and a key may come back.
            Delivery.delete().where((Delivery.trigger == trigger.id)
                                    & (Delivery.received_at < now_ms() - replay_window_seconds * 1000)).execute()
            for key in keys:
                Delivery.create(trigger=trigger, delivery_id=key)
            built = [(push, start_build(trigger, build_metadata(trigger, push), performer, max_queued, base, ip))
                     for push in to_build]
            uuids = [build.uuid for _, build in built]
            if keys:
                Delivery.update(build_uuid=uuids[0], build_uuids=json.dumps(uuids)).where(
                    (Delivery.trigger == trigger.id) & Delivery.delivery_id.in_(keys)).execute()
            return outcome(_queued(built, skipped), to_build)  # its audit entry in the builds' transaction
    except IntegrityError:
        seen = {d.delivery_id: d for d in Delivery.select().where((Delivery.trigger == trigger.id)
                                                                   & Delivery.delivery_id.in_(keys))}
        previous = next((seen[k] for k in keys if k in seen), None)  # the retry key first, then the body
        what = previous.delivery_id if previous else keys[0]
        why = (f"delivery {what.split(':', 2)[2]} was already handled" if what.startswith("retry:")
               else "the same signed payload was already handled (a retry or a replay)")
        return outcome({"status": "skipped", "reason": why, "build": previous.build_uuid if previous else None,
                        "builds": json.loads(previous.build_uuids) if previous else []}, to_build)


def _queued(built: list, skipped: list) -> dict:
    """The answer to a webhook that queued ``built`` ((push, build) pairs)."""
    result = {"status": "queued", "build": built[0][1].uuid, "tags": json.loads(built[0][1].docker_tags),
              "builds": [{"build": build.uuid, "ref": push.ref, "tags": json.loads(build.docker_tags)}
                         for push, build in built]}
    if skipped:
        result["skipped"] = skipped
    if any("pending" in json.loads(build.trigger_metadata) for _, build in built):
        result["note"] = ("the tags may change when the build clones the source: it settles what the payload "
                          "does not say (default branch, commit message, changed files for path filters)")
    return result


def start_build(trigger: Trigger, metadata: dict, requester: Identity, max_queued: int, base: str,
                ip: str | None = None) -> Build:
    repo = trigger.repository
    metadata = limits.bounded(metadata)  # stored with the build and copied into its events
    tags = templates.tags_for(json.loads(trigger.tag_templates), metadata, trigger.default_tag_from_ref,
                              trigger.latest_for_default_branch)
    url = trigger.build_source or metadata.get("git_url")
    if trigger.pull_robot_id and not trigger.build_source:
        raise Invalid("A trigger with a pull robot builds only its configured build_source: set config.build_source")
    if not url:
        raise Invalid("Neither the trigger (build_source) nor the payload names a git URL to build from")
    request = builds.BuildRequest(
        docker_tags=tags, dockerfile_path=trigger.dockerfile_path or "Dockerfile", context=trigger.context or "",
        build_args=json.loads(trigger.build_args or "{}"),
        pull_robot=trigger.pull_robot.name if trigger.pull_robot_id else None,
        git={"url": url, "commit": metadata["commit"], "ref": metadata.get("ref")},
        trigger_id=trigger.id, trigger_uuid=trigger.uuid, trigger_kind=trigger.kind, trigger_metadata=metadata)
    return builds.request_build(repo, requester, request, max_queued, base, ip, trusted_pull_robot=True)


def manual_metadata(trigger: Trigger, params: dict, remote_refs: dict, default_branch: str | None) -> dict:
    """Metadata for "run trigger now": a branch, a tag (refs) or a commit SHA.

    ``remote_refs`` maps the source's refs to commits (``git ls-remote``).
    """
    ref = None
    if params.get("commit_sha"):
        sha = str(params["commit_sha"])
    else:
        if params.get("branch_name"):
            ref = f"refs/heads/{params['branch_name']}"
        elif isinstance(params.get("refs"), dict) and params["refs"].get("kind") in ("branch", "tag"):
            kind = "heads" if params["refs"]["kind"] == "branch" else "tags"
            ref = f"refs/{kind}/{params['refs'].get('name', '')}"
        else:
            raise Invalid('Give branch_name, refs ({"kind": "branch" or "tag", "name": ...}) or commit_sha')
        sha = remote_refs.get(f"{ref}^{{}}") or remote_refs.get(ref)
        if sha is None:
            raise NotFound(f"{ref} does not exist in {redact.url(trigger.build_source)}")
    if not SHA_RE.match(sha):
        raise Invalid(f"'{sha}' is not a commit id")
    # The metadata is shown with the build and sent with its events: the source without credentials
    # (the build clones trigger.build_source itself).
    metadata = payloads.Push(commit=sha, ref=ref or "refs/unknown", default_branch=default_branch
                             or trigger.default_branch,
                             git_url=redact.url(trigger.build_source)).metadata()
    if ref is None:
        metadata.pop("ref")
        metadata.pop("parsed_ref")
    return metadata


# -- failures --------------------------------------------------------------------------------------------

def record_outcome(build: Build, phase: str, config) -> None:
    """Count successive failed builds of a trigger; disable it past the limits (Quay: 100 user, 5 internal)."""
    if build.trigger_id is None:
        return
    trigger = Trigger.get_or_none(Trigger.id == build.trigger_id)
    if trigger is None:
        return
    if phase == COMPLETE:
        trigger.successive_user_errors = trigger.successive_internal_errors = 0
    elif phase == ERROR:
        trigger.successive_user_errors += 1
    elif phase == INTERNAL_ERROR:
        trigger.successive_internal_errors += 1
    else:
        return
    caps = config.triggers
    if trigger.enabled and trigger.successive_user_errors >= caps.max_user_errors:
        trigger.enabled = False
        trigger.disabled_reason = (f"Disabled after {trigger.successive_user_errors} successive failed builds "
                                   "(errors in the build): fix the cause, then enable it again")
    elif trigger.enabled and trigger.successive_internal_errors >= caps.max_internal_errors:
        trigger.enabled = False
        trigger.disabled_reason = (f"Disabled after {trigger.successive_internal_errors} successive internal "
                                   "errors: enable it again once the builds work")
    trigger.save()
    if not trigger.enabled:
        audit.record("disable_repo_trigger", Identity(kind="trigger", name=f"trigger/{trigger.uuid}"),
                     trigger.repository.namespace, trigger.repository, None,
                     {"trigger_id": trigger.uuid, "reason": trigger.disabled_reason})


_settings = None  # the server's configuration, for the source rule when triggers are saved


def install(config) -> None:
    """Keep the server's configuration for the source rule (called once per process, see ``include``)."""
    global _settings
    _settings = config
