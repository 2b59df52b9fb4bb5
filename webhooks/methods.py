"""How a delivery is sent: webhook POST (signed), Slack incoming webhook, e-mail over SMTP, in-app."""
from __future__ import annotations

import hashlib
import hmac
import http.cookiejar
import json
import re
import smtplib
import ssl
import threading
import uuid
from email.charset import QP, Charset
from email.header import Header
from email.message import EmailMessage, Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path

import jinja2
import requests

from accounts.models import ORG, USER, Account, Team, TeamMember
from slipway import outgoing, redact, variables
from slipway.errors import DomainError

from .models import Delivery, InAppNotification, Notification
from .notifications import secret

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
VAR_NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")  # a path into the payload
TITLES = {
    "repo_push": "Repository {repository} has been pushed to",
    "build_queued": "A build of {repository} has been queued",
    "build_start": "A build of {repository} has started",
    "build_success": "A build of {repository} completed",
    "build_failure": "A build of {repository} failed",
    "build_cancelled": "A build of {repository} was cancelled",
    "repo_image_expiry": "Tags of {repository} will expire soon",
    "vulnerability_found": "A vulnerability was found in {repository}",
}
_env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=jinja2.select_autoescape(["html"]))
_local = threading.local()
_UTF8_QP = Charset("utf-8")
_UTF8_QP.body_encoding = QP


def _session() -> requests.Session:
    """This thread's keep-alive HTTP session (webhook and Slack POSTs reuse its connections).

    It keeps no cookies: one receiver's cookies must not be sent along to the next request.
    The outgoing-address rule is still checked on every request (``outgoing.post``).
    """
    session = getattr(_local, "session", None)
    if session is None:
        session = requests.Session()
        session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
        _local.session = session
    return session


class Mailer:
    """SMTP connections kept open for one batch of deliveries, shared by its threads; ``close()`` ends them.

    A connection is used by one thread at a time (taken from the idle list, given back after a
    message). One that failed is dropped; if a reused connection turns out to have been closed by
    the server before the message was sent, the message goes once more over a new connection.
    """

    def __init__(self):
        self._idle: dict = {}
        self._lock = threading.Lock()

    def send(self, message: Message, notes) -> None:
        key = (notes.smtp_host, notes.smtp_port, notes.smtp_tls, notes.smtp_username)
        with self._lock:
            idle = self._idle.get(key) or []
            client = idle.pop() if idle else None
        if client is not None:
            try:
                client.send_message(message)
            except smtplib.SMTPServerDisconnected:  # closed while idle: once more, on a new connection
                _quit(client)
                client = None
            except BaseException:
                _quit(client)
                raise
        if client is None:
            client = _connect(notes)
            try:
                client.send_message(message)
            except BaseException:
                _quit(client)
                raise
        self._give_back(key, client)

    def _give_back(self, key, client) -> None:
        with self._lock:
            self._idle.setdefault(key, []).append(client)

    def close(self) -> None:
        with self._lock:
            clients = [c for idle in self._idle.values() for c in idle]
            self._idle.clear()
        for client in clients:
            _quit(client)


def _connect(notes) -> smtplib.SMTP:
    if notes.smtp_tls == "ssl":
        client = smtplib.SMTP_SSL(notes.smtp_host, notes.smtp_port, timeout=notes.webhook_timeout,
                                  context=ssl.create_default_context())
    else:
        client = smtplib.SMTP(notes.smtp_host, notes.smtp_port, timeout=notes.webhook_timeout)
    try:
        if notes.smtp_tls == "starttls":
            client.starttls(context=ssl.create_default_context())
        if notes.smtp_username:
            client.login(notes.smtp_username, notes.smtp_password)
    except BaseException:
        _quit(client)
        raise
    return client


def _quit(client: smtplib.SMTP) -> None:
    try:
        client.quit()
    except (smtplib.SMTPException, OSError):
        client.close()


def summary(event: str, payload: dict) -> str:
    text = TITLES.get(event, event).format(repository=payload.get("repository", "?"))
    tags = payload.get("updated_tags") or payload.get("docker_tags") or payload.get("tags")
    if tags:
        text += f" ({', '.join(tags)})"
    if payload.get("error_message"):
        text += f": {payload['error_message']}"
    return text


