"""``${...}`` variables: the one way text is filled in from values.

Used by trigger tag templates (``${parsed_ref.branch}``), notification body templates
(``${updated_tags}``) and the Dockerfile reading of the builder (``${VERSION:-1}``, ``$VERSION``).
What a name means (a path into a payload, an ARG with a default) is the caller's: it passes
``value_of``, which answers the text to put in, or None to leave the variable as written.
"""
from __future__ import annotations

import re
from typing import Callable

BRACED = re.compile(r"\$\{([^}]*)\}")
# Dockerfiles (as shells) also write a variable without braces.
BRACED_OR_BARE = re.compile(r"\$(?:\{([^}]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


def names(text: str) -> list[str]:
    """The ``${name}`` variables ``text`` names, in order."""
    return BRACED.findall(text)


def unclosed(text: str) -> bool:
    """Whether ``text`` has a ``${`` that no ``}`` closes."""
    return "${" in BRACED.sub("", text)


def whole(text: str) -> str | None:
    """The name, if ``text`` is exactly one ``${name}`` variable."""
    match = BRACED.fullmatch(text)
    return match.group(1) if match else None


def substitute(text: str, value_of: Callable[[str], str | None], bare: bool = False) -> str:
    """``text`` with each ``${name}`` (with ``bare``, also ``$name``) replaced by ``value_of(name)``."""
    def replace(match: re.Match) -> str:
        value = value_of(match.group(1) if match.group(1) is not None else match.group(2))
        return match.group(0) if value is None else value

    return (BRACED_OR_BARE if bare else BRACED).sub(replace, text)


def lookup(data, path: str):
    """The value at a dotted ``path`` (``commit_info.author.username``) in nested dicts, or None."""
    value = data
    for key in path.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value
