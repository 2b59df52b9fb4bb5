"""Just enough Dockerfile reading for the worker: base images (to pull, with credentials) and required ARGs."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from slipway import variables

# Arguments buildah and docker fill in themselves.
AUTOMATIC_ARGS = {"TARGETPLATFORM", "TARGETOS", "TARGETARCH", "TARGETVARIANT", "BUILDPLATFORM", "BUILDOS",
                  "BUILDARCH", "BUILDVARIANT", "HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY", "NO_PROXY", "ALL_PROXY",
                  "http_proxy", "https_proxy", "ftp_proxy", "no_proxy", "all_proxy"}
# Inside ${...}: NAME, NAME:-default or NAME-default (the default when NAME is unset or empty).
ARG_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::?-(.*))?", re.DOTALL)


@dataclass
class Dockerfile:
    base_images: list = field(default_factory=list)  # external images FROM names, after ARG substitution
    required_args: list = field(default_factory=list)  # ARGs declared without a default
    steps: int = 0  # instructions of the stages the build runs (the target and what it copies from)


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    result, current = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, rest = current.strip().partition(" ")
        result.append((keyword.upper(), rest.strip()))
        current = ""
    if current.strip():
        keyword, _, rest = current.strip().partition(" ")
        result.append((keyword.upper(), rest.strip()))
    return result


def substitute(text: str, values: dict) -> str:
    """``$NAME``, ``${NAME}`` and ``${NAME:-default}`` filled in from ``values`` (the ARGs)."""
    def value_of(inside: str) -> str | None:
        match = ARG_RE.fullmatch(inside)
        if match is None:
            return None  # not an ARG reference: left as written
        value = values.get(match.group(1))
        return value if value not in (None, "") else (match.group(2) or "")

    return variables.substitute(text, value_of, bare=True)


def read(text: str, build_args: dict, target: str | None = None) -> Dockerfile:
    result = Dockerfile()
    global_args: dict = {}
    stages: set = set()
    seen_from = False
    counted: list[dict] = []  # per stage: its name, its instructions, the stages it uses
    for keyword, rest in instructions(text):
        if keyword == "FROM":
            words = [w for w in rest.split() if not w.startswith("--")]
            name = words[2].lower() if len(words) >= 3 and words[1].lower() == "as" else None
            base = substitute(words[0], global_args).lower() if words else ""
            counted.append({"name": name, "steps": 1, "uses": {base} & stages})
        elif counted:
            counted[-1]["steps"] += 1
            for word in rest.split():
                if keyword in ("COPY", "ADD") and word.startswith("--from="):
                    source = substitute(word[len("--from="):], global_args).lower()
                    counted[-1]["uses"].add(int(source) if source.isdigit() else source)
        if keyword == "ARG":
            name, has_default, default = rest.partition("=")
            name = name.strip()
            if not has_default and name not in build_args and name not in AUTOMATIC_ARGS \
                    and name not in result.required_args:
                result.required_args.append(name)
            if not seen_from:
                global_args[name] = build_args.get(name, default.strip().strip('"') if has_default else None)
        elif keyword == "FROM":
            seen_from = True
            words = [w for w in rest.split() if not w.startswith("--")]
            if not words:
                continue
            image = substitute(words[0], global_args)
            if len(words) >= 3 and words[1].lower() == "as":
                stages.add(words[2].lower())
            if image.lower() != "scratch" and image.lower() not in stages and image not in result.base_images:
                result.base_images.append(image)
        elif keyword in ("COPY", "ADD", "RUN"):
            # Every image a step reads (COPY --from=, RUN --mount=...,from=) is a base image: pulled with
            # the build's credentials, never taken from the worker's shared store as another build left it.
            for source in _image_sources(keyword, rest):
                source = substitute(source, global_args)
                if source.lower() not in stages and not source.isdigit() and source not in result.base_images:
                    result.base_images.append(source)
    result.steps = _steps(counted, target)
    return result


def _image_sources(keyword: str, rest: str) -> list[str]:
    sources = []
    for word in rest.split():
        if not word.startswith("--"):
            break  # the options come first
        if keyword in ("COPY", "ADD") and word.startswith("--from="):
            sources.append(word[len("--from="):])
        elif keyword == "RUN" and word.startswith("--mount="):
            for option in word[len("--mount="):].split(","):
                key, _, value = option.partition("=")
                if key.strip().lower() in ("from", "source-image") and value:
                    sources.append(value.strip().strip('"').strip("'"))
    return sources


def _steps(counted: list[dict], target: str | None) -> int:
    """Instructions of the stages a build runs: the target (else the last stage) and the stages it uses."""
    if not counted:
        return 0
    index = {stage["name"]: i for i, stage in enumerate(counted) if stage["name"]}
    start = index.get(target.lower(), len(counted) - 1) if target else len(counted) - 1
    needed, todo = set(), [start]
    while todo:
        i = todo.pop()
        if i in needed:
            continue
        needed.add(i)
        for used in counted[i]["uses"]:
            j = used if isinstance(used, int) else index.get(used)
            if j is not None and j < len(counted):
                todo.append(j)
    return sum(counted[i]["steps"] for i in needed)
