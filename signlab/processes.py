"""The processes of a local ecosystem, by service: each service's gunicorn master (its pid file in
the runtime's run directory) and its workers — the one place load and bench runs measure memory
and CPU from.

Limits: the local runtime only (the Docker deployment's processes live in containers); a worker
that gunicorn restarted is seen at the next look-up of the children.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import psutil

__all__ = ["ServiceProcesses"]


class ServiceProcesses:
    """The master and worker processes of each service whose pid file is in ``run_dir``.

    :param children_refresh_seconds: how long a look-up of the workers is reused. Looking them up
        scans every process of the machine; a sampler that does it at every sample spends more CPU
        than what it measures.
    """

    def __init__(self, run_dir: Path, *, children_refresh_seconds: float = 0.0) -> None:
        self.run_dir = run_dir
        self.children_refresh_seconds = children_refresh_seconds
        self._masters: dict[str, psutil.Process] = {}
        self._children: dict[str, tuple[float, list[psutil.Process]]] = {}

    def masters(self) -> dict[str, psutil.Process]:
        """The gunicorn master of each service (read from the pid files once)."""
        if not self._masters:
            for pid_file in sorted(self.run_dir.glob("*.pid")):
                try:
                    self._masters[pid_file.stem] = psutil.Process(int(json.loads(pid_file.read_text())["pid"]))
                except (OSError, ValueError, KeyError, psutil.Error):
                    continue
        return self._masters

    def family(self, name: str, master: psutil.Process) -> list[psutil.Process]:
        """The master and its workers."""
        found_at, children = self._children.get(name, (-1.0, []))
        if found_at < 0 or time.monotonic() - found_at > self.children_refresh_seconds:
            children = master.children(recursive=True)
            self._children[name] = (time.monotonic(), children)
        return [master, *children]

    def resident_bytes(self) -> dict[str, int]:
        """Resident memory per service (master + workers), in bytes; a service whose processes
        went away meanwhile is left out (and its workers looked up again next time)."""
        out: dict[str, int] = {}
        for name, master in self.masters().items():
            try:
                out[name] = sum(p.memory_info().rss for p in self.family(name, master))
            except psutil.Error:
                self._children.pop(name, None)
        return out

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time (user + system) used so far per service (master + workers)."""
        out: dict[str, float] = {}
        for name, master in self.masters().items():
            try:
                out[name] = sum(sum(p.cpu_times()[:2]) for p in (master, *master.children(recursive=True)))
            except psutil.Error:
                continue
        return out
