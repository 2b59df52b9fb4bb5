"""Repository notifications: what each event looks like (Quay's payloads), creating and resetting them."""
from __future__ import annotations

import json
import uuid

from accounts import audit, users
from accounts.identity import Identity
from accounts.models import ORG, USER, Account, Team
from registry.models import Repository
from registry.permissions import can
from slipway import crypto, outgoing, patterns, redact, urls
from slipway.db import database
from slipway.errors import Invalid, NotFound

from .models import EVENTS, METHODS, Attempt, Delivery, Notification

SEVERITIES = ["Unknown", "Negligible", "Low", "Medium", "High", "Critical"]


def base_urls(config) -> tuple[str, str]:
    """Slipway's address (without a request: ``server.public_url``) and its host, for payload links."""
    base = urls.base_url(config)
    return base, urls.host(base)


def repository_fields(full_name: str, config) -> dict:
    base, host = base_urls(config)
    namespace, name = full_name.split("/", 1)
    return {"repository": full_name, "namespace": namespace, "name": name, "docker_url": f"{host}/{full_name}",
            "homepage": f"{base}/repository/{full_name}"}


def payload_for(kind: str, full_name: str, data: dict, config) -> dict:
    """Quay's payload: the repository fields, then what the event carries (build ids, tags, ...)."""
    return {**repository_fields(full_name, config), **data}


def sample(kind: str, full_name: str, config) -> dict:
    """A plausible payload of ``kind`` for "test notification"."""
    examples = {
        "repo_push": {"updated_tags": ["latest"]},
        "repo_image_expiry": {"tags": ["latest", "v1"], "expiring_in": "1 days"},
        "vulnerability_found": {"tags": ["latest"], "image": f"{full_name}:latest",
                                "vulnerability": {"id": "CVE-0000-0000", "description": "A test vulnerability",
                                                  "link": "", "priority": "High", "has_fix": True}},
    }
    build = {"build_id": "00000000-0000-0000-0000-000000000000", "build_name": "0000000",
             "docker_tags": ["latest"], "trigger_kind": None, "trigger_id": None, "trigger_metadata": {}}
    return payload_for(kind, full_name, examples.get(kind, build), config)


def check_can_send(method: str, notes) -> None:
    """Refuse a method the server cannot send with (e-mail without an SMTP server), naming the setting."""
    if method == "email" and not notes.smtp_host:
        raise Invalid("E-mail notifications cannot be sent: no SMTP server is configured on this server (its "
                      "operator sets notifications.smtp_host)")


def _check_config(method: str, config: dict, repo: Repository, network) -> dict:
    if method in ("webhook", "slack"):
        url = config.get("url")
        if not isinstance(url, str) or not url:
            raise Invalid(f"A {method} notification needs config.url")
        outgoing.check_url(url, network)
        template = config.get("template")
        if template is not None:
            if not isinstance(template, str):
                raise Invalid("config.template must be a string (a JSON body with ${...} variables)")
            try:
                json.loads(template)
            except ValueError as e:
                raise Invalid(f"config.template is not valid JSON: {e}") from None
    elif method == "email":
        email = config.get("email")
        if not isinstance(email, str) or "@" not in email:
            raise Invalid("An email notification needs config.email, an e-mail address")
    elif method == "quay_notification":
        target = config.get("target") or {}
        kind, name = target.get("kind"), target.get("name")
        if kind == "user":
            user = Account.get_or_none((Account.name == name) & (Account.kind == USER))
            if user is None:
                raise NotFound(f"User '{name}' does not exist")
            if not can(users.identity_for(user, "password"), "read", repo):
                raise Invalid(f"User '{name}' cannot read {repo.full_name}: notify people of the repository only")
        elif kind == "team":
            if repo.namespace.kind != ORG or not Team.select().where(
                    (Team.org == repo.namespace_id) & (Team.name == name)).exists():
                raise NotFound(f"Team '{name}' does not exist in {repo.namespace.name}")
        elif kind == "org":
            if repo.namespace.kind != ORG or name != repo.namespace.name:
                raise Invalid(f"Only the repository's own organization ({repo.namespace.name}) can be notified")
        else:
            raise Invalid('A quay_notification needs config.target {"kind": "user"|"team"|"org", "name": ...}')
        config = {"target": {"kind": kind, "name": name}}
    return config


def _check_event_config(event: str, event_config: dict) -> dict:
    if "ref-regex" in event_config:
        patterns.check(event_config["ref-regex"], "ref-regex")
    if event == "vulnerability_found" and "level" in event_config:
        if event_config["level"] not in SEVERITIES and not str(event_config["level"]).isdigit():
            raise Invalid(f"level must be one of {', '.join(SEVERITIES)}")
    if event == "repo_image_expiry":
        days = event_config.get("days", 7)
        if not isinstance(days, int) or days < 0:
            raise Invalid("days must be a whole number of days")
        event_config = {**event_config, "days": days}
    return event_config


