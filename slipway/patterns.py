"""User-supplied regular expressions, matched in linear time (RE2).

Every pattern a user gives (a trigger's ``branchtag_regex``, a notification's
``ref-regex``) is compiled here and nowhere else. Python's ``re`` backtracks: a
pattern like ``heads/(a*)*b`` takes exponential time on a short ref, and it runs
on the event loop. RE2 (``google-re2``) guarantees time linear in the input and
refuses what it cannot do in linear time (backreferences, lookaround,
possessive quantifiers); those patterns are refused when they are saved, with
RE2's reason. Patterns are short and their number small: compiled ones are cached.
"""
from __future__ import annotations

import functools

import re2

from .errors import Invalid

MAX_PATTERN_LENGTH = 1000
MAX_PROGRAM_BYTES = 1 << 20  # RE2's memory budget per pattern (its default is 8 MiB)

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # the reason is in the exception; RE2 would also print it to stderr
_OPTIONS.max_mem = MAX_PROGRAM_BYTES


@functools.lru_cache(maxsize=512)
def _compile(pattern: str):
    return re2.compile(pattern, _OPTIONS)


def compile_pattern(pattern, setting: str):
    """The compiled pattern, or Invalid naming ``setting`` and why the pattern cannot be used."""
    if not isinstance(pattern, str):
        raise Invalid(f"Invalid {setting}: it must be a string (a regular expression)")
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise Invalid(f"Invalid {setting}: longer than {MAX_PATTERN_LENGTH} characters")
    try:
        return _compile(pattern)
    except re2.error as e:
        reason = e.args[0].decode(errors="replace") if e.args and isinstance(e.args[0], bytes) else str(e)
        raise Invalid(f"Invalid {setting} '{pattern}': {reason} (patterns are RE2 syntax: no backreferences, "
                      "lookahead or lookbehind)") from None


def check(pattern, setting: str) -> None:
    """Refuse a pattern (when it is saved) that ``fullmatch`` could not use."""
    compile_pattern(pattern, setting)


def fullmatch(pattern: str, text: str, setting: str) -> bool:
    """Whether ``pattern`` matches all of ``text``; time linear in ``len(text)``.

    Raises Invalid for a pattern stored before this rule that RE2 refuses.
    """
    return compile_pattern(pattern, setting).fullmatch(text) is not None
