"""The web interface's jinja2 environment (``templates/ui/``, autoescaping on), its static files and filters.

Templates get these filters: ``size`` (bytes for people), ``when`` (a millisecond timestamp as UTC text),
``ago`` (how long ago), ``markdown`` (a description rendered safely: raw HTML is shown as text, links
only to http(s)/mailto), ``short_digest``, ``web_link`` (a URL from data, for an ``href``: itself if it is
http(s), else empty); and the global ``static(name)``: the URL of a file of
``ui/static/`` with a version argument that changes with its content (cached for a year).
"""
from __future__ import annotations

import hashlib
import time
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

import jinja2
from markdown_it import MarkdownIt
from markupsafe import Markup
from tornado.web import StaticFileHandler

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "templates" / "ui"
STATIC = Path(__file__).resolve().parent / "static"
STATIC_PREFIX = "/static/ui/"

_env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                          trim_blocks=True, lstrip_blocks=True)


def render(name: str, context: dict) -> str:
    return _env.get_template(name).render(context)


@lru_cache(maxsize=64)
def _version(name: str) -> str:
    return hashlib.sha256((STATIC / name).read_bytes()).hexdigest()[:12]


def static(name: str) -> str:
    return f"{STATIC_PREFIX}{name}?v={_version(name)}"


class StaticHandler(StaticFileHandler):
    """``ui/static/`` at ``/static/ui/``."""

    def initialize(self) -> None:
        super().initialize(path=str(STATIC))

    def set_extra_headers(self, path: str) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")


# -- filters ------------------------------------------------------------------------------------------

def size(value) -> str:
    if value is None:
        return "—"
    value = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def when(ms) -> str:
    if not ms:
        return "—"
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def ago(ms, now: float | None = None) -> str:
    if not ms:
        return "never"
    seconds = (now if now is not None else time.time()) - ms / 1000
    future = seconds < 0
    seconds = abs(seconds)
    for unit, span in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= span:
            n = int(seconds // span)
            text = f"{n} {unit}{'s' if n != 1 else ''}"
            break
    else:
        text = "less than a minute"
    return f"in {text}" if future else f"{text} ago"


def short_digest(digest: str | None) -> str:
    if not digest:
        return ""
    algo, _, hexpart = digest.partition(":")
    return f"{algo}:{hexpart[:12]}" if hexpart else digest[:19]


# commonmark without raw HTML: a <script> in a description is text. Links are validated by
# markdown-it's own validateLink (no javascript:, vbscript:, file:, most data:).
_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable("table")


def markdown(text: str | None) -> Markup:
    return Markup(_markdown.render(text or ""))  # noqa: S704 - html disabled: the renderer escapes all text


def web_link(url: str | None) -> str:
    """``url`` if it is an http(s) URL, else "": a link taken from data (an advisory feed's reference) must not
    become a ``javascript:`` or ``data:`` link in a page (the CSP blocks those scripts too; this is the first wall)."""
    url = (url or "").strip()
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError:
        return ""
    return url if scheme in ("http", "https") else ""


_env.filters.update(size=size, when=when, ago=ago, markdown=markdown, short_digest=short_digest, web_link=web_link)
_env.globals.update(static=static)
