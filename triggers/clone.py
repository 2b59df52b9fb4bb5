"""Cloning a trigger's source for a build: at the exact commit, with submodules, over SSH with the deploy key."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import git

from builder.backends import BuildFailed, NothingToBuild
from builder.models import Build
from slipway import outgoing
from slipway.errors import Invalid

from . import rules, sources, templates
from .models import Trigger
from .service import private_key

MAX_SUBMODULE_DEPTH = 8


def check_source(url: str, config) -> None:
    """Refuse sources the operator did not allow: local files, remote helpers, non-public hosts (raises Invalid).

    The form is ``sources.classify``'s rule (also applied when a trigger is saved); the host is
    checked with the one private-address rule, ``slipway.outgoing.check_host``.
    """
    kind, host, port = sources.classify(url, config.triggers.allow_file_urls)
    if kind != sources.FILE:
        outgoing.check_host(host, port, config.network, url)


def git_env(workdir: Path, key: str | None, allow_file: bool = False) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env["GIT_TERMINAL_PROMPT"] = "0"
    # Only the transports the source rules know, and no HTTP redirects (they could lead anywhere).
    # Submodules are fetched one level at a time, each level's URLs checked first: never recursively by git.
    settings = [("http.followRedirects", "false"), ("protocol.allow", "never"), ("protocol.https.allow", "always"),
                ("protocol.http.allow", "always"), ("protocol.ssh.allow", "always"),
                ("protocol.file.allow", "always" if allow_file else "never"),
                ("submodule.recurse", "false"), ("fetch.recurseSubmodules", "false")]
    env["GIT_CONFIG_COUNT"] = str(len(settings))
    for i, (key_name, value) in enumerate(settings):
        env[f"GIT_CONFIG_KEY_{i}"], env[f"GIT_CONFIG_VALUE_{i}"] = key_name, value
    ssh = ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=accept-new",
           "-o", f"UserKnownHostsFile={workdir / 'known_hosts'}", "-o", "ConnectTimeout=20"]
    if key:
        key_file = workdir / "deploy_key"
        key_file.write_text(key if key.endswith("\n") else key + "\n")
        key_file.chmod(0o600)
        ssh += ["-i", str(key_file), "-o", "IdentitiesOnly=yes"]
    env["GIT_SSH_COMMAND"] = " ".join(ssh)
    return env


def _git_error(e: git.GitCommandError) -> str:
    text = (e.stderr or "").strip().replace("stderr: ", "").strip("'\n ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("Cloning into")]
    return " ".join(lines[-6:])[-600:] or str(e)


def clone_for_build(build, root: Path, config, writer) -> str:
    """Clone the build's source into ``root`` at its commit (the builder calls this for trigger builds)."""
    metadata = json.loads(build.trigger_metadata or "{}")
    trigger = Trigger.get_or_none(Trigger.id == build.trigger_id) if build.trigger_id else None
    source = (metadata.get("git") or {}) if "git" in metadata else {}
    url = (trigger.build_source if trigger and trigger.build_source else None) or source.get("url") \
        or metadata.get("git_url")
    commit = metadata.get("commit") or source.get("commit")
    if not url or not commit:
        raise BuildFailed("This build has no git source to clone")
    try:
        check_source(url, config)
    except Invalid as e:
        raise BuildFailed(e.message) from None
    with tempfile.TemporaryDirectory(prefix="clone-") as tmp:
        env = git_env(Path(tmp), private_key(trigger) if trigger else None, config.triggers.allow_file_urls)
        writer.line(f"Cloning {url} at {commit}")
        try:
            repo = git.Repo.clone_from(url, str(root), env=env, no_checkout=True)
        except git.GitCommandError as e:
            raise BuildFailed(f"Could not clone {url}: {_git_error(e)}") from None
        # Closed at the end: GitPython keeps `git cat-file` processes for reading objects (the summary below),
        # which would otherwise live on in the server until a garbage collection.
        with repo:
            try:
                repo.git.checkout("--detach", commit, env=env)
            except git.GitCommandError:
                raise BuildFailed(f"The commit {commit} does not exist in {url}") from None
            if (root / ".gitmodules").exists():
                writer.line("Updating submodules")
                update_submodules(repo, url, config, env)
            writer.line(f"Checked out {repo.head.commit.hexsha[:12]}: {repo.head.commit.summary}")
            if trigger is not None:
                settle(build, trigger, repo, writer)
    return "git"


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


