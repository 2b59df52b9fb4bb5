"""Reading push payloads into Quay's trigger metadata: custom git JSON, GitHub, GitLab, Bitbucket Cloud,
Bitbucket Data Center, Gitea.

The kind of payload is told by the sender's event header when there is one, else
by its shape (Quay's custom trigger accepts GitHub-shaped bodies too). A body is
JSON, or a form with a ``payload`` field (GitHub's and Gitea's
``application/x-www-form-urlencoded`` content type). One event may name several
refs (Bitbucket's ``push.changes``, Bitbucket Data Center's ``changes``): each
created or updated ref is a ``Push`` of its own, deletions are listed as skipped.
Events that are not pushes (pings, other events) raise ``Skip``, answered 200
with the reason; bodies that fit no schema are ``Invalid`` (400, naming every problem).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import jsonschema

from slipway.errors import Invalid

ZERO_SHA = "0" * 40
SHA_RE = re.compile(r"^[0-9a-fA-F]{7,64}\Z")
PERSON = {"type": "object", "properties": {"username": {"type": "string"}, "url": {"type": "string"},
                                           "avatar_url": {"type": "string"}}}
# Quay's custom git payload: commit, ref and default_branch; commit_info and every field in it optional.
CUSTOM_SCHEMA = {
    "type": "object",
    "required": ["commit", "ref", "default_branch"],
    "properties": {
        "commit": {"type": "string", "pattern": "^[A-Fa-f0-9]{7,40}$"},
        "ref": {"type": "string", "pattern": "^refs/(heads|tags|remotes)/(.+)$"},
        "default_branch": {"type": "string"},
        "git_url": {"type": "string"},
        "commit_info": {"type": "object", "properties": {
            "url": {"type": "string"}, "message": {"type": "string"}, "date": {"type": "string"},
            "author": PERSON, "committer": PERSON}},
    },
}
_CUSTOM_VALIDATOR = jsonschema.validators.validator_for(CUSTOM_SCHEMA)(CUSTOM_SCHEMA)
# The header each forge documents as the same on a retry of one delivery (never a per-hook id such as
# X-Hook-UUID, nor GitLab's X-Gitlab-Event-UUID, which recursive webhooks share).
RETRY_HEADERS = {"github": ("X-GitHub-Delivery",), "gitea": ("X-Gitea-Delivery", "X-Gogs-Delivery"),
                 "gitlab": ("Idempotency-Key", "webhook-id"), "bitbucket": ("X-Request-UUID",),
                 "bitbucket-dc": ("X-Request-Id",), "custom-git": ()}


class Skip(Exception):
    """A well-formed event that asks for no build (ping, deleted branch, another kind of event)."""


@dataclass
class Push:
    commit: str
    ref: str
    default_branch: str | None
    git_url: str | None
    commit_info: dict = field(default_factory=dict)
    changed_files: list | None = None  # when the payload lists them (for path filters)
    before: str | None = None  # the ref's previous commit, when the payload says (None: a new ref or unknown)
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


@dataclass
class Event:
    """One webhook delivery: the refs to consider building, the refs it deleted, its retry key."""

    source: str
    pushes: list = field(default_factory=list)
    skipped: list = field(default_factory=list)  # [(ref, reason)]
    retry_key: str | None = None


def decode(headers, body: bytes):
    """The JSON document of a webhook body: JSON, or a form whose ``payload`` field is JSON."""
    content_type = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
    # `curl -d '{...}'` labels a JSON body as a form: a body that starts like JSON is read as JSON.
    looks_like_json = body.lstrip()[:1] in (b"{", b"[")
    if (content_type == "application/x-www-form-urlencoded" and not looks_like_json) \
            or (not content_type and body.startswith(b"payload=")):
        try:
            form = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True)
        except (UnicodeDecodeError, ValueError) as e:
            raise Invalid(f"The webhook body is not a valid form: {e}") from None
        if len(form.get("payload") or []) != 1:
            raise Invalid("The form-encoded webhook body has no single 'payload' field (GitHub and Gitea send "
                          "the JSON payload there)")
        text = form["payload"][0]
    else:
        text = body or b"null"
    try:
        return json.loads(text)
    except RecursionError:
        raise Invalid("The webhook body is nested too deeply") from None
    except ValueError as e:
        raise Invalid(f"The webhook body is not valid JSON: {e}") from None


def parse(headers, body: bytes) -> Event:
    doc = decode(headers, body)
    if not isinstance(doc, dict):
        raise Invalid("The webhook body must be a JSON object")
    event_key = headers.get("X-Event-Key")
    if headers.get("X-Gitea-Event") or headers.get("X-Gogs-Event"):
        event = _github_like(doc, headers.get("X-Gitea-Event") or headers.get("X-Gogs-Event"), "gitea")
    elif headers.get("X-GitHub-Event"):
        event = _github_like(doc, headers.get("X-GitHub-Event"), "github")
    elif headers.get("X-Gitlab-Event"):
        event = _gitlab(doc)
    elif event_key and (event_key == "repo:refs_changed" or "eventKey" in doc):  # Bitbucket Data Center
        event = _bitbucket_dc(doc, event_key)
    elif event_key:
        event = _bitbucket(doc, event_key)
    elif "zen" in doc or "head_commit" in doc or ("repository" in doc and "commits" in doc):
        event = _github_like(doc, "ping" if "zen" in doc else "push", "github")
    elif "object_kind" in doc:
        event = _gitlab(doc)
    elif isinstance(doc.get("push"), dict):
        event = _bitbucket(doc, "repo:push")
    elif doc.get("eventKey") == "repo:refs_changed":
        event = _bitbucket_dc(doc, "repo:refs_changed")
    else:
        event = Event("custom-git", [_custom(doc)])
    event.retry_key = next((headers.get(h) for h in RETRY_HEADERS[event.source] if headers.get(h)), None)
    return event


def _require(doc: dict, *path: str):
    value = doc
    for key in path:
        if not isinstance(value, dict) or key not in value:
            raise Invalid(f"The payload has no {'.'.join(path)}")
        value = value[key]
    return value


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value) -> list:
    return value if isinstance(value, list) else []


def _text(value) -> str:
    """A string field of a payload ('' when absent or of another type)."""
    return value if isinstance(value, str) else ""


def _sha(value, what: str) -> str:
    if not isinstance(value, str) or not SHA_RE.match(value):
        raise Invalid(f"The payload's {what} is not a commit id")
    return value


def _ref(value) -> str:
    if not isinstance(value, str) or not value.startswith("refs/"):
        raise Invalid("The payload's ref must be a string such as refs/heads/main")
    return value


def _custom(doc: dict) -> Push:
    errors = sorted(_CUSTOM_VALIDATOR.iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        problems = "; ".join(f"{'.'.join(str(p) for p in e.absolute_path) or 'payload'}: {e.message}"
                             for e in errors)
        raise Invalid(f"The payload matches no known format (custom git: {problems})")
    info = {k: v for k, v in (doc.get("commit_info") or {}).items() if k in ("url", "message", "date")}
    for who in ("author", "committer"):
        person = (doc.get("commit_info") or {}).get(who)
        if person:
            info[who] = {"username": person.get("username", ""), "url": person.get("url", ""),
                         "avatar_url": person.get("avatar_url", "")}
    return Push(commit=doc["commit"], ref=doc["ref"], default_branch=doc["default_branch"] or None,
                git_url=doc.get("git_url"), commit_info=info)


def _changed(commits: list) -> list | None:
    if not commits:
        return None
    files = []
    for commit in commits:
        for key in ("added", "modified", "removed"):
            files.extend(f for f in _list(_dict(commit).get(key)) if isinstance(f, str))
    return sorted(set(files))


def _origin(url: str | None) -> str:
    """``https://host`` of a web URL ('' if none)."""
    if not url:
        return ""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def _before(value) -> str | None:
    return value if isinstance(value, str) and SHA_RE.match(value) and value != ZERO_SHA else None


