"""The repository's Triggers tab: create (custom git, GitHub, GitLab, Bitbucket, Gitea), preview the tags a ref
would get, run by hand, enable/disable, delete. Administrators only, as the API.

Every action calls what ``triggers/handlers.py`` calls: ``triggers.service.create`` then ``activate`` (in one
transaction, so a refused activation leaves no half-made trigger), ``update``, ``delete``, ``manual_metadata``
+ ``start_build``; the webhook URL and deploy key are ``triggers.handlers.trigger_view``'s. The tag preview
runs the tag-template rule itself (``triggers.templates.tags_for``) and the branch/tag regex rule
(``triggers.rules.skip_reason``) on the metadata a push of that ref would have (``triggers.payloads.Push``).
"""
from __future__ import annotations

import json
import secrets

from builder.worker import wake
from slipway import crypto
from slipway.db import database
from slipway.errors import DomainError, Invalid
from triggers import rules, service, settle, templates
from triggers.handlers import trigger_view
from triggers.models import KINDS
from triggers.payloads import Push

from .form_errors import field_of
from .repository import RepositoryTab

#: The commit a preview pretends was pushed (its short SHA is what ``${commit_info.short_sha}`` gives).
PREVIEW_COMMIT = "0123456789abcdef0123456789abcdef01234567"
FORGE_NAMES = {"custom-git": "Custom git", "github": "GitHub", "gitlab": "GitLab", "bitbucket": "Bitbucket",
               "gitea": "Gitea"}
#: What to paste where, per forge: (where the webhook goes, [(field, value key or text)], where the deploy key goes).
FORGE_SETTINGS = {
    "github": ("Repository → Settings → Webhooks → Add webhook",
               [("Payload URL", "{url}"), ("Content type", "application/json"), ("Secret", "{secret}"),
                ("SSL verification", "Enable (if this server has a valid certificate)"),
                ("Which events", "Just the push event"), ("Active", "checked")],
               "Repository → Settings → Deploy keys → Add deploy key (leave “Allow write access” off)"),
    "gitlab": ("Project → Settings → Webhooks → Add new webhook",
               [("URL", "{url}"), ("Secret token", "{secret}"), ("Trigger", "Push events, Tag push events"),
                ("Enable SSL verification", "on (if this server has a valid certificate)")],
               "Project → Settings → Repository → Deploy keys → Add new key (leave “Grant write permissions” off)"),
    "bitbucket": ("Repository settings → Webhooks → Add webhook",
                  [("URL", "{url}"), ("Secret", "{secret}"), ("Status", "Active"),
                   ("Triggers", "Repository push")],
                  "Repository settings → Access keys → Add key (read-only)"),
    "gitea": ("Repository → Settings → Webhooks → Add webhook → Gitea",
              [("Target URL", "{url}"), ("HTTP method", "POST"), ("POST content type", "application/json"),
               ("Secret", "{secret}"), ("Trigger on", "Push events"), ("Active", "checked")],
              "Repository → Settings → Deploy keys → Add deploy key (leave “Enable write access” off)"),
}
FIELDS = ("service", "build_source", "dockerfile_path", "context", "branchtag_regex", "tag_templates",
          "default_branch", "pull_robot", "webhook_secret", "preview_ref")

TRIGGER_FIELDS = (("tag_templates", ("tag template", "tag_templates")), ("branchtag_regex", ("regex",)),
                 ("pull_robot", ("robot",)), ("build_source", ("build_source", "git url", "url")),
                 ("default_branch", ("default_branch",)), ("dockerfile_path", ("dockerfile_path",)),
                 ("context", ("context",)))


def config_from(values: dict) -> dict:
    """The API's trigger config from the create form's fields."""
    config = {"dockerfile_path": values["dockerfile_path"] or "Dockerfile", "context": values["context"],
              "tag_templates": [t.strip() for t in values["tag_templates"].splitlines() if t.strip()],
              "default_tag_from_ref": bool(values.get("default_tag_from_ref")),
              "latest_for_default_branch": bool(values.get("latest_for_default_branch"))}
    for name in ("build_source", "branchtag_regex", "default_branch"):
        if values[name]:
            config[name] = values[name]
    return config


def full_ref(ref: str) -> str:
    """``main`` → ``refs/heads/main``; ``v1.0`` stays a branch unless written ``tags/v1.0`` or ``refs/tags/...``."""
    ref = ref.strip()
    if ref.startswith("refs/"):
        return ref
    if ref.startswith(("heads/", "tags/")):
        return f"refs/{ref}"
    return f"refs/heads/{ref}"


def preview(config: dict, ref: str) -> dict:
    """The tags a push of ``ref`` would get with this configuration, and whether the regex lets it build."""
    tag_templates = templates.check_templates(config.get("tag_templates") or [])
    rules.check_regex(config.get("branchtag_regex"))
    push = Push(commit=PREVIEW_COMMIT, ref=full_ref(ref), default_branch=config.get("default_branch") or "main",
                git_url=config.get("build_source"))
    metadata = push.metadata()
    tags = templates.tags_for(tag_templates, metadata, config.get("default_tag_from_ref", True),
                              config.get("latest_for_default_branch", True))
    skip = rules.skip_reason(push, config.get("branchtag_regex"), [], [])
    return {"ref": push.ref, "tags": tags, "skip": skip, "commit": PREVIEW_COMMIT[:7],
            "default_branch": push.default_branch}


