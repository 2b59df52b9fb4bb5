"""Optional dependencies (``pyproject.toml`` extras): which ones a configuration needs, and a clear
error naming the extra when a configured backend's package is missing.

``python -m slipway.extras`` prints the extras the current configuration (``SLIPWAY_CONFIG``,
``SLIPWAY_*``) needs, comma-separated: ``scripts/install.sh`` installs them.
"""
from __future__ import annotations

import importlib.util

# extra name -> the module it provides
MODULES = {"postgres": "psycopg2", "s3": "boto3", "docker": "docker", "uvloop": "uvloop"}


def needed(config) -> list[str]:
    """The extras ``config`` uses: uvloop always (the faster event loop), and each configured backend's."""
    extras = ["uvloop"]
    if config.database_url.startswith(("postgres://", "postgresql://")):
        extras.append("postgres")
    if config.storage.driver == "s3":
        extras.append("s3")
    if config.builds.backend == "docker":
        extras.append("docker")
    return extras


def installed(extra: str) -> bool:
    return importlib.util.find_spec(MODULES[extra]) is not None


def require(extra: str, what: str) -> None:
    """Raise RuntimeError if the package of ``extra`` is missing, saying how to install it."""
    if not installed(extra):
        raise RuntimeError(f"{what} needs the Python package {MODULES[extra]}, which is not installed: install "
                           f"Slipway with the '{extra}' extra (pip install -e '.[{extra}]'; scripts/install.sh "
                           "installs the extras the configuration names)")


if __name__ == "__main__":
    from .config import load

    print(",".join(needed(load())))
