"""``signlab audit verify``: check the hash-chained audit logs of the SSASP and the TSP.

The signing service's audit log (authentication, consent, key created/destroyed, certificate
serial, DTBS/R digests, SAD checks, refusals) and the CA's issuance log are append-only JSON lines,
each entry chained to the previous one by SHA-256 (:mod:`shared.audit`). Any edited, inserted,
removed or reordered line breaks the chain from that line on; this command names the first one.
An interrupted write repaired at start-up is not tampering: its ``audit.recovered`` entry is listed.

It also cross-checks the CA's certificate database against its issuance log
(:func:`services.ca.issuance_log.cross_check`): every certificate must be in both, every
revocation too.

With ``--engine docker`` the logs and the database live in the deployment's volumes; the same
check (:func:`verify_installation`) runs in a one-off container of the image that mounts them
(``DockerEngine.verify_audit_logs``).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from pathlib import Path
from typing import Any

from services.ca.issuance_log import IssuanceGate, cross_check
from services.ca.settings import CaSettings
from services.ca.store import CertificateStore
from services.registry import entry
from services.signer.settings import SignerSettings
from shared.audit import AuditLog
from signlab.commands import CommandError
from signlab.commands.runtime import add_docker_options, docker_engine, runtime_from

__all__ = ["logs_of", "register", "verify_installation"]

CROSS_CHECK_LABEL = "ca (TSP) database vs issuance log"
QUIET_SECONDS = 10.0
"""How long the cross-check waits for issuances halfway between log and database to finish."""


def register(commands: Any) -> None:
    """Add ``audit verify``."""
    audit = commands.add_parser("audit", help="check the audit logs of the signing service and the CA")
    actions = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    verify = actions.add_parser("verify", help="verify the hash chains and the CA's database against its issuance "
                                               "log; exit 1 if any entry was tampered with or anything is missing")
    verify.add_argument("--json", action="store_true", help="print JSON")
    add_docker_options(verify)
    verify.set_defaults(handler=_verify)


def _local_settings(args: argparse.Namespace) -> tuple[SignerSettings, CaSettings]:
    runtime = runtime_from(args)
    return (SignerSettings.from_env(runtime.service_environment(entry("signer"))),
            CaSettings.from_env(runtime.service_environment(entry("ca"))))


def logs_of(signer: SignerSettings, ca: CaSettings) -> dict[str, Path]:
    """The audit logs of an installation, by label, located through the services' own settings."""
    return {"signer (SSASP) audit log": signer.audit_path, "ca (TSP) issuance log": ca.issuance_log_path}


def _cross_check(settings: CaSettings) -> dict[str, Any]:
    """The CA database against its issuance log, while no issuance is halfway between them."""
    item: dict[str, Any] = {"log": CROSS_CHECK_LABEL, "path": str(settings.database_path)}
    with IssuanceGate(settings.issuance_log_path).quiet(QUIET_SECONDS) as quiet:
        if not quiet:
            return {**item, "ok": False, "summary": f"not checked: an issuance stayed halfway between log and "
                                                    f"database for {QUIET_SECONDS:g} s (is the CA paused?)"}
        try:
            states = CertificateStore.read_states(settings.database_path)
        except sqlite3.Error as exc:
            raise CommandError(f"the CA database {settings.database_path} cannot be read ({exc}): has 'signlab up' "
                               "run with this installation?") from None
        check = cross_check(states, AuditLog(settings.issuance_log_path).entries())
    return {**item, "ok": check.ok, "certificates": check.certificates, "summary": check.summary(),
            "mismatches": [vars(m) for m in check.mismatches]}


def verify_installation(signer: SignerSettings, ca: CaSettings) -> list[dict[str, Any]]:
    """Each log's chain, then the CA database against its issuance log; one result each (``ok``,
    ``summary``, …).

    :raises CommandError: a log or the database does not exist.
    """
    results = []
    for label, path in logs_of(signer, ca).items():
        if not path.exists():
            raise CommandError(f"{label} not found at {path}: has 'signlab up' run with this installation?")
        outcome = AuditLog(path).verify()
        results.append({"log": label, "path": str(path), "ok": outcome.ok, "entries": outcome.entries,
                        "first_broken": outcome.first_broken, "reason": outcome.reason, "head": outcome.head,
                        "recoveries": [{"seq": r.seq, "time": r.time, **r.data} for r in outcome.recoveries],
                        "torn_bytes": outcome.torn_bytes, "summary": f"{outcome.entries} entries, {outcome.summary()}"})
    results.append(_cross_check(ca))
    return results


def _verify(args: argparse.Namespace) -> int:
    engine = docker_engine(args)
    results = engine.verify_audit_logs() if engine is not None else verify_installation(*_local_settings(args))
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        where = f" in the volumes of Docker project {engine.project}" if engine is not None else ""
        for item in results:
            print(f"{item['log']}: {item['summary']}  ({item['path']}{where})")
    return 0 if all(item["ok"] for item in results) else 1
