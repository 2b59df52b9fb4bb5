"""The /api/v1 family: authentication, scopes, JSON bodies, Quay's error shape, and the OpenAPI document.

API handlers subclass ApiHandler and stay thin: resolve the caller, check the
scope, call a plain function, render a Quay-shaped dict. Plain functions raise
``slipway.errors.DomainError`` kinds, which carry no HTTP status; ``QUAY_ERRORS``
here is the one place they become a status and Quay's error shape
``{"status", "error_type", "title", "detail", "error_message", "type"}``.
"""
from __future__ import annotations

import json
import re

import jsonschema
from tornado.web import HTTPError

from . import crypto, redact
from .errors import Conflict, DomainError, Forbidden, Invalid, LoginFailed, NotFound, TooLarge, TooMany, Unauthenticated
from .web import CSRF_HEADER, SAFE_METHODS, SESSION_COOKIE, BaseHandler

API = "/api/v1"

#: How each domain error kind is answered on /api/v1: (HTTP status, Quay's error_type). A package's
#: refined kind (registry.errors.NameInvalid) is answered as the kind it refines.
QUAY_ERRORS: dict[type, tuple[int, str]] = {
    Invalid: (400, "invalid_request"),
    Unauthenticated: (401, "invalid_token"),
    Forbidden: (403, "insufficient_scope"),
    NotFound: (404, "not_found"),
    Conflict: (409, "conflict"),
    TooLarge: (413, "request_too_large"),
    TooMany: (429, "too_many_requests"),
    DomainError: (400, "invalid_request"),
}


def quay_error(exc: DomainError) -> tuple[int, str]:
    """(status, error_type) for a domain error: the entry of its nearest kind in ``QUAY_ERRORS``."""
    for cls in type(exc).__mro__:
        if cls in QUAY_ERRORS:
            return QUAY_ERRORS[cls]
    return QUAY_ERRORS[DomainError]


class ApiRefusal(Exception):
    """A refusal the HTTP layer itself answers (a body over the route's cap): status and error_type as given."""

    def __init__(self, status: int, kind: str, message: str):
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


def body_too_large(limit: int, what: str = "The request body") -> ApiRefusal:
    return ApiRefusal(413, "invalid_request", f"{what} is larger than the limit of {limit} bytes")


_VALIDATORS: dict[int, tuple] = {}


def schema_error(schema: dict, document):
    """The error ``jsonschema.validate`` would raise for ``document``, or None. The schema is checked
    and its validator built once (``validate`` does both on every call: ~4.6 ms, most of a small request)."""
    entry = _VALIDATORS.get(id(schema))
    if entry is None:
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
        entry = _VALIDATORS[id(schema)] = (schema, cls(schema))  # the schema kept, so its id stays its own
    return jsonschema.exceptions.best_match(entry[1].iter_errors(document))


#: The largest number any paging argument may be (offsets beyond it overflow SQL integers).
MAX_QUERY_INT = 2 ** 31 - 1


def int_query(raw: str | None, name: str, default: int, minimum: int, maximum: int | None, clamp: bool, error):
    """The one rule for whole-number query arguments, for every API family (``error`` builds its error)."""
    if raw is None or raw.strip() == "":
        return default
    raw = raw.strip()
    top = MAX_QUERY_INT if maximum is None or clamp else maximum
    if not raw.isdigit() and not (raw.startswith("-") and raw[1:].isdigit()):
        raise error(f"{name} must be a whole number, got '{raw[:40]}'")
    if raw.startswith("-") or int(raw) < minimum:  # (minimum is never negative)
        raise error(f"{name} must be at least {minimum}")
    if len(raw) > 12 or int(raw) > top:
        if clamp:
            return maximum
        raise error(f"{name} must be at most {top}")
    value = int(raw)
    if clamp and maximum is not None:
        value = min(value, maximum)
    return value


