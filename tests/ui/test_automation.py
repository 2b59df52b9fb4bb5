"""The Triggers, Notifications and Usage logs tabs in a real browser: a custom git trigger's webhook URL and
deploy key (and the URL works), a forge trigger's settings, tag previews, disable/delete; a notification to a
receiver on loopback, its test, its deliveries, suspension and reset; audit entries filtered, charted, exported."""
from __future__ import annotations

import csv
import io
import json
import time

import pytest
import requests

from tests.api import Api
from tests.conftest import ADMIN_PASSWORD, SlipwayServer, wait_for
from tests.receiver import Receiver

SESSION = "slipway_session"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """No build workers (a trigger's build stays queued); notifications may reach loopback, fail once and stop."""
    srv = SlipwayServer(tmp_path_factory.mktemp("ui-automation"), extra_env={
        "SLIPWAY_BUILDS__WORKERS": "0", "SLIPWAY_NETWORK__ALLOWLIST": "127.0.0.1/32",
        "SLIPWAY_NOTIFICATIONS__RETRY_DELAYS": "1", "SLIPWAY_NOTIFICATIONS__MAX_FAILURES": "1"}).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def receiver():
    r = Receiver()
    yield r
    r.httpd.shutdown()


def new_repo(server, name: str) -> str:
    Api(server, auth=("admin", ADMIN_PASSWORD)).ok("POST", "/repository", {
        "namespace": "admin", "repository": name, "visibility": "private"})
    return f"admin/{name}"


def click(page, css: str) -> None:
    """Click a submit button and wait for the page it leads to."""
    old = page.find("html")
    page.find(css).click()
    wait_for(lambda: _gone(old), 10, "the next page", interval=0.02)


def _gone(element) -> bool:
    try:
        element.is_enabled()
        return False
    except Exception:  # noqa: BLE001 - stale: the page changed
        return True


def test_a_custom_git_trigger_shows_its_webhook_url_and_deploy_key_and_the_url_builds(page, server, screenshot):
    repo = new_repo(server, "trig")
    page.sign_in().open(f"/repository/{repo}?tab=triggers")
    assert page.exists("#no-triggers")
    form = page.find("#create-trigger form")
    page.fill(form, build_source="https://git.example.com/team/app.git",
              tag_templates="${parsed_ref.branch}-${commit_info.short_sha}", preview_ref="feature/x")
    click(page, "#create-trigger button[value=preview]")
    preview = page.text("#tag-preview")
    assert "refs/heads/feature/x" in preview
    assert [b.text for b in page.find_all("#tag-preview .badge")] == ["feature-x-0123456", "feature-x"]
    # the regex decides whether a ref builds; a tag on the default branch also gets latest
    page.fill(page.find("#create-trigger form"), branchtag_regex="heads/main", preview_ref="main")
    click(page, "#create-trigger button[value=preview]")
    assert [b.text for b in page.find_all("#tag-preview .badge")] == ["main-0123456", "main", "latest"]
    page.fill(page.find("#create-trigger form"), preview_ref="dev")
    click(page, "#create-trigger button[value=preview]")
    assert "would not build" in page.text("#tag-preview")
    # nothing was created by previewing; a bad template is refused next to its field
    assert page.exists("#no-triggers")
    page.fill(page.find("#create-trigger form"), tag_templates="${nope}")
    click(page, "#create-trigger button[value=create]")
    assert "unknown variable" in page.text("#e-tag_templates")
    page.fill(page.find("#create-trigger form"), tag_templates="${parsed_ref.branch}-${commit_info.short_sha}")
    click(page, "#create-trigger button[value=create]")
    assert "trigger created" in page.text(".flashes")
    url = page.find(".trigger .webhook-url button.copy").get_attribute("data-copy")
    assert "/webhooks/push/trigger/" in url and "$token:" in url
    assert page.find(".trigger .deploy-key button.copy").get_attribute("data-copy").startswith("ssh-ed25519 ")
    screenshot(page, "triggers")
    # the URL shown is the one that works: a push to main queues a build with the previewed tags
    sha = "89abcdef0123456789abcdef0123456789abcdef"
    answer = requests.post(url.replace("$token:", "%24token:"), json={
        "commit": sha, "ref": "refs/heads/main", "default_branch": "main"}, timeout=10)
    assert answer.status_code == 200 and answer.json()["status"] == "queued", answer.text
    page.open(f"/repository/{repo}?tab=builds")
    row = page.text("#builds tbody tr")
    assert "custom-git" in row and sha[:7] in row and "main-89abcde" in row and "latest" in row
    # run by hand, for a commit: the page goes to the new build, which says what it builds
    page.open(f"/repository/{repo}?tab=triggers")
    page.fill(page.find(".trigger form.run-trigger"), commit_sha="fedcba9876543210fedcba9876543210fedcba98")
    click(page, ".trigger form.run-trigger button[type=submit]")
    assert "/build/" in page.path and "fedcba9" in page.text("#build-facts")
    assert "trigger (custom-git)" in page.text("#build-facts") and "queued" in page.text(".flashes")


