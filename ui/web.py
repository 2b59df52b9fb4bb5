"""The base of every web interface page: the signed-in user, CSRF, rendering, flash messages, paging, errors.

A page handler subclasses ``UiHandler``, resolves what it shows with the same service functions as
/api/v1 (``registry.repos``, ``registry.tags``, ``accounts.orgs``...), and calls ``self.render(template,
**context)``. Every POST/PUT/PATCH/DELETE method of a subclass is wrapped so that it runs only when the
request carries the session's CSRF token (the ``_csrf`` form field or the ``X-CSRF-Token`` header);
otherwise the answer is the 403 page. ``DomainError`` kinds raised by service functions become the
404/403/400 pages (``write_error``); a form handler catches ``Invalid`` itself and re-renders the form
with the message next to its field (``errors={"field": message}``).
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from urllib.parse import urlencode

from tornado.web import HTTPError

from slipway import crypto
from slipway.api import int_query, quay_error
from slipway.errors import DomainError, Forbidden, Invalid, NotFound, TooMany, Unauthenticated
from slipway.web import CSRF_HEADER, SAFE_METHODS, SESSION_COOKIE, BaseHandler

from . import templates
from .navigation import Navigation

#: The cookie carrying the CSRF token of a visitor who is not signed in (sign-in and sign-up forms).
ANON_CSRF_COOKIE = "slipway_csrf"
FLASH_COOKIE = "slipway_flash"
CSRF_FIELD = "_csrf"
#: Content Security Policy of every page: scripts and styles from this server only (no inline script),
#: no framing (clickjacking), forms posted here only; images also over https (badges in descriptions).
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: https:; "
       "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'")


class _LazyToken:
    """The CSRF token as a template value, taken only where a form writes it: a signed-out visitor's page
    without a form (the 404 page a browser's ``/favicon.ico`` gets) must not set a new token cookie, or
    it replaces the one the sign-in form on screen carries, and that form is then refused."""

    __slots__ = ("handler",)

    def __init__(self, handler) -> None:
        self.handler = handler

    def __str__(self) -> str:
        return self.handler.csrf_token

    __html__ = __str__


class CsrfRefused(Forbidden):
    """A state-changing request without the session's CSRF token."""


def _csrf_checked(method):
    @functools.wraps(method)
    async def checked(self, *args, **kwargs):
        self.check_csrf()
        result = method(self, *args, **kwargs)
        if hasattr(result, "__await__"):
            result = await result
        return result

    checked._csrf_checked = True
    return checked


@dataclass
class Pager:
    """One page of a list: ``page`` (1-based), ``per_page``, whether there is a next one, and the
    handler's ``url_with`` to make the links (templates call ``pager(p)`` from ``macros.html``)."""

    page: int
    per_page: int
    has_next: bool
    url_with: object = None
    total: int | None = None

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per_page

    @property
    def has_prev(self) -> bool:
        return self.page > 1

    def url(self, page: int) -> str:
        return self.url_with(page=page if page > 1 else None)


class UiHandler(BaseHandler):
    """Base of web interface pages.

    - ``self.identity``: who is signed in (``accounts.identity.Identity``; anonymous when nobody).
    - ``login_required = True`` sends an anonymous visitor to ``/signin?next=...`` (GET) or the 403 page.
    - ``self.render(name, **ctx)``: a template of ``templates/ui/`` with ``user``, ``csrf_token``,
      ``flashes``, ``static``, ``path`` and ``url_with`` in its context.
    - ``self.flash(message, kind)`` then ``self.redirect(url)``: the message is shown on the next page.
    - ``self.pager(per_page)``: the ``?page=`` argument as a ``Pager``; fill ``has_next`` yourself.
    - ``self.not_found(what)`` / ``self.forbidden(what)``: the 404 / 403 pages.
    - ``self.form(name)``: a trimmed form field (``""`` when absent).
    """

    login_required = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name in ("post", "put", "patch", "delete"):
            method = cls.__dict__.get(name)
            if method is not None and not getattr(method, "_csrf_checked", False):
                setattr(cls, name, _csrf_checked(method))

    def __init__(self, application, request, **kwargs):
        super().__init__(application, request, **kwargs)
        self.identity = self.services.authenticator.anonymous
        self.session = None
        self._flashes: list | None = None

    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.set_header("Content-Security-Policy", CSP)
        self.set_header("X-Frame-Options", "DENY")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "same-origin")
        self.set_header("Cache-Control", "no-store")

    async def prepare(self) -> None:
        cookie = self.get_cookie(SESSION_COOKIE)
        if cookie:
            self.session = await self.in_thread(self.services.authenticator.session, cookie)
            if self.session is None:
                self.clear_cookie(SESSION_COOKIE, path="/")
            else:
                self.identity = self.session.identity
        self.refuse_large_body(lambda limit: Invalid(f"The form is larger than the limit of {limit} bytes"))
        if self.login_required and self.identity.anonymous:
            if self.request.method in SAFE_METHODS:
                self.redirect("/signin?" + urlencode({"next": self.request.uri}))
                return
            raise Unauthenticated("Sign in first")

    # -- who ----------------------------------------------------------------------------------------
    @property
    def signed_in(self) -> bool:
        return not self.identity.anonymous

    # -- sessions and CSRF ------------------------------------------------------------------------------
    @property
    def secure_cookies(self) -> bool:
        """TLS here, or behind a proxy that terminates it (the public URL says https)."""
        return self.request.protocol == "https" or self.base_url().startswith("https://")

    def cookie_options(self, max_age: int | None = None) -> dict:
        options = {"path": "/", "httponly": True, "samesite": "Lax", "secure": self.secure_cookies}
        if max_age is not None:
            options["expires_days"] = max_age / 86400
        return options

    @property
    def csrf_token(self) -> str:
        """The token forms must send back: the session's, or (signed out) one in a cookie of its own."""
        if self.session is not None:
            return self.session.csrf_token
        token = self.get_cookie(ANON_CSRF_COOKIE)
        if not token or len(token) > 64:
            token = getattr(self, "_new_anon_csrf", None)
            if token is None:
                token = self._new_anon_csrf = crypto.new_token(32)
                self.set_cookie(ANON_CSRF_COOKIE, token, **self.cookie_options())
        return token

    def check_csrf(self) -> None:
        sent = self.get_body_argument(CSRF_FIELD, None) or self.request.headers.get(CSRF_HEADER, "")
        if self.session is not None:
            expected = self.session.csrf_token
        else:
            expected = self.get_cookie(ANON_CSRF_COOKIE) or ""
        if not sent or not expected or not crypto.same(sent, expected):
            raise CsrfRefused("This form was sent without its security token (CSRF), or with an old one: "
                              "reload the page and try again")

    def start_session(self, account) -> None:
        """Sign ``account`` in: a new server-side session and its cookie (an old one of this browser ends)."""
        from accounts import sessions

        old = self.get_cookie(SESSION_COOKIE)
        if old:
            sessions.end(old)
        ttl = self.services.config.auth.session_ttl
        raw, csrf = sessions.create(account, self.client_ip, self.request.headers.get("User-Agent", ""), ttl)
        self.set_cookie(SESSION_COOKIE, raw, **self.cookie_options(ttl))
        self.session = None  # the new one counts from the next request

    async def authenticate_throttled(self, username: str, password: str):
        """The authenticator's identity for a username and password (``LoginError`` as it raises), unless the
        sign-in throttle refuses first (``TooMany`` with its message). Attempts under way in this process
        count as failures (``sessions.IN_FLIGHT``), so simultaneous attempts cannot all slip past it."""
        from accounts import sessions

        with sessions.IN_FLIGHT.attempt(username, self.client_ip) as ahead:
            refusal = await self.in_thread(sessions.sign_in_throttled, username, self.client_ip, ahead)
            if refusal:
                raise TooMany(refusal)
            return await self.in_thread(self.services.authenticator.authenticate, username, password,
                                        self.client_ip)

    def end_session(self) -> None:
        from accounts import sessions

        cookie = self.get_cookie(SESSION_COOKIE)
        if cookie:
            sessions.end(cookie)
        self.clear_cookie(SESSION_COOKIE, path="/")
        self.session = None

    # -- forms, links, paging -------------------------------------------------------------------------
    def form(self, name: str, default: str = "") -> str:
        return (self.get_body_argument(name, default) or "").strip()

    def url_with(self, **params) -> str:
        """This page's URL with some query arguments changed (``None`` removes one)."""
        args = {k: v[-1].decode() for k, v in self.request.query_arguments.items()}
        for key, value in params.items():
            if value is None or value == "":
                args.pop(key, None)
            else:
                args[key] = str(value)
        query = urlencode(sorted(args.items()))
        return self.request.path + (f"?{query}" if query else "")

    def int_argument(self, name: str, default: int, minimum: int = 0, maximum: int | None = None) -> int:
        """A whole-number query argument (the API's rule, clamped): a bad one is the 400 page."""
        return int_query(self.get_argument(name, None), name, default, minimum, maximum, True, Invalid)

    def pager(self, per_page: int) -> Pager:
        return Pager(self.int_argument("page", 1, 1, 10 ** 6), per_page, False, self.url_with)

    # -- flash messages ---------------------------------------------------------------------------------
    def flash(self, message: str, kind: str = "info") -> None:
        """A message for the next page this browser shows (after a redirect): kind info | success | error."""
        pending = self._read_flashes() + [(kind, message)]
        self.set_cookie(FLASH_COOKIE, crypto.encrypt(json.dumps(pending[-5:])), **self.cookie_options())
        self._flashes = pending

    def _read_flashes(self) -> list:
        if self._flashes is None:
            raw = self.get_cookie(FLASH_COOKIE)
            self._flashes = []
            if raw:
                try:
                    self._flashes = [(str(k), str(m)) for k, m in json.loads(crypto.decrypt(raw))][:5]
                except Exception:  # noqa: BLE001 - a damaged or foreign cookie is no message
                    self._flashes = []
        return self._flashes

    def take_flashes(self) -> list:
        flashes = self._read_flashes()
        if flashes:
            self.clear_cookie(FLASH_COOKIE, path="/")
        self._flashes = []
        return flashes

    # -- rendering ------------------------------------------------------------------------------------
    def template_context(self) -> dict:
        config = self.services.config
        navigation = self.services.registration.extension(Navigation)
        return {"user": None if self.identity.anonymous else self.identity, "csrf_token": _LazyToken(self),
                "nav_main": navigation.for_identity(self.identity, "main"),
                "nav_user": navigation.for_identity(self.identity, "user"),
                "csrf_field": CSRF_FIELD, "path": self.request.path, "uri": self.request.uri,
                "url_with": self.url_with, "signup_enabled": config.auth.user_signup,
                "registry_host": self.registry_host(), "base_url": self.base_url()}

    def registry_host(self) -> str:
        """The host[:port] clients pull from (``podman pull <host>/<ns>/<name>``)."""
        return self.base_url().split("://", 1)[-1].rstrip("/")

    def render_string_ui(self, name: str, **context) -> str:
        ctx = self.template_context()
        ctx["flashes"] = self.take_flashes()
        ctx.update(context)
        return templates.render(name, ctx)

    def render(self, name: str, status: int = 200, **context) -> None:  # noqa: D401 - tornado's name
        self.set_status(status)
        self.finish(self.render_string_ui(name, **context))

    def redirect_back(self, default: str = "/") -> None:
        self.redirect(safe_next(self.get_argument("next", "") or default))

    # -- errors --------------------------------------------------------------------------------------------
    def not_found(self, what: str) -> NotFound:
        return NotFound(what)

    def forbidden(self, what: str) -> Forbidden:
        return Forbidden(what)

    def write_error(self, status_code: int, **kwargs) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        title = None
        if isinstance(exc, Unauthenticated) and self.request.method in SAFE_METHODS:
            self.redirect("/signin?" + urlencode({"next": self.request.uri}))
            return
        if isinstance(exc, DomainError):
            status, message = quay_error(exc)[0], exc.message
            if isinstance(exc, Unauthenticated):
                status = 403
        elif isinstance(exc, HTTPError):
            status, message = exc.status_code, exc.log_message or self._reason
        else:
            status, message = 500, "Something went wrong on the server; the error is in its log."
        title = {400: "That did not work", 403: "Not allowed", 404: "Not found", 409: "Conflict",
                 413: "Too large", 429: "Too many requests"}.get(status, "Error")
        self.clear_header("Location")
        self.set_status(status)
        self.finish(self.render_string_ui("error.html", status=status, title=title, message=message,
                                          csrf_refused=isinstance(exc, CsrfRefused)))

    def log_exception(self, typ, value, tb) -> None:
        if isinstance(value, DomainError):
            return
        super().log_exception(typ, value, tb)


def safe_next(target: str) -> str:
    """A redirect target from a ``next`` argument: a path on this server only (no open redirect)."""
    if not target.startswith("/") or target.startswith("//") or target.startswith("/\\"):
        return "/"
    if any(ord(c) < 0x21 or c == "\\" or ord(c) == 0x7F for c in target):
        # browsers drop tabs and newlines from a URL ("/\t/evil.example" is "//evil.example") and read "\" as
        # "/"; a header cannot carry control characters at all
        return "/"
    return target
