"""Whether a push builds: the branch/tag regex, ``[skip build]``, and path filters."""
from __future__ import annotations

import fnmatch

from slipway import patterns
from slipway.errors import Invalid

from .payloads import Push

SKIP_MARKERS = ("[skip build]", "[build skip]")


def check_regex(pattern: str | None) -> None:
    """Refuse a branch/tag regex RE2 cannot match in linear time (it runs on the event loop)."""
    if pattern:
        patterns.check(pattern, "branchtag_regex")


def skip_reason(push: Push, branchtag_regex: str | None, included: list, ignored: list) -> str | None:
    """Why this push must not build, or None."""
    reason = message_reason((push.commit_info or {}).get("message"))
    if reason:
        return reason
    if branchtag_regex:
        short = push.ref.removeprefix("refs/")
        try:
            matched = patterns.fullmatch(branchtag_regex, short, "branchtag_regex")
        except Invalid as e:  # saved before patterns were RE2: it never matches until it is changed
            return f"{e.message}: change the trigger's branchtag_regex"
        if not matched:
            return f"{short} does not match the branch/tag regex {branchtag_regex}"
    if push.changed_files is not None:  # when the payload does not list them, the clone decides (settle.settle)
        return paths_reason(push.changed_files, included, ignored)
    return None


def message_reason(message: str | None) -> str | None:
    """Why a commit message asks for no build, or None."""
    for marker in SKIP_MARKERS:
        if marker in (message or "").lower():
            return f"the commit message contains {marker}"
    return None


def paths_reason(files: list, included: list, ignored: list) -> str | None:
    """Why these changed files do not build under the path filters, or None."""
    if included and not any(fnmatch.fnmatch(f, pat) for f in files for pat in included):
        return "no changed file matches included_paths"
    if ignored and files and all(any(fnmatch.fnmatch(f, pat) for pat in ignored) for f in files):
        return "every changed file matches ignored_paths"
    return None
