"""The repository's Notifications tab: create (event, method, config), test, recent deliveries, the suspended
state after repeated failures, reset, delete. Administrators only, as the API; every action is a function
of ``webhooks.notifications`` (the ones ``webhooks/handlers.py`` calls)."""
from __future__ import annotations

from slipway.errors import DomainError, Invalid
from webhooks import notifications
from webhooks.models import EVENTS, METHODS

from .form_errors import field_of
from .repository import RepositoryTab

FIELDS = ("event", "method", "title", "url", "email", "target_kind", "target_name", "template", "ref_regex",
          "level", "days")
NOTIFICATION_FIELDS = (("event", ("event",)), ("method", ("method", "smtp")), ("url", ("url", "address")),
                       ("email", ("e-mail", "email")), ("target_name", ("user", "team", "organization", "target")),
                       ("template", ("template",)), ("ref_regex", ("ref-regex",)), ("level", ("level",)),
                       ("days", ("days",)))


def body_from(values: dict) -> dict:
    """The API's POST body from the form's fields (fields of other methods and events are left out)."""
    method, event = values["method"], values["event"]
    config: dict = {}
    if method in ("webhook", "slack"):
        config["url"] = values["url"]
        if values["template"]:
            config["template"] = values["template"]
    elif method == "email":
        config["email"] = values["email"]
    elif method == "quay_notification":
        config["target"] = {"kind": values["target_kind"], "name": values["target_name"]}
    event_config: dict = {}
    if values["ref_regex"] and event == "repo_push":
        event_config["ref-regex"] = values["ref_regex"]
    if values["level"] and event == "vulnerability_found":
        event_config["level"] = values["level"]
    if event == "repo_image_expiry" and values["days"]:
        if not values["days"].isdigit():
            raise Invalid("days must be a whole number of days")
        event_config["days"] = int(values["days"])
    return {"event": event, "method": method, "title": values["title"] or None, "config": config,
            "eventConfig": event_config}


class NotificationsTab(RepositoryTab):
    name = "notifications"
    label = "Notifications"
    role = "admin"

    async def get(self, page, repo, errors: dict | None = None, values: dict | None = None) -> None:
        await self.show(page, repo, 400 if errors else 200, values, errors)

    async def show(self, page, repo, status: int = 200, values: dict | None = None, errors: dict | None = None,
                   created_secret: str | None = None) -> None:
        limit = page.config.notifications.max_failures

        def load():
            rows = []
            for n in notifications.list_for(repo):
                view = notifications.view(n, with_secret=True, max_failures=limit)
                stopped = n.number_of_failures >= limit
                deliveries = [{"d": d, "attempts": attempts,
                               "status": "suspended" if stopped and d.status == "pending" else d.status}
                              for d, attempts in notifications.recent_deliveries(n, 10)]
                rows.append({"n": n, "view": view, "deliveries": deliveries})
            return rows

        page.render_tab("repo_notifications.html", status=status, notifications=await page.in_thread(load),
                        events=EVENTS, methods=METHODS, values=values or {"event": "repo_push", "method": "webhook",
                                                                          "target_kind": "user"},
                        errors=errors or {}, max_failures=limit)

    async def post(self, page, repo) -> None:
        action = page.form("action")
        url = page.repo_url(repo, "notifications")
        if action == "create":
            values = {name: page.form(name) for name in FIELDS}
            try:
                body = body_from(values)
                notification, _ = await page.in_thread(notifications.create, repo, body, page.identity,
                                                       page.config.network, page.client_ip,
                                                       page.config.notifications)
            except DomainError as e:
                await self.show(page, repo, 400, values, {field_of(e.message, NOTIFICATION_FIELDS): e.message})
                return
            page.flash(f"Notification created: {notification.event} by {notification.method}.", "success")
            page.redirect(url + f"#notification-{notification.uuid}")
            return
        notification = await page.in_thread(notifications.get, repo, page.form("notification"))
        try:
            if action == "test":
                await page.in_thread(notifications.queue_test, notification, page.config)
                page.flash("Test notification queued: it shows under its deliveries once sent.", "success")
            elif action == "reset":
                await page.in_thread(notifications.reset, notification, page.identity, page.client_ip)
                page.flash("Failures reset: the notification sends again.", "success")
            elif action == "delete":
                await page.in_thread(notifications.delete, notification, page.identity, page.client_ip)
                page.flash("Notification deleted.", "success")
                page.redirect(url)
                return
            else:
                raise Invalid(f"Unknown action '{action}'")
        except DomainError as e:
            page.flash(e.message, "error")
        page.redirect(url + f"#notification-{notification.uuid}")

