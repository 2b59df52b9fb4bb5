"""Account settings (``/account``, Quay's ``/user/<name>``): password, time-machine window, application and API
tokens (each shown once, on creation), the user's robots, usage logs. The same functions as ``PUT /api/v1/user/``,
``/api/v1/user/apptoken``, ``/api/v1/user/apitokens`` and ``/api/v1/user/robots`` (``accounts.users``,
``accounts.tokens``, ``accounts.robots``).

A password change needs the current password (``users.change_password``'s rule: the performer is the identity
the current password proves, checked by the authenticator the sign-in page uses, so failures are audited and
throttled alike); it ends every session of the user, and this browser gets a new one.
"""
from __future__ import annotations

from accounts import tokens, users
from accounts.login import LoginError
from slipway.errors import Invalid, NotFound

from .handlers_orgs import LogsTab, time_machine_choices
from .robots import RobotForms
from .tabbed import TabbedPage
from .web import UiHandler


class AccountRedirect(UiHandler):
    """``/account``: the signed-in user's settings page."""

    login_required = True

    async def get(self) -> None:
        self.redirect(f"/user/{self.identity.name}" + (f"?{self.request.query}" if self.request.query else ""))


class AccountPage(RobotForms, LogsTab, TabbedPage):
    """``/user/<name>?tab=settings|tokens|robots|logs``: only for that user."""

    tabs = (("settings", "Settings", False), ("tokens", "Tokens", False), ("robots", "Robot accounts", False),
            ("logs", "Usage logs", False))
    template_prefix = "account"
    action_fields = {**RobotForms.action_fields, "change_password": "new_password",
                     "time_machine": "time_machine", "create_app_token": "app_title",
                     "create_api_token": "api_title"}

    def load(self, username: str) -> None:
        if username != self.identity.name or self.identity.kind != "user":
            raise NotFound(f"There is no settings page for {username} that you can see")
        self.account = self.namespace = users.get_account(self.identity.account_id)

    def render(self, name: str, status: int = 200, **context) -> None:
        super().render(name, status, account=self.account, **context)

    # -- settings ------------------------------------------------------------------------------------------
    def show_settings(self) -> dict:
        return {"time_machine_choices": time_machine_choices()}

    async def do_change_password(self) -> str:
        current = self.get_body_argument("current_password", "")
        new = self.get_body_argument("new_password", "")
        if new != self.get_body_argument("new_password2", ""):
            raise Invalid("The two new passwords differ")
        try:
            proven = await self.authenticate_throttled(self.account.name, current)
        except LoginError:
            raise Invalid("The current password is not right") from None
        await self.in_thread(users.change_password, self.account, new, proven, self.client_ip)
        self.start_session(self.account)  # the change ended every session, this one too
        return "Password changed: every other session of your account has ended."

    def do_time_machine(self) -> str:
        seconds = self.form("time_machine")
        if not seconds.isdigit():
            raise Invalid("Choose a time-machine window")
        users.update_settings(self.account, self.identity, self.client_ip, time_machine_s=int(seconds))
        return "Time-machine window saved."

    # -- tokens --------------------------------------------------------------------------------------------
    def show_tokens(self) -> dict:
        scopes = {k: v for k, v in tokens.SCOPES.items() if k != "super:user" or self.account.superuser}
        return {"app_tokens": tokens.list_tokens(self.account, tokens.APP),
                "api_tokens": tokens.list_tokens(self.account, tokens.API), "scopes": scopes}

    def _create_token(self, kind: str, title_field: str, scopes: list | None) -> tuple:
        row, secret = tokens.create(self.account, kind, self.form(title_field), scopes, self.identity,
                                    self.client_ip)
        return (f"Token “{row.title}” created: copy it now, it is not shown again.",
                {"new_token": {"kind": kind, "title": row.title, "secret": secret}})

    def do_create_app_token(self) -> tuple:
        return self._create_token(tokens.APP, "app_title", None)

    def do_create_api_token(self) -> tuple:
        return self._create_token(tokens.API, "api_title", self.get_body_arguments("scope"))

    def do_revoke_token(self) -> str:
        kind = tokens.API if self.form("kind") == tokens.API else tokens.APP
        token_id = self.form("token")
        if not token_id.isdigit():
            raise Invalid(f"Invalid token id '{token_id}'")
        row = tokens.get(self.account, kind, int(token_id))
        tokens.revoke(row, self.identity, self.client_ip)
        return f"Token “{row.title}” revoked."

    # -- robots, logs ----------------------------------------------------------------------------------------
    def show_robots(self) -> dict:
        return self.robot_context()

    def show_logs(self) -> dict:
        return self.logs_context(self.account)


default_handlers = [
    (r"/account/?", AccountRedirect),
    (r"/user/(?P<username>[^/?]+)/?", AccountPage),
]