class ApiHandler(BaseHandler):
    """Base of /api/v1 handlers. Subclasses may set ``schemas = {"put": {...}}`` to validate bodies,
    ``scopes = {"get": "repo:read"}`` to name the token scope each method needs (documented), and
    docstrings on methods (their first line becomes the OpenAPI summary).

    Credentials are checked by the authenticator the application is handed (``services.authenticator``:
    ``anonymous``, ``api_token(token)``, ``authenticate(username, password, client_ip)`` raising
    ``LoginFailed``); this layer knows no account rules. ``self.identity`` is what it answered."""

    schemas: dict = {}
    scopes: dict = {}

    def __init__(self, application, request, **kwargs):
        super().__init__(application, request, **kwargs)
        self.identity = self.services.authenticator.anonymous

    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")

    async def prepare(self) -> None:
        header = self.request.headers.get("Authorization", "")
        if header[:7].lower() == "bearer ":
            identity = await self.in_thread(self.services.authenticator.api_token, header[7:].strip())
            if identity is None:
                raise Unauthenticated("Invalid or revoked API token")
            self.identity = identity
        elif header[:6].lower() == "basic ":
            credentials = self.basic_auth()
            if credentials is None:
                raise Unauthenticated("Malformed basic authorization header")
            username, password = credentials
            if username.startswith("$") or "+" in username:
                raise Unauthenticated("The API accepts a user's password or an API token (Authorization: Bearer)")
            try:
                self.identity = await self.in_thread(self.services.authenticator.authenticate, username, password,
                                                     self.client_ip)
            except LoginFailed as e:
                raise Unauthenticated(str(e)) from None
        elif not header and self.get_cookie(SESSION_COOKIE):
            await self._session_identity(self.get_cookie(SESSION_COOKIE))
        method = self.request.method.lower()
        if method in self.scopes:
            self.require_scope(self.scopes[method])
        self.refuse_large_body(self._too_large)

    async def _session_identity(self, cookie: str) -> None:
        """The web interface's session cookie (a browser's fetch() or EventSource): it authenticates a
        safe request alone, and a state-changing one only with the session's CSRF token in the
        ``X-CSRF-Token`` header, which another site's page cannot send. An unknown or expired
        session is no one (anonymous), as no credentials would be."""
        session = await self.in_thread(self.services.authenticator.session, cookie)
        if session is None:
            return
        if self.request.method not in SAFE_METHODS:
            sent = self.request.headers.get(CSRF_HEADER, "")
            if not sent or not crypto.same(sent, session.csrf_token):
                raise Forbidden(f"A request authenticated by the session cookie must carry the {CSRF_HEADER} "
                                "header with the session's CSRF token")
        self.identity = session.identity

    def _too_large(self, limit: int) -> Exception:
        if self.identity.anonymous:  # may be more once logged in (a build context): ask for that first
            return Unauthenticated("Authentication required: use HTTP basic auth or an API token")
        return body_too_large(limit)

    # -- who may do what ----------------------------------------------------------------------------
    def require_login(self):
        if self.identity.anonymous:
            raise Unauthenticated("Authentication required: use HTTP basic auth or an API token")
        return self.identity

    def require_scope(self, scope: str) -> None:
        if scope and not self.identity.anonymous and not self.identity.has_scope(scope):
            raise Forbidden(f"This token lacks the '{scope}' scope")

    def require_superuser(self):
        identity = self.require_login()
        if not identity.superuser:
            raise Forbidden("Only superusers may do this")
        return identity

    def deny(self, message: str = "You do not have permission for this") -> DomainError:
        """401 for anonymous callers (they may log in), 403 for everyone else."""
        if self.identity.anonymous:
            return Unauthenticated("Authentication required: use HTTP basic auth or an API token")
        return Forbidden(message)

    # -- query arguments, bodies and answers ----------------------------------------------------------
    def int_argument(self, name: str, default: int, minimum: int = 0, maximum: int | None = None,
                     clamp: bool = False) -> int:
        """A whole-number query argument in [minimum, maximum]; 400 otherwise (or, with ``clamp``,
        a larger value lowered to ``maximum``, as Quay does for page sizes)."""
        return int_query(self.get_argument(name, None), name, default, minimum, maximum, clamp, Invalid)

    def int_argument_value(self, raw: str, name: str) -> int:
        """``int_argument``'s rule for a number given elsewhere (a header)."""
        return int_query(raw, name, 0, 0, None, False, Invalid)

    def json_body(self) -> dict:
        if not self.request.body:
            body = {}
        else:
            try:
                body = json.loads(self.request.body)
            except ValueError as e:
                raise Invalid(f"The request body is not valid JSON: {e}") from None
            except RecursionError:
                raise Invalid("The request body is nested too deeply") from None
        schema = self.schemas.get(self.request.method.lower())
        if schema is not None:
            e = schema_error(schema, body)
            if e is not None:
                where = "/".join(str(p) for p in e.absolute_path)
                raise Invalid(f"Invalid request body{f' at {where}' if where else ''}: {e.message}")
        return body if isinstance(body, dict) else {}

    def send(self, value, status: int = 200) -> None:
        self.set_status(status)
        if status == 204:
            self.clear_header("Content-Type")
            self.finish()
            return
        self.finish(json.dumps(value))

    def write_error(self, status_code: int, **kwargs) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, DomainError):
            (status, kind), message = quay_error(exc), exc.message
        elif isinstance(exc, ApiRefusal):
            status, kind, message = exc.status, exc.kind, exc.message
        elif isinstance(exc, HTTPError):
            status = exc.status_code
            kind = {404: "not_found", 405: "invalid_request"}.get(status, "invalid_request")
            message = exc.log_message or self._reason
        else:
            status, kind, message = 500, "internal_error", "Internal server error"
        message = redact.text(message)  # a URL quoted in an error (a git source, an archive) without credentials
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({
            "status": status, "error_type": kind, "title": kind, "detail": message, "error_message": message,
            "type": f"{self.base_url()}{API}/error/{kind}",
        }))

    def log_exception(self, typ, value, tb) -> None:
        if isinstance(value, (DomainError, ApiRefusal)):
            return
        super().log_exception(typ, value, tb)