def render_template(template: str, payload: dict) -> str:
    """A JSON body template with ``${path}`` variables into the event data.

    A string that is just ``"${path}"`` becomes the value itself (a list stays a list);
    inside longer text, lists are joined with ", " and objects written as JSON.
    """
    def as_text(value) -> str:
        if value is None:
            return ""
        if isinstance(value, list) and all(not isinstance(v, (dict, list)) for v in value):
            return ", ".join(str(v) for v in value)
        return value if isinstance(value, str) else json.dumps(value)

    def fill(node):
        if isinstance(node, dict):
            return {key: fill(value) for key, value in node.items()}
        if isinstance(node, list):
            return [fill(value) for value in node]
        if isinstance(node, str):
            whole = variables.whole(node)
            if whole is not None and VAR_NAME_RE.fullmatch(whole):
                return variables.lookup(payload, whole)
            return variables.substitute(node, lambda name: as_text(variables.lookup(payload, name))
                                        if VAR_NAME_RE.fullmatch(name) else None)
        return node

    return json.dumps(fill(json.loads(template)))


def send(notification: Notification, delivery: Delivery, config, mailer: Mailer | None = None,
         in_app_rows: list | None = None) -> tuple[int | None, str | None]:
    """Send one delivery; returns (HTTP status or None, error or None).

    E-mail goes through ``mailer`` (connections kept for a batch) or, without one, a connection of its own.
    In-app notifications are added to ``in_app_rows``, when given, for the caller to insert with
    the batch's outcomes (one write transaction instead of one per delivery); otherwise inserted now.
    """
    settings = json.loads(notification.config or "{}")
    status, error = _send(notification, delivery, settings, config, mailer, in_app_rows)
    # Errors are stored, shown and logged: the URL's credentials (a query token, a password, a
    # Slack URL's path is quoted whole by some errors) must not be in them.
    return status, redact.text(error, settings.get("url"))


def _send(notification, delivery, settings, config, mailer, in_app_rows) -> tuple[int | None, str | None]:
    payload = json.loads(delivery.payload)
    try:
        if notification.method == "webhook":
            return _webhook(notification, delivery, settings, payload, config)
        if notification.method == "slack":
            return _slack(notification, settings, payload, config)
        if notification.method == "email":
            _email(notification, settings, payload, config, mailer)
            return None, None
        if notification.method == "quay_notification":
            rows = in_app(notification, settings, payload)
            if in_app_rows is not None:
                in_app_rows.extend(rows)
            elif rows:
                InAppNotification.insert_many(rows).execute()
            return None, None
        return None, f"unknown method {notification.method}"
    except DomainError as e:
        return None, e.message
    except requests.RequestException as e:
        return None, f"{type(e).__name__}: {e}"
    except (smtplib.SMTPException, OSError) as e:
        return None, f"{type(e).__name__}: {e}"


def _http_result(response: requests.Response) -> tuple[int, str | None]:
    if 200 <= response.status_code < 300:
        return response.status_code, None
    return response.status_code, f"HTTP {response.status_code}: {response.text[:200]}"


def _webhook(notification, delivery, settings, payload, config):
    body = (render_template(settings["template"], payload) if settings.get("template")
            else json.dumps(payload)).encode()
    signature = hmac.new(secret(notification).encode(), body, hashlib.sha256).hexdigest()
    response = outgoing.post(settings["url"], config.network, timeout=config.notifications.webhook_timeout,
                             session=_session(), data=body,
                             headers={"Content-Type": "application/json", "User-Agent": "Slipway-Notifications",
                                      "X-Slipway-Event": notification.event,
                                      "X-Slipway-Delivery": f"{notification.uuid}/{delivery.id}",
                                      "X-Slipway-Signature-256": f"sha256={signature}"})
    return _http_result(response)


