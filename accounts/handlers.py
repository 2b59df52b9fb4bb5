"""/api/v1 for users, organizations, teams, members and default permissions (Quay's paths and shapes)."""
from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from slipway.api import API, ApiHandler
from slipway.errors import Forbidden

from . import orgs, prototypes, users, views
from .permissions import can_create_in, is_namespace_admin, is_org_member

if TYPE_CHECKING:  # annotations only: handlers touch no models
    from .models import Account

NAME = r"[^/]+"


class OrgAdminHandler(ApiHandler):
    """Helpers for endpoints under /organization/{orgname}."""

    def org_as_admin(self, orgname: str) -> Account:
        org = orgs.get_org(orgname)
        if not is_namespace_admin(self.identity, org):
            raise self.deny(f"You must be an administrator of organization '{orgname}'")
        self.require_scope("org:admin")
        return org


# -- users ----------------------------------------------------------------------------------------------

def me_view(account: Account) -> dict:
    identity = users.identity_for(account, "password")
    organizations = []
    for org in orgs.organizations_of(account):
        organizations.append({"name": org.name, "avatar": views.avatar(org.name, "org"), "public": False,
                              "is_org_admin": is_namespace_admin(identity, org),
                              "can_create_repo": can_create_in(identity, org), "preferred_namespace": False})
    return {**views.public_user(account), "email": account.email, "verified": True, "logins": [], "prompts": [],
            "can_create_repo": True, "is_me": True, "invoice_email": False, "preferred_namespace": False,
            "tag_expiration_s": account.time_machine_s, "organizations": organizations}


class UserHandler(ApiHandler):
    scopes = {"get": "user:read", "put": "user:admin", "delete": "user:admin"}
    schemas = {
        "put": {"type": "object", "properties": {"password": {"type": "string"}, "email": {"type": "string"},
                                                 "tag_expiration_s": {"type": "integer"}},
                "additionalProperties": False},
        "post": {"type": "object", "required": ["username", "password"],
                 "properties": {"username": {"type": "string"}, "password": {"type": "string"},
                                "email": {"type": "string"}}},
    }

    async def get(self) -> None:
        """The logged-in user."""
        self.require_login()
        if self.identity.is_robot:
            raise Forbidden("Robot accounts have no user settings")
        self.send(me_view(users.get_account(self.identity.account_id)))

    async def put(self) -> None:
        """Change the logged-in user's password, email or time machine window."""
        identity = self.require_login()
        body = self.json_body()
        user = users.update_settings(users.get_account(identity.account_id), identity, self.client_ip,
                                     password=body.get("password"), email=body.get("email"),
                                     time_machine_s=body.get("tag_expiration_s"))
        self.send(me_view(user))

    async def post(self) -> None:
        """Sign up (when the operator allows it)."""
        if not self.config.auth.user_signup:
            raise Forbidden("Sign-up is disabled on this server: ask an administrator to create your account")
        body = self.json_body()
        user = users.create_user(body["username"], body["password"], body.get("email"), ip=self.client_ip)
        self.send(views.public_user(user), 201)

    async def delete(self) -> None:
        """Delete the logged-in user's account."""
        identity = self.require_login()
        users.delete_user(users.get_account(identity.account_id), identity, self.client_ip)
        self.send(None, 204)


class UsersHandler(ApiHandler):
    async def get(self, username: str) -> None:
        """A user's public information."""
        self.require_login()
        self.send(views.public_user(users.get_user(username)))


class SuperuserUsersHandler(ApiHandler):
    scopes = {"get": "super:user", "post": "super:user"}
    schemas = {"post": {"type": "object", "required": ["username"],
                        "properties": {"username": {"type": "string"}, "email": {"type": "string"},
                                       "password": {"type": "string"}, "superuser": {"type": "boolean"}}}}

    async def get(self) -> None:
        """List users (superusers only)."""
        self.require_superuser()
        self.send({"users": [{**views.public_user(u), "email": u.email, "enabled": u.enabled}
                             for u in users.list_users()]})

    async def post(self) -> None:
        """Create a user (superusers only); a password is generated unless given."""
        identity = self.require_superuser()
        body = self.json_body()
        password = body.get("password") or secrets.token_urlsafe(12)
        user = users.create_user(body["username"], password, body.get("email"), superuser=body.get("superuser", False),
                                 performer=identity, ip=self.client_ip)
        view = {"username": user.name, "email": user.email}
        if not body.get("password"):
            view["password"] = password
        self.send(view, 201)


