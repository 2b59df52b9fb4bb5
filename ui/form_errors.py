"""Which form field a service function's error message is about, so the page shows it next to that field."""
from __future__ import annotations


def field_of(message: str, fields: tuple) -> str:
    """``fields``: ``(field, (words...))`` pairs, first match wins; ``"form"`` (above the form) otherwise."""
    lowered = message.lower()
    for name, words in fields:
        if any(w in lowered for w in words):
            return name
    return "form"
