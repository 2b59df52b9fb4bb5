"""Accounts use cases in-process: users and their passwords, robots, tokens, organizations, and the
repository permissions they lead to."""
from __future__ import annotations

import pytest

from accounts import login, orgs, robots, tokens, users
from accounts.identity import ANONYMOUS
from accounts.models import LogEntry
from accounts.users import LoginError
from registry import repos
from registry.permissions import can, repository_role, set_account_role, set_team_role
from slipway.errors import Conflict, Forbidden, Invalid

from .conftest import PASSWORD


def kinds() -> list[str]:
    return [e.kind for e in LogEntry.select().order_by(LogEntry.id)]


def test_a_user_logs_in_with_its_password_and_a_wrong_one_is_audited(db):
    with pytest.raises(Invalid, match="at least 8"):
        users.create_user("ada", "short")
    users.create_user("ada", PASSWORD, email="ada@example.com")
    with pytest.raises(Conflict):
        users.create_user("ada", PASSWORD)
    identity = login.authenticate("ada", PASSWORD, "10.0.0.1")
    assert (identity.kind, identity.name, identity.via, identity.superuser) == ("user", "ada", "password", False)
    with pytest.raises(LoginError):
        login.authenticate("ada", "not-the-password", "10.0.0.1")
    failure = LogEntry.select().where(LogEntry.kind == "login_failure").get()
    assert failure.ip == "10.0.0.1" and '"username": "ada"' in failure.metadata
    assert kinds() == ["user_create", "login_failure"]


def test_a_robot_logs_in_with_its_token_until_it_is_regenerated(db, admin):
    namespace = users.get_user("admin")
    robot, token = robots.create_robot(namespace, "deployer", "ships it", admin)
    assert robot.name == "admin+deployer" and robots.robot_token(robot) == token
    identity = login.authenticate("admin+deployer", token)
    assert identity.is_robot and identity.namespace_id == namespace.id
    with pytest.raises(LoginError, match="disabled"):
        login.authenticate("admin+deployer", token, robots_enabled=False)
    new_token = robots.regenerate(robot, admin)
    with pytest.raises(LoginError):
        login.authenticate("admin+deployer", token)
    assert login.authenticate("admin+deployer", new_token).name == "admin+deployer"
    with pytest.raises(Invalid):
        robots.create_robot(namespace, "Bad+Name", "", admin)


def test_api_tokens_carry_their_scopes_mint_no_wider_ones_and_end_when_revoked(db, admin):
    owner = users.get_user("admin")
    row, secret = tokens.create(owner, tokens.API, "ci", ["repo:write"], admin)
    identity = login.authenticate("$token", secret)
    assert identity.via == "api_token" and identity.scopes == frozenset({"repo:write", "repo:read"})
    with pytest.raises(Forbidden, match="scopes it does not have"):
        tokens.create(owner, tokens.API, "wider", ["repo:admin"], identity)
    with pytest.raises(Forbidden):
        tokens.create(owner, tokens.APP, "app", None, identity)
    app_row, app_secret = tokens.create(owner, tokens.APP, "laptop", None, admin)
    assert login.authenticate("$app", app_secret).via == "app_token"
    tokens.revoke(row, admin)
    with pytest.raises(LoginError, match="revoked"):
        login.authenticate("$token", secret)
    assert [t.title for t in tokens.list_tokens(owner, tokens.APP)] == ["laptop"]


def test_repository_roles_come_from_owners_teams_grants_and_visibility(db, admin):
    ada = users.identity_for(users.create_user("ada", None), "password")
    bob = users.identity_for(users.create_user("bob", None), "password")
    org = orgs.create_org("acme", "ops@acme.io", ada)
    repo = repos.create("acme/app", ada)[0]
    assert repository_role(ada, repo) == "admin"  # the owners team
    assert repository_role(bob, repo) is None and not can(bob, "pull", repo)
    readers, _ = orgs.set_team(org, "readers", ada, role="member")
    orgs.add_member(org, readers, "bob", ada)
    set_team_role(repo, readers, "read", ada)
    assert can(bob, "pull", repo) and not can(bob, "push", repo)
    set_account_role(repo, users.get_user("bob"), "write", ada)
    assert can(bob, "push", repo)

    robot, _ = robots.create_robot(org, "builder", "", ada)
    robot_identity = users.identity_for(robot, "robot_token")
    assert repository_role(robot_identity, repo) is None
    set_account_role(repo, robot, "read", ada)
    assert can(robot_identity, "pull", repo) and not can(robot_identity, "push", repo)
    own = repos.create("ada/private", ada)[0]
    with pytest.raises(Invalid, match="another namespace"):
        set_account_role(own, robot, "read", ada)  # a robot never reaches beyond its namespace

    assert repository_role(ANONYMOUS, repo) is None
    repos.set_visibility(repo, "public", ada)
    assert repository_role(ANONYMOUS, repo) == "read"
    with pytest.raises(Conflict):  # the last admin of an organization stays
        orgs.remove_member(org, orgs.get_team(org, "owners"), "ada", ada)


def test_a_superuser_disables_users_and_grants_rights_but_never_locks_themselves_out(db, admin):
    from accounts import sessions
    from accounts.models import Session

    bob = users.create_user("bob", None)
    sessions.create(bob, "10.0.0.2", "test", 3600)
    bob = users.set_status(bob, admin, enabled=False)
    assert not bob.enabled and Session.select().where(Session.account == bob.id).count() == 0
    bob = users.set_status(bob, admin, enabled=True, superuser=True)
    assert bob.enabled and bob.superuser
    me = users.get_user("admin")
    with pytest.raises(Invalid, match="your own"):
        users.set_status(me, admin, enabled=False)
    with pytest.raises(Invalid, match="your own"):
        users.set_status(me, admin, superuser=False)
    assert kinds()[-3:] == ["user_disable", "user_enable", "user_set_superuser"]


def test_the_superusers_list_of_organizations_counts_their_teams(db, admin):
    orgs.create_org("zeta", None, admin)
    acme = orgs.create_org("acme", None, admin)
    orgs.set_team(acme, "builders", admin)
    assert [(org.name, teams) for org, teams in orgs.list_orgs()] == [("acme", 2), ("zeta", 1)]