def settings_for(trigger, view: dict) -> dict | None:
    """The forge's webhook form, filled in (None for custom git)."""
    if trigger.kind not in FORGE_SETTINGS or not view.get("webhook_url"):
        return None
    secret = crypto.decrypt(trigger.webhook_secret_encrypted) if trigger.webhook_secret_encrypted else ""
    where, fields, key_where = FORGE_SETTINGS[trigger.kind]
    return {"where": where, "key_where": key_where, "secret": secret,
            "fields": [(label, value.format(url=view["webhook_url"], secret=secret or "(none)"))
                       for label, value in fields]}


def create_and_activate(repo, values: dict, identity, ip: str | None):
    kind = values["service"]
    secret = values["webhook_secret"] or (secrets.token_hex(20) if kind in FORGE_SETTINGS else None)
    with database.atomic():
        trigger = service.create(repo, kind, config_from(values), values["pull_robot"] or None, identity, ip)
        return service.activate(trigger, None, secret, identity, ip)


class TriggersTab(RepositoryTab):
    name = "triggers"
    label = "Triggers"
    role = "admin"

    async def get(self, page, repo, errors: dict | None = None, values: dict | None = None) -> None:
        await self.show(page, repo, 400 if errors else 200, values, errors)

    async def show(self, page, repo, status: int = 200, values: dict | None = None, errors: dict | None = None,
                   previewed: dict | None = None) -> None:
        base = page.base_url()

        def load():
            rows = []
            for trigger in service.list_triggers(repo):
                view = trigger_view(trigger, base, True)
                rows.append({"t": trigger, "view": view, "settings": settings_for(trigger, view),
                             "templates": json.loads(trigger.tag_templates)})
            return rows

        defaults = {"service": "custom-git", "dockerfile_path": "Dockerfile", "default_tag_from_ref": "on",
                    "latest_for_default_branch": "on", "preview_ref": "main"}
        page.render_tab("repo_triggers.html", status=status, triggers=await page.in_thread(load),
                        kinds=[(k, FORGE_NAMES[k]) for k in KINDS], values=values or defaults,
                        errors=errors or {}, preview=previewed)

    async def post(self, page, repo) -> None:
        action = page.form("action")
        if action in ("create", "preview"):
            await self.create(page, repo, action)
            return
        trigger = await page.in_thread(service.get_trigger, repo, page.form("trigger"))
        url = page.repo_url(repo, "triggers")
        try:
            if action == "run":
                build = await page.in_thread(self.run, page, trigger)
                wake()
                page.flash(f"Trigger run: build {build.uuid[:7]} queued.", "success")
                page.redirect(f"/repository/{repo.full_name}/build/{build.uuid}")
                return
            if action in ("enable", "disable"):
                await page.in_thread(service.update, trigger, None, action == "enable", None, page.identity,
                                     page.client_ip)
                page.flash(f"Trigger {trigger.uuid[:8]} {action}d.", "success")
            elif action == "delete":
                await page.in_thread(service.delete, trigger, page.identity, page.client_ip)
                page.flash(f"Trigger {trigger.uuid[:8]} deleted.", "success")
            else:
                raise Invalid(f"Unknown action '{action}'")
        except DomainError as e:
            page.flash(e.message, "error")
        page.redirect(url + f"#trigger-{trigger.uuid}")

    def run(self, page, trigger):
        params = {"commit_sha": page.form("commit_sha")} if page.form("commit_sha") else \
            {"branch_name": page.form("branch_name") or trigger.default_branch or "main"}
        refs, default_branch = {}, None
        if "branch_name" in params:
            refs, default_branch = settle.remote_refs(trigger.build_source, trigger, page.config)
        metadata = service.manual_metadata(trigger, params, refs, default_branch)
        return service.start_build(trigger, metadata, page.identity, page.config.builds.max_queued_per_namespace,
                                   page.base_url(), page.client_ip)

    async def create(self, page, repo, action: str) -> None:
        values = {name: page.form(name) for name in FIELDS}
        for box in ("default_tag_from_ref", "latest_for_default_branch"):
            values[box] = page.form(box)
        errors, previewed = {}, None
        if values["service"] not in KINDS:
            errors["service"] = "Choose one of the listed services"
        elif values["service"] == "custom-git" and not values["build_source"] and action == "create":
            errors["build_source"] = "A custom git trigger needs the git URL to clone (and the deploy key to do it)"
        else:
            try:
                if action == "preview":
                    previewed = preview(config_from(values), values["preview_ref"] or "main")
                else:
                    trigger = await page.in_thread(create_and_activate, repo, values, page.identity, page.client_ip)
                    page.flash(f"{FORGE_NAMES[trigger.kind]} trigger created: install its deploy key and webhook "
                               "as shown below.", "success")
                    page.redirect(page.repo_url(repo, "triggers") + f"#trigger-{trigger.uuid}")
                    return
            except DomainError as e:
                errors[field_of(e.message, TRIGGER_FIELDS)] = e.message
        await self.show(page, repo, 400 if errors else 200, values, errors, previewed)
