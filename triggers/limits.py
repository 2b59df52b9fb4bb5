"""How much of a webhook Slipway accepts and keeps.

A signed payload is still the sender's to size: a 50 MB commit message was
accepted and stored four times (the build row and three event rows). Bodies over
``MAX_WEBHOOK_BODY`` are refused (413) before they are authenticated or parsed
(GitHub's own push payloads stay well under it). What a build keeps of a push is
bounded too: the commit message is cut at ``MAX_COMMIT_MESSAGE`` characters and
every other text of the metadata at ``MAX_TEXT``, each with ``MARKER`` at the end.
The HTTP layer may refuse larger bodies before reading them; this is the
trigger's own rule, and the size it allows.
"""
from __future__ import annotations

from slipway.errors import TooLarge

MAX_WEBHOOK_BODY = 5 * 1024 * 1024  # bytes
MAX_COMMIT_MESSAGE = 16 * 1024  # characters
MAX_TEXT = 4096  # characters, any other text in a build's trigger metadata
MARKER = "… [truncated]"


def check_body(body: bytes | None) -> None:
    if body is not None and len(body) > MAX_WEBHOOK_BODY:
        raise TooLarge(f"The webhook body is {len(body)} bytes; at most {MAX_WEBHOOK_BODY} bytes are accepted")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - len(MARKER)] + MARKER


def _bounded(value, limit: int):
    if isinstance(value, str):
        return _cut(value, limit)
    if isinstance(value, dict):
        return {k: _bounded(v, limit) for k, v in value.items()}
    if isinstance(value, list):
        return [_bounded(v, limit) for v in value]
    return value


def bounded(metadata: dict) -> dict:
    """``metadata`` with the commit message and every other text cut to their limits (a copy)."""
    info = metadata.get("commit_info")
    message = info.get("message") if isinstance(info, dict) else None
    result = _bounded(metadata, MAX_TEXT)
    if isinstance(message, str):
        result["commit_info"]["message"] = _cut(message, MAX_COMMIT_MESSAGE)
    return result
