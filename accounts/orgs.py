"""Organizations and their teams: creation, settings, members, roles, and the never-without-an-admin rule."""
from __future__ import annotations

import re

from peewee import IntegrityError, fn

from slipway.db import database
from slipway.errors import Conflict, Invalid, NotFound

from . import audit, revocation
from .identity import Identity
from .models import ORG, ROBOT, TEAM_ROLES, USER, Account, Team, TeamMember
from .users import check_new_namespace, set_time_machine

OWNERS = "owners"
TEAM_NAME_RE = r"^[a-z][a-z0-9_]{1,254}\Z"


def get_org(name: str) -> Account:
    org = Account.get_or_none((Account.name == name) & (Account.kind == ORG))
    if org is None:
        raise NotFound(f"Organization '{name}' does not exist")
    return org


def create_org(name: str, email: str | None, creator: Identity, ip: str | None = None) -> Account:
    """A new organization; its creator becomes the first member of the ``owners`` team (role admin)."""
    if creator.anonymous or creator.is_robot or creator.account_id is None:
        raise Invalid("Only users can create organizations")
    check_new_namespace(name, "organization name")
    try:
        with database.atomic():
            org = Account.create(name=name, kind=ORG, email=email)
            owners = Team.create(org=org, name=OWNERS, role="admin", description="Administrators of the organization")
            TeamMember.create(team=owners, account=creator.account_id)
            audit.record("org_create", creator, namespace=org, ip=ip, metadata={"email": email})
    except IntegrityError:
        raise Conflict(f"The name '{name}' is already taken") from None
    return org


def update_org(org: Account, performer: Identity, ip: str | None = None, email: str | None = None,
               time_machine_s: int | None = None) -> Account:
    with database.atomic():
        if email is not None:
            if "@" not in email:
                raise Invalid(f"Invalid email address '{email}'")
            Account.update(email=email).where(Account.id == org.id).execute()
            audit.record("org_change_email", performer, namespace=org, ip=ip, metadata={"email": email})
        if time_machine_s is not None:
            set_time_machine(org, time_machine_s, performer, ip)
    return Account.get_by_id(org.id)


def delete_org(org: Account, performer: Identity, ip: str | None = None) -> None:
    with database.atomic():
        audit.record("org_delete", performer, namespace=(org.id, org.name), ip=ip, metadata={"org": org.name})
        org.delete_instance()
        revocation.bump()


def list_orgs() -> list[tuple[Account, int]]:
    """Every organization by name, with its number of teams (the superuser's list)."""
    teams = Team.select(fn.COUNT(Team.id)).where(Team.org == Account.id)
    return [(org, org.team_count) for org in
            Account.select(Account, teams.alias("team_count")).where(Account.kind == ORG).order_by(Account.name)]


def organizations_of(account: Account) -> list[Account]:
    """The organizations in one of whose teams ``account`` is, by name."""
    return list(Account.select().join(Team, on=(Team.org == Account.id)).join(TeamMember)
                .where(TeamMember.account == account.id).distinct().order_by(Account.name))


# -- teams ---------------------------------------------------------------------------------------------

def get_team(org: Account, name: str) -> Team:
    team = Team.get_or_none((Team.org == org.id) & (Team.name == name))
    if team is None:
        raise NotFound(f"Team '{name}' does not exist in organization '{org.name}'")
    return team


def _admins_left(org: Account, without_team: int | None = None, without_member: tuple | None = None) -> int:
    """How many users would still be in an admin team of ``org`` after a change."""
    query = (TeamMember.select(TeamMember.account).join(Team)
             .where((Team.org == org.id) & (Team.role == "admin"))
             .switch(TeamMember).join(Account).where(Account.kind == USER))
    if without_team is not None:
        query = query.where(Team.id != without_team)
    if without_member is not None:
        team_id, account_id = without_member
        query = query.where(~((TeamMember.team == team_id) & (TeamMember.account == account_id)))
    return query.distinct().count()


def _refuse_if_no_admin_left(org: Account, **change) -> None:
    if _admins_left(org, **change) == 0:
        raise Conflict(f"Organization '{org.name}' must keep at least one administrator: "
                       "this change would leave none")


