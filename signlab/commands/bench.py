"""``signlab bench``: e2e flows vs. local pyHanko signing, the signing service alone vs. its
in-process floor, a 100-document batch, peak memory per service; a table and ``--json FILE``.

Runs against the ecosystem of ``--data-dir``; when nothing runs there it starts one (with
``SIGNLAB_SIGNER_MAX_DOCUMENTS=100`` for the batch, unless set) and stops it afterwards, unless
``--keep-running``.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from signlab.commands import CommandError

__all__ = ["register"]


def register(commands: Any) -> None:
    """Add ``bench``."""
    from signlab.commands.runtime import _port_override

    bench = commands.add_parser("bench", help="measure e2e flows, the signer alone and a batch against the targets")
    bench.add_argument("--parts", default="e2e,signer,batch", metavar="LIST",
                       help="comma-separated parts: e2e, signer, batch (default all)")
    bench.add_argument("--flows", type=int, default=200, metavar="N", help="e2e flows (default 200)")
    bench.add_argument("--concurrency", type=int, default=8, metavar="C", help="parallel flows / calls (default 8)")
    bench.add_argument("--signatures", type=int, default=300, metavar="N",
                       help="signer part: timed signDoc calls (default 300)")
    bench.add_argument("--batch", type=int, default=100, metavar="N", help="documents in the batch (default 100)")
    bench.add_argument("--json", type=argparse.FileType("w"), default=None, metavar="FILE",
                       help="also write the result as JSON to FILE")
    bench.add_argument("--port", type=_port_override, action="append", default=[], metavar="SERVICE=PORT",
                       help="when the bench starts the ecosystem: listen on another port (repeatable)")
    bench.add_argument("--keep-running", action="store_true",
                       help="leave an ecosystem the bench started running afterwards")
    bench.set_defaults(handler=_bench)


def _bench(args: argparse.Namespace) -> int:
    from signlab.bench import PARTS, run_bench
    from signlab.commands.runtime import runtime_from

    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown or not parts:
        raise CommandError(f"unknown part(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(PARTS)}", exit_code=2)
    if min(args.flows, args.concurrency, args.signatures, args.batch) < 1:
        raise CommandError("--flows, --concurrency, --signatures and --batch must be at least 1", exit_code=2)
    runtime = runtime_from(args)
    started = False
    if not runtime.running():
        print(f"starting SignLab in {runtime.data_dir} for the bench", flush=True)
        runtime.environ.setdefault("SIGNLAB_SIGNER_MAX_DOCUMENTS", str(max(100, min(args.batch, 100))))
        runtime.up(progress=lambda _line: None)
        started = True
    try:
        missing = [s.name for s in runtime.status() if s.state != "healthy"]
        if missing:
            raise CommandError(f"not healthy: {', '.join(missing)}; see 'signlab status' and 'signlab logs'")
        report = run_bench(runtime, parts=parts, flows=args.flows, concurrency=args.concurrency,
                           signatures=args.signatures, batch=args.batch,
                           progress=lambda line: print(line, flush=True))
    finally:
        if started and not args.keep_running:
            runtime.down()
    print(report.table())
    if args.json is not None:
        json.dump(report.as_dict(), args.json, indent=2)
        args.json.write(os.linesep)
        args.json.close()
    return 0 if report.ok else 1
