"""Account-level pages in a real browser: organizations (teams, members, robots and their credentials), account
settings (password, tokens), the superuser's pages, and a manifest's vulnerabilities."""
import json
import shlex
import time

import requests

from tests.api import Api
from tests.conftest import ADMIN_PASSWORD, wait_for
from tests.images import layer_tar, make_oci_layout

SESSION = "slipway_session"


def create_user(server, name: str, password: str) -> None:
    """Through the API (a CLI process would cost seconds)."""
    Api(server, auth=("admin", ADMIN_PASSWORD)).ok("POST", "/superuser/users/",
                                                    {"username": name, "password": password})


def login_with(tools, command: str, host: str, tool: str):
    """Run a copied ``podman login ...`` / ``docker login ...`` command with ``tool`` instead (skopeo speaks the
    same flags), against the plain-HTTP test registry."""
    argv = shlex.split(command)
    assert argv[:2] in (["podman", "login"], ["docker", "login"]) and argv[-1] == host, argv
    return tools.run(tool, "login", "--tls-verify=false", *argv[2:], check=False)


def test_create_an_organization_a_team_and_a_robot_and_log_in_with_its_copied_command(page, server, tools,
                                                                                       screenshot):
    page.sign_in()
    page.open("/organization/new")
    page.submit("#new-org", org_name="acme", org_email="ops@acme.example")
    assert page.path == "/organization/acme"
    assert "Organization acme created" in page.text(".flashes")
    assert "admin" in page.text("#team-owners")

    page.submit("#create-team form", team_name="deployers", team_role="creator")
    assert "Team deployers created" in page.text(".flashes")
    assert "creator" in page.text("#team-deployers h3")
    screenshot(page, "organization")
    # an error is said next to its field, and the typed values stay
    page.submit("#create-team form", team_name="Bad Name")
    assert "Invalid team name" in page.text("#e-team_name")
    assert page.find("#f-team_name").get_attribute("value") == "Bad Name"

    page.open("/organization/acme?tab=robots")
    page.submit("#create-robot form", robot_name="ci", robot_description="the CI pipeline")
    assert "Robot acme+ci created" in page.text(".flashes")
    page.click("#robots a.button")
    assert page.find("dialog#credentials").get_attribute("open") is not None
    assert "apiVersion: v1" in page.text("#cred-kubernetes pre")
    assert json.loads(page.text("#cred-docker-config pre"))["auths"][server.host]["auth"]
    screenshot(page, "robot-credentials")

    # copy the docker login command: the clipboard holds it (the page is a secure context: 127.0.0.1)
    page.driver.execute_cdp_cmd("Browser.grantPermissions", {
        "origin": server.url, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]})
    button = page.find("#cred-docker-login button.copy")
    button.click()
    wait_for(lambda: "copied" in button.get_attribute("class"), 5, "the copy button's confirmation")
    copied = page.driver.execute_async_script(
        "const done = arguments[0]; navigator.clipboard.readText().then(done, e => done('ERROR ' + e));")
    assert copied == button.get_attribute("data-copy") == page.text("#cred-docker-login pre")
    assert copied.startswith("docker login -u='acme+ci' -p='")
    podman_command = page.find("#cred-podman-login button.copy").get_attribute("data-copy")
    for tool, command in (("skopeo", copied), ("podman", podman_command)):
        result = login_with(tools, command, server.host, tool)
        assert result.returncode == 0 and "Login Succeeded" in result.stdout, result.stderr

    # regenerate: the old token stops working, the new one works
    page.click("dialog form button.danger", accept_confirm=True)
    assert "was replaced" in page.text(".flashes")
    new_command = page.find("#cred-docker-login button.copy").get_attribute("data-copy")
    assert new_command != copied
    assert login_with(tools, copied, server.host, "skopeo").returncode != 0
    assert login_with(tools, new_command, server.host, "skopeo").returncode == 0

    # the robot joins the team, as the API shows
    page.open("/organization/acme")
    page.submit("#team-deployers form.add-member", member="acme+ci")
    assert "acme+ci" in page.text("#team-deployers table")
    members = Api(server, auth=("admin", ADMIN_PASSWORD)).ok("GET", "/organization/acme/team/deployers/members")
    assert [m["name"] for m in members["members"]] == ["acme+ci"]