def set_team(org: Account, name: str, performer: Identity, role: str | None = None, description: str | None = None,
             ip: str | None = None) -> tuple[Team, bool]:
    """Create the team or update its role/description. Returns (team, created)."""
    if role is not None and role not in TEAM_ROLES:
        raise Invalid(f"Invalid team role '{role}': use one of {', '.join(TEAM_ROLES)}")
    team = Team.get_or_none((Team.org == org.id) & (Team.name == name))
    with database.atomic():
        if team is None:
            if not re.match(TEAM_NAME_RE, name):
                raise Invalid(f"Invalid team name '{name}': lowercase letters, digits and '_', "
                              "starting with a letter, 2 to 255 characters")
            team = Team.create(org=org, name=name, role=role or "member", description=description or "")
            audit.record("org_create_team", performer, namespace=org, ip=ip,
                         metadata={"team": name, "role": team.role})
            return team, True
        if role is not None and role != team.role:
            if team.role == "admin":
                _refuse_if_no_admin_left(org, without_team=team.id)
            Team.update(role=role).where(Team.id == team.id).execute()
            revocation.bump()
            audit.record("org_set_team_role", performer, namespace=org, ip=ip, metadata={"team": name, "role": role})
        if description is not None and description != team.description:
            Team.update(description=description).where(Team.id == team.id).execute()
            audit.record("org_set_team_description", performer, namespace=org, ip=ip,
                         metadata={"team": name, "description": description})
    return Team.get_by_id(team.id), False


def delete_team(org: Account, team: Team, performer: Identity, ip: str | None = None) -> None:
    with database.atomic():
        if team.role == "admin":
            _refuse_if_no_admin_left(org, without_team=team.id)
        team.delete_instance()
        revocation.bump()
        audit.record("org_delete_team", performer, namespace=org, ip=ip, metadata={"team": team.name})


def teams_with_sizes(org: Account) -> list[tuple[Team, int]]:
    """The organization's teams by name, each with its number of members."""
    return [(team, TeamMember.select().where(TeamMember.team == team.id).count())
            for team in Team.select().where(Team.org == org.id).order_by(Team.name)]


def teams_of(account: Account) -> list[Team]:
    """The teams ``account`` (a user or a robot) is in, by name."""
    return list(Team.select().join(TeamMember).where(TeamMember.account == account.id).order_by(Team.name))


def team_members(team: Team) -> list[Account]:
    return list(Account.select().join(TeamMember).where(TeamMember.team == team.id).order_by(Account.name))


def add_member(org: Account, team: Team, member_name: str, performer: Identity, ip: str | None = None) -> Account:
    """Add a user or one of the organization's robots to a team."""
    member = Account.get_or_none(Account.name == member_name)
    if member is None or member.kind == ORG:
        hint = ""
        if "+" not in member_name and Account.select().where(
                (Account.name == f"{org.name}+{member_name}") & (Account.kind == ROBOT)).exists():
            hint = f" (robots are named '<namespace>+<name>': did you mean '{org.name}+{member_name}'?)"
        raise NotFound(f"User or robot '{member_name}' does not exist{hint}")
    if member.kind == ROBOT and member.owner_id != org.id:
        raise Invalid(f"Robot '{member_name}' belongs to another namespace: only robots of '{org.name}' "
                      "can join its teams")
    with database.atomic():
        _, created = TeamMember.get_or_create(team=team, account=member)
        if created:
            audit.record("org_add_team_member", performer, namespace=org, ip=ip,
                         metadata={"team": team.name, "member": member.name})
    return member


def remove_member(org: Account, team: Team, member_name: str, performer: Identity, ip: str | None = None) -> None:
    member = Account.get_or_none(Account.name == member_name)
    link = None if member is None else TeamMember.get_or_none((TeamMember.team == team.id)
                                                              & (TeamMember.account == member.id))
    if link is None:
        raise NotFound(f"'{member_name}' is not a member of team '{team.name}'")
    with database.atomic():
        if team.role == "admin":
            _refuse_if_no_admin_left(org, without_member=(team.id, member.id))
        link.delete_instance()
        revocation.bump()
        audit.record("org_remove_team_member", performer, namespace=org, ip=ip,
                     metadata={"team": team.name, "member": member.name})


def org_members(org: Account) -> list[tuple[Account, list[str]]]:
    """Every user and robot in one of the organization's teams, with the team names."""
    rows = (TeamMember.select(TeamMember, Team, Account).join(Team).switch(TeamMember).join(Account)
            .where(Team.org == org.id).order_by(Account.name, Team.name))
    members: dict[int, tuple[Account, list[str]]] = {}
    for row in rows:
        members.setdefault(row.account.id, (row.account, []))[1].append(row.team.name)
    return list(members.values())
