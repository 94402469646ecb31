"""``signlab.docker_host`` without starting anything: the Debian mirror, the base image's cache key,
the own engine's bookkeeping and the wheelhouse's requirements. (Starting the engine, building the
base and the image: ``tests/compose/test_real_engine.py``.)"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest

from signlab import docker_host
from signlab.docker_host import EngineUnavailable, OwnDockerd, debian_mirror


def test_the_mirror_comes_from_deb822_or_one_line_sources(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\nComponents: main\n\n"
        "Types: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\n\n"
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n")
    assert debian_mirror(tmp_path) == "http://mirror.example/debian"
    one_line = tmp_path / "other"
    (one_line / "sources.list.d").mkdir(parents=True)
    (one_line / "sources.list").write_text("# comment\ndeb [arch=amd64] http://old.example/debian bookworm main\n")
    assert debian_mirror(one_line) == "http://old.example/debian"
    (tmp_path / "none").mkdir()
    with pytest.raises(EngineUnavailable, match="no Debian mirror for bookworm"):
        debian_mirror(tmp_path / "none")


def test_the_base_image_tag_follows_the_package_list(monkeypatch: pytest.MonkeyPatch) -> None:
    tag = docker_host.base_tag()
    assert tag.startswith("signlab-base:bookworm-") and tag == docker_host.base_tag()
    monkeypatch.setattr(docker_host, "DEBIAN_BASE_PACKAGES", (*docker_host.DEBIAN_BASE_PACKAGES, "curl"))
    assert docker_host.base_tag() != tag


def test_the_own_engine_keeps_everything_under_its_folder(tmp_path: Path) -> None:
    own = OwnDockerd(tmp_path / "dockerd")
    assert own.host == f"unix://{tmp_path}/dockerd/docker.sock"
    assert own.data_root.parent == own.root and own.pid_file.parent == own.root
    assert len(str(own.exec_root / "containerd" / "containerd.sock.ttrpc")) < 108  # unix socket path limit
    deep = OwnDockerd(tmp_path / ("x" * 80) / "dockerd")
    assert len(str(deep.exec_root)) < 60 and deep.exec_root != deep.root / "exec"
    assert own.pid() is None
    own.root.mkdir()
    own.pid_file.write_text(str(os.getpid()))  # a live pid that is not this engine's dockerd
    assert own.pid() is None
    assert own.stop(progress=lambda _line: None) == "SignLab's own dockerd is not running"


def test_the_wheelhouse_holds_the_runtime_requirements_and_the_build_backend() -> None:
    project = tomllib.loads((docker_host.REPO_ROOT / "pyproject.toml").read_text())
    wanted = docker_host.runtime_requirements()
    assert set(project["project"]["dependencies"]) <= set(wanted)
    assert set(project["build-system"]["requires"]) <= set(wanted)  # pip builds the project offline too
    assert not [r for r in wanted if r in project["project"]["optional-dependencies"]["dev"]]
