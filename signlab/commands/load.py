"""``signlab load``: N complete signing flows at concurrency C against the running ecosystem, every
result checked (signature valid against the SignLab root, audit chains intact, every one-time key
destroyed, HSM empty afterwards) and per-service memory reported at start, each quarter and end.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from signlab.commands import CommandError

__all__ = ["register"]


def register(commands: Any) -> None:
    """Add ``load``."""
    load = commands.add_parser("load", help="run N checked signing flows at concurrency C (load / soak test)")
    load.add_argument("--flows", type=int, default=200, metavar="N", help="number of flows (default 200)")
    load.add_argument("--concurrency", type=int, default=8, metavar="C", help="parallel flows (default 8)")
    load.add_argument("--mode", choices=("portal", "partner"), default="portal",
                      help="portal: through the partner portal (default); partner: the agent plays the partner")
    load.add_argument("--login-hint", default="kari-nordmann@no-bankid", help="IdP login_hint of every flow")
    load.add_argument("--max-growth", type=float, default=None, metavar="PERCENT",
                      help="fail when a service's RSS grows more than PERCENT between the first and last quarter")
    load.add_argument("--json", action="store_true", help="print the report as JSON")
    load.set_defaults(handler=_load)


def _load(args: argparse.Namespace) -> int:
    from signlab.commands.runtime import runtime_from
    from signlab.load import run_load
    from signlab.scenarios.environment import ecosystem_from_runtime

    if args.flows < 1 or args.concurrency < 1:
        raise CommandError("--flows and --concurrency must be at least 1", exit_code=2)
    runtime = runtime_from(args)
    missing = [s.name for s in runtime.status() if s.state != "healthy"]
    if missing:
        raise CommandError(f"not running or not healthy: {', '.join(missing)}; start the ecosystem with 'signlab up'")
    eco = ecosystem_from_runtime(runtime)
    report = run_load(eco, flows=args.flows, concurrency=args.concurrency, mode=args.mode, login_hint=args.login_hint,
                      max_growth=None if args.max_growth is None else args.max_growth / 100,
                      progress=None if args.json else (lambda line: print(line, flush=True)))
    if args.json:
        print(json.dumps({
            "ok": report.ok, "flows": report.flows, "concurrency": report.concurrency, "mode": report.mode,
            "seconds": round(report.seconds, 2), "errors": [r.error for r in report.errors],
            "audit": report.audit, "hsm_key_objects": report.hsm_key_objects, "rss_kib": report.rss_samples,
            "memory_growth": report.memory_growth(), "problems": report.problems,
        }, indent=2))
    else:
        print(report.summary())
    return 0 if report.ok else 1
