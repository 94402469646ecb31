"""The ecosystem a scenario runs against: URLs, secrets, state files, and a way to stop services.

:class:`Ecosystem` is built from a :class:`signlab.runtime.LocalRuntime` (the embedded runtime:
the runner can read each service's settings, audit logs and data directory, and stop or pause a
service by its recorded pid) or from plain URLs (then white-box invariants are reported as not
checkable rather than passed; the Docker deployment gives the trainer trace API instead of the
trace store). :class:`ServiceControl` is the fault-injection seam for outages;
the local implementation stops a service's process group and starts it again through the runtime.

Limits: stopping a service restarts it with a new process, so any in-memory state of that service
(the signer's HSM session objects, for instance) is lost — outages are meant for the CA and the
IdP. Stops and restarts use the runtime's ``stop_service`` and ``start_service``, so the restarted
service gets exactly the same environment.
"""

from __future__ import annotations

import os
import re
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import requests

__all__ = ["Ecosystem", "LocalControl", "ServiceControl", "ecosystem_from_runtime"]


class ServiceControl(Protocol):
    """Stops and restarts services (outage faults)."""

    def stop(self, name: str) -> str:
        """Stop service ``name``; return what was done."""

    def start(self, name: str) -> str:
        """Start service ``name`` again and wait until healthy; return what was done."""

    def pause(self, name: str) -> str:
        """Freeze service ``name`` (it keeps its socket but answers nothing)."""

    def resume(self, name: str) -> str:
        """Unfreeze service ``name``."""


@dataclass
class Ecosystem:
    """Where the four services are and what the runner may know about them."""

    urls: dict[str, str]
    """Base URL by service name (``portal``, ``idp``, ``ca``, ``signer``)."""
    secrets: dict[str, str] = field(default_factory=dict)
    """Environment-style secrets (``SIGNLAB_PORTAL_API_CLIENT_SECRET`` …) when known."""
    settings: dict[str, Any] = field(default_factory=dict)
    """Each service's settings object (local runtime only): data dirs, audit paths, lifetimes."""
    log_files: dict[str, Path] = field(default_factory=dict)
    control: ServiceControl | None = None
    engine: str = "local"
    trace_dir: Path | None = None
    """The trace store of ``shared.tracing`` (spans of all four services), when readable."""
    trace_api: str | None = None
    """The portal's trainer trace API (``<portal>/trainer/api``), for a store the runner cannot read
    (docker: it is a volume); bearer ``SIGNLAB_PORTAL_TRAINER_TOKEN`` when the installation has one."""
    clock_file: Path | None = None
    """The lab clock file every service reads (:mod:`shared.clock`), when the runner can write it."""

    def url(self, name: str) -> str:
        """Base URL of service ``name``."""
        return self.urls[name].rstrip("/")

    def secret(self, name: str) -> str | None:
        """A secret by its environment name, or None when unknown."""
        return self.secrets.get(name)

    def setting(self, service: str, name: str) -> Any:
        """A setting of a service, or None when unknown."""
        settings = self.settings.get(service)
        return getattr(settings, name, None) if settings is not None else None

    def hsm_key_objects(self) -> int | None:
        """Key objects the signer's HSM holds now, from its ``/healthz`` (None when not reported)."""
        try:
            body = requests.get(f"{self.url('signer')}/healthz", timeout=5).json()
        except (requests.RequestException, ValueError):
            return None
        detail = str(body.get("checks", {}).get("hsm", {}).get("detail", ""))
        found = re.search(r"(\d+) key objects?", detail)
        return int(found.group(1)) if found else None


class LocalControl:
    """Outages for the embedded runtime: SIGTERM/SIGSTOP the service's process group by its pid."""

    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime

    def _pid(self, name: str) -> int:
        pid = self.runtime.running().get(name)
        if pid is None:
            raise RuntimeError(f"{name} is not running (no live pid in {self.runtime.run_dir})")
        return int(pid)

    def stop(self, name: str) -> str:
        pid = self._pid(name)
        # The runtime's own stop: SIGTERM to the process group, SIGKILL after a grace period, and
        # it collects its own child handle (no zombie, no "still running" warning).
        lines = self.runtime.stop_service(name)
        return "; ".join(lines) or f"stopped {name} (pid {pid})"

    def start(self, name: str) -> str:
        if self.runtime.running().get(name):
            return f"{name} already running"
        # The same environment as at 'signlab up'; waits until healthy.
        return f"started {name} again (pid {self.runtime.start_service(name)})"

    def pause(self, name: str) -> str:
        pid = self._pid(name)
        os.killpg(pid, signal.SIGSTOP)
        return f"paused {name} (SIGSTOP to process group {pid})"

    def resume(self, name: str) -> str:
        pid = self._pid(name)
        os.killpg(pid, signal.SIGCONT)
        return f"resumed {name}"


def ecosystem_from_runtime(runtime: Any) -> Ecosystem:
    """The ecosystem of a (running) :class:`~signlab.runtime.LocalRuntime`."""
    from services.registry import REGISTRY
    from shared.clock import ClockSettings

    secrets = runtime.load_or_create_secrets()
    settings: dict[str, Any] = {}
    for service_entry in REGISTRY:
        try:
            settings[service_entry.info.name] = service_entry.settings_class.from_env(
                runtime.service_environment(service_entry))
        except Exception:  # noqa: BLE001 - unreadable settings only disable white-box checks
            continue
    return Ecosystem(
        urls={e.info.name: runtime.url(e.info.name) for e in REGISTRY},
        secrets=secrets, settings=settings,
        log_files={e.info.name: runtime.log_file(e.info.name) for e in REGISTRY},
        control=LocalControl(runtime), engine="local",
        trace_dir=Path(runtime.environ.get("SIGNLAB_TRACE_DIR") or runtime.data_dir / "traces"),
        clock_file=ClockSettings.from_env(runtime.environ).clock_file(runtime.data_dir / "portal"),
    )
