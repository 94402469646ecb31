"""compose/Dockerfile installs what the services need, runs as non-root and bakes in no secret.

The dependency check reads the imports of every module under ``services/``, ``shared/`` and
``signlab/`` (ast), maps third-party top-level modules to their distributions (installed
metadata), and requires each to be a runtime dependency in pyproject.toml or one of their own
requirements (transitively) — the set ``pip install .`` in the Dockerfile installs. A module that
imports a dev-only package (pytest, playwright, pkilint ...) fails here.
"""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from signlab.docker_engine import BUILD_CONTEXT_PATHS, COMPOSE_DIR, REPO_ROOT, UID, build_context

DOCKERFILE = (COMPOSE_DIR / "Dockerfile").read_text()
PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
FIRST_PARTY = {"services", "shared", "signlab"}
SOURCE_DIRS = ("services", "shared", "signlab")
# Modules shipped for tests only: they may use dev dependencies.
TEST_ONLY = {"shared/testing"}


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", "\n".join(line for line in DOCKERFILE.splitlines() if not line.lstrip().startswith("#")))
    result = []
    for line in text.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def _imports() -> dict[str, set[str]]:
    """Top-level imported module -> files importing it, over the runtime sources."""
    found: dict[str, set[str]] = {}
    for folder in SOURCE_DIRS:
        for path in (REPO_ROOT / folder).rglob("*.py"):
            relative = path.relative_to(REPO_ROOT).as_posix()
            if any(relative.startswith(prefix) for prefix in TEST_ONLY):
                continue
            try:
                tree = ast.parse(path.read_text(), filename=relative)
            except SyntaxError:
                continue  # a module being written right now; its own tests report it
            for node in ast.walk(tree):
                names: list[str] = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                for name in names:
                    found.setdefault(name.split(".")[0], set()).add(relative)
    return found


def _runtime_closure() -> set[str]:
    """Canonical names of the distributions ``pip install .`` installs (pyproject dependencies and
    their requirements, markers evaluated for this Python, extras followed)."""
    pending = [Requirement(text) for text in PYPROJECT["project"]["dependencies"]]
    seen: set[str] = set()
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        key = name + "[" + ",".join(sorted(requirement.extras)) + "]"
        if key in seen:
            continue
        seen.add(key)
        try:
            requires = metadata.requires(requirement.name) or []
        except metadata.PackageNotFoundError:
            continue
        for text in requires:
            child = Requirement(text)
            if child.marker is None:
                pending.append(child)
                continue
            for extra in requirement.extras or {""}:
                if child.marker.evaluate({"extra": extra}):
                    pending.append(child)
                    break
    return {key.split("[")[0] for key in seen}


def test_every_imported_third_party_module_is_a_runtime_dependency() -> None:
    distributions = metadata.packages_distributions()
    installed = _runtime_closure()
    missing = []
    for module, files in sorted(_imports().items()):
        if module in FIRST_PARTY or module in sys.stdlib_module_names or module == "__future__":
            continue
        owners = {canonicalize_name(d) for d in distributions.get(module, [])}
        if not owners:
            missing.append(f"{module} (no installed distribution provides it) imported by {sorted(files)}")
        elif not owners & installed:
            missing.append(f"{module} (from {sorted(owners)}) imported by {sorted(files)}")
    assert not missing, "not installed by `pip install .` in the image:\n" + "\n".join(missing)


def test_the_closure_sees_known_dependencies() -> None:
    closure = _runtime_closure()
    # Direct, transitive and extra-only requirements: the check above would be blind without them.
    assert {"flask", "pyhanko", "python-pkcs11", "gunicorn"} <= closure
    assert "xsdata" in closure  # only through pyhanko[etsi]
    assert "pytest" not in closure and "playwright" not in closure


def test_the_image_installs_the_project_without_dev_extras() -> None:
    runs = [args for keyword, args in _instructions() if keyword == "RUN"]
    installs = [install.strip() for args in runs for install in re.findall(r"pip install [^;&]*", args)]
    # The wheelhouse's wheels (the dependencies' own layer), then the project: offline from the
    # wheelhouse, else from PyPI.
    assert installs[0] == "pip install --no-index /opt/wheelhouse/*.whl", installs
    projects = installs[1:]
    assert len(projects) == 2 and all(install.split()[-1] == "." for install in projects), installs  # no [dev]
    assert "pip install --no-index --find-links /opt/wheelhouse ." in projects, installs
    copied = " ".join(args for keyword, args in _instructions() if keyword == "COPY")
    for package in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]:
        assert package.rstrip("*") in copied, f"package {package} is not copied into the image"
    assert "pyproject.toml" in copied and PYPROJECT["project"]["readme"] in copied


