"""What a trigger build hands the builder to clone (``git_source``), and what it settles from the clone.

The builder clones (``builder.clone``); this module tells it where from (the trigger's own
``build_source`` or the push's URL), at which commit, with which deploy key, and settles from the
checked-out tree what the push's payload did not say.
"""
from __future__ import annotations

import json

import git

from builder.backends import NothingToBuild
from builder.clone import GitSource
from builder.clone import remote_refs as git_remote_refs
from builder.models import Build

from . import rules, templates
from .models import Trigger
from .service import private_key


def git_source(build: Build) -> GitSource:
    """The git source of a trigger build (registered as the builder's ``git_source`` hook)."""
    metadata = json.loads(build.trigger_metadata or "{}")
    trigger = Trigger.get_or_none(Trigger.id == build.trigger_id) if build.trigger_id else None
    source = (metadata.get("git") or {}) if "git" in metadata else {}
    url = (trigger.build_source if trigger and trigger.build_source else None) or source.get("url") \
        or metadata.get("git_url")
    commit = metadata.get("commit") or source.get("commit")
    if trigger is None:
        return GitSource(url, commit)
    return GitSource(url, commit, private_key(trigger), lambda repo, writer: settle(build, trigger, repo, writer))


def remote_refs(url: str, trigger: Trigger, config) -> tuple[dict, str | None]:
    """The source's refs and its default branch (``git ls-remote`` with the trigger's deploy key)."""
    return git_remote_refs(url, private_key(trigger), config)


def settle(build, trigger: Trigger, repo: git.Repo, writer) -> None:
    """Settle from the clone what the push's payload did not say (``metadata["pending"]``, see
    ``service.build_metadata``): the default branch (the source's HEAD, remembered by the trigger), the
    commit's message and date, and the changed files when path filters are set. Then the tags are made
    again from the completed metadata. Raises ``NothingToBuild`` when the rules say so."""
    metadata = json.loads(build.trigger_metadata or "{}")
    pending = metadata.pop("pending", None)
    if not pending:
        return
    commit = repo.commit(metadata["commit"])
    if pending.get("default_branch"):
        branch = head_branch(repo)
        if branch:
            metadata["default_branch"] = branch
            writer.line(f"Default branch of the source: {branch} (its HEAD)")
            if trigger.build_source:  # remembered only from the trigger's own source, never a payload's URL
                Trigger.update(default_branch=branch).where((Trigger.id == trigger.id)
                                                            & Trigger.default_branch.is_null()).execute()
    if pending.get("commit_info"):
        info = metadata.setdefault("commit_info", {})
        if not info.get("message"):
            info["message"] = commit.message.strip()
        if not info.get("date"):
            info["date"] = commit.committed_datetime.isoformat()
        reason = rules.message_reason(info["message"])
        if reason:
            raise NothingToBuild(f"Nothing to build: {reason}")
    if pending.get("paths"):
        files, how = changed_files(repo, commit, pending.get("before"), metadata.get("ref"),
                                   metadata.get("default_branch"))
        shown = ", ".join(files[:50]) + (f" and {len(files) - 50} more" if len(files) > 50 else "")
        writer.line(f"Changed files ({how}): {shown or 'none'}")
        reason = rules.paths_reason(files, json.loads(trigger.included_paths), json.loads(trigger.ignored_paths))
        if reason:
            raise NothingToBuild(f"Nothing to build: {reason}")
        writer.line("The path filters let these changes build")
    tags = templates.tags_for(json.loads(trigger.tag_templates), metadata, trigger.default_tag_from_ref,
                              trigger.latest_for_default_branch)
    if tags != json.loads(build.docker_tags):
        writer.line(f"Tags from the completed metadata: {', '.join(tags)}")
    build.trigger_metadata, build.docker_tags = json.dumps(metadata), json.dumps(tags)
    Build.update(trigger_metadata=build.trigger_metadata, docker_tags=build.docker_tags).where(
        Build.id == build.id).execute()


def head_branch(repo: git.Repo) -> str | None:
    """The source's default branch: where its HEAD pointed when cloned (``origin/HEAD``)."""
    try:
        target = repo.git.symbolic_ref("--quiet", "refs/remotes/origin/HEAD")
    except git.GitCommandError:
        return None
    return target.removeprefix("refs/remotes/origin/") or None


def changed_files(repo: git.Repo, commit, before: str | None, ref: str | None,
                  default_branch: str | None) -> tuple[list, str]:
    """The files the push changed, and how that was decided: ``before..after`` when the previous commit of
    the ref is known and in the clone; for a new branch, against where it left the default branch; else
    the commit's own changes (against its first parent)."""
    sha = commit.hexsha
    if before:
        try:
            repo.git.cat_file("-e", f"{before}^{{commit}}")
            names = repo.git.diff("--name-only", before, sha)
            return sorted(filter(None, names.splitlines())), f"{before[:12]}..{sha[:12]}"
        except git.GitCommandError:
            pass  # e.g. a force push: the old commit is gone
    branch = (ref or "").removeprefix("refs/heads/") if (ref or "").startswith("refs/heads/") else None
    if default_branch and branch and branch != default_branch:
        try:
            base = repo.git.merge_base(f"refs/remotes/origin/{default_branch}", sha).strip()
        except git.GitCommandError:
            base = None
        if base and base != sha:
            names = repo.git.diff("--name-only", base, sha)
            return sorted(filter(None, names.splitlines())), f"since {default_branch} at {base[:12]}"
    names = repo.git.diff_tree("--root", "--no-commit-id", "--name-only", "-r", sha)
    return sorted(filter(None, names.splitlines())), f"the changes of {sha[:12]}"
