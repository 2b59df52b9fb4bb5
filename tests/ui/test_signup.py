"""Sign-up, on a server whose operator allows it (``auth.user_signup``); off, the page does not exist."""
import re

import pytest
import requests

from tests.conftest import SlipwayServer


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = SlipwayServer(tmp_path_factory.mktemp("slipway"), {"SLIPWAY_AUTH__USER_SIGNUP": "true"}).start()
    yield srv
    srv.stop()


def _form(browser: requests.Session, url: str) -> str:
    page = browser.get(url, timeout=10)
    assert page.status_code == 200
    return re.search(r'name="_csrf" value="([^"]+)"', page.text).group(1)


def test_sign_up_creates_the_account_and_signs_it_in(server):
    browser = requests.Session()
    assert 'href="/signup"' in browser.get(f"{server.url}/signin", timeout=10).text
    token = _form(browser, f"{server.url}/signup")
    form = {"_csrf": token, "username": "newbie", "email": "newbie@example.com", "password": "newbie-password-1"}
    r = browser.post(f"{server.url}/signup", data={**form, "password2": "different-1"}, timeout=10)
    assert r.status_code == 400 and 'id="e-password2"' in r.text and "The two passwords differ" in r.text
    assert 'value="newbie"' in r.text  # what was typed stays
    r = browser.post(f"{server.url}/signup", data={**form, "password": "short", "password2": "short"}, timeout=10)
    assert r.status_code == 400 and re.search(r'id="e-password">Password must be at least 8', r.text)
    r = browser.post(f"{server.url}/signup", data={**form, "password2": form["password"]}, timeout=10,
                     allow_redirects=False)
    assert r.status_code == 302 and r.headers["Location"] == "/"
    home = browser.get(f"{server.url}/", timeout=10).text
    assert "Welcome, newbie" in home and "Create a repository" in home
    assert requests.get(f"{server.url}/api/v1/user/", auth=("newbie", "newbie-password-1"), timeout=10).ok
    # the name is taken now: said next to the username
    other = requests.Session()
    token = _form(other, f"{server.url}/signup")
    r = other.post(f"{server.url}/signup", data={**form, "_csrf": token, "password2": form["password"]}, timeout=10)
    assert r.status_code == 400
    assert re.search(r'id="e-username">The name (&#39;|&#x27;)newbie\1 is already taken', r.text)
