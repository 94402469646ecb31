"""``signlab trace [TRANSACTION] [--format svg|mermaid|json|text]``: one transaction's sequence diagram.

Reads the trace store the services write (``$SIGNLAB_TRACE_DIR`` or ``<data dir>/traces``); the
services need not be running. TRANSACTION is the portal's transaction id (``tx-…``), the signer's
``transactionID``, a trace id or a unique prefix of one, or ``latest`` (the default: the latest
*signing* — page views, downloads and validations are activity, never the latest transaction).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from signlab.commands import CommandError, hint

__all__ = ["register", "store_dir", "text_report"]

FORMATS = ("text", "svg", "mermaid", "json")


def register(commands: Any) -> None:
    """Add ``trace``."""
    parser = commands.add_parser("trace", help="print a transaction's sequence diagram (SVG, Mermaid, JSON or text)")
    parser.add_argument("transaction", nargs="?", default="latest",
                        help="portal or signer transaction id, trace id (or prefix), or 'latest' (default)")
    parser.add_argument("--format", choices=FORMATS, default="text", help="output format (default: text)")
    parser.add_argument("-o", "--output", type=Path, help="write to this file instead of standard output")
    parser.add_argument("--list", action="store_true", help="list recent signing transactions instead")
    parser.add_argument("--activity", action="store_true",
                        help="with --list: list the traced activity that is no signing (page views, downloads, "
                             "validations, metadata) instead")
    parser.add_argument("-n", "--limit", type=int, default=20, help="how many transactions --list shows (default 20)")
    parser.set_defaults(handler=_trace)


def store_dir(args: argparse.Namespace) -> Path:
    """The trace store: ``$SIGNLAB_TRACE_DIR``, else ``<data dir>/traces``."""
    configured = os.environ.get("SIGNLAB_TRACE_DIR")
    return Path(configured) if configured else Path(args.data_dir) / "traces"


def text_report(transaction: Any) -> str:
    """A plain-text rendering: one line per arrow, then the state of each step."""
    from shared.tracing.model import describe_facts

    lines = [f"Transaction {', '.join(transaction.transaction_ids) or transaction.id} "
             f"(trace {transaction.id}): {transaction.outcome.upper()}, {transaction.duration_ms:.0f} ms, "
             f"steps {' '.join(map(str, transaction.steps))}"]
    if transaction.facts:
        lines.append(f"  {describe_facts(transaction.facts)}")
    for arrow in transaction.arrows():
        mark = "✗" if arrow.failed else " "
        arrow_text = "-->" if arrow.kind == "response" else "->"
        lines.append(f"{mark} +{arrow.offset_ms:>7.0f} ms  step {arrow.step:>2}  {arrow.source:>6} {arrow_text:<3} "
                     f"{arrow.target:<6}  {arrow.label}")
    failure = transaction.failure
    if failure is not None:
        lines.append(f"\nRefused at step {failure.failure_step} in the {failure.service}: {failure.error}: "
                     f"{failure.error_description}")
    if transaction.kind == "signing":
        lines.append("\nSteps: " + ", ".join(f"{row['step']} {row['state']}" for row in transaction.step_states()))
    if transaction.later:
        lines.append(f"({len(transaction.later)} later request(s) — result page, downloads, status — are not part of it)")
    return "\n".join(lines) + "\n"


def _trace(args: argparse.Namespace) -> int:
    from shared.tracing import TraceStore, build_transaction, render_json, render_mermaid, render_svg

    directory = store_dir(args)
    store = TraceStore(directory)
    if args.list:
        from shared.tracing.model import describe_facts

        groups = (store.activity() if args.activity else store.transactions())[: args.limit]
        if not groups:
            what = "activity" if args.activity else "signing transactions"
            raise CommandError(f"no {what} in the trace store {directory}")
        for group in groups:
            row = build_transaction(group).summary_row()
            ids = ", ".join(row["transaction_ids"]) or "-"
            print(f"{row['start']}  {row['id']}  {row['outcome']:<9}  {row['duration_ms']:>8.0f} ms  "
                  f"steps {' '.join(map(str, row['steps'])) or '-':<22}  {ids}"
                  + (f"  {describe_facts(row['facts'])}" if row["facts"] else "")
                  + (f"  ({row['failure']})" if row["failure"] else ""))
        return 0
    group = store.find(args.transaction)
    if group is None:
        missing = "" if directory.exists() else f" (it does not exist: run '{hint(args, 'up')}' and sign something first)"
        raise CommandError(f"no transaction {args.transaction!r} in the trace store {directory}{missing}; "
                           f"'{hint(args, 'trace --list')}' shows the recent ones")
    transaction = build_transaction(group)
    renderers = {"text": text_report, "svg": render_svg, "mermaid": render_mermaid, "json": render_json}
    output = renderers[args.format](transaction)
    if args.output:
        args.output.write_text(output if output.endswith("\n") else output + "\n")
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(output if output.endswith("\n") else output + "\n")
    return 0
