"""``signlab clock show | set | advance | reset``: the lab clock every service reads.

The clock file is ``$SIGNLAB_CLOCK_FILE``, else ``<data dir>/lab-clock.json`` — the file the
services of ``signlab up`` read (:mod:`shared.clock`). The machine's clock is never touched; a
new offset holds from the services' next request on, without a restart. In compose, run the same
command inside a container that mounts the shared clock file (``docker compose exec ca signlab
clock set +1d``).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from shared.clock import LabClock, format_offset, parse_moment, parse_offset
from signlab.commands import CommandError
from signlab.errors import EXIT_USAGE

__all__ = ["clock_file", "register"]


def register(commands: Any) -> None:
    """Add ``clock``."""
    parser = commands.add_parser("clock", help="show or move the lab clock every service reads (never the machine's)")
    actions = parser.add_subparsers(dest="clock_action", required=True, metavar="ACTION")
    show = actions.add_parser("show", help="the lab time and its offset from the machine's clock")
    show.add_argument("--json", action="store_true", help="print JSON")
    set_ = actions.add_parser("set", help="set the offset from the machine's clock (+1d, -90m, 0) or the lab time "
                                          "itself (2027-01-01T12:00:00Z)")
    set_.add_argument("value", help="an offset such as +1d, +1d2h, 0, or an ISO 8601 time; a negative offset after "
                                    "--: signlab clock set -- -15m")
    advance = actions.add_parser("advance", help="move the lab clock on (or back, with -) from where it stands")
    advance.add_argument("offset", help="e.g. +1d, 16m; back: signlab clock advance -- -1h")
    actions.add_parser("reset", help="back to the machine's time")
    parser.set_defaults(handler=_clock)


def clock_file(args: argparse.Namespace) -> Path:
    """The clock file: ``$SIGNLAB_CLOCK_FILE``, else ``<data dir>/lab-clock.json``."""
    configured = os.environ.get("SIGNLAB_CLOCK_FILE")
    return Path(configured) if configured else Path(args.data_dir).absolute() / "lab-clock.json"


def _clock(args: argparse.Namespace) -> int:
    clock = LabClock(clock_file(args))
    action = args.clock_action
    try:
        if action == "set":
            value = args.value.strip()
            if value[:1] in "+-" or value == "0" or value[-1:] in "smhdw" and value[:1].isdigit():
                clock.set_offset(parse_offset(value), note=f"signlab clock set {value}")
            else:
                clock.set_time(parse_moment(value, clock.now()), note=f"signlab clock set {value}")
        elif action == "advance":
            clock.advance(parse_offset(args.offset), note=f"signlab clock advance {args.offset}")
        elif action == "reset":
            clock.reset()
    except ValueError as exc:
        raise CommandError(str(exc), exit_code=EXIT_USAGE) from None
    state = clock.describe()
    if getattr(args, "json", False):
        print(json.dumps(state, indent=2))
    else:
        print(f"lab clock: {state['now']} ({'machine time ' + format_offset(state['offset_seconds']) if state['moved'] else 'the machine time'})"
              f"  [{state['file']}]")
    return 0
