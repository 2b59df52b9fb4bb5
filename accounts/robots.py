"""Robot accounts: machine identities named ``<namespace>+<name>``, with a regenerable token."""
from __future__ import annotations

import base64
import json
import re

from peewee import IntegrityError

from slipway import crypto
from slipway.db import database
from slipway.errors import Conflict, Forbidden, Invalid, NotFound

from . import audit, revocation
from .identity import Identity
from .models import ROBOT, Account

ROBOT_SHORT_RE = re.compile(r"^[a-z][a-z0-9_]{1,254}\Z")
DISABLED = "Robot accounts have been disabled. Please contact your administrator."


def check_enabled(enabled: bool) -> None:
    if not enabled:
        raise Forbidden(DISABLED)


def full_name(namespace: Account, short: str) -> str:
    return f"{namespace.name}+{short}"


def get_robot(namespace: Account, short: str) -> Account:
    robot = Account.get_or_none((Account.name == full_name(namespace, short)) & (Account.kind == ROBOT))
    if robot is None:
        raise NotFound(f"Robot '{full_name(namespace, short)}' does not exist")
    return robot


def list_robots(namespace: Account) -> list[Account]:
    return list(Account.select().where((Account.owner == namespace.id) & (Account.kind == ROBOT))
                .order_by(Account.name))


def _new_secret() -> tuple[str, str, str]:
    token = crypto.new_token(64)
    return token, crypto.hash_token(token), crypto.encrypt(token)


def create_robot(namespace: Account, short: str, description: str, performer: Identity,
                 ip: str | None = None) -> tuple[Account, str]:
    """A new robot in ``namespace``; returns it and its token."""
    if "+" in short:
        raise Invalid(f"Invalid robot name '{short}': give the part after '+' only")
    if not ROBOT_SHORT_RE.match(short):
        raise Invalid(f"Invalid robot name '{short}': lowercase letters, digits and '_', starting with a letter, "
                      "2 to 255 characters")
    name = full_name(namespace, short)
    token, token_hash, encrypted = _new_secret()
    try:
        with database.atomic():
            robot = Account.create(name=name, kind=ROBOT, owner=namespace, description=description or "",
                                   token_hash=token_hash, token_encrypted=encrypted)
            audit.record("create_robot", performer, namespace=namespace, ip=ip, metadata={"robot": name})
    except IntegrityError:
        raise Conflict(f"Robot '{name}' already exists") from None
    return robot, token


def robot_token(robot: Account) -> str:
    return crypto.decrypt(robot.token_encrypted)


def regenerate(robot: Account, performer: Identity, ip: str | None = None) -> str:
    token, token_hash, encrypted = _new_secret()
    with database.atomic():
        Account.update(token_hash=token_hash, token_encrypted=encrypted).where(Account.id == robot.id).execute()
        revocation.new_credentials(robot)
        audit.record("regenerate_robot_token", performer, namespace=robot.owner, ip=ip,
                     metadata={"robot": robot.name})
    return token


def delete_robot(robot: Account, performer: Identity, ip: str | None = None) -> None:
    with database.atomic():
        audit.record("delete_robot", performer, namespace=robot.owner, ip=ip,
                     metadata={"robot": robot.name})
        robot.delete_instance()
        revocation.bump()


def check_robot_token(robot: Account, token: str) -> bool:
    return bool(robot.token_hash) and crypto.same(robot.token_hash, crypto.hash_token(token))


def credentials(robot: Account, registry_host: str, fmt: str) -> tuple[str, str, str]:
    """A robot's credentials as a ready-to-use file: returns (content, media type, file name)."""
    token = robot_token(robot)
    safe = robot.name.replace("+", "_")
    auth = base64.b64encode(f"{robot.name}:{token}".encode()).decode()
    config = {"auths": {registry_host: {"auth": auth, "email": ""}}}
    if fmt == "docker-login":
        return f"docker login -u='{robot.name}' -p='{token}' {registry_host}\n", "text/plain", f"{safe}-login.sh"
    if fmt == "podman-login":
        return f"podman login -u='{robot.name}' -p='{token}' {registry_host}\n", "text/plain", f"{safe}-login.sh"
    if fmt == "docker-config":
        return json.dumps(config, indent=2) + "\n", "application/json", "config.json"
    if fmt == "kubernetes":
        encoded = base64.b64encode(json.dumps(config).encode()).decode()
        secret_name = safe.lower().replace("_", "-") + "-pull-secret"
        yaml = ("apiVersion: v1\nkind: Secret\nmetadata:\n"
                f"  name: {secret_name}\n"
                "data:\n"
                f"  .dockerconfigjson: {encoded}\n"
                "type: kubernetes.io/dockerconfigjson\n")
        return yaml, "application/yaml", f"{secret_name}.yml"
    raise Invalid(f"Unknown credential format '{fmt}': use docker-login, podman-login, docker-config or kubernetes")
