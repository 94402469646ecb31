"""The local runtime against real gunicorn processes on free loopback ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from services.registry import REGISTRY
from shared.testing import free_port
from signlab.runtime import LocalRuntime, RuntimeError_

pytestmark = pytest.mark.processes


def _ports() -> dict[str, int]:
    return {entry.info.name: free_port() for entry in REGISTRY}


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"


def _port_free(port: int) -> bool:
    # Written here on purpose, not signlab.runtime.port_free: the oracle must not be the code under test.
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[LocalRuntime]:
    rt = LocalRuntime(tmp_path / "var", _ports())
    yield rt
    rt.down()


def test_up_status_down_cycle(runtime: LocalRuntime) -> None:
    lines: list[str] = []
    states = runtime.up(timeout=90, progress=lines.append)
    assert [(s.name, s.state) for s in states] == [(e.info.name, "healthy") for e in REGISTRY]
    assert any("HSM token" in line for line in lines)
    for state in states:
        health = requests.get(f"{state.url}/healthz", timeout=5).json()
        assert (health["service"], health["role"], health["status"]) == (state.name, state.role, "ok")
        assert "IPSP" in requests.get(state.url + "/role", timeout=5).text
    assert (runtime.secrets_file.stat().st_mode & 0o777) == 0o600
    assert runtime.log_file("signer").exists()

    pids = {s.name: s.pid for s in states}
    again = LocalRuntime(runtime.data_dir)  # a later 'signlab up': finds the ports, starts nothing new
    kept: list[str] = []
    assert [(s.name, s.pid, s.state) for s in again.up(timeout=10, progress=kept.append)] == [
        (name, pid, "healthy") for name, pid in pids.items()]
    assert kept == [f"  {name} ({s.role}) is already running (pid {s.pid}); kept" for name, s in
                    zip(pids, states, strict=True)]
    with pytest.raises(RuntimeError_, match="with fault injection off; stop it first") as caught:
        LocalRuntime(runtime.data_dir, fault_injection=True).up(timeout=10)
    assert caught.value.exit_code == 2

    pids = {s.name: s.pid for s in runtime.status()}
    stopped = runtime.down()
    assert sorted(stopped) == sorted(f"{name}: stopped (pid {pid})" for name, pid in pids.items())
    assert all(s.state == "stopped" for s in runtime.status())
    assert all(_process_gone(pid) for pid in pids.values() if pid)
    assert all(_port_free(port) for port in runtime.ports.values())
    assert not list(runtime.run_dir.glob("*.pid"))


def test_up_starts_the_one_service_that_died_and_restart_restarts_one(runtime: LocalRuntime) -> None:
    """A killed service comes back with 'up' (same port; the others keep running); 'signlab
    restart SERVICE' (the real command, in its own process) stops and starts exactly that one."""
    before = {s.name: s.pid for s in runtime.up(timeout=90, progress=lambda _line: None)}
    os.killpg(before["idp"], signal.SIGKILL)
    runtime._children.pop("idp").wait(timeout=10)
    assert "idp" not in runtime.running()
    for _ in range(100):  # the killed worker (the master's child) lets go of the port a moment later
        if _port_free(runtime.ports["idp"]):
            break
        time.sleep(0.1)

    after = {s.name: (s.pid, s.state) for s in runtime.up(timeout=90, progress=lambda _l: None)}
    assert after["idp"][0] not in (None, before["idp"]) and after["idp"][1] == "healthy"
    assert {name: pid for name, (pid, _) in after.items() if name != "idp"} == {
        name: pid for name, pid in before.items() if name != "idp"}
    assert requests.get(f"http://127.0.0.1:{runtime.ports['idp']}/healthz", timeout=5).json()["status"] == "ok"

    done = subprocess.run([sys.executable, "-m", "signlab.cli", "--data-dir", str(runtime.data_dir), "restart", "ca"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert f"ca: stopped (pid {before['ca']})" in out and "ca (TSP): started (pid" in out
    now = {s.name: (s.pid, s.state, s.port) for s in runtime.status()}
    assert now["ca"][0] != before["ca"] and now["ca"][1:] == ("healthy", runtime.ports["ca"])
    assert now["signer"][0] == before["signer"] and now["portal"][0] == before["portal"]


def test_secrets_are_generated_once_and_linked(tmp_path: Path) -> None:
    rt = LocalRuntime(tmp_path, _ports(), environ={})
    first = rt.load_or_create_secrets()
    assert first == LocalRuntime(tmp_path, _ports(), environ={}).load_or_create_secrets()
    assert first["SIGNLAB_SIGNER_HSM_USER_PIN"] != first["SIGNLAB_SIGNER_HSM_SO_PIN"]
    pinned = LocalRuntime(tmp_path, _ports(), environ={"SIGNLAB_SIGNER_HSM_USER_PIN": "operator-choice"})
    assert pinned.load_or_create_secrets()["SIGNLAB_SIGNER_HSM_USER_PIN"] == "operator-choice"


def test_wiring_points_each_service_at_the_others(tmp_path: Path) -> None:
    rt = LocalRuntime(tmp_path, _ports(), environ={})
    signer_env = rt.service_environment(next(e for e in REGISTRY if e.info.name == "signer"))
    assert signer_env["SIGNLAB_SIGNER_PORT"] == str(rt.ports["signer"])
    assert signer_env["SIGNLAB_SIGNER_IDP_URL"] == rt.url("idp")
    assert signer_env["SIGNLAB_SIGNER_CA_URL"] == rt.url("ca")
    assert signer_env["SIGNLAB_SIGNER_DATA_DIR"] == str(tmp_path.resolve() / "signer")


def test_services_run_with_few_malloc_arenas_unless_the_operator_chose(tmp_path: Path) -> None:
    portal = next(e for e in REGISTRY if e.info.name == "portal")
    assert LocalRuntime(tmp_path, _ports(), environ={}).service_environment(portal)["MALLOC_ARENA_MAX"] == "2"
    chosen = LocalRuntime(tmp_path, _ports(), environ={"MALLOC_ARENA_MAX": "8"})
    assert chosen.service_environment(portal)["MALLOC_ARENA_MAX"] == "8"


def test_taken_port_fails_naming_port_and_service(runtime: LocalRuntime) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", runtime.ports["ca"]))
        blocker.listen()
        with pytest.raises(RuntimeError_) as caught:
            runtime.up(timeout=30)
    assert f"port {runtime.ports['ca']} for ca (TSP) is already in use" in str(caught.value)
    assert caught.value.exit_code == 2
    assert runtime.running() == {}


def test_service_dying_at_start_leaves_nothing_running(tmp_path: Path) -> None:
    environ = {**os.environ, "SIGNLAB_SIGNER_HSM_MODULE": str(tmp_path / "no-such-pkcs11.so")}
    rt = LocalRuntime(tmp_path / "var", _ports(), environ=environ)
    with pytest.raises(RuntimeError_) as caught:
        rt.up(timeout=60)
    message = str(caught.value)
    assert "signer (SSASP) exited during start-up" in message
    assert "PKCS#11 library" in message and "not found" in message
    assert rt.running() == {}
    assert all(_port_free(port) for port in rt.ports.values())


def test_invalid_setting_is_refused_before_anything_starts(tmp_path: Path) -> None:
    rt = LocalRuntime(tmp_path / "var", _ports(), environ={**os.environ, "SIGNLAB_PORTAL_LOG_LEVEL": "LOUD"})
    with pytest.raises(RuntimeError_, match="portal \\(SCASP\\) cannot start: invalid settings: SIGNLAB_PORTAL_LOG_LEVEL"):
        rt.up(timeout=30)
    assert rt.running() == {}
