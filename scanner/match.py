"""Matching a package against advisories, each ecosystem by its own version ordering."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from scanner.feeds import Advisory
from scanner.index import Distribution, ImageIndex, Package


@dataclass
class Finding:
    package: Package
    advisory: Advisory
    fixed_by: str | None


def ecosystem_keys(package: Package, distribution: Distribution | None) -> list[tuple[str, str]]:
    raise NotImplementedError


def vulnerable(package: Package, distribution: Distribution | None, advisory: Advisory) -> bool:
    raise NotImplementedError


def match(image: ImageIndex, lookup: Callable[[str, str], Iterable[Advisory]]) -> list[Finding]:
    raise NotImplementedError
