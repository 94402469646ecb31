"""``signlab up | down | restart | status | logs``: the embedded runtime (local processes) or, with
``--engine docker``, the containers (``signlab.docker_engine``)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from services.registry import REGISTRY
from signlab.commands import CommandError, hint
from signlab.runtime import LocalRuntime, ServiceState, fault_injection_requested

__all__ = ["add_docker_options", "docker_engine", "register", "runtime_from"]

SERVICE_NAMES = [e.info.name for e in REGISTRY]


def _port_override(text: str) -> tuple[str, int]:
    name, _, port = text.partition("=")
    if name not in SERVICE_NAMES or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected SERVICE=PORT with SERVICE one of {', '.join(SERVICE_NAMES)}, got {text!r}")
    return name, int(port)


def register(commands: Any) -> None:
    """Add ``up``, ``down``, ``restart``, ``status`` and ``logs``."""
    up = commands.add_parser("up", help="provision and start the services that are not running (all four the "
                                        "first time) on 127.0.0.1, wait until healthy")
    up.add_argument("--port", type=_port_override, action="append", default=[], metavar="SERVICE=PORT",
                    help="listen on another port (repeatable), e.g. --port portal=9000")
    up.add_argument("--timeout", type=float, default=None,
                    help="seconds to wait for health (default 60; 300 per container with --engine docker)")
    up.add_argument("--no-build", action="store_true", help="--engine docker: use the existing signlab image")
    up.add_argument("--fault-injection", action="store_true",
                    default=True if fault_injection_requested(os.environ) else None,
                    help="lab only: enable the guarded fault-injection admin APIs for this run (IdP /admin/failures, "
                         "signer and CA /admin/faults, the wallet's /admin/pid-status; bearer tokens in secrets.env, or "
                         "the env file with --engine docker); default: $SIGNLAB_FAULT_INJECTION, or what the running "
                         "services were started with")
    up.set_defaults(handler=_up)

    down = commands.add_parser("down", help="stop the services started by 'signlab up' (by their recorded pids; "
                                            "containers: SIGTERM, then removed)")
    down.add_argument("--volumes", action="store_true",
                      help="--engine docker: also delete the deployment's volumes (all its data: CA, HSM token, audit logs)")
    down.set_defaults(handler=_down)

    restart = commands.add_parser("restart", help="stop one service and start it again with the same port and "
                                                  "settings, wait until healthy")
    restart.add_argument("service", choices=SERVICE_NAMES, help="the service to restart")
    restart.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for health (default 60)")
    restart.set_defaults(handler=_restart)

    status = commands.add_parser("status", help="show each service's role, URL and state; exit 1 unless all are healthy")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(handler=_status)

    logs = commands.add_parser("logs", help="print the services' JSON logs")
    logs.add_argument("service", nargs="?", choices=SERVICE_NAMES, help="one service (default: all)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    logs.add_argument("-n", "--lines", type=int, default=50, help="lines from the end of each log (default 50)")
    logs.set_defaults(handler=_logs)

    for parser in (up, down, restart, status, logs):
        add_docker_options(parser)


def add_docker_options(parser: argparse.ArgumentParser) -> None:
    """``--engine`` and ``--env-file`` (the Docker deployment's project name, secrets and ports)."""
    parser.add_argument("--engine", choices=["local", "docker"], default=os.environ.get("SIGNLAB_ENGINE", "local"),
                        help="local processes (default) or Docker containers (compose/; default: $SIGNLAB_ENGINE)")
    parser.add_argument("--env-file", type=Path, default=None, metavar="FILE",
                        help="--engine docker: the deployment's env file (project name, secrets, ports), the one "
                             "docker compose reads; default: $SIGNLAB_DOCKER_ENV_FILE or compose/.env")


def runtime_from(args: argparse.Namespace, *, fault_injection: bool | None = None) -> LocalRuntime:
    """The local runtime for the global ``--data-dir`` (and ``--port`` overrides, if given).

    :param fault_injection: see :class:`~signlab.runtime.LocalRuntime` (``up`` passes its flag).
    """
    return LocalRuntime(args.data_dir, dict(getattr(args, "port", None) or []), fault_injection=fault_injection)


def table(states: list[ServiceState]) -> str:
    """The status table: role, service, URL, state, pid; then why each service that is degraded
    or failing is so (the details of its health checks)."""
    rows = [("ROLE", "SERVICE", "URL", "STATE", "PID")]
    rows += [(s.role, s.name, s.url, s.state, str(s.pid or "-")) for s in states]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines += [f"{s.name} is {s.state}: {s.detail}" for s in states if s.state in ("degraded", "failing") and s.detail]
    return "\n".join(lines)


def docker_engine(args: argparse.Namespace, *, fault_injection: bool | None = None) -> Any:
    """The Docker engine backend (``--engine docker``), or None for the local runtime.

    The engine is ``DOCKER_HOST``, the default socket, or SignLab's own dockerd under
    ``<data dir>/dockerd`` when one runs (``signlab dockerd start``).
    """
    if getattr(args, "engine", "local") != "docker":
        return None
    from signlab.docker_engine import ENV_FILE, DockerEngine
    from signlab.docker_host import OwnDockerd

    env_file = args.env_file or Path(os.environ.get("SIGNLAB_DOCKER_ENV_FILE") or ENV_FILE)
    own = OwnDockerd(args.data_dir / "dockerd")
    host = None
    if "DOCKER_HOST" not in os.environ and not Path("/var/run/docker.sock").exists() and own.pid() is not None:
        host = own.host
    return DockerEngine(env_file, dict(getattr(args, "port", None) or []), docker_host=host,
                        fault_injection=bool(fault_injection))


def _map_lab_hosts() -> None:
    """Make the lab host names in SignLab's certificates resolve here (root), or say how."""
    from signlab.hosts import lab_host_problems, map_lab_hosts

    if not lab_host_problems():
        return
    try:
        for line in map_lab_hosts():
            print(line, flush=True)
    except PermissionError as exc:
        print(f"Note: {'; '.join(lab_host_problems())}, so validators on this machine cannot fetch the "
              f"revocation data named in SignLab's certificates. {exc}.", flush=True)


def _up(args: argparse.Namespace) -> int:
    engine = docker_engine(args, fault_injection=args.fault_injection)
    _map_lab_hosts()
    if engine is not None:
        print(f"Starting SignLab in Docker containers (project {engine.project}, env file {engine.env_file}) ...",
              flush=True)
        states = engine.up(timeout=args.timeout or 300.0, build=not args.no_build,
                           progress=lambda line: print(line, flush=True))
        print(table(states))
        if engine.fault_injection:
            print(f"\nFault injection is ON in these containers (lab only): IdP /admin/failures, signer and CA "
                  f"/admin/faults and the wallet's /admin/pid-status accept the admin tokens in {engine.env_file}.")
        print(f"\nOpen the portal at {engine.url('portal')}/ . Logs: signlab logs --engine docker -f . "
              "Stop: signlab down --engine docker")
        print(trainer_sign_in_line(engine.url("portal"), engine.secrets()))
        return 0
    runtime = runtime_from(args, fault_injection=args.fault_injection)
    print(f"Starting SignLab from {runtime.data_dir} ...", flush=True)
    states = runtime.up(timeout=args.timeout or 60.0, progress=lambda line: print(line, flush=True))
    print(table(states))
    if runtime.fault_injection:
        print("\nFault injection is ON for this run (lab only): IdP /admin/failures, signer and CA /admin/faults "
              f"and the wallet's /admin/pid-status accept the admin tokens in {runtime.secrets_file}.")
    print(f"\nOpen the portal at {runtime.url('portal')}/ . Logs: {hint(args, 'logs -f')} . Stop: {hint(args, 'down')}")
    print(trainer_sign_in_line(runtime.url("portal"), runtime.load_or_create_secrets()))
    return 0


def trainer_sign_in_line(portal_url: str, secrets: dict[str, str]) -> str:
    """The trainer's sign-in link (it carries the trainer token: for the lab machine's own browser)."""
    token = secrets.get("SIGNLAB_PORTAL_TRAINER_TOKEN", "")
    return (f"Trainer views (dashboard, IdP debugger, CA certificates) need the trainer token; sign in on this "
            f"machine with:\n  {portal_url}/trainer/sign-in?{urlencode({'token': token})}")


def _down(args: argparse.Namespace) -> int:
    engine = docker_engine(args)
    if args.volumes and engine is None:
        raise CommandError("--volumes is for --engine docker (the local runtime's data is the --data-dir folder)",
                           exit_code=2)
    lines = engine.down(remove_volumes=args.volumes) if engine is not None else runtime_from(args).down()
    print("\n".join(lines) if lines else "SignLab is not running.")
    return 0


def _restart(args: argparse.Namespace) -> int:
    engine = docker_engine(args)
    if engine is not None:
        print(f"Restarting the container of {args.service} ...", flush=True)
        engine.restart_service(args.service, wait=args.timeout)
        states = engine.status()
    else:
        runtime = runtime_from(args)
        print("\n".join(runtime.restart_service(args.service, timeout=args.timeout)), flush=True)
        states = runtime.status()
    print(table(states))
    return 0


def _status(args: argparse.Namespace) -> int:
    engine = docker_engine(args)
    states = engine.status() if engine is not None else runtime_from(args).status()
    print(json.dumps([s.as_dict() for s in states], indent=2) if args.json else table(states))
    return 0 if all(s.state == "healthy" for s in states) else 1


def _logs(args: argparse.Namespace) -> int:
    engine = docker_engine(args)
    runtime = engine if engine is not None else runtime_from(args)
    names = [args.service] if args.service else SERVICE_NAMES
    if args.follow:
        for line in runtime.follow(names, args.lines):
            print(line, flush=True)
    for name in names:
        source = f"container of {name}" if engine is not None else runtime.log_file(name)
        print(f"==> {source} <==\n{runtime.tail(name, args.lines)}")
    return 0
