"""/api/v1 for a user's application tokens (Quay's /user/apptoken) and API tokens (beyond Quay)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from slipway.api import API, ApiHandler
from slipway.errors import Invalid

from . import tokens, users, views

if TYPE_CHECKING:  # annotations only: handlers touch no models
    from .models import Account

NAME = r"[^/]+"


class TokenBase(ApiHandler):
    kind = tokens.APP
    scopes = {"get": "user:admin", "post": "user:admin", "delete": "user:admin"}

    def owner(self) -> Account:
        identity = self.require_login()
        if identity.kind != "user":
            raise self.deny("Only users have tokens")
        return users.get_account(identity.account_id)

    def row(self, token_id: str):
        if not token_id.isdigit():
            raise Invalid(f"Invalid token id '{token_id}'")
        return tokens.get(self.owner(), self.kind, int(token_id))


class AppTokensHandler(TokenBase):
    schemas = {"post": {"type": "object", "required": ["title"], "properties": {"title": {"type": "string"}}}}

    async def get(self) -> None:
        """The user's application tokens (without their secrets)."""
        self.send({"tokens": [views.token(t) for t in tokens.list_tokens(self.owner(), self.kind)],
                   "only_expiring": None})

    async def post(self) -> None:
        """Create an application token for `podman login -u '$app'`; its code is shown this once."""
        body = self.json_body()
        row, secret = tokens.create(self.owner(), self.kind, body["title"], body.get("scopes"), self.identity,
                                    self.client_ip)
        self.send({"token": views.token(row, secret)}, 201)


class AppTokenHandler(TokenBase):
    async def get(self, token_uuid: str) -> None:
        """One application token (without its secret)."""
        self.send({"token": views.token(self.row(token_uuid))})

    async def delete(self, token_uuid: str) -> None:
        """Revoke an application token."""
        tokens.revoke(self.row(token_uuid), self.identity, self.client_ip)
        self.send(None, 204)


class ApiTokensHandler(AppTokensHandler):
    kind = tokens.API
    schemas = {"post": {"type": "object", "required": ["title", "scopes"], "properties": {
        "title": {"type": "string"}, "scopes": {"type": "array", "items": {"type": "string"}}}}}

    async def post(self) -> None:
        """Create an API token with scopes (repo:read, repo:write, repo:admin, repo:create, user:read,
        user:admin, org:admin, super:user); its code is shown this once."""
        await super().post()


class ApiTokenHandler(AppTokenHandler):
    kind = tokens.API


default_handlers = [
    (rf"{API}/user/apptoken/?", AppTokensHandler),
    (rf"{API}/user/apptoken/(?P<token_uuid>{NAME})", AppTokenHandler),
    (rf"{API}/user/apitokens/?", ApiTokensHandler),
    (rf"{API}/user/apitokens/(?P<token_uuid>{NAME})", ApiTokenHandler),
]