def test_default_permissions_settings_and_usage_logs_of_an_organization(page, server):
    page.sign_in()
    page.open("/organization/new")
    page.submit("#new-org", org_name="globex")
    page.open("/organization/globex?tab=permissions")
    page.submit("#add-permission form", delegate="team:owners", proto_role="write")
    assert "write" in page.text("#prototypes") and "team owners" in page.text("#prototypes")
    page.submit("#add-permission form", delegate="user:nobody-here", proto_role="read")
    assert "does not exist" in page.text("#e-delegate")

    page.open("/organization/globex?tab=settings")
    page.submit("#org-settings", time_machine=str(7 * 86400))
    org = Api(server, auth=("admin", ADMIN_PASSWORD)).ok("GET", "/organization/globex")
    assert org["tag_expiration_s"] == 7 * 86400

    page.open("/organization/globex?tab=logs")
    kinds = page.text("#logs")
    assert "org_create" in kinds and "create_prototype_permission" in kinds and "change_tag_expiration" in kinds

    # someone outside the organization finds nothing there
    create_user(server, "outsider", "outsider-password-1")
    outsider = _signed_in_session(server, "outsider", "outsider-password-1")
    for tab in ("teams", "robots", "logs"):
        r = outsider.get(f"{server.url}/organization/globex?tab={tab}", timeout=10)
        assert r.status_code == 404 and "create_prototype_permission" not in r.text

    # deleting needs the name typed
    page.open("/organization/globex?tab=settings")
    page.submit("form:has(input[value='delete_org'])", confirm="wrong")
    assert "to confirm" in page.text("#e-confirm")
    page.submit("form:has(input[value='delete_org'])", confirm="globex")
    assert page.path == "/organizations" and "Organization globex deleted" in page.text(".flashes")
    assert Api(server, auth=("admin", ADMIN_PASSWORD)).get("/organization/globex").status_code == 404


def _signed_in_session(server, username: str, password: str) -> requests.Session:
    """A second browser session, signed in through the sign-in form with plain HTTP."""
    s = requests.Session()
    s.get(f"{server.url}/signin", timeout=10)
    r = s.post(f"{server.url}/signin", data={"username": username, "password": password,
                                             "_csrf": s.cookies["slipway_csrf"]}, timeout=10)
    assert r.status_code == 200 and SESSION in s.cookies
    return s


def test_changing_the_password_ends_the_users_other_sessions(page, server):
    create_user(server, "pat", "pat-password-1")
    other = _signed_in_session(server, "pat", "pat-password-1")
    assert other.get(f"{server.url}/api/v1/user/", timeout=10).status_code == 200
    page.sign_in("pat", "pat-password-1")
    page.open("/account")
    assert page.path == "/user/pat"
    page.submit("#change-password form", current_password="wrong-password", new_password="pat-password-2",
                new_password2="pat-password-2")
    assert "not right" in page.text("#e-new_password")
    page.submit("#change-password form", current_password="pat-password-1", new_password="pat-password-2",
                new_password2="pat-password-2")
    assert "every other session" in page.text(".flashes")
    # the other session is over; this browser is still signed in (a new session)
    assert other.get(f"{server.url}/api/v1/user/", timeout=10).status_code == 401
    page.open("/account?tab=tokens")
    assert page.find("h1").text.startswith("Account settings")
    assert Api(server, auth=("pat", "pat-password-2")).get("/user/").status_code == 200


def test_tokens_are_shown_once_and_work(page, server):
    create_user(server, "tokie", "tokie-password-1")
    page.sign_in("tokie", "tokie-password-1")
    page.open("/account?tab=tokens")
    form = page.find("#api-tokens form")
    form.find_element("css selector", "input[value='user:read']").click()
    page.submit("#api-tokens form", api_title="reader")
    secret = page.find("#new-token button.copy").get_attribute("data-copy")
    r = requests.get(f"{server.url}/api/v1/user/", headers={"Authorization": f"Bearer {secret}"}, timeout=10)
    assert r.status_code == 200 and r.json()["username"] == "tokie"
    page.open("/account?tab=tokens")
    assert not page.exists("#new-token") and secret not in page.driver.page_source
    assert "reader" in page.text("#api-tokens table")


def test_a_non_superuser_gets_403_on_superuser_pages_and_a_superuser_manages_users(page, server):
    create_user(server, "plain", "plain-password-1")
    page.sign_in("plain", "plain-password-1")
    for path in ("/superuser", "/superuser?tab=organizations", "/superuser?tab=status"):
        page.open(path)
        assert page.text("h1").startswith("403"), path
        assert "Only superusers" in page.text("main")
    assert not page.exists("header a[href='/superuser']")

    page.driver.delete_all_cookies()
    page.sign_in()
    page.open("/superuser?tab=status")
    status = page.text("#status")
    assert "SQLite" in status or "PostgreSQL" in status
    assert page.text("#queue-waiting").isdigit()
    page.open("/superuser")
    page.submit("#create-user form", new_username="newbie", new_password="newbie-password-1")
    assert "newbie" in page.text("#user-newbie")
    page.click("#user-newbie button.danger", accept_confirm=True)
    assert "newbie is disabled" in page.text(".flashes")
    assert "disabled" in page.text("#user-newbie")
    assert Api(server, auth=("newbie", "newbie-password-1")).get("/user/").status_code == 401


