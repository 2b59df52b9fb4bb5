"""The package dependency list in docs/ARCHITECTURE.md is the real import graph, and the contracts hold."""
import re
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ["slipway", "accounts", "registry", "builder", "triggers", "webhooks", "scanner", "ui"]
COMPOSITION_ROOT = {"slipway.app", "slipway.server", "slipway.cli"}


def _part(module: str) -> str:
    if module in COMPOSITION_ROOT:
        return "root"
    top = module.split(".")[0]
    return "core" if top == "slipway" else top


def test_the_documented_package_imports_are_the_real_ones():
    graph = grimp.build_graph(*PACKAGES, include_external_packages=False, cache_dir=None)
    real: dict[str, set] = {}
    for module in graph.modules:
        for imported in graph.find_modules_directly_imported_by(module):
            if _part(module) != _part(imported):
                real.setdefault(_part(module), set()).add(_part(imported))
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    block = text.split("<!-- package-imports -->")[1].split("<!-- /package-imports -->")[0]
    documented = {m.group(1): set(m.group(2).split(", ")) for m in re.finditer(r"^- (\w+) → (.+)$", block, re.M)}
    assert documented == real


def test_the_import_contracts_are_kept():
    lint = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