def update_submodules(repo: git.Repo, url: str, config, env: dict, depth: int = 0) -> None:
    """Fetch ``repo``'s submodules level by level: every URL of a level passes ``check_source`` before
    that level is fetched, then each fetched submodule's own submodules are checked the same way.

    (``git submodule update --recursive`` would fetch a grandchild that nobody checked, e.g. one at
    ``http://127.0.0.1:<port>``.) The URLs checked are those ``git submodule init`` wrote to the
    repository's config, relative ones already resolved by git: exactly what ``update`` fetches.
    """
    root = Path(repo.working_tree_dir)
    if not (root / ".gitmodules").exists():
        return
    if depth >= MAX_SUBMODULE_DEPTH:
        raise BuildFailed(f"Submodules of {url} are nested more than {MAX_SUBMODULE_DEPTH} levels deep")
    try:
        repo.git.submodule("init", env=env)
        urls = _config_values(repo, [], r"^submodule\..*\.url$", ".url")
        paths = _config_values(repo, ["-f", ".gitmodules"], r"^submodule\..*\.path$", ".path")
    except git.GitCommandError as e:
        raise BuildFailed(f"Could not read the submodules of {url}: {_git_error(e)}") from None
    for name, sub_url in urls.items():
        try:
            check_source(sub_url, config)
        except Invalid as e:
            raise BuildFailed(f"Submodule source refused: {e.message}") from None
    if not urls:
        return
    try:
        repo.git.submodule("update", "--", *[paths[name] for name in urls if name in paths], env=env)
    except git.GitCommandError as e:
        raise BuildFailed(f"Could not fetch the submodules of {url}: {_git_error(e)}") from None
    for name, sub_url in urls.items():
        sub_dir = (root / paths.get(name, "")).resolve()
        if name not in paths or sub_dir == root.resolve() or root.resolve() not in sub_dir.parents \
                or not (sub_dir / ".git").exists():
            continue
        with git.Repo(str(sub_dir)) as sub:
            update_submodules(sub, sub_url, config, env, depth + 1)


def _config_values(repo: git.Repo, where: list, pattern: str, suffix: str) -> dict:
    """``submodule.<name><suffix>`` values from the repository's config (or ``-f FILE``), by name."""
    try:
        out = repo.git.config(*where, "--get-regexp", pattern)
    except git.GitCommandError as e:
        if e.status == 1:  # no such keys
            return {}
        raise
    values = {}
    for line in out.splitlines():
        key, _, value = line.partition(" ")
        values[key.removeprefix("submodule.").removesuffix(suffix)] = value.strip()
    return values


def remote_refs(url: str, trigger: Trigger, config) -> tuple[dict, str | None]:
    """The source's refs (``git ls-remote``) and its default branch, for manual runs."""
    check_source(url, config)
    with tempfile.TemporaryDirectory(prefix="lsremote-") as tmp:
        env = git_env(Path(tmp), private_key(trigger), config.triggers.allow_file_urls)
        try:
            out = git.Git().ls_remote("--symref", url, env=env)
        except git.GitCommandError as e:
            raise Invalid(f"Could not read {url}: {_git_error(e)}") from None
    refs, default = {}, None
    for line in out.splitlines():
        left, _, name = line.partition("\t")
        if left.startswith("ref: ") and name == "HEAD":
            default = left[5:].removeprefix("refs/heads/")
        elif name:
            refs[name] = left
    return refs, default
