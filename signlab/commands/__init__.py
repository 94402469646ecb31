"""The ``signlab`` command groups: each module registers its subcommands and runs them.

A command module has ``register(commands)`` (adds its subparsers to the argparse sub-parser action,
each with ``set_defaults(handler=...)``); a handler takes the parsed arguments and returns the
exit code. Errors a user can act on are raised as :class:`signlab.runtime.RuntimeError_` (or
:class:`CommandError`) and printed once by :func:`signlab.cli.main`.
"""

from __future__ import annotations

__all__ = ["CommandError"]


class CommandError(Exception):
    """A command cannot do what was asked; the message says why. ``exit_code`` is returned."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code