def test_a_forge_trigger_says_what_to_paste_and_can_be_disabled_and_deleted(page, server):
    repo = new_repo(server, "forge")
    page.sign_in().open(f"/repository/{repo}?tab=triggers")
    page.fill(page.find("#create-trigger form"), service="gitea", webhook_secret="s3cret-value")
    click(page, "#create-trigger button[value=create]")
    settings = page.text(".trigger .forge-settings")
    assert "Target URL" in settings and "application/json" in settings and "Push events" in settings
    assert "s3cret-value" in settings
    assert "Deploy Keys" in page.text(".trigger") or "Deploy keys" in page.text(".trigger")
    click(page, ".trigger button[value=disable]")
    assert "disabled" in page.text(".trigger h4") and "Disabled by admin" in page.text(".trigger")
    click(page, ".trigger button[value=enable]")
    assert "enabled" in page.text(".trigger h4")
    page.driver.execute_script("window.confirm = () => true")
    click(page, ".trigger button[value=delete]")
    assert page.exists("#no-triggers") and "deleted" in page.text(".flashes")


def test_a_notification_is_tested_its_deliveries_shown_suspended_and_reset(page, server, receiver):
    repo = new_repo(server, "notify")
    page.sign_in().open(f"/repository/{repo}?tab=notifications")
    assert page.exists("#no-notifications")
    form = page.find("#create-notification form")
    page.fill(form, event="build_success", method="webhook", url="http://10.0.0.1:1/hook")
    click(page, "#create-notification button[type=submit]")
    assert page.find("#e-url").text, "a private address not allowed is refused next to the URL"
    page.fill(page.find("#create-notification form"), url=f"{receiver.url}/ui-hook", title="Tell CI")
    click(page, "#create-notification button[type=submit]")
    assert "Tell CI" in page.text(".notification h4") and "active" in page.text(".notification h4")
    click(page, ".notification button[value=test]")
    got = receiver.wait(1, "/ui-hook")
    assert json.loads(got[0]["body"])["repository"] == repo
    wait_for(lambda: "success" in page.open(f"/repository/{repo}?tab=notifications").text(".deliveries"), 10,
             "the delivery shown as a success")
    assert "test" in page.text(".deliveries") and "HTTP 200" in page.text(".deliveries")
    # a receiver that fails: after max_failures (1 here) the notification is suspended until reset
    receiver.status = 500
    try:
        click(page, ".notification button[value=test]")
        wait_for(lambda: "suspended" in page.open(f"/repository/{repo}?tab=notifications").text(".notification h4"),
                 15, "the notification suspended")
        assert "Stopped after 1 successive failed attempts" in page.text(".suspended-reason")
        assert "HTTP 500" in page.text(".deliveries")
        click(page, ".notification button[value=reset]")
        assert "active" in page.text(".notification h4") and not page.exists(".suspended-reason")
    finally:
        receiver.status = 200


def test_usage_logs_are_filtered_by_kind_and_date_charted_and_exported(page, server):
    repo = new_repo(server, "logged")
    admin = Api(server, auth=("admin", ADMIN_PASSWORD))
    for visibility in ("public", "private", "public"):
        admin.ok("POST", f"/repository/{repo}/changevisibility", {"visibility": visibility})
    page.sign_in().open(f"/repository/{repo}?tab=logs")
    kinds = [e.text for e in page.find_all("#log-entries tbody td:nth-child(2)")]
    assert kinds.count("change_repo_visibility") == 3 and "create_repo" in kinds
    today = time.strftime("%Y-%m-%d", time.gmtime())
    bar = page.find(f".actions-chart rect[data-day='{today}']")
    assert int(bar.get_attribute("data-count")) == len(kinds) and float(bar.get_attribute("height")) > 0
    page.submit("#log-filter", kind="change_repo_visibility")
    kinds = [e.text for e in page.find_all("#log-entries tbody td:nth-child(2)")]
    assert kinds == ["change_repo_visibility"] * 3
    assert page.find(f".actions-chart rect[data-day='{today}']").get_attribute("data-count") == "3"
    # a range before the repository existed is empty
    page.open(f"/repository/{repo}?tab=logs&start=2020-01-01&end=2020-01-31")
    assert page.exists("#no-entries") and len(page.find_all(".actions-chart rect")) == 31
    # export with the browser's session: CSV and JSON lines of the filtered range
    page.open(f"/repository/{repo}?tab=logs&kind=change_repo_visibility")
    cookies = {SESSION: page.cookie(SESSION)["value"]}
    exported = requests.get(page.find("#export-csv").get_attribute("href"), cookies=cookies, timeout=10)
    assert exported.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(exported.text)))
    assert rows[0] == ["datetime", "kind", "performer", "ip", "metadata"]
    assert [r[1] for r in rows[1:]] == ["change_repo_visibility"] * 3 and rows[1][2] == "admin"
    assert json.loads(rows[1][4])["visibility"] == "public"
    lines = requests.get(page.find("#export-json").get_attribute("href"), cookies=cookies, timeout=10).text
    assert [json.loads(line)["kind"] for line in lines.splitlines()] == ["change_repo_visibility"] * 3
