"""``signlab audit verify``: check the hash-chained audit logs of the SSASP and the TSP.

The signing service's audit log (authentication, consent, key created/destroyed, certificate
serial, DTBS/R digests, SAD checks, refusals) and the CA's issuance log are append-only JSON lines,
each entry chained to the previous one by SHA-256 (:mod:`shared.audit`). Any edited, inserted,
removed or reordered line breaks the chain from that line on; this command names the first one.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from services.ca.settings import CaSettings
from services.registry import entry
from services.signer.settings import SignerSettings
from shared.audit import AuditLog
from signlab.commands import CommandError
from signlab.commands.runtime import runtime_from

__all__ = ["audit_logs", "register"]


def register(commands: Any) -> None:
    """Add ``audit verify``."""
    audit = commands.add_parser("audit", help="check the audit logs of the signing service and the CA")
    actions = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    verify = actions.add_parser("verify", help="verify the hash chains; exit 1 if any entry was tampered with")
    verify.add_argument("--json", action="store_true", help="print JSON")
    verify.set_defaults(handler=_verify)


def audit_logs(args: argparse.Namespace) -> dict[str, Path]:
    """The audit logs of this installation, by label, located through the services' own settings."""
    runtime = runtime_from(args)
    signer = SignerSettings.from_env(runtime.service_environment(entry("signer")))
    ca = CaSettings.from_env(runtime.service_environment(entry("ca")))
    return {"signer (SSASP) audit log": signer.audit_path, "ca (TSP) issuance log": ca.issuance_log_path}


def _verify(args: argparse.Namespace) -> int:
    results = []
    for label, path in audit_logs(args).items():
        if not path.exists():
            raise CommandError(f"{label} not found at {path}: has 'signlab up' run with this --data-dir?")
        outcome = AuditLog(path).verify()
        results.append({"log": label, "path": str(path), "ok": outcome.ok, "entries": outcome.entries,
                        "first_broken": outcome.first_broken, "reason": outcome.reason, "head": outcome.head})
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for item in results:
            verdict = "intact" if item["ok"] else f"TAMPERED at entry {item['first_broken']}: {item['reason']}"
            print(f"{item['log']}: {item['entries']} entries, {verdict}  ({item['path']})")
    return 0 if all(item["ok"] for item in results) else 1
