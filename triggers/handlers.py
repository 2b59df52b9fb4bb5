"""/api/v1 for build triggers (Quay's paths and shapes) and the incoming webhook endpoint."""
from __future__ import annotations

import json

from builder import builds as builder_builds
from builder.worker import wake
from registry.handlers_api import REPO_PATH, RepositoryBase
from registry.permissions import can
from slipway import redact
from slipway.api import ApiHandler, body_too_large

from . import service, settle

TRIGGER_PATH = rf"{REPO_PATH}/trigger/(?P<trigger_uuid>[0-9a-f-]{{36}})"
CONFIG_SCHEMA = {"type": "object", "properties": {
    "build_source": {"type": "string"}, "dockerfile_path": {"type": "string"}, "context": {"type": "string"},
    "branchtag_regex": {"type": ["string", "null"]}, "tag_templates": {"type": "array", "items": {"type": "string"}},
    "default_tag_from_ref": {"type": "boolean"}, "latest_for_default_branch": {"type": "boolean"},
    "build_args": {"type": "object", "additionalProperties": {"type": "string"}},
    "included_paths": {"type": "array", "items": {"type": "string"}},
    "ignored_paths": {"type": "array", "items": {"type": "string"}},
    "default_branch": {"type": ["string", "null"]}}}


def trigger_view(trigger, base: str, with_secrets: bool) -> dict:
    source = redact.url(trigger.build_source)  # shown without its credentials (they stay encrypted)
    config = {"build_source": source, "dockerfile_path": trigger.dockerfile_path,
              "context": trigger.context, "branchtag_regex": trigger.branchtag_regex,
              "tag_templates": json.loads(trigger.tag_templates), "default_tag_from_ref": trigger.default_tag_from_ref,
              "latest_for_default_branch": trigger.latest_for_default_branch,
              "build_args": json.loads(trigger.build_args), "included_paths": json.loads(trigger.included_paths),
              "ignored_paths": json.loads(trigger.ignored_paths), "default_branch": trigger.default_branch}
    view = {"id": trigger.uuid, "service": trigger.kind, "is_active": trigger.activated, "enabled": trigger.enabled,
            "disabled_reason": trigger.disabled_reason, "build_source": source,
            "repository_url": source, "config": config, "can_invoke": True,
            "pull_robot": {"name": trigger.pull_robot.name, "kind": "user", "is_robot": True}
            if trigger.pull_robot_id else None,
            "successive_failures": {"user": trigger.successive_user_errors,
                                    "internal": trigger.successive_internal_errors},
            "signed_webhooks": bool(trigger.webhook_secret_encrypted)}
    if with_secrets and trigger.activated:
        url = service.webhook_url(trigger, base)
        view.update(public_key=trigger.public_key, webhook_url=url)
        config["credentials"] = [{"name": "SSH Public Key", "value": trigger.public_key},
                                 {"name": "Webhook Endpoint", "value": url}]
    return view


class TriggerBase(RepositoryBase):
    """Triggers are managed by repository administrators, as in Quay."""

    def trigger(self):
        return service.get_trigger(self.repository("admin"), self.path_kwargs["trigger_uuid"])

    def render(self, trigger, status: int = 200) -> None:
        self.send(trigger_view(trigger, self.base_url(), True), status)


class TriggerListHandler(TriggerBase):
    schemas = {"post": {"type": "object", "required": ["service"], "properties": {
        "service": {"type": "string"}, "config": CONFIG_SCHEMA, "pull_robot": {"type": ["string", "null"]}}}}

    async def get(self, namespace: str, repository: str) -> None:
        """The repository's build triggers."""
        repo = self.repository("admin")
        self.send({"triggers": [trigger_view(t, self.base_url(), True) for t in service.list_triggers(repo)]})

    async def post(self, namespace: str, repository: str) -> None:
        """Create a trigger (service custom-git, github, gitlab, bitbucket or gitea); activate it next."""
        repo = self.repository("admin")
        body = self.json_body()
        trigger = service.create(repo, body["service"], body.get("config") or {}, body.get("pull_robot"),
                                 self.identity, self.client_ip)
        self.render(trigger, 201)