def _github_like(doc: dict, event: str, source: str) -> Event:
    if event == "ping" or "zen" in doc:
        raise Skip("ping event: nothing to build")
    if event not in ("push",):
        raise Skip(f"'{event}' events do not start builds")
    ref = _ref(_require(doc, "ref"))
    head = doc.get("head_commit")
    if head is not None and not isinstance(head, dict):
        raise Invalid("The payload's head_commit must be an object")
    if doc.get("deleted") or doc.get("after") == ZERO_SHA or (head is None and source == "github"):
        raise Skip(f"{ref} was deleted: nothing to build")
    commits = [c for c in _list(doc.get("commits")) if isinstance(c, dict)]
    if head is None:  # older Gitea: no head_commit, use the last commit
        head = next((c for c in commits if c.get("id") == doc.get("after")), commits[-1] if commits else None)
        if head is None:
            raise Invalid("The push payload names no commit (no head_commit or commits)")
    repository = _dict(doc.get("repository"))
    author, committer = _dict(head.get("author")), _dict(head.get("committer"))
    host = _origin(_text(repository.get("html_url"))) or ("https://github.com" if source == "github" else "")
    info = {"url": _text(head.get("url")), "message": _text(head.get("message")),
            "date": _text(head.get("timestamp"))}
    sender = _dict(doc.get("sender"))
    username = _text(author.get("username"))
    if username:
        info["author"] = {"username": username, "url": f"{host}/{username}" if host else "",
                          "avatar_url": _text(sender.get("avatar_url")) if sender.get("login") in (None, username)
                          else ""}
    username = _text(committer.get("username"))
    if username:
        info["committer"] = {"username": username, "url": f"{host}/{username}" if host else "", "avatar_url": ""}
    push = Push(commit=_sha(_require(head, "id"), "head_commit.id"), ref=ref,
                default_branch=_text(repository.get("default_branch")) or _text(repository.get("master_branch"))
                or None,
                git_url=_text(repository.get("ssh_url")) or _text(repository.get("clone_url")) or None,
                commit_info=info,
                changed_files=_changed(commits), before=_before(doc.get("before")), source=source)
    return Event(source, [push])


