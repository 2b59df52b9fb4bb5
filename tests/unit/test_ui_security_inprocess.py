"""Security rules of the web interface over HTTP, in-process (``AppTestCase``: the real application on a
loopback socket): sign-in takes passwords only, what a page tells someone about private repositories, the
sign-in throttle under a burst of simultaneous attempts, and links taken from data."""
from __future__ import annotations

import html
import json
import re
from urllib.parse import urlencode

from accounts import sessions, users

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