def test_the_image_installs_softhsm_at_the_signer_default_module_path() -> None:
    from services.signer.settings import SignerSettings

    from signlab.docker_host import DEBIAN_BASE_PACKAGES, OFFICIAL_BASE

    apt = " ".join(args for keyword, args in _instructions() if keyword == "RUN" and "apt-get install" in args)
    assert re.search(r"\bsofthsm2\b", apt)  # on the official image
    assert "softhsm2" in DEBIAN_BASE_PACKAGES and "python3-venv" in DEBIAN_BASE_PACKAGES  # already in the Debian base
    assert ("ARG", f"BASE_IMAGE={OFFICIAL_BASE}") in _instructions()
    assert ("FROM", "${BASE_IMAGE}") in _instructions()
    module = str(SignerSettings.model_fields["hsm_module"].default)
    if shutil.which("dpkg") is None:
        pytest.skip("no dpkg here to check which Debian package ships the PKCS#11 module")
    owner = subprocess.run(["dpkg", "-S", module], capture_output=True, text=True, check=False)
    if owner.returncode != 0:
        pytest.skip(f"{module} is not installed from a Debian package on this machine")
    # softhsm2 depends on the package that ships the module (libsofthsm2 on bookworm).
    package = owner.stdout.split(":")[0]
    depends = subprocess.run(["apt-cache", "depends", "softhsm2"], capture_output=True, text=True, check=False).stdout
    assert package == "softhsm2" or package in depends


def test_the_image_limits_malloc_arenas_like_the_local_runtime() -> None:
    from signlab.runtime import MALLOC_ARENA_VARIABLE, MALLOC_ARENAS

    assert re.search(rf"^\s*{MALLOC_ARENA_VARIABLE}={MALLOC_ARENAS}\b", DOCKERFILE, re.MULTILINE)


def test_the_image_runs_as_a_non_root_user() -> None:
    users = [args for keyword, args in _instructions() if keyword == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert f"--uid {UID}" in DOCKERFILE


def test_no_secret_is_baked_into_the_image() -> None:
    for keyword, args in _instructions():
        if keyword in ("ENV", "ARG"):
            assert "SIGNLAB_" not in args, args
        if keyword in ("COPY", "ADD"):
            assert ".env" not in args and "secrets" not in args, args
    names = build_context(REPO_ROOT).getvalue()
    with tarfile.open(fileobj=__import__("io").BytesIO(names)) as tar:
        members = tar.getnames()
    assert not [m for m in members if m.endswith(".env") or "/.venv" in m or m.startswith(("var/", ".git"))]
    assert "compose/Dockerfile" in members and "pyproject.toml" in members
    assert {m.split("/")[0] for m in members} == set(BUILD_CONTEXT_PATHS)


def test_every_data_file_of_the_packages_is_installed_in_the_image(tmp_path: Path) -> None:
    """What ``pip install .`` puts into site-packages from the build context: setuptools' build_py
    (the step that copies packages and package data into the wheel), run on the context's tar."""
    with tarfile.open(fileobj=build_context(REPO_ROOT)) as tar:
        tar.extractall(tmp_path / "context", filter="data")
    result = subprocess.run([sys.executable, "-W", "ignore", "-c", "from setuptools import setup; setup()",
                             "-q", "build_py", "--build-lib", str(tmp_path / "lib")],
                            cwd=tmp_path / "context", capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    installed = {p.relative_to(tmp_path / "lib").as_posix() for p in (tmp_path / "lib").rglob("*") if p.is_file()}
    wanted = {
        p.relative_to(tmp_path / "context").as_posix()
        for folder in SOURCE_DIRS for p in (tmp_path / "context" / folder).rglob("*")
        if p.is_file() and p.suffix != ".pyc" and p.name != "README.md"  # notes for people (provenance), not data
    }
    missing = wanted - installed
    assert "shared/templates/signlab_base.html" in installed and "signlab/docker_engine.py" in installed
    assert not missing, (
        "not installed by `pip install .` (extend package-data in pyproject.toml): " + ", ".join(sorted(missing)))
