"""The signlab command line as a user runs it: the console script in a subprocess."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from services.registry import REGISTRY
from shared.testing import free_port

pytestmark = pytest.mark.processes

SIGNLAB = str(Path(sys.executable).with_name("signlab"))


def _run(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SIGNLAB, "--data-dir", str(data_dir), *args], capture_output=True, check=False, text=True, timeout=180,
                          env={k: v for k, v in os.environ.items() if not k.startswith("SIGNLAB_")})


def test_up_prints_the_table_then_status_and_down(tmp_path: Path) -> None:
    ports = {entry.info.name: free_port() for entry in REGISTRY}
    port_args = [arg for name, port in ports.items() for arg in ("--port", f"{name}={port}")]
    try:
        up = _run(tmp_path, "up", *port_args)
        assert up.returncode == 0, up.stderr
        for entry in REGISTRY:
            row = next(line for line in up.stdout.splitlines() if f" {entry.info.name} " in line)
            assert str(entry.info.role) in row and f"http://127.0.0.1:{ports[entry.info.name]}" in row and "healthy" in row
        status = _run(tmp_path, "status", "--json")
        assert status.returncode == 0
        assert {s["service"]: s["state"] for s in json.loads(status.stdout)} == dict.fromkeys(ports, "healthy")
        logs = _run(tmp_path, "logs", "signer", "-n", "5")
        assert logs.returncode == 0 and "signer (SSASP) ready" in logs.stdout
    finally:
        down = _run(tmp_path, "down")
    assert down.returncode == 0 and down.stdout.count("stopped (pid") == len(REGISTRY)
    stopped = _run(tmp_path, "status")
    assert stopped.returncode == 1 and stopped.stdout.count("stopped") == len(REGISTRY)
    assert _run(tmp_path, "down").stdout.strip() == "SignLab is not running."


def test_taken_port_exit_code_and_message(tmp_path: Path) -> None:
    port = free_port()
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", port))
        blocker.listen()
        result = _run(tmp_path, "up", "--port", f"idp={port}", *[
            arg for name in ("portal", "ca", "signer") for arg in ("--port", f"{name}={free_port()}")])
    assert result.returncode == 2
    assert f"port {port} for idp (IPSP) is already in use" in result.stderr


def test_bad_port_argument_is_a_usage_error(tmp_path: Path) -> None:
    result = _run(tmp_path, "up", "--port", "hsm=1")
    assert result.returncode == 2 and "expected SERVICE=PORT" in result.stderr
