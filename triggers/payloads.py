"""Reading push payloads into Quay's trigger metadata: custom git JSON, GitHub, GitLab, Bitbucket, Gitea.

The kind of payload is told by the sender's event header when there is one, else
by its shape (Quay's custom trigger accepts GitHub-shaped bodies too). Events
that are not pushes of a commit (pings, branch deletions) are ``Skip``s, answered
200 with the reason; bodies that fit no schema are ``Invalid`` (400, naming the problem).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from slipway.api import schema_error
from slipway.errors import Invalid

ZERO_SHA = "0" * 40
PERSON = {"type": "object", "required": ["username", "url", "avatar_url"],
          "properties": {"username": {"type": "string"}, "url": {"type": "string"},
                         "avatar_url": {"type": "string"}}}
# Quay's custom git payload schema.
CUSTOM_SCHEMA = {
    "type": "object",
    "required": ["commit", "ref", "default_branch"],
    "properties": {
        "commit": {"type": "string", "pattern": "^[A-Fa-f0-9]{7,}$"},
        "ref": {"type": "string", "pattern": "^refs/(heads|tags|remotes)/(.+)$"},
        "default_branch": {"type": "string"},
        "commit_info": {"type": "object", "required": ["url", "message", "date"], "properties": {
            "url": {"type": "string"}, "message": {"type": "string"}, "date": {"type": "string"},
            "author": PERSON, "committer": PERSON}},
    },
}


class Skip(Exception):
    """A well-formed event that asks for no build (ping, deleted branch)."""


@dataclass
class Push:
    commit: str
    ref: str
    default_branch: str | None
    git_url: str | None
    commit_info: dict = field(default_factory=dict)
    changed_files: list | None = None  # when the payload lists them (for path filters)
    delivery_id: str | None = None
    source: str = "custom-git"

    def metadata(self) -> dict:
        """Quay's trigger metadata, which tag templates read."""
        meta = {"commit": self.commit, "ref": self.ref, "default_branch": self.default_branch,
                "git_url": self.git_url, "commit_info": dict(self.commit_info)}
        meta["commit_info"]["short_sha"] = self.commit[:7]
        kind, _, name = self.ref.removeprefix("refs/").partition("/")
        meta["parsed_ref"] = {"branch": name if kind == "heads" else None, "tag": name if kind == "tags" else None,
                              "remote": name if kind == "remotes" else None}
        return {k: v for k, v in meta.items() if v is not None}


DELIVERY_HEADERS = ("X-GitHub-Delivery", "X-Gitea-Delivery", "X-Gogs-Delivery", "X-Gitlab-Event-UUID",
                    "X-Request-UUID", "X-Hook-UUID")


