"""The one error root of the ``signlab`` command line, and its exit codes.

Every error a ``signlab`` command reports to its user is a :class:`CliError`: the message says what
went wrong and what to do, :attr:`CliError.exit_code` is what the process returns.
:func:`signlab.cli.main` catches the root once, prints ``signlab: <message>`` and exits with that
code. Errors that a command handles itself (a refused flow is an expected outcome of a negative
scenario) still descend from the root, so one that escapes is reported the same way.

Exit codes (also in ``signlab --help`` and ``docs/running.md``):

====  ==========================================================================================
0     done; every check passed
1     the command ran and something it checked failed (a scenario, a load run, an audit chain,
      a service that did not become healthy, a flow that failed)
2     the command cannot run as asked: invalid arguments, an invalid scenario or compose file,
      a port already in use, a missing prerequisite (the message names it)
130   interrupted (Ctrl-C)
====  ==========================================================================================
"""

from __future__ import annotations

__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "CliError"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class CliError(Exception):
    """Root of the errors the ``signlab`` command line reports; ``exit_code`` is returned."""

    exit_code: int = EXIT_FAILED

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code
