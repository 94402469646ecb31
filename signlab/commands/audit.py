"""``signlab audit verify``: check the hash-chained audit logs of the SSASP and the TSP.

The signing service's audit log (authentication, consent, key created/destroyed, certificate
serial, DTBS/R digests, SAD checks, refusals) and the CA's issuance log are append-only JSON lines,
each entry chained to the previous one by SHA-256 (:mod:`shared.audit`). Any edited, inserted,
removed or reordered line breaks the chain from that line on; this command names the first one.

With ``--engine docker`` the logs live in the deployment's volumes; the same check runs in a
one-off container of the image that mounts them read-only (``DockerEngine.verify_audit_logs``).
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
from signlab.commands.runtime import add_docker_options, docker_engine, runtime_from

__all__ = ["audit_logs", "logs_of", "register", "verify_logs"]


def register(commands: Any) -> None:
    """Add ``audit verify``."""
    audit = commands.add_parser("audit", help="check the audit logs of the signing service and the CA")
    actions = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    verify = actions.add_parser("verify", help="verify the hash chains; exit 1 if any entry was tampered with")
    verify.add_argument("--json", action="store_true", help="print JSON")
    add_docker_options(verify)
    verify.set_defaults(handler=_verify)


def logs_of(signer: SignerSettings, ca: CaSettings) -> dict[str, Path]:
    """The audit logs of an installation, by label, located through the services' own settings."""
    return {"signer (SSASP) audit log": signer.audit_path, "ca (TSP) issuance log": ca.issuance_log_path}


def audit_logs(args: argparse.Namespace) -> dict[str, Path]:
    """The audit logs of the local installation (``--data-dir``)."""
    runtime = runtime_from(args)
    return logs_of(SignerSettings.from_env(runtime.service_environment(entry("signer"))),
                   CaSettings.from_env(runtime.service_environment(entry("ca"))))


def verify_logs(logs: dict[str, Path]) -> list[dict[str, Any]]:
    """Verify each log's chain; one result per log (``ok``, ``entries``, ``first_broken``, ``reason``, ``head``).

    :raises CommandError: a log does not exist.
    """
    results = []
    for label, path in logs.items():
        if not path.exists():
            raise CommandError(f"{label} not found at {path}: has 'signlab up' run with this installation?")
        outcome = AuditLog(path).verify()
        results.append({"log": label, "path": str(path), "ok": outcome.ok, "entries": outcome.entries,
                        "first_broken": outcome.first_broken, "reason": outcome.reason, "head": outcome.head})
    return results


def _verify(args: argparse.Namespace) -> int:
    engine = docker_engine(args)
    results = engine.verify_audit_logs() if engine is not None else verify_logs(audit_logs(args))
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        where = f" in the volumes of Docker project {engine.project}" if engine is not None else ""
        for item in results:
            verdict = "intact" if item["ok"] else f"TAMPERED at entry {item['first_broken']}: {item['reason']}"
            print(f"{item['log']}: {item['entries']} entries, {verdict}  ({item['path']}{where})")
    return 0 if all(item["ok"] for item in results) else 1