def _slack(notification, settings, payload, config):
    fields = [{"title": "Repository", "value": f"<{payload.get('homepage')}|{payload.get('repository')}>",
               "short": True}]
    tags = payload.get("updated_tags") or payload.get("docker_tags") or payload.get("tags")
    if tags:
        fields.append({"title": "Tags", "value": ", ".join(tags), "short": True})
    if payload.get("build_id"):
        fields.append({"title": "Build", "value": f"<{payload.get('homepage')}|{payload.get('build_name')}>",
                       "short": True})
    if payload.get("error_message"):
        fields.append({"title": "Error", "value": payload["error_message"], "short": False})
    color = {"build_failure": "danger", "build_success": "good", "repo_push": "good"}.get(notification.event, "#439FE0")
    message = {"text": summary(notification.event, payload), "username": "Slipway",
               "attachments": [{"color": color, "fields": fields, "fallback": summary(notification.event, payload)}]}
    response = outgoing.post(settings["url"], config.network, timeout=config.notifications.webhook_timeout,
                             session=_session(), json=message)
    return _http_result(response)


def _email(notification, settings, payload, config, mailer=None):
    notes = config.notifications
    if not notes.smtp_host:
        raise DomainError("No SMTP server is configured (notifications.smtp_host)")
    context = {"event": notification.event, "title": notification.title or summary(notification.event, payload),
               "summary": summary(notification.event, payload), "payload": payload,
               "payload_json": json.dumps(payload, indent=2, sort_keys=True)}
    text = _env.get_template("email/notification.txt").render(**context)
    html = _env.get_template("email/notification.html").render(**context)
    message = _message(f"[Slipway] {context['title']}", notes.mail_from, settings["email"], text, html)
    if mailer is not None:
        mailer.send(message, notes)
        return
    client = _connect(notes)
    try:
        client.send_message(message)
    finally:
        _quit(client)


def _message(subject: str, sender: str, to: str, text: str, html: str) -> Message:
    """A text + HTML mail. With ASCII addresses, built with the compat32 classes: EmailMessage's
    header registry made building one 1.2 ms of CPU, these 0.5 ms (the costliest part of a
    delivery on a push benchmark). Non-ASCII addresses (names or mailboxes) need the modern
    policy's address handling and SMTPUTF8, so they keep EmailMessage."""
    if not (sender.isascii() and to.isascii()):
        message = EmailMessage()
        message["Subject"], message["From"], message["To"] = subject, sender, to
        message.set_content(text)
        message.add_alternative(html, subtype="html")
        return message
    message = MIMEMultipart("alternative")
    message["Subject"] = subject if subject.isascii() else Header(subject, "utf-8")
    message["From"], message["To"] = sender, to
    message.attach(_mime_text(text, "plain"))
    message.attach(_mime_text(html, "html"))
    return message


def _mime_text(body: str, subtype: str) -> MIMEText:
    """7bit when the body is plain ASCII with short lines, else UTF-8 quoted-printable."""
    if body.isascii() and all(len(line) <= 998 for line in body.splitlines()):
        return MIMEText(body, subtype, "us-ascii")
    return MIMEText(body, subtype, _UTF8_QP)


def recipients(notification: Notification, target: dict) -> list[int]:
    kind, name = target.get("kind"), target.get("name")
    if kind == "user":
        return [a.id for a in Account.select().where((Account.name == name) & (Account.kind == USER))]
    if kind == "team":
        namespace_id = notification.repository.namespace_id
        members = (Account.select(Account.id).join(TeamMember).join(Team)
                   .where((Team.org == namespace_id) & (Team.name == name) & (Account.kind == USER)))
        return [a.id for a in members]
    if kind == "org":  # the organization's administrators
        org = Account.get_or_none((Account.name == name) & (Account.kind == ORG))
        if org is None:
            return []
        admins = (Account.select(Account.id).join(TeamMember).join(Team)
                  .where((Team.org == org.id) & (Team.role == "admin") & (Account.kind == USER)))
        return sorted({a.id for a in admins})
    return []


def in_app(notification, settings, payload) -> list[dict]:
    """The in-app notification rows of one delivery: one per recipient."""
    return [{"uuid": str(uuid.uuid4()), "user": user_id, "kind": notification.event,
             "metadata": json.dumps({**payload, "title": notification.title})}
            for user_id in recipients(notification, settings.get("target") or {})]