def _gitlab(doc: dict) -> Event:
    kind = doc.get("object_kind")
    if kind not in ("push", "tag_push"):
        raise Skip(f"'{kind}' events do not start builds")
    ref = _ref(_require(doc, "ref"))
    commit = doc.get("checkout_sha") or doc.get("after")
    if not commit or commit == ZERO_SHA:
        raise Skip(f"{ref} was deleted: nothing to build")
    commit = _sha(commit, "checkout_sha")
    project = _dict(doc.get("project") or doc.get("repository"))
    commits = [c for c in _list(doc.get("commits")) if isinstance(c, dict)]
    head = next((c for c in commits if c.get("id") == commit), None)
    head = head or {}
    web_url = _text(project.get("web_url")) or _text(project.get("homepage"))
    # A tag push lists no commits: the URL is known; message and date come from the clone.
    info = {"url": _text(head.get("url")) or (f"{web_url}/-/commit/{commit}" if web_url else ""),
            "message": _text(head.get("message")), "date": _text(head.get("timestamp"))}
    host = _origin(web_url)
    username = _text(doc.get("user_username"))
    if username:
        info["author"] = {"username": username, "url": f"{host}/{username}" if host else "",
                          "avatar_url": _text(doc.get("user_avatar"))}
    push = Push(commit=commit, ref=ref, default_branch=_text(project.get("default_branch")) or None,
                git_url=_text(project.get("git_ssh_url")) or _text(project.get("git_http_url")) or None,
                commit_info=info,
                changed_files=_changed(commits), before=_before(doc.get("before")), source="gitlab")
    return Event("gitlab", [push])


BITBUCKET_KINDS = {"branch": "heads", "named_branch": "heads", "tag": "tags", "annotated_tag": "tags"}