class ApiNotFoundHandler(ApiHandler):
    async def prepare(self) -> None:
        raise NotFound(f"No such API endpoint: {self.request.method} {self.request.path}")


# -- OpenAPI ---------------------------------------------------------------------------------------------

GROUP_RE = re.compile(r"\(\?P<(\w+)>")
METHODS = ("get", "post", "put", "patch", "delete")


def path_template(pattern: str) -> str:
    """``/x/(?P<name>[^/]+)/?`` -> ``/x/{name}`` (named groups may nest parentheses)."""
    out, i = [], 0
    while i < len(pattern):
        match = GROUP_RE.match(pattern, i)
        if match is None:
            out.append(pattern[i])
            i += 1
            continue
        depth, j = 0, i
        while j < len(pattern):
            if pattern[j] == "\\":
                j += 2
                continue
            depth += {"(": 1, ")": -1}.get(pattern[j], 0)
            j += 1
            if depth == 0:
                break
        out.append("{" + match.group(1) + "}")
        i = j
    return "".join(out).replace("/?", "").rstrip("$")


def openapi_document(routes: list, base_url: str, version: str) -> dict:
    """An OpenAPI 3.1 description of every /api/v1 route, from the handlers themselves."""
    paths: dict = {}
    for pattern, handler in routes:
        if not pattern.startswith(API) or handler is ApiNotFoundHandler:
            continue
        template = path_template(pattern)
        params = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                  for name in GROUP_RE.findall(pattern)]
        operations = {}
        for method in METHODS:
            fn = getattr(handler, method, None)
            if fn is None or fn is getattr(ApiHandler, method, None):
                continue
            doc = (fn.__doc__ or "").strip()
            operation = {
                "summary": doc.splitlines()[0] if doc else f"{method.upper()} {template}",
                "operationId": method + re.sub(r"[^A-Za-z0-9]+", "_", template[len(API):]).rstrip("_"),
                "tags": [template.split("/")[3]],
                "responses": {"200": {"description": "success"},
                              "default": {"description": "error", "content": {"application/json": {
                                  "schema": {"$ref": "#/components/schemas/ApiError"}}}}},
            }
            if params:
                operation["parameters"] = params
            if handler.schemas.get(method):
                operation["requestBody"] = {"required": True, "content": {
                    "application/json": {"schema": handler.schemas[method]}}}
            if handler.scopes.get(method):
                operation["security"] = [{"basic": []}, {"bearer": [handler.scopes[method]]}]
            operations[method] = operation
        if operations:
            paths.setdefault(template, {}).update(operations)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Slipway API", "version": version,
                 "description": "Quay-compatible REST API of Slipway (paths and JSON shapes follow Quay's)."},
        "servers": [{"url": base_url}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "securitySchemes": {"basic": {"type": "http", "scheme": "basic"},
                                "bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"ApiError": {"type": "object", "properties": {
                "status": {"type": "integer"}, "error_type": {"type": "string"}, "title": {"type": "string"},
                "detail": {"type": "string"}, "error_message": {"type": "string"}, "type": {"type": "string"}}}},
        },
    }


class OpenApiHandler(ApiHandler):
    async def get(self) -> None:
        """The OpenAPI document of this API."""
        from slipway import __version__

        routes = self.application.settings["routes"]
        self.send(openapi_document(routes, self.base_url(), __version__))