def parse(headers, body: bytes) -> Push:
    try:
        doc = json.loads(body or b"null")
    except RecursionError:
        raise Invalid("The webhook body is nested too deeply") from None
    except ValueError as e:
        raise Invalid(f"The webhook body is not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise Invalid("The webhook body must be a JSON object")
    delivery = next((headers.get(h) for h in DELIVERY_HEADERS if headers.get(h)), None)
    if headers.get("X-Gitea-Event") or headers.get("X-Gogs-Event"):
        push = _github_like(doc, headers.get("X-Gitea-Event") or headers.get("X-Gogs-Event"), "gitea")
    elif headers.get("X-GitHub-Event"):
        push = _github_like(doc, headers.get("X-GitHub-Event"), "github")
    elif headers.get("X-Gitlab-Event"):
        push = _gitlab(doc)
    elif headers.get("X-Event-Key"):
        push = _bitbucket(doc, headers.get("X-Event-Key"))
    elif "zen" in doc or "head_commit" in doc or ("repository" in doc and "commits" in doc):
        push = _github_like(doc, "ping" if "zen" in doc else "push", "github")
    elif "object_kind" in doc:
        push = _gitlab(doc)
    elif isinstance(doc.get("push"), dict):
        push = _bitbucket(doc, "repo:push")
    else:
        push = _custom(doc)
    push.delivery_id = delivery
    return push


def _require(doc: dict, *path: str):
    value = doc
    for key in path:
        if not isinstance(value, dict) or key not in value:
            raise Invalid(f"The payload has no {'.'.join(path)}")
        value = value[key]
    return value


def _custom(doc: dict) -> Push:
    e = schema_error(CUSTOM_SCHEMA, doc)  # compiled once: validate() was two thirds of a webhook's time
    if e is not None:
        where = ".".join(str(p) for p in e.absolute_path)
        raise Invalid(f"The payload matches no known format (custom git: {where + ': ' if where else ''}"
                      f"{e.message})") from None
    return Push(commit=doc["commit"], ref=doc["ref"], default_branch=doc["default_branch"],
                git_url=doc.get("git_url"), commit_info=doc.get("commit_info") or {})


def _changed(commits: list) -> list | None:
    if not commits:
        return None
    files = []
    for commit in commits:
        for key in ("added", "modified", "removed"):
            files.extend(commit.get(key) or [])
    return sorted(set(files))


def _github_like(doc: dict, event: str, source: str) -> Push:
    if event == "ping" or "zen" in doc:
        raise Skip("ping event: nothing to build")
    if event not in ("push",):
        raise Skip(f"'{event}' events do not start builds")
    ref = _require(doc, "ref")
    head = doc.get("head_commit")
    if doc.get("deleted") or doc.get("after") == ZERO_SHA or (head is None and source == "github"):
        raise Skip(f"{ref} was deleted: nothing to build")
    if head is None:  # older Gitea: no head_commit, use the last commit
        commits = doc.get("commits") or []
        head = next((c for c in commits if c.get("id") == doc.get("after")), commits[-1] if commits else None)
        if head is None:
            raise Invalid("The push payload names no commit (no head_commit or commits)")
    if not isinstance(head, dict):
        raise Invalid("head_commit must be an object")
    repository = doc.get("repository") or {}
    author = head.get("author") or {}
    committer = head.get("committer") or {}
    host = "https://github.com" if source == "github" else ""
    info = {"url": head.get("url", ""), "message": head.get("message", ""), "date": head.get("timestamp", "")}
    if author.get("username"):
        info["author"] = {"username": author["username"], "url": f"{host}/{author['username']}",
                          "avatar_url": (doc.get("sender") or {}).get("avatar_url", "")}
    if committer.get("username"):
        info["committer"] = {"username": committer["username"], "url": f"{host}/{committer['username']}",
                             "avatar_url": ""}
    return Push(commit=_require(head, "id"), ref=ref,
                default_branch=repository.get("default_branch") or repository.get("master_branch"),
                git_url=repository.get("ssh_url") or repository.get("clone_url"), commit_info=info,
                changed_files=_changed(doc.get("commits") or []), source=source)


def _gitlab(doc: dict) -> Push:
    kind = doc.get("object_kind")
    if kind not in ("push", "tag_push"):
        raise Skip(f"'{kind}' events do not start builds")
    commit = doc.get("checkout_sha") or doc.get("after")
    if not commit or commit == ZERO_SHA:
        raise Skip(f"{doc.get('ref')} was deleted: nothing to build")
    project = doc.get("project") or doc.get("repository") or {}
    commits = doc.get("commits") or []
    head = next((c for c in commits if c.get("id") == commit), commits[-1] if commits else {})
    info = {"url": head.get("url", ""), "message": head.get("message", ""), "date": head.get("timestamp", "")}
    if doc.get("user_username"):
        info["author"] = {"username": doc["user_username"], "url": "", "avatar_url": doc.get("user_avatar") or ""}
    return Push(commit=commit, ref=_require(doc, "ref"), default_branch=project.get("default_branch"),
                git_url=project.get("git_ssh_url") or project.get("git_http_url"), commit_info=info,
                changed_files=_changed(commits), source="gitlab")


def _bitbucket(doc: dict, event: str) -> Push:
    if event != "repo:push":
        raise Skip(f"'{event}' events do not start builds")
    changes = _require(doc, "push", "changes")
    if not changes:
        raise Skip("the push has no changes")
    new = changes[-1].get("new")
    if not new:
        raise Skip("the branch or tag was deleted: nothing to build")
    target = new.get("target") or {}
    ref = f"refs/heads/{new['name']}" if new.get("type") == "branch" else f"refs/tags/{new['name']}"
    repository = doc.get("repository") or {}
    user = (target.get("author") or {}).get("user") or {}
    info = {"url": ((target.get("links") or {}).get("html") or {}).get("href", ""),
            "message": target.get("message", ""), "date": target.get("date", "")}
    if user.get("nickname") or user.get("username"):
        name = user.get("nickname") or user.get("username")
        info["author"] = {"username": name, "url": f"https://bitbucket.org/{name}/",
                          "avatar_url": ((user.get("links") or {}).get("avatar") or {}).get("href", "")}
    full_name = repository.get("full_name")
    return Push(commit=_require(target, "hash"), ref=ref,
                default_branch=(repository.get("mainbranch") or {}).get("name"),
                git_url=f"git@bitbucket.org:{full_name}.git" if full_name else None, commit_info=info,
                source="bitbucket")
