"""Triggers: saving and activating them, receiving their webhooks, running them by hand, counting failures."""
from __future__ import annotations

import json
import re
import uuid

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from peewee import IntegrityError

from accounts import audit
from accounts.identity import Identity
from accounts.permissions import is_namespace_admin
from builder import builds
from builder.models import COMPLETE, ERROR, INTERNAL_ERROR, Build
from registry.models import Repository
from slipway import crypto
from slipway.db import database
from slipway.errors import Forbidden, Invalid, NotFound, Unauthenticated

from . import payloads, rules, signatures, templates
from .models import KINDS, Delivery, Trigger

CONFIG_FIELDS = ("build_source", "dockerfile_path", "context", "branchtag_regex", "tag_templates",
                 "default_tag_from_ref", "latest_for_default_branch", "build_args", "included_paths", "ignored_paths")
JSON_FIELDS = ("tag_templates", "build_args", "included_paths", "ignored_paths")
SHA_RE = re.compile(r"^[0-9a-fA-F]{7,40}\Z")


def get_trigger(repo: Repository, trigger_uuid: str) -> Trigger:
    trigger = Trigger.get_or_none((Trigger.uuid == trigger_uuid) & (Trigger.repository == repo.id))
    if trigger is None:
        raise NotFound(f"Trigger {trigger_uuid} does not exist in {repo.full_name}")
    trigger.repository = repo
    return trigger


def _apply_config(trigger: Trigger, config: dict) -> None:
    unknown = set(config) - set(CONFIG_FIELDS)
    if unknown:
        raise Invalid(f"Unknown trigger setting(s): {', '.join(sorted(unknown))}")
    if "tag_templates" in config:
        templates.check_templates(config["tag_templates"])
    if "branchtag_regex" in config:
        rules.check_regex(config["branchtag_regex"])
    for name in ("included_paths", "ignored_paths"):
        if name in config and (not isinstance(config[name], list) or not all(isinstance(p, str) for p in config[name])):
            raise Invalid(f"{name} must be a list of glob patterns")
    if "build_args" in config and (not isinstance(config["build_args"], dict)
                                   or not all(isinstance(v, str) for v in config["build_args"].values())):
        raise Invalid("build_args must map names to string values")
    for name in ("dockerfile_path", "context"):
        if ".." in str(config.get(name, "")).split("/"):
            raise Invalid(f"Invalid {name}: it may not contain '..'")
    for key, value in config.items():
        setattr(trigger, key, json.dumps(value) if key in JSON_FIELDS else value)


def _loggable(config: dict) -> dict:
    """Configuration for the audit log: build argument values may be secrets, so only their names."""
    return {**config, "build_args": sorted(config["build_args"])} if "build_args" in config else config


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


def receive(trigger: Trigger, headers, body: bytes, credentials: tuple | None, max_queued: int, base: str,
            ip: str | None = None) -> dict:
    """Handle one webhook delivery: build, or say why not. Every outcome is audited."""
    repo = trigger.repository
    authenticate_webhook(trigger, headers, body, credentials)
    if not trigger.enabled:
        raise Invalid(f"This trigger is disabled: {trigger.disabled_reason or 'no reason given'}")
    performer = Identity(kind="trigger", name=f"{builds.TRIGGER_PERFORMER_PREFIX}{trigger.uuid}", via="webhook")

    def outcome(result: dict, push: payloads.Push | None = None) -> dict:
        metadata = {"trigger_id": trigger.uuid, **result}
        if push is not None:
            metadata.update(commit=push.commit, ref=push.ref)
        audit.record("trigger_webhook", performer, repo.namespace, repo, ip, metadata)
        return result

    try:
        push = payloads.parse(headers, body)
    except payloads.Skip as skip:
        return outcome({"status": "skipped", "reason": str(skip)})
    reason = rules.skip_reason(push, trigger.branchtag_regex, json.loads(trigger.included_paths),
                               json.loads(trigger.ignored_paths))
    if reason:
        return outcome({"status": "skipped", "reason": reason}, push)
    try:
        with database.atomic():
            if push.delivery_id:
                Delivery.create(trigger=trigger, delivery_id=push.delivery_id)
            build = start_build(trigger, push.metadata(), performer, max_queued, base, ip)
            if push.delivery_id:
                Delivery.update(build_uuid=build.uuid).where((Delivery.trigger == trigger.id)
                                                             & (Delivery.delivery_id == push.delivery_id)).execute()
    except IntegrityError:
        previous = Delivery.get((Delivery.trigger == trigger.id) & (Delivery.delivery_id == push.delivery_id))
        return outcome({"status": "skipped", "reason": f"delivery {push.delivery_id} was already handled",
                        "build": previous.build_uuid}, push)
    return outcome({"status": "queued", "build": build.uuid, "tags": json.loads(build.docker_tags)}, push)


def start_build(trigger: Trigger, metadata: dict, requester: Identity, max_queued: int, base: str,
                ip: str | None = None) -> Build:
    repo = trigger.repository
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
            raise NotFound(f"{ref} does not exist in {trigger.build_source}")
    if not SHA_RE.match(sha):
        raise Invalid(f"'{sha}' is not a commit id")
    metadata = payloads.Push(commit=sha, ref=ref or "refs/unknown", default_branch=default_branch,
                             git_url=trigger.build_source).metadata()
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
    limits = config.triggers
    if trigger.enabled and trigger.successive_user_errors >= limits.max_user_errors:
        trigger.enabled = False
        trigger.disabled_reason = (f"Disabled after {trigger.successive_user_errors} successive failed builds "
                                   "(errors in the build): fix the cause, then enable it again")
    elif trigger.enabled and trigger.successive_internal_errors >= limits.max_internal_errors:
        trigger.enabled = False
        trigger.disabled_reason = (f"Disabled after {trigger.successive_internal_errors} successive internal "
                                   "errors: enable it again once the builds work")
    trigger.save()
    if not trigger.enabled:
        audit.record("disable_repo_trigger", Identity(kind="trigger", name=f"trigger/{trigger.uuid}"),
                     trigger.repository.namespace, trigger.repository, None,
                     {"trigger_id": trigger.uuid, "reason": trigger.disabled_reason})


def install(config) -> None:
    """Count the outcome of every trigger build (called once per process by slipway.app)."""
    builds.on_build_end(lambda build, phase: record_outcome(build, phase, config))
