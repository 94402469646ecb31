"""The layer contracts of docs/development.md catch what they promise to catch.

``lint-imports`` (run by ``make lint``) checks the contracts in ``pyproject.toml``. Here it runs on
a copy of the source packages with one deliberate violation each: the copy without a violation
passes, every violation breaks the contract the page names for it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"

VIOLATIONS = {
    # name: (file, the line added to it, the contract that breaks, what the report says)
    "none": (None, None, None, None),
    "a domain core imports Flask": ("services/ca/core.py", "import flask",
                                    "Flask and werkzeug: imported only by the HTTP adapters", "- services.ca.core -> flask"),
    "a domain core imports an adapter": ("services/signer/sam.py", "import shared.web",
                                         "Flask-free modules do not import the HTTP adapters",
                                         "- services.signer.sam -> shared.web"),
    "a service imports another": ("services/portal/store.py", "import services.signer.store",
                                  "Services: independent of each other", "services.portal is not allowed to import services.signer"),
    "the shared library imports a service": ("shared/clock.py", "import services.registry",
                                             "Layers: test support above the CLI above the services above the shared library",
                                             "shared is not allowed to import services"),
    "the CLI imports a service's internals": ("signlab/cli.py", "import services.signer.hsm",
                                              "signlab reaches the services only through services.registry",
                                              "signlab is not allowed to import services.signer.hsm"),
}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The source packages and pyproject.toml, copied once."""
    copy = tmp_path_factory.mktemp("contracts")
    for package in ("shared", "services", "signlab"):
        shutil.copytree(ROOT / package, copy / package, ignore=shutil.ignore_patterns("__pycache__", "*.pdf", "*.xsd"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    return copy


@pytest.mark.parametrize("violation", list(VIOLATIONS))
def test_each_violation_breaks_its_contract(pristine: Path, tmp_path: Path, violation: str) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(pristine, tree)
    path, line, contract, report = VIOLATIONS[violation]
    if path is not None:
        with (tree / path).open("a") as source:
            source.write(f"\n{line}  # deliberate violation\n")
    # PYTHONPATH first: the copy, not the installed (editable) packages, is what gets analysed.
    result = subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=tree, capture_output=True, text=True, check=False,
                            timeout=120, env={**os.environ, "PYTHONPATH": str(tree)})
    if contract is None:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
        assert "0 broken" in result.stdout
        return
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-2000:]
    broken = result.stdout[result.stdout.index("Broken contracts"):]
    assert contract in broken and report in broken, broken[:3000]
