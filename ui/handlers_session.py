"""Signing in and out, and signing up when the operator allows it."""
from __future__ import annotations

from accounts import users
from accounts.login import LoginError
from slipway.errors import Conflict, Invalid, TooMany

from .web import UiHandler, safe_next

TOKENS_REFUSED = "Sign in with a user's username and password (tokens and robot accounts work with the API " \
    "and the registry, not here)"


class SignInHandler(UiHandler):
    def get(self) -> None:
        if self.signed_in:
            self.redirect(safe_next(self.get_argument("next", "/")))
            return
        self.render("signin.html", next=safe_next(self.get_argument("next", "/")), values={}, errors={})

    async def post(self) -> None:
        username, password = self.form("username"), self.get_body_argument("password", "")
        target = safe_next(self.form("next", "/") or "/")
        errors = {}
        if not username:
            errors["username"] = "Enter your username"
        if not password:
            errors["password"] = "Enter your password"
        if not errors and (username.startswith("$") or "+" in username):
            # application/API tokens ($app, $token), robots (ns+name) and build credentials use the API and the
            # registry, not pages: a session would turn a scoped or revocable token into the account itself
            errors["form"] = TOKENS_REFUSED
        if not errors:
            try:
                identity = await self.authenticate_throttled(username, password)
            except TooMany as e:
                errors["form"] = e.message
            except LoginError as e:
                errors["form"] = str(e)
            else:
                if identity.kind != "user" or identity.via != "password":  # (as above, whatever the name)
                    errors["form"] = TOKENS_REFUSED
                else:
                    self.start_session(users.get_account(identity.account_id))
                    self.redirect(target)
                    return
        self.render("signin.html", status=400 if "form" not in errors else 401, next=target,
                    values={"username": username}, errors=errors)


class SignOutHandler(UiHandler):
    async def post(self) -> None:
        self.end_session()
        self.flash("You are signed out.", "success")
        self.redirect("/")


class SignUpHandler(UiHandler):
    def check_enabled(self) -> None:
        if not self.services.config.auth.user_signup:
            raise self.not_found("Sign-up is disabled on this server: ask an administrator to create your account")

    def get(self) -> None:
        self.check_enabled()
        self.render("signup.html", values={}, errors={})

    async def post(self) -> None:
        self.check_enabled()
        values = {"username": self.form("username"), "email": self.form("email")}
        password = self.get_body_argument("password", "")
        errors = {}
        if password != self.get_body_argument("password2", ""):
            errors["password2"] = "The two passwords differ"
        if not errors:
            try:
                user = await self.in_thread(users.create_user, values["username"], password, values["email"] or None,
                                            False, None, self.client_ip)
            except (Invalid, Conflict) as e:
                field = "password" if "assword" in e.message else "email" if "email" in e.message else "username"
                errors[field] = e.message
            else:
                self.start_session(user)
                self.flash(f"Welcome, {user.name}: your account is ready.", "success")
                self.redirect("/")
                return
        self.render("signup.html", status=400, values=values, errors=errors)


default_handlers = [
    (r"/signin/?", SignInHandler),
    (r"/signout/?", SignOutHandler),
    (r"/signup/?", SignUpHandler),
]
