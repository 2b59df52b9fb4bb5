"""The e-mail a notification sends, as a mail reader sees it (no SMTP needed to check its shape)."""
from __future__ import annotations

import email
import email.policy
from types import SimpleNamespace

from slipway.config import Config
from webhooks import methods


class Capture:
    def __init__(self):
        self.messages = []

    def send(self, message, notes) -> None:
        self.messages.append(message.as_bytes())


def test_a_non_ascii_title_and_payload_reach_the_reader_intact():
    config = Config()
    config.notifications.smtp_host = "127.0.0.1"
    notification = SimpleNamespace(event="repo_push", title="Pushé ✓ to prod")
    payload = {"repository": "org/app", "updated_tags": ["v1", "lätest"], "homepage": "http://x/repository/org/app"}
    mailer = Capture()
    methods._email(notification, {"email": "ops@example.com"}, payload, config, mailer)
    [raw] = mailer.messages
    assert raw.isascii()  # 7bit-safe on the wire
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Subject"] == "[Slipway] Pushé ✓ to prod" and parsed["To"] == "ops@example.com"
    text = parsed.get_body(("plain",)).get_content()
    html = parsed.get_body(("html",)).get_content()
    assert "lätest" in text and "lätest" in html and "<a href=" in html


def test_a_sender_name_with_non_ascii_letters_stays_an_address():
    config = Config()
    config.notifications.smtp_host = "127.0.0.1"
    config.notifications.mail_from = "Jürgen Registry <slipway@example.com>"
    notification = SimpleNamespace(event="repo_push", title="From the registry")
    mailer = Capture()
    methods._email(notification, {"email": "ops@example.com"}, {"repository": "org/app", "updated_tags": ["v1"]},
                   config, mailer)
    parsed = email.message_from_bytes(mailer.messages[0], policy=email.policy.default)
    assert parsed["From"].addresses[0].display_name == "Jürgen Registry"
    assert parsed["From"].addresses[0].addr_spec == "slipway@example.com"