class TriggerHandler(TriggerBase):
    schemas = {"put": {"type": "object", "properties": {
        "config": CONFIG_SCHEMA, "enabled": {"type": "boolean"}, "pull_robot": {"type": ["string", "null"]}}}}

    async def get(self, namespace: str, repository: str, trigger_uuid: str) -> None:
        """A trigger: its configuration, credentials, and whether (and why not) it is enabled."""
        self.render(self.trigger())

    async def put(self, namespace: str, repository: str, trigger_uuid: str) -> None:
        """Change a trigger's configuration, or enable/disable it ({"enabled": true} re-enables)."""
        trigger = self.trigger()
        body = self.json_body()
        robot = (body.get("pull_robot") or "") if "pull_robot" in body else None  # "": remove it
        self.render(service.update(trigger, body.get("config"), body.get("enabled"), robot, self.identity,
                                   self.client_ip))

    async def delete(self, namespace: str, repository: str, trigger_uuid: str) -> None:
        """Delete a trigger."""
        service.delete(self.trigger(), self.identity, self.client_ip)
        self.send(None, 204)


class TriggerActivateHandler(TriggerBase):
    schemas = {"post": {"type": "object", "properties": {
        "config": CONFIG_SCHEMA, "webhook_secret": {"type": ["string", "null"]}}}}

    async def post(self, namespace: str, repository: str, trigger_uuid: str) -> None:
        """Activate: make the deploy key (to install read-only at the git host) and the webhook URL."""
        trigger = self.trigger()
        body = self.json_body()
        self.render(service.activate(trigger, body.get("config"), body.get("webhook_secret"), self.identity,
                                     self.client_ip))


class TriggerStartHandler(TriggerBase):
    schemas = {"post": {"type": "object", "properties": {
        "branch_name": {"type": "string"}, "commit_sha": {"type": "string"},
        "refs": {"type": "object", "properties": {"kind": {"enum": ["branch", "tag"]}, "name": {"type": "string"}}}}}}

    async def post(self, namespace: str, repository: str, trigger_uuid: str) -> None:
        """Run the trigger now, for a branch, a tag or a commit."""
        trigger = self.trigger()
        body = self.json_body()
        refs, default_branch = {}, None
        if not body.get("commit_sha"):
            refs, default_branch = await self.in_thread(settle.remote_refs, trigger.build_source, trigger, self.config)
        metadata = service.manual_metadata(trigger, body, refs, default_branch)
        build = service.start_build(trigger, metadata, self.identity, self.config.builds.max_queued_per_namespace,
                                    self.base_url(), self.client_ip)
        wake()
        self.send(builder_builds.view(build, True), 201)


class TriggerBuildsHandler(TriggerBase):
    async def get(self, namespace: str, repository: str, trigger_uuid: str) -> None:
        """The builds this trigger started, newest first."""
        trigger = self.trigger()
        limit = self.int_argument("limit", 25, minimum=1, maximum=100, clamp=True)
        writer = can(self.identity, "write", trigger.repository)
        self.send({"builds": [builder_builds.view(build, writer) for build in
                              builder_builds.started_by_trigger(trigger.id, trigger.repository, limit)]})


class WebhookHandler(ApiHandler):
    """POST /webhooks/push/trigger/<id>: git hosts and custom git hooks announce pushes here."""

    max_body = 8 * 1024 * 1024  # push payloads are small; the cap bounds what anyone can make us buffer

    async def prepare(self) -> None:
        # No API login: the webhook credential and signature are checked by the trigger. An unknown
        # trigger or an oversized body is refused before the body is read.
        self.trigger = service.webhook_trigger(self.path_kwargs["trigger_uuid"])
        self.refuse_large_body(lambda limit: body_too_large(limit, "The payload"))

    async def post(self, trigger_uuid: str) -> None:
        """Receive a push (custom git JSON, GitHub, GitLab, Bitbucket or Gitea payloads)."""
        trigger = self.trigger
        result = service.receive(trigger, self.request.headers, self.request.body, self.basic_auth(),
                                 self.config.builds.max_queued_per_namespace, self.base_url(),
                                 self.client_ip, self.config.triggers.replay_window_seconds)
        if result["status"] == "queued":
            wake()
        self.send(result)


default_handlers = [
    (rf"{REPO_PATH}/trigger/?", TriggerListHandler),
    (rf"{TRIGGER_PATH}/?", TriggerHandler),
    (rf"{TRIGGER_PATH}/activate", TriggerActivateHandler),
    (rf"{TRIGGER_PATH}/start", TriggerStartHandler),
    (rf"{TRIGGER_PATH}/builds", TriggerBuildsHandler),
    (r"/webhooks/push/trigger/(?P<trigger_uuid>[^/]+)", WebhookHandler),
]
