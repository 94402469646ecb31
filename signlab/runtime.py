"""The embedded runtime: the services as supervised local processes on 127.0.0.1.

:class:`LocalRuntime` provisions each service (its idempotent first-start hook), starts it under
gunicorn (a production WSGI server: one worker process with threads, because the signer's one-time
keys are PKCS#11 session objects that live in one process), waits until every ``/healthz`` answers,
and stops exactly the processes it started, by the pids it recorded.

Layout under the data directory (default ``./var``)::

    secrets.env        generated PINs, client secrets and admin tokens (mode 0600)
    run/<service>.pid  JSON: pid, port, command of each running service
    run/ports.json     the port of each service of the running ecosystem (kept while one is stopped)
    run/fault-injection present while the ecosystem runs with fault injection on
    logs/<service>.log each service's JSON log (stdout and stderr)
    <service>/         each service's own state (HSM token, CA keys, databases, audit logs)

Fault injection (``signlab up --fault-injection`` or ``SIGNLAB_FAULT_INJECTION=1``) turns on the
guarded admin APIs for that run only: the IdP's ``/admin/failures``, the signer's and CA's
``/admin/faults`` and the wallet's PID-status lab API ``/admin/pid-status``
(:data:`FAULT_INJECTION_SETTINGS`; bearer tokens from ``secrets.env``). It is
off by default and recorded in ``run/`` so a service restarted later (an outage fault) gets it too.

``up`` starts whatever service of the ecosystem is not running (all four the first time; later,
one that died or was stopped) with the ports and fault-injection setting of the running ones;
``restart_service`` stops and starts one service.

Limits: one ecosystem per data directory; processes are found again only through the pid files.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import requests

from services.registry import LINKED_SECRETS, REGISTRY, URL_LINKS, ServiceEntry
from shared.flow import service
from shared.settings import secret_fields
from signlab.errors import CliError

__all__ = ["FAULT_INJECTION_SETTINGS", "LocalRuntime", "RuntimeError_", "ServiceState", "fault_injection_requested",
           "gunicorn_argv"]

HEALTH_POLL_SECONDS = 0.2

MALLOC_ARENA_VARIABLE, MALLOC_ARENAS = "MALLOC_ARENA_MAX", "2"
"""glibc's malloc arenas per service process (the environment wins). Its default, 8 per core,
gives each of a worker's eight threads an arena that keeps its freed pages: 2 cut the portal's
peak RSS under load by ~10 MiB (`signlab bench`) at no measurable CPU cost. The image sets the same."""

FAULT_INJECTION_SETTINGS = {
    "SIGNLAB_IDP_ADMIN_API_ENABLED": "true",
    "SIGNLAB_SIGNER_FAULTS_ENABLED": "true",
    "SIGNLAB_CA_FAULTS_ENABLED": "true",
    "SIGNLAB_WALLET_ADMIN_API_ENABLED": "true",
}
"""What ``--fault-injection`` sets for the services of that run (lab use only, never a real deployment)."""


def fault_injection_requested(environ: Mapping[str, str]) -> bool:
    """True when ``SIGNLAB_FAULT_INJECTION`` asks for fault injection (1, true, yes, on)."""
    return environ.get("SIGNLAB_FAULT_INJECTION", "").strip().lower() in ("1", "true", "yes", "on")


class RuntimeError_(CliError):  # noqa: N801 - a trailing underscore avoids shadowing the builtin
    """The runtime cannot do what was asked; the message says why and what to do."""


@dataclass(frozen=True)
class ServiceState:
    """What ``signlab status`` reports for one service."""

    name: str
    role: str
    url: str
    port: int
    pid: int | None
    state: str
    """``healthy``, ``degraded`` (running, its disk is low: writes refused), ``failing`` (running, a
    health check fails), ``not responding``, or ``stopped``."""
    detail: str = ""

    def as_dict(self) -> dict[str, object]:
        """JSON form."""
        return {"service": self.name, "role": self.role, "url": self.url, "port": self.port, "pid": self.pid,
                "state": self.state, "detail": self.detail}


class LocalRuntime:
    """Starts, watches and stops the four services as local processes.

    :param data_dir: the data directory (made absolute).
    :param ports: port overrides by service name; others come from ``SIGNLAB_<SERVICE>_PORT`` or
        the defaults.
    :param environ: the base environment of the services (default: this process's).
    :param fault_injection: turn the guarded fault-injection admin APIs on (True) or off (False)
        for the services this runtime starts; None: ``SIGNLAB_FAULT_INJECTION`` in ``environ``,
        else what the running ecosystem was started with.
    """

    def __init__(self, data_dir: Path, ports: Mapping[str, int] | None = None,
                 environ: Mapping[str, str] | None = None, *, fault_injection: bool | None = None) -> None:
        self.data_dir = data_dir.resolve()
        self.environ = dict(os.environ if environ is None else environ)
        if fault_injection is None and fault_injection_requested(self.environ):
            fault_injection = True
        self._fault_injection = fault_injection
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self.ports = {e.info.name: self._port_of(e, dict(ports or {})) for e in REGISTRY}
        self.port_overrides = dict(ports or {})
        # A running ecosystem keeps the ports it was started with (status, down, logs, a service
        # started again use them), also for a service of it that is stopped.
        recorded = self._recorded_ports()
        for name in self.ports:
            record = self._read_pid(name)
            if name in self.port_overrides:
                continue
            if record is not None and isinstance(record.get("port"), int):
                self.ports[name] = int(record["port"])  # type: ignore[arg-type]
            elif name in recorded:
                self.ports[name] = recorded[name]

    # -- layout -------------------------------------------------------------------------------

    @property
    def run_dir(self) -> Path:
        """Directory of the pid files."""
        return self.data_dir / "run"

    @property
    def logs_dir(self) -> Path:
        """Directory of the service logs."""
        return self.data_dir / "logs"

    @property
    def secrets_file(self) -> Path:
        """The generated secrets (mode 0600)."""
        return self.data_dir / "secrets.env"

    @property
    def fault_injection_marker(self) -> Path:
        """Present while the ecosystem runs with fault injection on."""
        return self.run_dir / "fault-injection"

    @property
    def fault_injection(self) -> bool:
        """Whether the services get :data:`FAULT_INJECTION_SETTINGS` (asked for, or recorded by ``up``)."""
        if self._fault_injection is not None:
            return self._fault_injection
        return self.fault_injection_marker.exists()

    @property
    def ports_file(self) -> Path:
        """The ports of the running ecosystem (written by ``up``, removed by ``down``)."""
        return self.run_dir / "ports.json"

    def _recorded_ports(self) -> dict[str, int]:
        return _read_ports(self.ports_file)

    def pid_file(self, name: str) -> Path:
        """The pid file of service ``name``."""
        return self.run_dir / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        """The log file of service ``name``."""
        return self.logs_dir / f"{name}.log"

    def url(self, name: str) -> str:
        """The loopback base URL of service ``name``."""
        return f"http://127.0.0.1:{self.ports[name]}"

    # -- environment --------------------------------------------------------------------------

    def _port_of(self, entry: ServiceEntry, overrides: dict[str, int]) -> int:
        if entry.info.name in overrides:
            return overrides[entry.info.name]
        raw = self.environ.get(entry.settings_class.env_name("port"))
        if raw is None:
            return entry.info.default_port
        if not raw.isdigit() or not 1 <= int(raw) <= 65535:
            raise RuntimeError_(f"{entry.settings_class.env_name('port')}: expected a port number 1-65535, got {raw!r}")
        return int(raw)

    def load_or_create_secrets(self) -> dict[str, str]:
        """The services' secrets: from the environment when set there, else from ``secrets.env``
        (generated once, mode 0600). Linked secrets (:data:`~services.registry.LINKED_SECRETS`)
        share one value."""
        stored: dict[str, str] = {}
        if self.secrets_file.exists():
            for line in self.secrets_file.read_text().splitlines():
                if "=" in line and not line.lstrip().startswith("#"):
                    key, value = line.split("=", 1)
                    stored[key.strip()] = value.strip()
        wanted = [
            entry.settings_class.env_name(name)
            for entry in REGISTRY for name in sorted(secret_fields(entry.settings_class))
        ]
        changed = False
        for name in wanted:
            if name in stored:
                continue
            group = next((g for g in LINKED_SECRETS if name in g), (name,))
            known = next((stored[other] for other in group if other in stored), None)
            value = known or secrets.token_urlsafe(24)
            for member in group:
                if member in wanted and member not in stored:
                    stored[member] = value
            changed = True
        if changed:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            body = "# Generated by signlab up: the secrets of this SignLab installation. Keep private.\n"
            body += "".join(f"{key}={stored[key]}\n" for key in sorted(stored))
            fd = os.open(self.secrets_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(body)
        # The environment wins over the file, so an operator can pin a value.
        return {key: self.environ.get(key, value) for key, value in stored.items()}

    def service_environment(self, entry: ServiceEntry) -> dict[str, str]:
        """The complete environment of one service process."""
        env = dict(self.environ)
        for key, value in self.load_or_create_secrets().items():
            env.setdefault(key, value)
        cls = entry.settings_class
        env[cls.env_name("host")] = "127.0.0.1"
        env[cls.env_name("port")] = str(self.ports[entry.info.name])
        env.setdefault(cls.env_name("data_dir"), str(self.data_dir / entry.info.name))
        # One trace store for the four services, even if one service's data dir is moved.
        env.setdefault("SIGNLAB_TRACE_DIR", str(self.data_dir / "traces"))
        env.setdefault(MALLOC_ARENA_VARIABLE, MALLOC_ARENAS)
        if self.fault_injection:  # the explicit flag wins over a stray SIGNLAB_*_ENABLED=false
            env.update({k: v for k, v in FAULT_INJECTION_SETTINGS.items() if k.startswith(cls.env_prefix)})
        urls = {name: self.url(name) for name in self.ports}
        env.setdefault("SIGNLAB_LAB_URLS", json.dumps(urls))  # the navigation bar of every page (shared/navigation.py)
        for variable, template in URL_LINKS.items():
            field = variable.removeprefix(cls.env_prefix).lower()
            if variable.startswith(cls.env_prefix) and field in cls.model_fields:
                env.setdefault(variable, template.format(**urls))
        return env

    # -- processes ----------------------------------------------------------------------------

    def _read_pid(self, name: str) -> dict[str, object] | None:
        try:
            record = json.loads(self.pid_file(name).read_text())
        except (FileNotFoundError, ValueError):
            return None
        return record if isinstance(record, dict) and isinstance(record.get("pid"), int) else None

    def _alive(self, name: str) -> int | None:
        """The pid of service ``name`` if the recorded process is still ours and running."""
        record = self._read_pid(name)
        if record is None:
            return None
        pid = int(record["pid"])  # type: ignore[arg-type]
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except FileNotFoundError:
            return None
        # A recycled pid belongs to someone else: only a process running our target is ours.
        target = next(e.wsgi_target for e in REGISTRY if e.info.name == name)
        if target not in cmdline:
            return None
        try:
            status = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, IndexError):
            return None
        return None if status == "Z" else pid

    def running(self) -> dict[str, int]:
        """Services whose recorded process is alive, with their pids."""
        found = {}
        for entry in REGISTRY:
            pid = self._alive(entry.info.name)
            if pid is not None:
                found[entry.info.name] = pid
        return found

    def up(self, *, timeout: float = 60.0, progress: Callable[[str], None] = print) -> list[ServiceState]:
        """Provision and start every service that is not running, wait until they are healthy.

        The first time that is all four; later it is the ones that died or were stopped, started
        with the ports and fault-injection setting of the running ecosystem (those keep running).
        All or nothing: when one fails, the ones started by this call are stopped again.

        :raises RuntimeError_: a port taken, invalid settings, a ``--port`` or fault-injection
            choice that contradicts the running services, a service that dies or stays unhealthy.
        """
        already = self.running()
        if already:
            self._check_matches_running(already)
        for name, pid in already.items():
            progress(f"  {name} ({service(name).role}) is already running (pid {pid}); kept")
        wanted = [entry for entry in REGISTRY if entry.info.name not in already]
        for entry in wanted:
            port = self.ports[entry.info.name]
            if not port_free(port):
                raise RuntimeError_(
                    f"port {port} for {entry.info.name} ({entry.info.role}) is already in use on 127.0.0.1; "
                    f"stop what uses it or choose another port with --port {entry.info.name}=PORT", exit_code=2)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        if not already:  # nothing runs: a marker left by a killed run says nothing about this one
            self._fault_injection = bool(self._fault_injection)
        from shared.errors import ConfigurationError  # local: keeps the CLI's import light

        # Every service's settings are checked before anything starts, so a typo stops nothing.
        environments, settings_of = {}, {}
        for entry in wanted:
            env = self.service_environment(entry)
            try:
                settings_of[entry.info.name] = entry.settings_class.from_env(env)
            except ConfigurationError as exc:
                raise RuntimeError_(f"{entry.info.name} ({entry.info.role}) cannot start: {exc}") from None
            environments[entry.info.name] = env
        if not already:
            # Recorded, so a runtime object made later (an outage fault restarting one service,
            # a later 'up' or 'restart') keeps the fault-injection setting and the ports.
            if self._fault_injection:
                self.fault_injection_marker.write_text("SIGNLAB_FAULT_INJECTION=1\n")
            else:
                self.fault_injection_marker.unlink(missing_ok=True)
            self.ports_file.write_text(json.dumps(self.ports))
        # Then one service at a time, in dependency order: a later service's provisioning may ask
        # an earlier one (the portal fetches the CA's root and trusted list).
        started: list[str] = []
        try:
            for entry in wanted:
                try:
                    for line in entry.provision(settings_of[entry.info.name]):
                        progress(f"  provision {entry.info.name}: {line}")
                except (ConfigurationError, OSError) as exc:
                    raise RuntimeError_(f"{entry.info.name} ({entry.info.role}) cannot start: {exc}") from None
                self._spawn(entry, environments[entry.info.name])
                started.append(entry.info.name)
                self._wait_healthy([entry.info.name], timeout)
        except BaseException:
            self._stop(started)
            if not already:
                self.fault_injection_marker.unlink(missing_ok=True)
                self.ports_file.unlink(missing_ok=True)
            raise
        return self.status()

    def _check_matches_running(self, running: Mapping[str, int]) -> None:
        """Refuse an ``up`` whose ports or fault-injection choice contradict the running services."""
        listing = ", ".join(f"{name} (pid {pid})" for name, pid in running.items())
        marker = self.fault_injection_marker.exists()
        if self._fault_injection is not None and self._fault_injection != marker:
            raise RuntimeError_(f"SignLab is running from {self.data_dir} ({listing}) with fault injection "
                                f"{'on' if marker else 'off'}; stop it first ('signlab down') to change that",
                                exit_code=2)
        recorded = self._recorded_ports()
        for name, port in self.port_overrides.items():
            current = self.ports_of_running().get(name) or recorded.get(name)
            if current is not None and current != port:
                raise RuntimeError_(f"{name} belongs to the ecosystem running from {self.data_dir} on port {current}, "
                                    f"not {port}; stop it first ('signlab down') to change ports", exit_code=2)

    def ports_of_running(self) -> dict[str, int]:
        """The recorded port of each running service."""
        found = {}
        for name in self.running():
            record = self._read_pid(name)
            if record is not None and isinstance(record.get("port"), int):
                found[name] = int(record["port"])  # type: ignore[arg-type]
        return found

    def _spawn(self, entry: ServiceEntry, env: dict[str, str]) -> None:
        name = entry.info.name
        command = gunicorn_argv(entry, [f"127.0.0.1:{self.ports[name]}"])
        log = self.log_file(name).open("ab")
        try:
            process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       start_new_session=True, cwd=self.data_dir)
        finally:
            log.close()
        self._children[name] = process
        self.pid_file(name).write_text(json.dumps({"pid": process.pid, "port": self.ports[name], "started": time.time()}))
        self.ports_file.write_text(json.dumps(self.ports))

    def _exited(self, name: str) -> bool:
        child = self._children.get(name)
        if child is not None:  # our own child: its handle is exact, even before exec completes
            return child.poll() is not None
        return self._alive(name) is None

    def _wait_healthy(self, names: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = list(names)
        while pending:
            for name in list(pending):
                if self._exited(name):
                    raise RuntimeError_(f"{name} ({service(name).role}) exited during start-up. Last lines of "
                                        f"{self.log_file(name)}:\n{self.tail(name, 15)}")
                if _health(self.url(name))[0] in ("healthy", "degraded"):  # degraded: up, its disk is low
                    pending.remove(name)
            if pending and time.monotonic() > deadline:
                states = {name: _health(self.url(name)) for name in pending}
                detail = "; ".join(f"{name}: {state} {info}".strip() for name, (state, info) in states.items())
                raise RuntimeError_(f"not healthy after {timeout:g} s: {detail}. See 'signlab logs'.")
            if pending:
                time.sleep(HEALTH_POLL_SECONDS)

    def start_service(self, name: str, *, timeout: float = 60.0) -> int:
        """Start one service again (after :meth:`stop_service`, a crash or a kill) with exactly the
        environment ``up`` gave it, wait until healthy, and return its pid. Used by fault injection.

        :raises RuntimeError_: it is already running, dies at start or stays unhealthy.
        """
        item = next(e for e in REGISTRY if e.info.name == name)
        if self._alive(name) is not None:
            raise RuntimeError_(f"{name} ({item.info.role}) is already running")
        self._spawn(item, self.service_environment(item))
        try:
            self._wait_healthy([name], timeout)
        except BaseException:
            self._stop([name])
            raise
        return self._children[name].pid

    def stop_service(self, name: str) -> list[str]:
        """Stop one service (SIGTERM to its process group, SIGKILL after a grace period)."""
        return self._stop([name])

    def restart_service(self, name: str, *, timeout: float = 60.0) -> list[str]:
        """Stop one service of the ecosystem (if it runs) and start it again with the same port,
        settings and fault-injection setting; wait until it is healthy. One line per thing done.

        :raises RuntimeError_: no ecosystem runs here, or the service does not come back.
        """
        item = next(e for e in REGISTRY if e.info.name == name)
        if not self.running() and not self.ports_file.exists():
            raise RuntimeError_(f"SignLab is not running from {self.data_dir}; start it with 'signlab up'")
        done = self.stop_service(name)
        pid = self.start_service(name, timeout=timeout)
        return [*done, f"{name} ({item.info.role}): started (pid {pid}), {self.status_of(name).state}"]

    def down(self) -> list[str]:
        """Stop the services this runtime started; return what was done, one line per service."""
        done = self._stop([e.info.name for e in REGISTRY])
        self.fault_injection_marker.unlink(missing_ok=True)
        if self.ports_file.exists():  # kept for 'status' after 'down': where the ecosystem was
            self.ports_file.replace(self.last_ports_file)
        return done

    @property
    def last_ports_file(self) -> Path:
        """The ports of the ecosystem ``down`` stopped last (``status`` shows them)."""
        return self.run_dir / "last-ports.json"

    def _stop(self, names: list[str]) -> list[str]:
        done = []
        for name in reversed(names):
            child = self._children.pop(name, None)
            pid = child.pid if child is not None and child.poll() is None else self._alive(name)
            if pid is None:
                if self.pid_file(name).exists():
                    self.pid_file(name).unlink()
                    done.append(f"{name}: was not running (removed a stale pid file)")
                continue
            _terminate_group(pid)
            if child is not None:
                child.wait(timeout=5)
            self.pid_file(name).unlink(missing_ok=True)
            done.append(f"{name}: stopped (pid {pid})")
        return done

    def status(self) -> list[ServiceState]:
        """The state of each service."""
        return [self.status_of(entry.info.name) for entry in REGISTRY]

    def status_of(self, name: str) -> ServiceState:
        """The state of service ``name``."""
        pid = self._alive(name)
        if pid is not None:
            state, detail = _health(self.url(name))
            return ServiceState(name, str(service(name).role), self.url(name), self.ports[name], pid, state, detail)
        port = self.ports[name]
        if name not in self.port_overrides and name not in self._recorded_ports():
            port = self._last_ports().get(name, port)  # stopped by 'down': where it ran
        return ServiceState(name, str(service(name).role), f"http://127.0.0.1:{port}", port, None, "stopped", "")

    def _last_ports(self) -> dict[str, int]:
        return _read_ports(self.last_ports_file)

    def tail(self, name: str, lines: int) -> str:
        """The last ``lines`` lines of a service's log."""
        path = self.log_file(name)
        if not path.exists():
            return "(no log yet)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def follow(self, names: list[str], lines: int) -> Iterator[str]:
        """Yield the last ``lines`` lines of each log, then new lines as they are written (forever)."""
        handles = {}
        for name in names:
            for line in self.tail(name, lines).splitlines():
                yield f"{name:>6} | {line}"
            path = self.log_file(name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
            handle = path.open(errors="replace")
            handle.seek(0, os.SEEK_END)
            handles[name] = handle
        while True:
            quiet = True
            for name, handle in handles.items():
                line = handle.readline()
                if line:
                    quiet = False
                    yield f"{name:>6} | {line.rstrip()}"
            if quiet:
                time.sleep(0.2)


def gunicorn_argv(entry: ServiceEntry, binds: list[str]) -> list[str]:
    """The command that serves one service under gunicorn (the local runtime and the containers).

    One worker process with threads: the signer's one-time keys are PKCS#11 session objects that
    live only in the process that made them, and the other services keep in-process caches. Idle
    keep-alive connections stay open for :data:`~shared.http_client.SERVER_KEEPALIVE_SECONDS`
    (gunicorn's default is 2 s), longer than the shared HTTP client reuses one, so a reuse never
    races the server's idle close.
    """
    from shared.http_client import SERVER_KEEPALIVE_SECONDS  # local: keeps the CLI's import light

    argv = [sys.executable, "-m", "gunicorn"]
    for bind in binds:
        argv += ["--bind", bind]
    return argv + [
        "--workers", "1", "--worker-class", "gthread", "--threads", "8",
        "--timeout", "120", "--graceful-timeout", "5", "--keep-alive", str(SERVER_KEEPALIVE_SECONDS),
        "--error-logfile", "-", "--log-level", "warning",
        "--name", f"signlab-{entry.info.name}",
        entry.wsgi_target,
    ]


def _read_ports(path: Path) -> dict[str, int]:
    """A ports file: service name → port (empty when missing or damaged)."""
    try:
        recorded = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return {k: v for k, v in recorded.items() if isinstance(v, int)} if isinstance(recorded, dict) else {}


def port_free(port: int) -> bool:
    """True when nothing listens on 127.0.0.1:``port`` (a bind succeeds)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _health(url: str) -> tuple[str, str]:
    """``healthy``, ``degraded`` or ``failing`` with the checks' details (``not responding``)."""
    try:
        response = requests.get(f"{url}/healthz", timeout=2)
    except requests.RequestException:
        return "not responding", ""
    try:
        body = response.json()
        checks = body.get("checks", {})
    except (ValueError, AttributeError):
        body, checks = {}, {}
    checks = {k: v for k, v in checks.items() if isinstance(v, dict)}
    if response.status_code == 200 and body.get("status") != "degraded":
        return "healthy", "; ".join(f"{k}: {v.get('detail', '')}" for k, v in checks.items())
    # Degraded or failing: the detail is why (the checks that are not ok).
    why = "; ".join(f"{k}: {v.get('detail', '')}" for k, v in checks.items() if v.get("status") != "ok")
    return ("failing" if response.status_code != 200 else "degraded"), why


def _terminate_group(pid: int, grace: float = 10.0) -> None:
    """SIGTERM the process group led by ``pid`` (gunicorn master and workers), SIGKILL after ``grace``."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        _reap(pid)
        time.sleep(0.1)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    _reap(pid)


def _reap(pid: int) -> None:
    """Collect the exit status if ``pid`` is our own child (a test or the same CLI process)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