def create(repo: Repository, body: dict, performer: Identity, network, ip: str | None = None,
           notes=None) -> tuple[Notification, str]:
    event, method = body.get("event"), body.get("method")
    if event not in EVENTS:
        raise Invalid(f"Unknown event '{event}': use one of {', '.join(EVENTS)}")
    if method not in METHODS:
        raise Invalid(f"Unknown method '{method}': use one of {', '.join(METHODS)}")
    if notes is not None:
        check_can_send(method, notes)
    config = _check_config(method, dict(body.get("config") or {}), repo, network)
    event_config = _check_event_config(event, dict(body.get("eventConfig") or body.get("event_config") or {}))
    secret = crypto.new_token(40)
    with database.atomic():
        notification = Notification.create(uuid=str(uuid.uuid4()), repository=repo, event=event, method=method,
                                           title=body.get("title"), config=json.dumps(config),
                                           event_config=json.dumps(event_config),
                                           secret_encrypted=crypto.encrypt(secret))
        audit.record("add_repo_notification", performer, repo.namespace, repo, ip,
                     {"notification_id": notification.uuid, "event": event, "method": method})
    return notification, secret


def get(repo: Repository, notification_uuid: str) -> Notification:
    notification = Notification.get_or_none((Notification.uuid == notification_uuid)
                                            & (Notification.repository == repo.id))
    if notification is None:
        raise NotFound(f"Notification {notification_uuid} does not exist in {repo.full_name}")
    notification.repository = repo
    return notification


def secret(notification: Notification) -> str:
    return crypto.decrypt(notification.secret_encrypted)


def view(notification: Notification, with_secret: bool = False, max_failures: int | None = None) -> dict:
    config = json.loads(notification.config)
    if config.get("url"):  # a webhook or Slack URL is a credential: shown without its secrets
        config["url"] = redact.url(config["url"])
    if notification.method == "quay_notification":
        target = config["target"]
        config = {"target": {**target, "is_robot": False}}
    result = {"uuid": notification.uuid, "title": notification.title, "event": notification.event,
              "method": notification.method, "config": config, "event_config": json.loads(notification.event_config),
              "number_of_failures": notification.number_of_failures}
    if with_secret and notification.method == "webhook":
        result["signing_secret"] = secret(notification)
    if max_failures is not None:
        result.update(suspension(notification, max_failures))
    return result


def suspension(notification: Notification, max_failures: int) -> dict:
    """``suspended`` and, when it is, why: the failures that stopped it and the last error."""
    if notification.number_of_failures < max_failures:
        return {"suspended": False, "suspended_reason": None}
    last = (Attempt.select(Attempt.error, Attempt.status_code).join(Delivery)
            .where((Delivery.notification == notification.id) & Attempt.error.is_null(False))
            .order_by(Attempt.id.desc()).first())
    error = f" (last error: {last.error})" if last is not None else ""
    return {"suspended": True, "suspended_reason": (
        f"Stopped after {notification.number_of_failures} successive failed attempts{error}; nothing is sent "
        f"until it is reset with POST .../notification/{notification.uuid}")}


def reset(notification: Notification, performer: Identity, ip: str | None = None) -> None:
    """Back to zero failures: a notification stopped after repeated failures sends again."""
    with database.atomic():
        Notification.update(number_of_failures=0).where(Notification.id == notification.id).execute()
        audit.record("reset_repo_notification", performer, notification.repository.namespace,
                     notification.repository, ip, {"notification_id": notification.uuid})


def delete(notification: Notification, performer: Identity, ip: str | None = None) -> None:
    with database.atomic():
        audit.record("delete_repo_notification", performer, notification.repository.namespace,
                     notification.repository, ip, {"notification_id": notification.uuid})
        notification.delete_instance()


def queue_test(notification: Notification, config) -> Delivery:
    check_can_send(notification.method, config.notifications)
    payload = sample(notification.event, notification.repository.full_name, config)
    return Delivery.create(notification=notification, kind="test", payload=json.dumps(payload))


def list_for(repo: Repository) -> list[Notification]:
    """The repository's notifications, oldest first."""
    rows = list(Notification.select().where(Notification.repository == repo.id).order_by(Notification.id))
    for row in rows:
        row.repository = repo
    return rows


def recent_deliveries(notification: Notification, limit: int = 50) -> list[tuple[Delivery, list[Attempt]]]:
    """The notification's latest deliveries, newest first, each with its attempts in order."""
    rows = list(Delivery.select().where(Delivery.notification == notification.id)
                .order_by(Delivery.id.desc()).limit(limit))
    attempts: dict = {}
    for attempt in Attempt.select().where(Attempt.delivery.in_([d.id for d in rows] or [0])).order_by(Attempt.id):
        attempts.setdefault(attempt.delivery_id, []).append(attempt)
    return [(d, attempts.get(d.id, [])) for d in rows]
