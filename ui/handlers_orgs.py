"""Organizations (Quay's ``/organization/<name>``): create one; its teams and members, robots, default
permissions, usage logs and settings (time-machine window, email). Every change calls the function
``/api/v1/organization/...`` calls (``accounts.orgs``, ``accounts.robots``, ``accounts.prototypes``)."""
from __future__ import annotations

from accounts import audit, orgs, prototypes, users
from accounts.models import TEAM_ROLES, TIME_MACHINE_CHOICES
from accounts.permissions import is_namespace_admin, is_org_member
from slipway.db import now_ms
from slipway.errors import DomainError, Invalid, NotFound

from .robots import RobotForms
from .tabbed import TabbedPage
from .web import UiHandler

NAME = r"[^/?]+"
DAY_MS = 86400 * 1000
TIME_MACHINE_LABELS = {0: "Off (deleted tags cannot be restored)", 86400: "1 day", 7 * 86400: "7 days",
                       14 * 86400: "14 days", 28 * 86400: "4 weeks"}


def time_machine_choices() -> list[tuple[int, str]]:
    return [(s, TIME_MACHINE_LABELS.get(s, f"{s} s")) for s in TIME_MACHINE_CHOICES]


class LogsTab:
    """The usage logs tab of a namespace: ``audit.page`` (what ``.../logs`` answers) for a date range."""

    def logs_context(self, namespace) -> dict:
        start_text, end_text = self.get_argument("start", ""), self.get_argument("end", "")
        end = audit.parse_day(end_text, now_ms(), end_of_day=True)
        start = audit.parse_day(start_text, end - 7 * DAY_MS)
        if start > end:
            raise Invalid("The start date is after the end date")
        rows, next_page = audit.page(start, end, self.get_argument("next_page", None) or None,
                                     namespace_id=namespace.id, since=namespace.created_at)
        return {"entries": [audit.view(r) | {"created_at": r.created_at} for r in rows], "next_page": next_page,
                "start": start_text, "end": end_text}


class NewOrganizationHandler(UiHandler):
    """``/organization/new``: the form, and ``orgs.create_org`` (as ``POST /api/v1/organization/``)."""

    login_required = True

    async def get(self) -> None:
        self.render("org_new.html", errors={}, values={})

    async def post(self) -> None:
        values = {"org_name": self.form("org_name"), "org_email": self.form("org_email")}
        try:
            org = orgs.create_org(values["org_name"], values["org_email"] or None, self.identity, self.client_ip)
        except DomainError as e:
            field = "org_email" if "email" in e.message.lower() else "org_name"
            self.render("org_new.html", status=400, errors={field: e.message}, values=values)
            return
        self.flash(f"Organization {org.name} created: you are in its owners team.", "success")
        self.redirect(f"/organization/{org.name}")


