"""The web interface's rules in-process: sessions and the sign-in throttle, the tag history timeline,
Markdown rendering, and the view helpers."""
from __future__ import annotations

import pytest

from tests.unit.conftest import PASSWORD


def test_the_history_timeline_names_each_event():
    from ui.tabs_history import timeline

    now = 1_000_000_000_000
    rows = [  # newest first, as the tag list gives them (seconds)
        {"name": "a", "manifest_digest": "sha256:b", "start_ts": 999_999_990},
        {"name": "a", "manifest_digest": "sha256:a", "start_ts": 999_999_900, "end_ts": 999_999_990},
        {"name": "x", "manifest_digest": "sha256:x", "start_ts": 999_999_800, "end_ts": 999_999_800},
        {"name": "e", "manifest_digest": "sha256:e", "start_ts": 999_999_700, "end_ts": 999_999_750},
        {"name": "f", "manifest_digest": "sha256:f", "start_ts": 999_999_600, "end_ts": 1_000_000_500},
        {"name": "o", "manifest_digest": "sha256:o", "start_ts": 900_000_000, "end_ts": 900_000_001},
    ]
    events = timeline(rows, [("x", 999_999_800_400)], now, 3600)
    assert [(e["tag"], e["kind"], e.get("restore", False)) for e in events] == [
        ("f", "expires", False),
        ("a", "moved", False), ("a", "revertible", True), ("a", "created", False),
        # created and deleted in the same second: not a move onto itself
        ("x", "created", False), ("x", "deleted", True),
        ("e", "expired", True), ("e", "created", False),
        ("f", "created", False),
        ("o", "expired", False), ("o", "created", False),  # ended before the window: not restorable
    ]
    assert events[1]["from"] == "sha256:a"


def test_markdown_shows_html_as_text_and_drops_script_links():
    from ui.templates import markdown

    html = str(markdown("<script>alert(1)</script>\n\n[x](javascript:alert(1)) <img src=x onerror=alert(1)> **b**"))
    assert "<script" not in html and "&lt;script&gt;" in html
    assert "<img" not in html and 'href="javascript' not in html
    assert "<strong>b</strong>" in html


def test_view_helpers():
    from ui.tabs_tags import parse_expiry, security_view
    from ui.templates import ago, short_digest, size

    assert size(None) == "—" and size(512) == "512 B" and size(1536) == "1.5 KiB" and size(3 * 1024 ** 3) == "3.0 GiB"
    assert ago(1_000_000_000_000 - 90_000, now=1_000_000_000) == "1 minute ago"
    assert ago(1_000_000_000_000 + 7_200_000, now=1_000_000_000) == "in 2 hours"
    assert short_digest("sha256:" + "ab" * 32) == "sha256:abababababab"
    assert parse_expiry("2030-01-02T03:04") == 1893553440
    with pytest.raises(Exception, match="not a date"):
        parse_expiry("tomorrow")
    assert security_view(None)["status"] == "not scanned"
    view = security_view({"status": "scanned", "vulnerabilities": {"Low": 2, "Critical": 1, "High": 0}, "fixable": 1})
    assert view["counts"] == [("Critical", 1), ("Low", 2)] and view["fixable"] == 1
    assert security_view({"status": "unsupported", "vulnerabilities": {}})["status"] == "unsupported"


@pytest.fixture
def user(db):
    from accounts import users

    return users.create_user("browser", PASSWORD)


def test_a_session_resolves_until_it_ends_expires_or_its_user_changes(user, clock):
    from accounts import sessions, users
    from accounts.models import Account, Session

    raw, csrf = sessions.create(user, "10.0.0.1", "test-agent", ttl=60)
    info = sessions.resolve(raw)
    assert info.identity.name == "browser" and info.identity.via == "session" and info.csrf_token == csrf
    assert Session.get().id_hash != raw and raw not in Session.get().id_hash
    assert sessions.resolve(raw + "x") is None and sessions.resolve("") is None
    clock.advance(61)
    assert sessions.resolve(raw) is None  # expired
    assert sessions.purge_expired() == 1 and not Session.select().exists()
    raw, _ = sessions.create(user, None, "", ttl=60)
    Account.update(enabled=False).where(Account.id == user.id).execute()
    assert sessions.resolve(raw) is None  # a disabled user's session answers nobody
    Account.update(enabled=True).where(Account.id == user.id).execute()
    assert sessions.resolve(raw) is not None
    identity = users.login_with_password("browser", PASSWORD)
    users.change_password(user, "another-password-1", identity)
    assert sessions.resolve(raw) is None and not Session.select().where(Session.account == user.id).exists()
    raw, _ = sessions.create(user, None, "")
    sessions.end(raw)
    assert sessions.resolve(raw) is None
    raw, _ = sessions.create(user, None, "")
    users.delete_user(user, identity)
    assert sessions.resolve(raw) is None and not Session.select().exists()  # the rows went with the user


def test_failed_sign_ins_are_throttled_per_account_and_per_address(user, clock):
    from accounts import audit, sessions

    def fail(account, ip: str) -> None:  # what login.authenticate records for a failure (without Argon2's cost)
        audit.record("login_failure", None, namespace=account, ip=ip, metadata={"message": "Invalid"})

    for _ in range(sessions.ACCOUNT_FAILURES - 1):
        fail(user, "10.0.0.1")
    assert sessions.sign_in_throttled("browser", "10.0.0.1") is None
    fail(user, "10.0.0.2")
    assert sessions.sign_in_throttled("browser", "10.0.0.9") == \
        "Too many failed sign-ins for this account: try again in 15 minutes"
    assert sessions.sign_in_throttled("someone-else", "10.0.0.9") is None
    clock.advance(sessions.THROTTLE_WINDOW - 30)
    assert sessions.sign_in_throttled("browser", "10.0.0.9").endswith("try again in 30 seconds")
    clock.advance(31)
    assert sessions.sign_in_throttled("browser", "10.0.0.9") is None  # the failures left the window
    for _ in range(sessions.ADDRESS_FAILURES):
        fail(None, "10.0.0.3")
    assert sessions.sign_in_throttled("someone-else", "10.0.0.3").startswith(
        "Too many failed sign-ins from your address")
    assert sessions.sign_in_throttled("someone-else", "10.0.0.4") is None


def test_header_links_show_to_whom_they_are_for():
    from accounts.identity import ANONYMOUS, Identity
    from ui.navigation import Navigation

    nav = Navigation()
    nav.add("Organizations", "/organizations")
    nav.add("Superuser", "/superuser", who="superuser")
    nav.add("Account", "/account", menu="user")
    user, root = Identity("user", 1, "u"), Identity("user", 2, "r", superuser=True)
    assert [link.label for link in nav.for_identity(user, "main")] == ["Organizations"]
    assert [link.label for link in nav.for_identity(root, "main")] == ["Organizations", "Superuser"]
    assert [link.label for link in nav.for_identity(user, "user")] == ["Account"]
    assert nav.for_identity(ANONYMOUS, "main") == []
