"""Signing in and out, the session cookie, CSRF on forms and on /api/v1, throttled sign-ins, error pages."""
import urllib.parse

import pytest
import requests

from tests.api import Api
from tests.conftest import ADMIN_PASSWORD
from tests.ui.conftest import create_user

SESSION = "slipway_session"


def test_sign_in_shows_the_repository_list_and_a_session_cookie(page):
    page.open("/")
    assert "Sign in" in page.text("main")
    page.sign_in()
    assert page.path == "/"
    assert page.find("h1").text == "Repositories"
    assert "admin" in page.text("header")
    cookie = page.cookie(SESSION)
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Lax" and cookie["secure"] is False
    assert cookie.get("expiry"), "the session cookie expires"
    # only a hash of the session id is stored
    stored = [row[0] for row in page.server.sql("SELECT id_hash FROM web_session")]
    assert cookie["value"] not in stored and len(stored) >= 1


def test_a_wrong_password_is_said_next_to_the_form_and_keeps_the_username(page):
    page.open("/signin")
    page.submit("form[action='/signin']", username="admin", password="wrong-password")
    assert page.text("#e-form") == "Invalid username or password"
    assert page.find("#f-username").get_attribute("value") == "admin"
    assert page.cookie(SESSION) is None


def test_signing_in_returns_to_the_page_asked_for(page, server):
    admin = Api(server, auth=("admin", ADMIN_PASSWORD))
    admin.ok("POST", "/repository", {"namespace": "admin", "repository": "back", "visibility": "private"})
    page.open("/repository/admin/back")  # private: signed out, it is not found, with a way to sign in
    assert "404" in page.text("h1") and "sign in to see it" in page.text("main")
    page.find("main a[href^='/signin']").click()
    page.submit("form[action='/signin']", username="admin", password=ADMIN_PASSWORD)
    assert page.path == "/repository/admin/back"
    # an open redirect is not followed
    page.open("/signin?next=//evil.example/")
    assert page.path == "/"


def test_sign_out_ends_the_session_on_the_server(page, server):
    page.sign_in()
    old = page.cookie(SESSION)["value"]
    page.find(".user-menu summary").click()
    page.find(".user-menu form[action='/signout'] button").click()
    page.wait_text("main", "You are signed out.")
    assert page.cookie(SESSION) is None
    # the old cookie no longer signs anyone in (API and pages)
    r = requests.get(f"{server.url}/api/v1/user/", cookies={SESSION: old}, timeout=10)
    assert r.status_code == 401
    r = requests.get(f"{server.url}/", cookies={SESSION: old}, timeout=10)
    assert "Sign in" in r.text and "Create a repository" not in r.text


def test_a_password_change_ends_the_users_sessions(page, server):
    create_user(server, "changer", "changer-password-1")
    page.sign_in("changer", "changer-password-1")
    cookie = page.cookie(SESSION)["value"]
    assert requests.get(f"{server.url}/api/v1/user/", cookies={SESSION: cookie}, timeout=10).status_code == 200
    Api(server, auth=("changer", "changer-password-1")).ok("PUT", "/user/", {"password": "changer-password-2"})
    assert requests.get(f"{server.url}/api/v1/user/", cookies={SESSION: cookie}, timeout=10).status_code == 401
    page.open("/")
    assert page.exists("a[href='/signin']") and page.cookie(SESSION) is None


def _session_and_token(page) -> tuple[str, str]:
    page.sign_in()
    return page.cookie(SESSION)["value"], page.find("input[name='_csrf']").get_attribute("value")


def test_a_form_posted_without_the_csrf_token_is_refused(page, server):
    cookie, token = _session_and_token(page)
    form = {"namespace": "admin", "name": "nocsrf", "visibility": "public"}
    r = requests.post(f"{server.url}/repository/new", data=form, cookies={SESSION: cookie}, timeout=10,
                      allow_redirects=False)
    assert r.status_code == 403 and "security token" in r.text
    r = requests.post(f"{server.url}/repository/new", data={**form, "_csrf": "x" * 43}, cookies={SESSION: cookie},
                      timeout=10, allow_redirects=False)
    assert r.status_code == 403
    assert Api(server, auth=("admin", ADMIN_PASSWORD)).get("/repository/admin/nocsrf").status_code == 404
    # the same form with the session's token works
    r = requests.post(f"{server.url}/repository/new", data={**form, "_csrf": token}, cookies={SESSION: cookie},
                      timeout=10, allow_redirects=False)
    assert r.status_code == 302 and r.headers["Location"] == "/repository/admin/nocsrf"


def test_the_csrf_token_is_refused_in_the_page_the_browser_shows(page, server, screenshot):
    """A form on another site posting to Slipway: the browser sends no session cookie (SameSite=Lax) and
    the form has no token, so nothing is created and the 403 page says why."""
    page.sign_in()
    evil = ("<form id=f method=post action='" + server.url + "/repository/new'>"
            "<input name=namespace value=admin><input name=name value=crosssite>"
            "<input name=visibility value=public></form><script>document.getElementById('f').submit()</script>")
    page.driver.get("data:text/html," + urllib.parse.quote(evil))
    page.wait_text("main", "Not allowed")
    assert "403" in page.text("h1")
    assert Api(server, auth=("admin", ADMIN_PASSWORD)).get("/repository/admin/crosssite").status_code == 404
    screenshot(page, "forbidden")