def _bitbucket(doc: dict, event: str) -> Event:
    """Bitbucket Cloud ``repo:push``: one event, one change per pushed ref."""
    if event != "repo:push":
        raise Skip(f"'{event}' events do not start builds")
    changes = _require(doc, "push", "changes")
    if not isinstance(changes, list) or not changes:
        raise Skip("the push has no changes")
    repository = _dict(doc.get("repository"))
    full_name = _text(repository.get("full_name"))
    # Bitbucket Cloud's repo:push carries no default branch; older payloads had repository.mainbranch.
    default = _text(_dict(repository.get("mainbranch")).get("name")) or None
    event_out = Event("bitbucket")
    for change in changes:
        change = _dict(change)
        new, old = _dict(change.get("new")), _dict(change.get("old"))
        if not new:
            event_out.skipped.append((_bitbucket_ref(old), "deleted: nothing to build"))
            continue
        ref = _bitbucket_ref(new)
        if ref is None:
            event_out.skipped.append((str(new.get("name")), f"'{new.get('type')}' refs do not start builds"))
            continue
        target = _dict(new.get("target"))
        user = _dict(_dict(target.get("author")).get("user"))
        info = {"url": _text(_dict(_dict(target.get("links")).get("html")).get("href")),
                "message": _text(target.get("message")), "date": _text(target.get("date"))}
        name = _text(user.get("nickname")) or _text(user.get("username"))
        if name:
            info["author"] = {"username": name,
                              "url": _text(_dict(_dict(user.get("links")).get("html")).get("href"))
                              or f"https://bitbucket.org/{name}/",
                              "avatar_url": _text(_dict(_dict(user.get("links")).get("avatar")).get("href"))}
        event_out.pushes.append(Push(
            commit=_sha(_require(target, "hash"), "change's new.target.hash"), ref=ref, default_branch=default,
            git_url=f"git@bitbucket.org:{full_name}.git" if full_name else None, commit_info=info,
            before=_before(_dict(old.get("target")).get("hash")), source="bitbucket"))
    return event_out


def _bitbucket_ref(side: dict) -> str | None:
    kind = BITBUCKET_KINDS.get(side.get("type")) if isinstance(side.get("type"), str) else None
    return f"refs/{kind}/{side['name']}" if kind and _text(side.get("name")) else None


def _bitbucket_dc(doc: dict, event: str) -> Event:
    """Bitbucket Data Center (Server) ``repo:refs_changed``: ``changes`` of ADD, UPDATE or DELETE."""
    if event != "repo:refs_changed":
        raise Skip(f"'{event}' events do not start builds (Bitbucket Data Center: subscribe to "
                   "'Repository: Push', repo:refs_changed)")
    changes = _require(doc, "changes")
    if not isinstance(changes, list) or not changes:
        raise Skip("the push has no changes")
    repository = _dict(doc.get("repository"))
    clones = [c for c in _list(_dict(repository.get("links")).get("clone")) if isinstance(c, dict)]
    urls = {_text(c.get("name")): _text(c.get("href")) for c in clones}
    actor = _dict(doc.get("actor"))
    event_out = Event("bitbucket-dc")
    for change in changes:
        change = _dict(change)
        ref = change.get("refId") or _dict(change.get("ref")).get("id")
        if not isinstance(ref, str) or not ref.startswith(("refs/heads/", "refs/tags/")):
            event_out.skipped.append((str(ref), "not a branch or tag"))
            continue
        if change.get("type") == "DELETE" or change.get("toHash") in (None, "", ZERO_SHA):
            event_out.skipped.append((ref, "deleted: nothing to build"))
            continue
        info = {}
        if _text(actor.get("name")):
            info["author"] = {"username": actor["name"], "url": "", "avatar_url": ""}
        event_out.pushes.append(Push(
            commit=_sha(change["toHash"], "change's toHash"), ref=ref, default_branch=None,
            git_url=urls.get("ssh") or urls.get("http") or None, commit_info=info,
            before=_before(change.get("fromHash")), source="bitbucket-dc"))
    return event_out