class SuperuserUserHandler(ApiHandler):
    scopes = {"put": "super:user", "delete": "super:user"}
    schemas = {"put": {"type": "object", "additionalProperties": False,
                       "properties": {"enabled": {"type": "boolean"}, "superuser": {"type": "boolean"}}}}

    async def put(self, username: str) -> None:
        """Enable or disable a user, give or take superuser rights (superusers only)."""
        identity = self.require_superuser()
        body = self.json_body()
        user = users.set_status(users.get_user(username), identity, self.client_ip, enabled=body.get("enabled"),
                                superuser=body.get("superuser"))
        self.send({**views.public_user(user), "email": user.email, "enabled": user.enabled})

    async def delete(self, username: str) -> None:
        """Delete a user (superusers only)."""
        identity = self.require_superuser()
        users.delete_user(users.get_user(username), identity, self.client_ip)
        self.send(None, 204)


# -- organizations -----------------------------------------------------------------------------------------

def org_view(org: Account, identity) -> dict:
    view = {"name": org.name, "avatar": views.avatar(org.name, "org"),
            "is_admin": is_namespace_admin(identity, org), "is_member": is_org_member(identity, org)}
    if view["is_member"]:
        teams = {team.name: views.team(team, member_count=size) for team, size in orgs.teams_with_sizes(org)}
        view.update({"email": org.email, "teams": teams, "ordered_teams": list(teams), "invoice_email": False,
                     "tag_expiration_s": org.time_machine_s, "is_free_account": True})
    return view


class OrganizationCreateHandler(ApiHandler):
    scopes = {"post": "user:admin"}
    schemas = {"post": {"type": "object", "required": ["name"],
                        "properties": {"name": {"type": "string"}, "email": {"type": "string"}}}}

    async def post(self) -> None:
        """Create an organization; the creator joins its owners team."""
        identity = self.require_login()
        body = self.json_body()
        org = orgs.create_org(body["name"], body.get("email"), identity, self.client_ip)
        self.send(org_view(org, identity), 201)


class OrganizationHandler(OrgAdminHandler):
    scopes = {"put": "org:admin", "delete": "org:admin"}
    schemas = {"put": {"type": "object", "additionalProperties": False,
                       "properties": {"email": {"type": "string"}, "tag_expiration_s": {"type": "integer"},
                                      "invoice_email": {"type": "boolean"}}}}

    async def get(self, orgname: str) -> None:
        """An organization (teams are shown to its members)."""
        self.send(org_view(orgs.get_org(orgname), self.identity))

    async def put(self, orgname: str) -> None:
        """Change an organization's email or time machine window."""
        org = self.org_as_admin(orgname)
        body = self.json_body()
        org = orgs.update_org(org, self.identity, self.client_ip, email=body.get("email"),
                              time_machine_s=body.get("tag_expiration_s"))
        self.send(org_view(org, self.identity))

    async def delete(self, orgname: str) -> None:
        """Delete an organization and everything in it."""
        org = self.org_as_admin(orgname)
        orgs.delete_org(org, self.identity, self.client_ip)
        self.send(None, 204)


class MembersHandler(OrgAdminHandler):
    async def get(self, orgname: str) -> None:
        """Every user and robot in one of the organization's teams."""
        org = self.org_as_admin(orgname)
        members = [{**views.entity(account), "teams": [{"name": t, "avatar": views.avatar(t, "team")} for t in teams],
                    "repositories": []} for account, teams in orgs.org_members(org)]
        self.send({"members": members})


class TeamHandler(OrgAdminHandler):
    scopes = {"put": "org:admin", "delete": "org:admin"}
    schemas = {"put": {"type": "object", "additionalProperties": False,
                       "properties": {"role": {"type": "string"}, "description": {"type": "string"}}}}

    async def put(self, orgname: str, teamname: str) -> None:
        """Create a team or change its role or description."""
        org = self.org_as_admin(orgname)
        body = self.json_body()
        team, created = orgs.set_team(org, teamname, self.identity, role=body.get("role"),
                                      description=body.get("description"), ip=self.client_ip)
        self.send({**views.team(team), "new_team": created})

    async def delete(self, orgname: str, teamname: str) -> None:
        """Delete a team."""
        org = self.org_as_admin(orgname)
        orgs.delete_team(org, orgs.get_team(org, teamname), self.identity, self.client_ip)
        self.send(None, 204)


class TeamMembersHandler(OrgAdminHandler):
    async def get(self, orgname: str, teamname: str) -> None:
        """A team's members (users and robots); visible to the organization's members."""
        org = orgs.get_org(orgname)
        if not is_org_member(self.identity, org):
            raise self.deny(f"You are not a member of organization '{orgname}'")
        team = orgs.get_team(org, teamname)
        self.send({"name": team.name, "members": [{**views.entity(m), "invited": False}
                                                  for m in orgs.team_members(team)],
                   "can_edit": is_namespace_admin(self.identity, org)})