def test_the_session_cookie_authenticates_the_api_for_reads_and_for_writes_only_with_the_csrf_header(page, server):
    cookie, token = _session_and_token(page)
    cookies = {SESSION: cookie}
    assert requests.get(f"{server.url}/api/v1/user/", cookies=cookies, timeout=10).json()["username"] == "admin"
    body = {"namespace": "admin", "repository": "viaapi", "visibility": "private"}
    # a cross-site POST carries the cookie at most: refused
    r = requests.post(f"{server.url}/api/v1/repository", json=body, cookies=cookies, timeout=10,
                      headers={"Origin": "http://evil.example"})
    assert r.status_code == 403 and "X-CSRF-Token" in r.json()["detail"]
    r = requests.post(f"{server.url}/api/v1/repository", json=body, cookies=cookies, timeout=10,
                      headers={"X-CSRF-Token": "wrong"})
    assert r.status_code == 403
    r = requests.post(f"{server.url}/api/v1/repository", json=body, cookies=cookies, timeout=10,
                      headers={"X-CSRF-Token": token})
    assert r.status_code == 201, r.text
    # token and basic callers are untouched: a bad cookie beside good basic credentials changes nothing
    r = requests.get(f"{server.url}/api/v1/user/", cookies={SESSION: "forged"}, auth=("admin", ADMIN_PASSWORD),
                     timeout=10)
    assert r.status_code == 200
    # a session cannot change its user's password through the API (that needs the current password)
    r = requests.put(f"{server.url}/api/v1/user/", json={"password": "new-password-123"}, cookies=cookies,
                     headers={"X-CSRF-Token": token}, timeout=10)
    assert r.status_code == 403


def test_fetch_from_the_page_uses_the_session_and_its_csrf_token(page, server):
    page.sign_in()
    result = page.driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const headers = {"Content-Type": "application/json", "X-CSRF-Token": slipwayCsrfToken()};
        const body = JSON.stringify({namespace: "admin", repository: "fromfetch", visibility: "private"});
        Promise.all([
          fetch("/api/v1/repository", {method: "POST", headers, body}).then(r => r.status),
          fetch("/api/v1/repository", {method: "POST", headers: {"Content-Type": "application/json"},
                                       body: body.replace("fromfetch", "nocsrf2")}).then(r => r.status),
        ]).then(done);
    """)
    assert result == [201, 403]


def test_failed_sign_ins_are_throttled_per_account_with_a_clear_message(page, server, screenshot):
    create_user(server, "victim", "victim-password-1")
    page.open("/signin")
    page.submit("form[action='/signin']", username="victim", password="guess-guess")
    assert page.text("#e-form") == "Invalid username or password"
    # four more failures, posted as the form does (the browser's cookie and token)
    token = page.find("input[name='_csrf']").get_attribute("value")
    cookies = {"slipway_csrf": page.cookie("slipway_csrf")["value"]}
    for _ in range(4):
        r = requests.post(f"{server.url}/signin", data={"_csrf": token, "username": "victim", "password": "guess"},
                          cookies=cookies, timeout=10, allow_redirects=False)
        assert r.status_code == 401 and "Invalid username or password" in r.text
    # the right password is refused too while throttled, and the page says for how long
    page.open("/signin")
    page.submit("form[action='/signin']", username="victim", password="victim-password-1")
    message = page.text("#e-form")
    assert message.startswith("Too many failed sign-ins for this account: try again in "), message
    assert page.cookie(SESSION) is None
    screenshot(page, "signin-throttled")
    # another account from the same address is not affected (below the address limit)
    page.sign_in()
    assert page.cookie(SESSION) is not None


def test_unknown_pages_say_what_is_missing_and_link_back(page):
    page.open("/no/such/page")
    assert "404" in page.text("h1") and "There is no page at /no/such/page" in page.text("main")
    assert page.find("main a[href='/']").text.startswith("Back to")
    page.open("/repository/admin/missing")
    assert "There is no repository admin/missing" in page.text("main")


def test_sign_up_is_not_there_unless_the_operator_allows_it(server):
    r = requests.get(f"{server.url}/signup", timeout=10)
    assert r.status_code == 404 and "Sign-up is disabled on this server" in r.text
    assert 'href="/signup"' not in requests.get(f"{server.url}/signin", timeout=10).text


@pytest.mark.parametrize("path", ["/", "/signin", "/no/such/page"])
def test_pages_send_security_headers(server, path):
    r = requests.get(server.url + path, timeout=10)
    assert "script-src 'self'" in r.headers["Content-Security-Policy"]
    assert r.headers["X-Frame-Options"] == "DENY"
    assert r.headers["Content-Type"].startswith("text/html")


def test_sign_in_works_from_the_keyboard_with_a_visible_focus(page):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    page.open("/signin")
    keys = ActionChains(page.driver)
    keys.send_keys(Keys.TAB).perform()
    active = page.driver.switch_to.active_element
    assert active.text == "Skip to content"
    assert active.value_of_css_property("outline-style") != "none"  # the focus is visible
    active.send_keys(Keys.ENTER)  # skip the header
    for _ in range(10):  # tab on to the username field
        keys.send_keys(Keys.TAB).perform()
        if page.driver.switch_to.active_element.get_attribute("id") == "f-username":
            break
    username = page.driver.switch_to.active_element
    assert username.get_attribute("id") == "f-username"
    assert username.value_of_css_property("outline-style") != "none"
    old = page.find("html")
    keys.send_keys("admin", Keys.TAB, ADMIN_PASSWORD, Keys.ENTER).perform()
    page.wait_for_next(old)
    assert page.path == "/" and page.find("h1").text == "Repositories"
