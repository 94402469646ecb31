"""The ``signlab`` command groups: each module registers its subcommands and runs them.

A command module has ``register(commands)`` (adds its subparsers to the argparse sub-parser action,
each with ``set_defaults(handler=...)``); a handler takes the parsed arguments and returns the
exit code. Errors a user can act on are :class:`signlab.errors.CliError` (here
:class:`CommandError`, in the runtime :class:`signlab.runtime.RuntimeError_`), printed once by
:func:`signlab.cli.main`.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from signlab.errors import CliError

__all__ = ["CommandError", "hint"]


def hint(args: argparse.Namespace, command: str) -> str:
    """``signlab [--data-dir DIR] COMMAND``: a command to print for the user, with the data directory
    this run used unless it is the default one ($SIGNLAB_DATA_DIR, else ./var) of *any* directory
    — a relative ``var`` would name another data directory when the hint is run elsewhere."""
    data_dir = Path(getattr(args, "data_dir", "var"))
    default = os.environ.get("SIGNLAB_DATA_DIR")
    if default and Path(default).resolve() == data_dir.resolve():
        return f"signlab {command}"
    return f"signlab --data-dir {data_dir.resolve()} {command}"


class CommandError(CliError):
    """A command cannot do what was asked; the message says why. ``exit_code`` is returned."""
