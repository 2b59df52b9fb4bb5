"""/api/v1 for repository notifications (Quay's paths and shapes), their deliveries, and in-app inboxes."""
from __future__ import annotations

import json

from accounts.audit import quay_date
from registry.handlers_api import REPO_PATH, RepositoryBase
from slipway.api import API, ApiHandler

from . import inbox, notifications

NOTIFICATION_PATH = rf"{REPO_PATH}/notification/(?P<uuid>[0-9a-f-]{{36}})"


class NotificationListHandler(RepositoryBase):
    schemas = {"post": {"type": "object", "required": ["event", "method"], "properties": {
        "event": {"type": "string"}, "method": {"type": "string"}, "config": {"type": "object"},
        "eventConfig": {"type": "object"}, "title": {"type": ["string", "null"]}}}}

    async def get(self, namespace: str, repository: str) -> None:
        """The repository's notifications."""
        repo = self.repository("admin")
        limit = self.config.notifications.max_failures
        self.send({"notifications": [notifications.view(n, max_failures=limit) for n in notifications.list_for(repo)]})

    async def post(self, namespace: str, repository: str) -> None:
        """Create a notification: an event (repo_push, build_*, repo_image_expiry, vulnerability_found) and a
        method (webhook, slack, email, quay_notification). Webhook bodies are signed with the secret answered."""
        repo = self.repository("admin")
        notification, _ = notifications.create(repo, self.json_body(), self.identity, self.config.network,
                                               self.client_ip, notes=self.config.notifications)
        self.send(notifications.view(notification, with_secret=True,
                                     max_failures=self.config.notifications.max_failures), 201)


class NotificationBase(RepositoryBase):
    def notification(self):
        return notifications.get(self.repository("admin"), self.path_kwargs["uuid"])


class NotificationHandler(NotificationBase):
    async def get(self, namespace: str, repository: str, uuid: str) -> None:
        """One notification (with its webhook signing secret)."""
        self.send(notifications.view(self.notification(), with_secret=True,
                                     max_failures=self.config.notifications.max_failures))

    async def post(self, namespace: str, repository: str, uuid: str) -> None:
        """Reset the notification's failures to 0, so it sends again."""
        notifications.reset(self.notification(), self.identity, self.client_ip)
        self.send(None, 204)

    async def delete(self, namespace: str, repository: str, uuid: str) -> None:
        """Delete a notification."""
        notifications.delete(self.notification(), self.identity, self.client_ip)
        self.send(None, 204)


class NotificationTestHandler(NotificationBase):
    async def post(self, namespace: str, repository: str, uuid: str) -> None:
        """Queue a test message with sample event data."""
        notifications.queue_test(self.notification(), self.config)
        self.send({})


class DeliveriesHandler(NotificationBase):
    async def get(self, namespace: str, repository: str, uuid: str) -> None:
        """Recent deliveries of a notification, each attempt with its status, response code and error."""
        notification = self.notification()
        stopped = notification.number_of_failures >= self.config.notifications.max_failures
        self.send({"deliveries": [{
            "id": d.id, "kind": d.kind, "status": "suspended" if stopped and d.status == "pending" else d.status,
            "created": quay_date(d.created_at), "attempts": [attempt_view(a) for a in attempts],
            "last_status_code": d.last_status_code, "last_error": d.last_error,
            "payload": json.loads(d.payload)} for d, attempts in notifications.recent_deliveries(notification)]})


def attempt_view(attempt) -> dict:
    return {"at": quay_date(attempt.attempted_at), "status_code": attempt.status_code, "error": attempt.error,
            "duration_ms": attempt.duration_ms}


def inbox_view(row) -> dict:
    metadata = json.loads(row.metadata)
    return {"id": row.uuid, "kind": row.kind, "created": quay_date(row.created_at), "dismissed": row.dismissed,
            "metadata": metadata, "title": metadata.get("title")}


class InboxHandler(ApiHandler):
    async def get(self) -> None:
        """The logged-in user's in-app notifications, newest first (?include_dismissed=true)."""
        identity = self.require_login()
        rows = inbox.inbox(identity.account_id, self.get_argument("include_dismissed", "false") == "true")
        self.send({"notifications": [inbox_view(n) for n in rows]})


class InboxItemHandler(ApiHandler):
    schemas = {"put": {"type": "object", "required": ["dismissed"], "properties": {"dismissed": {"type": "boolean"}}}}

    def item(self, uuid: str):
        return inbox.item(self.require_login().account_id, uuid)

    async def get(self, uuid: str) -> None:
        """One in-app notification."""
        self.send(inbox_view(self.item(uuid)))

    async def put(self, uuid: str) -> None:
        """Mark an in-app notification read ({"dismissed": true}) or unread."""
        row = self.item(uuid)
        inbox.set_dismissed(row, self.json_body()["dismissed"])
        self.send(inbox_view(row))


default_handlers = [
    (rf"{REPO_PATH}/notification/?", NotificationListHandler),
    (rf"{NOTIFICATION_PATH}/?", NotificationHandler),
    (rf"{NOTIFICATION_PATH}/test", NotificationTestHandler),
    (rf"{NOTIFICATION_PATH}/deliveries", DeliveriesHandler),
    (rf"{API}/user/notifications/?", InboxHandler),
    (rf"{API}/user/notifications/(?P<uuid>[0-9a-f-]{{36}})", InboxItemHandler),
]
