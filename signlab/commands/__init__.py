"""The ``signlab`` command groups: each module registers its subcommands and runs them.

A command module has ``register(commands)`` (adds its subparsers to the argparse sub-parser action,
each with ``set_defaults(handler=...)``); a handler takes the parsed arguments and returns the
exit code. Errors a user can act on are :class:`signlab.errors.CliError` (here
:class:`CommandError`, in the runtime :class:`signlab.runtime.RuntimeError_`), printed once by
:func:`signlab.cli.main`.
"""

from __future__ import annotations

from signlab.errors import CliError

__all__ = ["CommandError"]


class CommandError(CliError):
    """A command cannot do what was asked; the message says why. ``exit_code`` is returned."""
