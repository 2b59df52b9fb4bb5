"""Security rules of the web interface over HTTP, in-process (``AppTestCase``: the real application on a
loopback socket): sign-in takes passwords only, what a page tells someone about private repositories, the
sign-in throttle under a burst of simultaneous attempts, and links taken from data."""
from __future__ import annotations

import html
import json
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlencode

from tornado import gen

from accounts import sessions, users
from accounts.models import LogEntry

from .test_handlers_inprocess import AppTestCase

ERROR = re.compile(r'<p class="error[^"]*"[^>]*>([^<]*)</p>')


class TestUiSecurity(AppTestCase):
    def signed_in(self, name: str) -> tuple[dict, str]:
        """A user with a browser session: (the cookie header, the session's CSRF token)."""
        raw, csrf = sessions.create(users.create_user(name, f"{name}-password-1"))
        return {"Cookie": f"slipway_session={raw}"}, csrf

    def signin_form(self) -> tuple[dict, str]:
        """A signed-out browser's sign-in form: (its CSRF cookie header, the form's token)."""
        signin = self.fetch("/signin")
        cookie = signin.headers["Set-Cookie"].split(";", 1)[0]
        return {"Cookie": cookie}, re.search(rb'name="_csrf" value="([^"]+)"', signin.body).group(1).decode()

    def test_sign_in_takes_a_users_password_never_a_token(self):
        """``$app`` / ``$token`` with a valid token log in to the API and the registry; on the sign-in page they
        would become a browser session with the owner's full rights (an API token limited to ``repo:read``
        could then make tokens, delete repositories...). The page refuses them, and starts no session."""
        from accounts.models import Session

        for username, secret in (("$app", self.app_token), ("$token", self.api_token),
                                 ("$oauthtoken", self.api_token)):
            cookie, token = self.signin_form()
            response = self.fetch("/signin", method="POST", follow_redirects=False, headers=cookie,
                                  body=urlencode({"_csrf": token, "username": username, "password": secret}))
            assert response.code == 401, (username, response.code, response.headers.get("Location"))
            assert "tokens and robot accounts work with the API" in html.unescape(response.body.decode())
        assert not Session.select().exists()
        cookie, token = self.signin_form()  # (the same token as a user's password: a 401 as any wrong password)
        assert self.fetch("/signin", method="POST", follow_redirects=False, headers=cookie, body=urlencode(
            {"_csrf": token, "username": "admin", "password": self.app_token})).code == 401

    def test_creating_a_repository_does_not_tell_who_may_not_create_there_which_private_ones_exist(self):
        """``admin/secret`` is private: for someone who may not create in ``admin`` (and cannot see it), trying
        to create it answers exactly as for a name that is not there, on the page and in the API (Quay: 403
        before any look at the name)."""
        created = self.fetch("/api/v1/repository", method="POST", headers={"Authorization": f"Bearer {self.api_token}"},
                             body=json.dumps({"namespace": "admin", "repository": "secret", "visibility": "private",
                                              "description": ""}))
        assert created.code == 201, created.body
        cookie, csrf = self.signed_in("mallory")
        answers = {}
        for name in ("secret", "not-there"):
            page = self.fetch("/repository/new", method="POST", follow_redirects=False, headers=cookie,
                              body=urlencode({"_csrf": csrf, "namespace": "admin", "name": name,
                                              "visibility": "private"}))
            api = self.fetch("/api/v1/repository", method="POST", headers={**cookie, "X-CSRF-Token": csrf},
                             body=json.dumps({"namespace": "admin", "repository": name, "visibility": "private",
                                              "description": ""}))
            answers[name] = (page.code, [html.unescape(e) for e in ERROR.findall(page.body.decode())], api.code,
                             json.loads(api.body)["detail"])
        assert answers["secret"] == answers["not-there"], answers
        assert answers["secret"][0] == 400 and answers["secret"][2] == 403
        assert answers["secret"][1] == ["You may not create repositories in namespace 'admin'"]

    def test_simultaneous_sign_in_attempts_get_no_more_tries_than_attempts_one_after_another(self):
        """Each attempt's failure is audited only once its password is checked: attempts sent at once must
        not all pass the throttle before the first failure is written. The password check is held until
        every attempt either reached it or was answered, so the burst is truly simultaneous."""
        users.create_user("target", "target-password-1")
        cookie, token = self.signin_form()
        authenticator = self.services.authenticator
        check_password = authenticator.authenticate
        entered, gate, lock = [0], threading.Event(), threading.Lock()

        def held(*args):
            with lock:
                entered[0] += 1
            gate.wait(30)
            return check_password(*args)

        authenticator.authenticate = held
        pool = ThreadPoolExecutor(16)  # threads for every attempt, held or not
        self.io_loop.set_default_executor(pool)
        attempts = 8
        body = urlencode({"_csrf": token, "username": "target", "password": "a-wrong-guess"})

        async def burst():
            fetches = [self.http_client.fetch(self.get_url("/signin"), method="POST", body=body, raise_error=False,
                                              headers=cookie, follow_redirects=False)
                       for _ in range(attempts)]
            while entered[0] <= sessions.ACCOUNT_FAILURES and entered[0] + sum(f.done() for f in fetches) < attempts:
                await gen.sleep(0.01)
            gate.set()
            return await gen.multi(fetches)

        try:
            responses = self.io_loop.run_sync(burst, timeout=60)
        finally:
            gate.set()
            authenticator.authenticate = check_password
            pool.shutdown(wait=False)
        failures = LogEntry.select().where(LogEntry.kind == "login_failure").count()
        refused = [r for r in responses if b"Too many failed sign-ins" in r.body]
        assert failures == sessions.ACCOUNT_FAILURES, (failures, [r.code for r in responses])
        assert len(refused) == attempts - sessions.ACCOUNT_FAILURES
        assert all(r.code == 401 for r in responses)


def test_an_advisory_link_from_a_feed_is_a_link_only_when_it_is_http():
    """The vulnerability page links each advisory to the URL its feed gives (an OSV record's reference):
    one that is ``javascript:`` (or ``data:``...) is shown as plain text, not as a link."""
    from types import SimpleNamespace

    from ui import templates

    def vuln(name: str, link: str) -> dict:
        return {"Name": name, "Severity": "High", "Link": link, "FixedBy": "", "Description": ""}

    links = {"CVE-1": "javascript:alert(document.domain)", "CVE-2": " JavaScript:alert(1)",
             "CVE-3": "data:text/html,<script>alert(1)</script>", "CVE-4": "https://osv.dev/vulnerability/CVE-4"}
    page = templates.render("manifest.html", {
        "repo": SimpleNamespace(full_name="a/b"), "repo_url": lambda tab=None: "/repository/a/b",
        "digest": "sha256:" + "0" * 64, "counts": {"High": 4}, "severities": ["High"], "minimum": "",
        "fixable_only": False, "report": {"status": "scanned", "data": {"Layer": {"NamespaceName": "debian"}}},
        "packages": [{"name": "pkg", "version": "1", "kind": "dpkg", "added_by": "sha256:" + "1" * 64,
                      "vulnerabilities": [vuln(name, link) for name, link in links.items()]}]})
    hrefs = re.findall(r'<a href="([^"]*)" rel="noopener noreferrer">', page)
    assert hrefs == ["https://osv.dev/vulnerability/CVE-4"]
    assert all(name in page for name in links)
