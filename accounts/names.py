"""Rules for namespace (user and organization) names."""
import re

# A namespace is the first component of an OCI repository name.
NAMESPACE_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*\Z")
RESERVED = {"v2", "api", "auth", "webhooks", "static", "organization", "user", "users", "repository"}


def namespace_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a user or organization name, or None if it can."""
    if not 2 <= len(name) <= 255:
        return "must be between 2 and 255 characters long"
    if not NAMESPACE_RE.match(name):
        return ("may contain only lowercase letters, digits and single '.', '_' or '-' "
                "between them, and must start and end with a letter or digit")
    if name in RESERVED:
        return f"'{name}' is reserved"
    return None
