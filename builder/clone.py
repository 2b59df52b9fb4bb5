"""Fetching a git build source: at the exact commit, with submodules, over SSH with a deploy key.

The builder owns fetching every build source (uploads, archives, git). A build started by a
trigger is cloned from what the trigger hands over through ``BuildHooks.git_source``: a
``GitSource`` with the URL, the commit, the deploy key and what to settle from the clone.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import git

from slipway import outgoing
from slipway.errors import Invalid

from . import sources
from .backends import BuildFailed

MAX_SUBMODULE_DEPTH = 8


@dataclass
class GitSource:
    """What to clone for a build, handed over by the package that started it (triggers)."""

    url: str | None
    commit: str | None
    deploy_key: str | None = None
    # Called with the checked-out ``git.Repo`` and the build's log writer, before the clone is closed
    # (triggers settle what the push's payload did not say); may raise ``NothingToBuild``.
    settle: Callable | None = None


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


def git_error(e: git.GitCommandError) -> str:
    text = (e.stderr or "").strip().replace("stderr: ", "").strip("'\n ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("Cloning into")]
    return " ".join(lines[-6:])[-600:] or str(e)


def clone(source: GitSource, root: Path, config, writer) -> str:
    """Clone ``source`` into ``root`` at its commit, then let its owner settle what it needs from it."""
    url, commit = source.url, source.commit
    if not url or not commit:
        raise BuildFailed("This build has no git source to clone")
    try:
        check_source(url, config)
    except Invalid as e:
        raise BuildFailed(e.message) from None
    with tempfile.TemporaryDirectory(prefix="clone-") as tmp:
        env = git_env(Path(tmp), source.deploy_key, config.triggers.allow_file_urls)
        writer.line(f"Cloning {url} at {commit}")
        try:
            repo = git.Repo.clone_from(url, str(root), env=env, no_checkout=True)
        except git.GitCommandError as e:
            raise BuildFailed(f"Could not clone {url}: {git_error(e)}") from None
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
            if source.settle is not None:
                source.settle(repo, writer)
    return "git"


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
        raise BuildFailed(f"Could not read the submodules of {url}: {git_error(e)}") from None
    for sub_url in urls.values():
        try:
            check_source(sub_url, config)
        except Invalid as e:
            raise BuildFailed(f"Submodule source refused: {e.message}") from None
    if not urls:
        return
    try:
        repo.git.submodule("update", "--", *[paths[name] for name in urls if name in paths], env=env)
    except git.GitCommandError as e:
        raise BuildFailed(f"Could not fetch the submodules of {url}: {git_error(e)}") from None
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


def remote_refs(url: str, deploy_key: str | None, config) -> tuple[dict, str | None]:
    """The source's refs (``git ls-remote``) and its default branch, for manual runs."""
    check_source(url, config)
    with tempfile.TemporaryDirectory(prefix="lsremote-") as tmp:
        env = git_env(Path(tmp), deploy_key, config.triggers.allow_file_urls)
        try:
            out = git.Git().ls_remote("--symref", url, env=env)
        except git.GitCommandError as e:
            raise Invalid(f"Could not read {url}: {git_error(e)}") from None
    refs, default = {}, None
    for line in out.splitlines():
        left, _, name = line.partition("\t")
        if left.startswith("ref: ") and name == "HEAD":
            default = left[5:].removeprefix("refs/heads/")
        elif name:
            refs[name] = left
    return refs, default
