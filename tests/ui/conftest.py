"""Browser tests of the web interface: a real Slipway server and Debian's chromium, driven by Selenium.

One server (``server``, from tests/conftest.py, module scope) and one headless browser (``browser``,
module scope) are shared by the tests of a module; ``page`` is the browser with its cookies cleared
for each test. Helpers:

- ``page.sign_in(username, password)``: through the sign-in form.
- ``page.open(path)``: a path on the server; ``page.text(css)``, ``page.find(css)``, ``page.wait_text(css, text)``.
- ``page.submit(form_css, **fields)``: fill fields by name and submit; ``page.click(css)``: click and wait
  for the next page.
- ``create_user(server, name, password)``: a user through the API (faster than ``server.create_user``).
- ``screenshot(page, name)``: a PNG under the test's temporary directory (``SLIPWAY_SCREENSHOTS=dir``
  writes it there instead: how docs/screenshots/ is refreshed).

Tests skip when chromium or chromedriver is missing (``scripts/install.sh test`` installs them).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.api import Api
from tests.conftest import ADMIN_PASSWORD, wait_for

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

webdriver = pytest.importorskip("selenium.webdriver")
if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
    pytest.skip("chromium and chromium-driver are not installed (scripts/install.sh test)", allow_module_level=True)

from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402


class Page:
    """The browser pointed at one server, with a few helpers that keep tests short."""

    def __init__(self, driver, server):
        self.driver, self.server = driver, server

    # -- navigation ---------------------------------------------------------------------------------
    def open(self, path: str) -> "Page":
        self.driver.get(self.server.url + path)
        return self

    @property
    def path(self) -> str:
        url = self.driver.current_url
        return url[len(self.server.url):] if url.startswith(self.server.url) else url

    @property
    def title(self) -> str:
        return self.driver.title

    # -- finding -------------------------------------------------------------------------------------
    def find(self, css: str):
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str) -> list:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def exists(self, css: str) -> bool:
        try:
            self.find(css)
            return True
        except NoSuchElementException:
            return False

    def text(self, css: str = "main") -> str:
        return self.find(css).text

    def wait_text(self, css: str, text: str, timeout: float = 10) -> None:
        wait_for(lambda: self._shows(css, text), timeout, f"'{text}' in {css}", interval=0.05)

    def _shows(self, css: str, text: str) -> bool:
        """Whether the page shows ``text`` in ``css`` now; the page being replaced meanwhile (a click
        that navigates: the element found is gone before its text is read) counts as not yet."""
        try:
            return text in self.find(css).text
        except (NoSuchElementException, StaleElementReferenceException):
            return False

    # -- forms -----------------------------------------------------------------------------------------
    def fill(self, form, **fields) -> None:
        for name, value in fields.items():
            element = form.find_element(By.NAME, name)
            kind = element.get_attribute("type")
            if element.tag_name == "select":
                element.find_element(By.CSS_SELECTOR, f"option[value='{value}']").click()
            elif kind in ("radio", "checkbox"):
                form.find_element(By.CSS_SELECTOR, f"input[name='{name}'][value='{value}']").click()
            else:
                element.clear()
                element.send_keys(value)

    def submit(self, form_css: str, **fields) -> None:
        form = self.find(form_css)
        self.fill(form, **fields)
        button = form.find_element(By.CSS_SELECTOR, "button[type=submit], input[type=submit]")
        old = self.find("html")
        button.click()
        self.wait_for_next(old)

    def click(self, css: str, accept_confirm: bool = False) -> None:
        """Click an element that loads a new page (a link, a form's button) and wait for that page;
        ``accept_confirm``: accept the ``data-confirm`` dialog it opens."""
        old = self.find("html")
        self.find(css).click()
        if accept_confirm:
            self.driver.switch_to.alert.accept()
        self.wait_for_next(old)

    def wait_for_next(self, old) -> None:
        """Until the document ``old`` (``find("html")`` before a click) is replaced by a loaded one."""
        wait_for(lambda: _stale(old) and self.driver.execute_script("return document.readyState") == "complete",
                 10, "the next page", interval=0.02)

    def sign_in(self, username: str = "admin", password: str = ADMIN_PASSWORD) -> "Page":
        self.open("/signin")
        self.submit("form[action='/signin']", username=username, password=password)
        # a refused sign-in (a throttle, a wrong password) re-renders the form: say so here, with the page's
        # message, rather than as a missing element in whatever the test looks for next
        assert not self.path.startswith("/signin"), f"sign-in as {username} refused: {self.text('main')[:300]}"
        return self

    def cookie(self, name: str) -> dict | None:
        return self.driver.get_cookie(name)


def create_user(server, name: str, password: str) -> None:
    """A user, made through the superuser API (fast: no CLI process)."""
    Api(server, auth=("admin", ADMIN_PASSWORD)).ok("POST", "/superuser/users/",
                                                   {"username": name, "password": password})


def _stale(element) -> bool:
    try:
        element.is_enabled()
        return False
    except Exception:  # noqa: BLE001 - StaleElementReferenceException: the page changed
        return True


def new_driver():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,900", "--disable-extensions", "--no-first-run", "--password-store=basic",
                "--disable-features=PasswordLeakDetection,Translate"):
        options.add_argument(arg)
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER)
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(30)
    return driver


@pytest.fixture(scope="module")
def browser():
    driver = new_driver()
    yield driver
    driver.quit()


@pytest.fixture
def page(browser, server):
    """The module's browser, signed out (cookies cleared) and pointed at the module's server."""
    p = Page(browser, server)
    p.open("/health")
    browser.delete_all_cookies()
    return p


@pytest.fixture
def screenshot(tmp_path):
    """``screenshot(page, name, width=None)``: a PNG of the page; returns its path."""
    target = Path(os.environ.get("SLIPWAY_SCREENSHOTS") or tmp_path)

    def take(p: Page, name: str, width: int | None = None, height: int = 900) -> Path:
        if width:
            p.driver.set_window_size(width, height)
        path = target / f"{name}.png"
        p.driver.save_screenshot(str(path))
        if width:
            p.driver.set_window_size(1280, 900)
        return path

    return take