class TeamMemberHandler(OrgAdminHandler):
    scopes = {"put": "org:admin", "delete": "org:admin"}

    async def put(self, orgname: str, teamname: str, membername: str) -> None:
        """Add a user or one of the organization's robots to a team."""
        org = self.org_as_admin(orgname)
        member = orgs.add_member(org, orgs.get_team(org, teamname), membername, self.identity, self.client_ip)
        self.send(views.entity(member))

    async def delete(self, orgname: str, teamname: str, membername: str) -> None:
        """Remove a member from a team (never the organization's last administrator)."""
        org = self.org_as_admin(orgname)
        orgs.remove_member(org, orgs.get_team(org, teamname), membername, self.identity, self.client_ip)
        self.send(None, 204)


# -- default permissions (prototypes) ------------------------------------------------------------------------

def prototype_view(proto) -> dict:
    if proto.delegate_team_id:
        delegate = {"name": proto.delegate_team.name, "kind": "team",
                    "avatar": views.avatar(proto.delegate_team.name, "team")}
    else:
        delegate = views.entity(proto.delegate_account)
    activating = views.entity(proto.activating_user) if proto.activating_user_id else None
    return {"id": proto.uuid, "role": proto.role, "delegate": delegate, "activating_user": activating}


DELEGATE = {"type": "object", "required": ["name", "kind"],
            "properties": {"name": {"type": "string"}, "kind": {"enum": ["user", "team"]}}}


class PrototypesHandler(OrgAdminHandler):
    scopes = {"get": "org:admin", "post": "org:admin"}
    schemas = {"post": {"type": "object", "required": ["role", "delegate"], "properties": {
        "role": {"type": "string"}, "delegate": DELEGATE,
        "activating_user": {"type": ["object", "null"], "properties": {"name": {"type": "string"}}}}}}

    async def get(self, orgname: str) -> None:
        """The organization's default permissions."""
        org = self.org_as_admin(orgname)
        self.send({"prototypes": [prototype_view(p) for p in prototypes.list_prototypes(org)]})

    async def post(self, orgname: str) -> None:
        """Add a default permission: a role granted on every new repository (or those one user creates)."""
        org = self.org_as_admin(orgname)
        body = self.json_body()
        activating = (body.get("activating_user") or {}).get("name")
        proto = prototypes.create(org, body["role"], body["delegate"], activating, self.identity, self.client_ip)
        self.send(prototype_view(proto), 201)


class PrototypeHandler(OrgAdminHandler):
    scopes = {"put": "org:admin", "delete": "org:admin"}
    schemas = {"put": {"type": "object", "required": ["role"], "properties": {"role": {"type": "string"}}}}

    async def put(self, orgname: str, prototypeid: str) -> None:
        """Change a default permission's role."""
        org = self.org_as_admin(orgname)
        proto = prototypes.update(prototypes.get(org, prototypeid), self.json_body()["role"], self.identity,
                                  self.client_ip)
        self.send(prototype_view(proto))

    async def delete(self, orgname: str, prototypeid: str) -> None:
        """Remove a default permission."""
        org = self.org_as_admin(orgname)
        prototypes.delete(prototypes.get(org, prototypeid), self.identity, self.client_ip)
        self.send(None, 204)


ORG_PATH = rf"{API}/organization/(?P<orgname>{NAME})"
default_handlers = [
    (rf"{API}/user/?", UserHandler),
    (rf"{API}/users/(?P<username>{NAME})", UsersHandler),
    (rf"{API}/superuser/users/?", SuperuserUsersHandler),
    (rf"{API}/superuser/users/(?P<username>{NAME})", SuperuserUserHandler),
    (rf"{API}/organization/?", OrganizationCreateHandler),
    (rf"{ORG_PATH}/?", OrganizationHandler),
    (rf"{ORG_PATH}/members", MembersHandler),
    (rf"{ORG_PATH}/team/(?P<teamname>{NAME})", TeamHandler),
    (rf"{ORG_PATH}/team/(?P<teamname>{NAME})/members", TeamMembersHandler),
    (rf"{ORG_PATH}/team/(?P<teamname>{NAME})/members/(?P<membername>{NAME})", TeamMemberHandler),
    (rf"{ORG_PATH}/prototypes", PrototypesHandler),
    (rf"{ORG_PATH}/prototypes/(?P<prototypeid>{NAME})", PrototypeHandler),
]
