"""What other packages plug into builds, registered explicitly by their include functions.

One ``BuildHooks`` is made per process by the composition root (``slipway.app``) and handed to
the build workers and the lease reaper; nothing is filled in at import time.
"""
from __future__ import annotations

from typing import Callable

from .clone import GitSource


class BuildHooks:
    def __init__(self):
        self._ended: list[Callable] = []
        self._git_source: Callable | None = None

    def on_build_end(self, fn: Callable) -> None:
        """Register ``fn(build, final_phase)``, run in the transaction that ends a build."""
        self._ended.append(fn)

    def build_ended(self, build, phase: str) -> None:
        for fn in self._ended:
            fn(build, phase)

    def set_git_source(self, fn: Callable) -> None:
        """``fn(build) -> GitSource``: where a git build (one a trigger started) is cloned from."""
        self._git_source = fn

    def git_source(self, build) -> GitSource:
        if self._git_source is None:
            return GitSource(None, None)  # cloned by nobody: the build fails saying it has no source
        return self._git_source(build)
