"""/api/v1 for repository notifications (Quay's paths and shapes), their deliveries, and in-app inboxes."""
from __future__ import annotations

import json

from accounts.audit import quay_date
from registry.handlers_api import REPO_PATH, RepositoryBase
from slipway.api import API, ApiHandler
from slipway.errors import NotFound

from . import notifications
from .models import Attempt, Delivery, InAppNotification, Notification

NOTIFICATION_PATH = rf"{REPO_PATH}/notification/(?P<uuid>[0-9a-f-]{{36}})"


class NotificationListHandler(RepositoryBase):
    schemas = {"post": {"type": "object", "required": ["event", "method"], "properties": {
        "event": {"type": "string"}, "method": {"type": "string"}, "config": {"type": "object"},
        "eventConfig": {"type": "object"}, "title": {"type": ["string", "null"]}}}}

    async def get(self, namespace: str, repository: str) -> None:
        """The repository's notifications."""
        repo = self.repository("admin")
        rows = Notification.select().where(Notification.repository == repo.id).order_by(Notification.id)
        limit = self.config.notifications.max_failures
        self.send({"notifications": [notifications.view(n, max_failures=limit) for n in rows]})

    async def post(self, namespace: str, repository: str) -> None:
        """Create a notification: an event (repo_push, build_*, repo_image_expiry, vulnerability_found) and a
        method (webhook, slack, email, quay_notification). Webhook bodies are signed with the secret answered."""
        repo = self.repository("admin")
        notification, _ = notifications.create(repo, self.json_body(), self.identity, self.config.network,
                                               self.client_ip, notes=self.config.notifications)
        self.send(notifications.view(notification, with_secret=True,
                                     max_failures=self.config.notifications.max_failures), 201)


class NotificationBase(RepositoryBase):
    def notification(self) -> Notification:
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
        rows = list(Delivery.select().where(Delivery.notification == notification.id)
                    .order_by(Delivery.id.desc()).limit(50))
        attempts: dict = {}
        for attempt in Attempt.select().where(Attempt.delivery.in_([d.id for d in rows] or [0])).order_by(Attempt.id):
            attempts.setdefault(attempt.delivery_id, []).append({
                "at": quay_date(attempt.attempted_at), "status_code": attempt.status_code, "error": attempt.error,
                "duration_ms": attempt.duration_ms})
        stopped = notification.number_of_failures >= self.config.notifications.max_failures
        self.send({"deliveries": [{
            "id": d.id, "kind": d.kind, "status": "suspended" if stopped and d.status == "pending" else d.status,
            "created": quay_date(d.created_at), "attempts": attempts.get(d.id, []),
            "last_status_code": d.last_status_code, "last_error": d.last_error,
            "payload": json.loads(d.payload)} for d in rows]})


def inbox_view(row: InAppNotification) -> dict:
    metadata = json.loads(row.metadata)
    return {"id": row.uuid, "kind": row.kind, "created": quay_date(row.created_at), "dismissed": row.dismissed,
            "metadata": metadata, "title": metadata.get("title")}


class InboxHandler(ApiHandler):
    async def get(self) -> None:
        """The logged-in user's in-app notifications, newest first (?include_dismissed=true)."""
        identity = self.require_login()
        query = InAppNotification.select().where(InAppNotification.user == identity.account_id)
        if self.get_argument("include_dismissed", "false") != "true":
            query = query.where(~InAppNotification.dismissed)
        self.send({"notifications": [inbox_view(n) for n in query.order_by(InAppNotification.id.desc()).limit(100)]})


class InboxItemHandler(ApiHandler):
    schemas = {"put": {"type": "object", "required": ["dismissed"], "properties": {"dismissed": {"type": "boolean"}}}}

    def item(self, uuid: str) -> InAppNotification:
        identity = self.require_login()
        row = InAppNotification.get_or_none((InAppNotification.uuid == uuid)
                                            & (InAppNotification.user == identity.account_id))
        if row is None:
            raise NotFound(f"Notification {uuid} does not exist")
        return row

    async def get(self, uuid: str) -> None:
        """One in-app notification."""
        self.send(inbox_view(self.item(uuid)))

    async def put(self, uuid: str) -> None:
        """Mark an in-app notification read ({"dismissed": true}) or unread."""
        row = self.item(uuid)
        row.dismissed = self.json_body()["dismissed"]
        row.save()
        self.send(inbox_view(row))


default_handlers = [
    (rf"{REPO_PATH}/notification/?", NotificationListHandler),
    (rf"{NOTIFICATION_PATH}/?", NotificationHandler),
    (rf"{NOTIFICATION_PATH}/test", NotificationTestHandler),
    (rf"{NOTIFICATION_PATH}/deliveries", DeliveriesHandler),
    (rf"{API}/user/notifications/?", InboxHandler),
    (rf"{API}/user/notifications/(?P<uuid>[0-9a-f-]{{36}})", InboxItemHandler),
]