# -- a manifest's vulnerabilities ----------------------------------------------------------------------------------
# Test-made advisories (Debian tracker format) for two source packages of a small dpkg status file.
TRACKER = {
    "foo": {"CVE-2099-1001": {"description": "foo overflows", "releases": {"bookworm": {
        "status": "resolved", "fixed_version": "1.0-2", "urgency": "high"}}}},
    "bar": {"CVE-2099-2002": {"description": "bar leaks", "releases": {"bookworm": {
        "status": "open", "urgency": "low"}}}},
}
DPKG = {"etc/os-release": b'ID=debian\nVERSION_ID="12"\nVERSION_CODENAME=bookworm\n',
        "var/lib/dpkg/status": b"Package: libfoo1\nStatus: install ok installed\nVersion: 1.0-1\nSource: foo\n"
                               b"Architecture: amd64\n\nPackage: bar\nStatus: install ok installed\n"
                               b"Version: 2.0-1\nArchitecture: amd64\n\nPackage: clean\n"
                               b"Status: install ok installed\nVersion: 3.0-1\nArchitecture: amd64\n\n"}


def _push(server, tools, tmp_path, layers, ref: str) -> str:
    layout = tmp_path / f"layout-{time.monotonic_ns()}"
    info = make_oci_layout(layout, layers=layers, labels={"stamp": str(time.time())})
    tools.skopeo("copy", "--dest-tls-verify=false", "--dest-creds", f"admin:{ADMIN_PASSWORD}", f"oci:{layout}:latest",
                 f"docker://{server.host}/{ref}")
    return info["manifest_digest"]


def _scanned(server, repo: str, digest: str) -> str:
    api = Api(server, auth=("admin", ADMIN_PASSWORD))
    return wait_for(lambda: (lambda s: None if s == "queued" else s)(
        api.ok("GET", f"/repository/{repo}/manifest/{digest}/security")["status"]), 60, f"the scan of {digest}")


def test_a_pushed_images_vulnerability_page_lists_packages_and_filters_by_severity(page, server, tools, tmp_path,
                                                                                     screenshot):
    feed = tmp_path / "tracker.json"
    feed.write_text(json.dumps(TRACKER))
    server.cli("scanner", "update", str(feed))
    digest = _push(server, tools, tmp_path, [layer_tar(DPKG)], "admin/vulny:1")
    bare = _push(server, tools, tmp_path, None, "admin/vulny:bare")
    assert _scanned(server, "admin/vulny", digest) == "scanned"

    page.sign_in()
    page.open("/repository/admin/vulny?tab=tags")  # the tags tab links to the manifest's page
    page.click(f"main a[href='/repository/admin/vulny/manifest/{digest}']")
    assert page.path == f"/repository/admin/vulny/manifest/{digest}"
    assert page.find("#scan-state").get_attribute("data-state") == "scanned"
    rows = {r.get_attribute("data-package"): r.text for r in page.find_all("#packages tr.package")}
    assert list(rows) == ["libfoo1", "bar", "clean"]  # the most severe first
    assert "CVE-2099-1001" in rows["libfoo1"] and "1.0-2" in rows["libfoo1"]
    assert "CVE-2099-2002" in rows["bar"] and "no fix yet" in rows["bar"]
    link = page.find("#packages a[href*='CVE-2099-1001']").get_attribute("href")
    assert link == "https://security-tracker.debian.org/tracker/CVE-2099-1001"
    assert page.find("tr[data-package='libfoo1'] td.wide code").get_attribute("title").startswith("sha256:")
    screenshot(page, "vulnerabilities")

    page.submit("#vuln-filter", severity="High")
    assert page.find("#severity").get_attribute("value") == "High"
    assert [r.get_attribute("data-package") for r in page.find_all("#packages tr.package")] == ["libfoo1"]
    assert {v.get_attribute("data-severity") for v in page.find_all("#packages li.vuln")} == {"High"}
    page.submit("#vuln-filter", severity="Low")
    assert {r.get_attribute("data-package") for r in page.find_all("#packages tr.package")} == {"libfoo1", "bar"}
    page.find("#vuln-filter input[name='fixable']").click()
    page.submit("#vuln-filter")
    assert [r.get_attribute("data-package") for r in page.find_all("#packages tr.package")] == ["libfoo1"]

    assert _scanned(server, "admin/vulny", bare) == "unsupported"
    page.open(f"/repository/admin/vulny/manifest/{bare}")
    assert page.find("#scan-state").get_attribute("data-state") == "unsupported"
    assert "Unsupported" in page.text("#scan-state")


def test_an_unknown_manifest_is_the_404_page(page, server):
    Api(server, auth=("admin", ADMIN_PASSWORD)).ok("POST", "/repository", {"namespace": "admin", "repository": "empty",
                                                                         "visibility": "private"})
    page.sign_in()
    page.open("/repository/admin/empty/manifest/sha256:" + "0" * 64)
    assert page.text("h1").startswith("404") and "no manifest" in page.text("main")
