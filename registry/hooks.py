"""What other packages plug into the registry's API answers, registered explicitly by their include functions.

One ``RegistryHooks`` per registration (``reg.extension(RegistryHooks)``); the handlers read it from
``services.registration``. Nothing is filled in at import time.
"""
from __future__ import annotations

from typing import Callable


class RegistryHooks:
    def __init__(self):
        self._tag_views: list[Callable] = []

    def on_tag_list(self, fn: Callable) -> None:
        """Register ``fn(repo, rows)``: adds fields to a page of the tag list's rows (each has
        ``manifest_digest`` and ``is_manifest_list``); it must be cheap for 100 rows (a query or two)."""
        self._tag_views.append(fn)

    def tag_list(self, repo, rows: list[dict]) -> None:
        for fn in self._tag_views:
            fn(repo, rows)
