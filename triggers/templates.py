"""Tag templates (``${parsed_ref.branch}-${commit_info.short_sha}``) and the tags a push gets.

Variables are paths into the trigger metadata. A template naming a variable that
cannot exist is refused when the trigger is saved; one whose value is missing
in a push is dropped. Rendered values are made valid tags.
"""
from __future__ import annotations

from registry.names import as_tag
from slipway import variables
from slipway.errors import Invalid

PERSON = ("username", "url", "avatar_url")
VARIABLES = {"commit", "ref", "default_branch", "git_url", "parsed_ref.branch", "parsed_ref.tag",
             "parsed_ref.remote", "commit_info.short_sha", "commit_info.url", "commit_info.message",
             "commit_info.date"} | {f"commit_info.{who}.{key}" for who in ("author", "committer") for key in PERSON}


def check_templates(templates) -> list[str]:
    if not isinstance(templates, list) or not all(isinstance(t, str) for t in templates):
        raise Invalid("tag_templates must be a list of strings")
    for template in templates:
        if not template.strip():
            raise Invalid("tag_templates may not contain an empty template")
        for name in variables.names(template):
            if name not in VARIABLES:
                raise Invalid(f"Invalid tag template '{template}': unknown variable '${{{name}}}' "
                              f"(known: {', '.join('${' + v + '}' for v in sorted(VARIABLES))})")
        if variables.unclosed(template):
            raise Invalid(f"Invalid tag template '{template}': an unclosed '${{'")
    return templates


def lookup(metadata: dict, path: str):
    """A variable's value: a non-empty string or a number at ``path``, else None (missing)."""
    value = variables.lookup(metadata, path)
    return value if isinstance(value, (str, int)) and value != "" else None


def render(template: str, metadata: dict) -> str | None:
    """The template filled in, or None if one of its values is missing."""
    missing = False

    def fill(name: str) -> str:
        nonlocal missing
        value = lookup(metadata, name)
        if value is None:
            missing = True
            return ""
        return str(value)

    result = variables.substitute(template, fill)
    return None if missing else result


def tags_for(templates: list[str], metadata: dict, default_tag_from_ref: bool,
             latest_for_default_branch: bool) -> list[str]:
    """Quay's rule: the rendered templates, then the branch/tag name, then latest on the default branch,
    else the short SHA."""
    tags: list[str] = []

    def add(value):
        tag = as_tag(value) if value else None
        if tag and tag not in tags:
            tags.append(tag)

    for template in templates:
        add(render(template, metadata))
    parsed = metadata.get("parsed_ref") or {}
    if default_tag_from_ref:
        add(parsed.get("branch") or parsed.get("tag"))
    if latest_for_default_branch and parsed.get("branch") and parsed.get("branch") == metadata.get("default_branch"):
        add("latest")
    if not tags:
        add(metadata["commit"][:7])
    return tags
