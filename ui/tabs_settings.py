"""The repository's Settings tab (administrators): visibility, user/robot and team permissions, deletion,
through the functions behind ``/api/v1/repository/...`` (changevisibility, permissions, DELETE)."""
from __future__ import annotations

from accounts import orgs
from accounts.models import ORG, ROBOT
from accounts.users import get_user_or_robot
from registry import permissions, repos
from slipway.errors import Invalid

from .repository import RepositoryTab


class SettingsTab(RepositoryTab):
    name = "settings"
    label = "Settings"
    role = "admin"

    async def get(self, page, repo, errors: dict | None = None, values: dict | None = None) -> None:
        is_org = repo.namespace.kind == ORG
        teams = [t for t, _ in orgs.teams_with_sizes(repo.namespace)] if is_org else []
        page.render_tab("repo_settings.html", user_grants=permissions.user_grants(repo),
                        team_grants=permissions.team_grants(repo) if is_org else [], teams=teams, is_org=is_org,
                        roles=permissions.ROLES, robot_kind=ROBOT, errors=errors or {}, values=values or {})

    async def do_visibility(self, page, repo) -> str:
        repo = page.repository("admin")
        repos.set_visibility(repo, page.form("visibility"), page.identity, page.client_ip)
        return f"{repo.full_name} is now {repo.visibility}."

    async def do_grant_user(self, page, repo) -> str:
        repo = page.repository("admin")
        name = page.form("username")
        if not name:
            raise Invalid("Enter a user or robot name")
        permissions.set_account_role(repo, get_user_or_robot(name), page.form("role"), page.identity, page.client_ip)
        return f"{name} has the {page.form('role')} role on {repo.full_name}."

    async def do_revoke_user(self, page, repo) -> str:
        repo = page.repository("admin")
        name = page.form("username")
        permissions.remove_account_role(repo, get_user_or_robot(name), page.identity, page.client_ip)
        return f"{name} no longer has a role of their own on {repo.full_name}."

    async def do_grant_team(self, page, repo) -> str:
        repo = page.repository("admin")
        team = orgs.get_team(repo.namespace, page.form("team"))
        permissions.set_team_role(repo, team, page.form("role"), page.identity, page.client_ip)
        return f"Team {team.name} has the {page.form('role')} role on {repo.full_name}."

    async def do_revoke_team(self, page, repo) -> str:
        repo = page.repository("admin")
        team = orgs.get_team(repo.namespace, page.form("team"))
        permissions.remove_team_role(repo, team, page.identity, page.client_ip)
        return f"Team {team.name} no longer has a role on {repo.full_name}."

    async def do_delete(self, page, repo) -> str | None:
        repo = page.repository("admin")
        if page.form("confirm") != repo.full_name:
            raise Invalid(f"Type {repo.full_name} to confirm the deletion")
        repos.delete(repo, page.identity, page.client_ip)
        page.flash(f"Repository {repo.full_name} deleted.", "success")
        page.redirect("/")
        return None
