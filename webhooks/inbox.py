"""In-app notifications: a user's inbox (rows written by the quay_notification method), read and dismissed."""
from __future__ import annotations

from slipway.errors import NotFound

from .models import InAppNotification


def inbox(user_id: int, include_dismissed: bool = False, limit: int = 100) -> list[InAppNotification]:
    """The user's in-app notifications, newest first."""
    query = InAppNotification.select().where(InAppNotification.user == user_id)
    if not include_dismissed:
        query = query.where(~InAppNotification.dismissed)
    return list(query.order_by(InAppNotification.id.desc()).limit(limit))


def item(user_id: int, uuid: str) -> InAppNotification:
    row = InAppNotification.get_or_none((InAppNotification.uuid == uuid) & (InAppNotification.user == user_id))
    if row is None:
        raise NotFound(f"Notification {uuid} does not exist")
    return row


def set_dismissed(row: InAppNotification, dismissed: bool) -> None:
    """Mark it read (dismissed) or unread."""
    row.dismissed = dismissed
    row.save()
