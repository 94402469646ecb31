"""Memory and CPU per service, from the runtime's pid files: the master and its workers count."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import psutil

from signlab.processes import ServiceProcesses

# A "master" that starts one "worker" holding ~64 MiB, like a gunicorn master and its worker.
MASTER = (
    "import subprocess, sys, time\n"
    "child = subprocess.Popen([sys.executable, '-c', 'b = bytearray(64 * 1024 * 1024); import time; time.sleep(60)'])\n"
    "time.sleep(60)\n"
)


def test_a_service_counts_its_master_and_its_workers(tmp_path: Path) -> None:
    master = subprocess.Popen([sys.executable, "-c", MASTER])
    try:
        (tmp_path / "portal.pid").write_text(json.dumps({"pid": master.pid}))
        (tmp_path / "gone.pid").write_text(json.dumps({"pid": 2 ** 22 + 7}))  # no such process
        (tmp_path / "broken.pid").write_text("not json")
        deadline = time.monotonic() + 30
        while not psutil.Process(master.pid).children() and time.monotonic() < deadline:
            time.sleep(0.05)
        processes = ServiceProcesses(tmp_path)
        worker = psutil.Process(master.pid).children()[0]
        while worker.memory_info().rss < 64 * 1024 * 1024 and time.monotonic() < deadline:
            time.sleep(0.05)
        memory = processes.resident_bytes()
        assert set(memory) == {"portal"}
        expected = psutil.Process(master.pid).memory_info().rss + worker.memory_info().rss
        assert memory["portal"] >= 64 * 1024 * 1024
        assert abs(memory["portal"] - expected) < 8 * 1024 * 1024
        assert set(processes.cpu_seconds()) == {"portal"}
    finally:
        for child in psutil.Process(master.pid).children(recursive=True):
            child.kill()
        master.kill()
        master.wait()