class OrganizationPage(RobotForms, LogsTab, TabbedPage):
    """``/organization/<name>?tab=teams|robots|permissions|logs|settings``."""

    tabs = (("teams", "Teams and members", False), ("robots", "Robot accounts", True),
            ("permissions", "Default permissions", True), ("logs", "Usage logs", True),
            ("settings", "Settings", True))
    template_prefix = "org"
    action_fields = {**RobotForms.action_fields, "create_team": "team_name", "add_permission": "delegate",
                     "settings": "org_email", "delete_org": "confirm"}

    def load(self, orgname: str) -> None:
        try:
            org = orgs.get_org(orgname)
        except NotFound:
            raise NotFound(f"There is no organization {orgname}") from None
        if not (is_org_member(self.identity, org) or self.identity.superuser):
            raise NotFound(f"There is no organization {orgname}, or you are not a member of it")
        self.org = self.namespace = org

    def is_admin(self) -> bool:
        return is_namespace_admin(self.identity, self.org)

    def render(self, name: str, status: int = 200, **context) -> None:
        super().render(name, status, org=self.org, is_admin=self.is_admin(), **context)

    def check_admin(self) -> None:
        if not self.is_admin():
            raise self.forbidden(f"You must be an administrator of {self.org.name} for this")

    # -- teams and members ------------------------------------------------------------------------------
    def show_teams(self) -> dict:
        teams = [(team, size, orgs.team_members(team)) for team, size in orgs.teams_with_sizes(self.org)]
        return {"teams": teams, "roles": TEAM_ROLES}

    def do_create_team(self) -> str:
        self.check_admin()
        name = self.form("team_name")
        if not name:
            raise Invalid("Enter a name for the team")
        team, created = orgs.set_team(self.org, name, self.identity, role=self.form("team_role", "member"),
                                      description=self.form("team_description"), ip=self.client_ip)
        return f"Team {team.name} created." if created else f"Team {team.name} updated."

    def do_set_team_role(self) -> str:
        self.check_admin()
        team = orgs.get_team(self.org, self.form("team"))
        orgs.set_team(self.org, team.name, self.identity, role=self.form("role"), ip=self.client_ip)
        return f"Team {team.name} now has the role {self.form('role')}."

    def do_delete_team(self) -> str:
        self.check_admin()
        team = orgs.get_team(self.org, self.form("team"))
        orgs.delete_team(self.org, team, self.identity, self.client_ip)
        return f"Team {team.name} deleted."

    def do_add_member(self) -> str:
        self.check_admin()
        team = orgs.get_team(self.org, self.form("team"))
        member = orgs.add_member(self.org, team, self.form("member"), self.identity, self.client_ip)
        return f"{member.name} added to team {team.name}."

    def do_remove_member(self) -> str:
        self.check_admin()
        team = orgs.get_team(self.org, self.form("team"))
        orgs.remove_member(self.org, team, self.form("member"), self.identity, self.client_ip)
        return f"{self.form('member')} removed from team {team.name}."

    # -- robots ------------------------------------------------------------------------------------------
    def show_robots(self) -> dict:
        return self.robot_context()

    # -- default permissions ------------------------------------------------------------------------------
    def show_permissions(self) -> dict:
        return {"prototypes": prototypes.list_prototypes(self.org), "proto_roles": prototypes.ROLES,
                "team_names": [t.name for t, _ in orgs.teams_with_sizes(self.org)]}

    def do_add_permission(self) -> str:
        self.check_admin()
        kind, _, name = self.form("delegate").partition(":")
        if not name:
            raise Invalid("Choose a team, or enter a user or robot")
        proto = prototypes.create(self.org, self.form("proto_role"), {"kind": kind, "name": name},
                                  self.form("activating_user") or None, self.identity, self.client_ip)
        return f"Default permission added: {proto.role} for {name}."

    def do_delete_permission(self) -> str:
        self.check_admin()
        prototypes.delete(prototypes.get(self.org, self.form("prototype")), self.identity, self.client_ip)
        return "Default permission removed."

    # -- usage logs, settings ----------------------------------------------------------------------------------
    def show_logs(self) -> dict:
        return self.logs_context(self.org)

    def show_settings(self) -> dict:
        return {"time_machine_choices": time_machine_choices()}

    def do_settings(self) -> str:
        self.check_admin()
        seconds = self.form("time_machine")
        if not seconds.isdigit():
            raise Invalid("Choose a time-machine window")
        orgs.update_org(self.org, self.identity, self.client_ip, email=self.form("org_email") or None,
                        time_machine_s=int(seconds))
        return "Settings saved."

    def do_delete_org(self) -> None:
        self.check_admin()
        if self.form("confirm") != self.org.name:
            raise Invalid(f"Type the organization's name, {self.org.name}, to confirm")
        orgs.delete_org(self.org, self.identity, self.client_ip)
        self.flash(f"Organization {self.org.name} deleted.", "success")
        self.redirect("/organizations")


class OrganizationsHandler(UiHandler):
    """``/organizations``: the organizations the user is a member of."""

    login_required = True

    async def get(self) -> None:
        me = users.get_account(self.identity.account_id)
        self.render("orgs.html", organizations=orgs.organizations_of(me))


default_handlers = [
    (r"/organizations/?", OrganizationsHandler),
    (r"/organization/new/?", NewOrganizationHandler),
    (rf"/organization/(?P<orgname>{NAME})/?", OrganizationPage),
]
