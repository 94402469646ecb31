"""The ``signlab`` command line: ``up``, ``down``, ``status``, ``logs``.

A thin layer: argparse parses, :class:`~signlab.runtime.LocalRuntime` acts, and errors are caught
once in :func:`main`, which prints them and exits non-zero.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from services.registry import REGISTRY
from signlab.runtime import LocalRuntime, RuntimeError_, ServiceState

__all__ = ["main"]

SERVICE_NAMES = [e.info.name for e in REGISTRY]


def _port_override(text: str) -> tuple[str, int]:
    name, _, port = text.partition("=")
    if name not in SERVICE_NAMES or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected SERVICE=PORT with SERVICE one of {', '.join(SERVICE_NAMES)}, got {text!r}")
    return name, int(port)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="signlab", description="Run and drive the SignLab remote-signing ecosystem.")
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("SIGNLAB_DATA_DIR", "var")),
                        help="state, logs and pid files (default: $SIGNLAB_DATA_DIR or ./var)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = commands.add_parser("up", help="provision and start the four services on 127.0.0.1, wait until healthy")
    up.add_argument("--port", type=_port_override, action="append", default=[], metavar="SERVICE=PORT",
                    help="listen on another port (repeatable), e.g. --port portal=9000")
    up.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for health (default 60)")

    commands.add_parser("down", help="stop the services started by 'signlab up' (by their recorded pids)")

    status = commands.add_parser("status", help="show each service's role, URL and state; exit 1 unless all are healthy")
    status.add_argument("--json", action="store_true", help="print JSON")

    logs = commands.add_parser("logs", help="print the services' JSON logs")
    logs.add_argument("service", nargs="?", choices=SERVICE_NAMES, help="one service (default: all)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    logs.add_argument("-n", "--lines", type=int, default=50, help="lines from the end of each log (default 50)")
    return parser


def _table(states: list[ServiceState]) -> str:
    rows = [("ROLE", "SERVICE", "URL", "STATE", "PID")]
    rows += [(s.role, s.name, s.url, s.state, str(s.pid or "-")) for s in states]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    args = _parser().parse_args(argv)
    try:
        runtime = LocalRuntime(args.data_dir, dict(getattr(args, "port", []) or []))
        if args.command == "up":
            print(f"Starting SignLab from {runtime.data_dir} ...", flush=True)
            states = runtime.up(timeout=args.timeout, progress=lambda line: print(line, flush=True))
            print(_table(states))
            print(f"\nOpen the portal at {runtime.url('portal')}/ . Logs: signlab logs -f . Stop: signlab down")
            return 0
        if args.command == "down":
            lines = runtime.down()
            print("\n".join(lines) if lines else "SignLab is not running.")
            return 0
        if args.command == "status":
            states = runtime.status()
            print(json.dumps([s.as_dict() for s in states], indent=2) if args.json else _table(states))
            return 0 if all(s.state == "healthy" for s in states) else 1
        if args.command == "logs":
            names = [args.service] if args.service else SERVICE_NAMES
            if args.follow:
                for line in runtime.follow(names, args.lines):
                    print(line, flush=True)
            for name in names:
                print(f"==> {runtime.log_file(name)} <==\n{runtime.tail(name, args.lines)}")
            return 0
    except RuntimeError_ as exc:
        print(f"signlab: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    raise AssertionError(f"unhandled command {args.command}")  # argparse restricts the choices


if __name__ == "__main__":
    sys.exit(main())
