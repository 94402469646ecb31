"""The ``signlab`` command line.

A thin layer: argparse parses; each command group lives in a module of :mod:`signlab.commands`
(listed in :data:`COMMAND_MODULES`) that registers its subcommands; errors a user can act on are
caught once here, printed, and turned into the exit code.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from signlab.errors import EXIT_INTERRUPTED, CliError

__all__ = ["COMMAND_MODULES", "main"]

COMMAND_MODULES: tuple[str, ...] = (
    "signlab.commands.runtime",
    "signlab.commands.machine",
    "signlab.commands.audit",
    "signlab.commands.scenario",
    "signlab.commands.validate",
    "signlab.commands.clock",
    "signlab.commands.load",
    "signlab.commands.trace",
    "signlab.commands.tour",
    "signlab.commands.docs",
    "signlab.commands.bench",
)
"""The command groups, in the order ``signlab --help`` lists them."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="signlab", description="Run and drive the SignLab remote-signing ecosystem.",
        epilog="Exit codes: 0 done; 1 something checked failed; 2 cannot run as asked (arguments, input files, "
               "ports, prerequisites); 130 interrupted.")
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("SIGNLAB_DATA_DIR", "var")),
                        help="state, logs and pid files (default: $SIGNLAB_DATA_DIR or ./var)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    args = _parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except CliError as exc:
        print(f"signlab: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
