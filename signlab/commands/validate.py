"""``signlab validate FILE [--original FILE] [--at TIME]``: validate a signed file with the portal.

Sends the file to the running portal's validation API (as the lab's partner application, with
the credentials ``signlab up`` generated) and prints the simple report: indication and
sub-indication, level, qualification at the signing time and at the validation time, the best
signature time and the proof of existence that carried the decision. ``--detailed`` and ``--etsi``
save the detailed report (JSON) and the ETSI TS 119 102-2 report (XML). Exit code 0 when the
document is TOTAL_PASSED, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from shared.clients.portal import PortalClient
from shared.errors import SignLabError
from signlab.commands import CommandError

__all__ = ["register", "simple_report_text"]


def register(commands: Any) -> None:
    """Add ``validate``."""
    parser = commands.add_parser("validate", help="validate a signed file (PAdES PDF, CAdES .p7s, JAdES JSON) at now or "
                                                  "at a chosen time, with the running portal")
    parser.add_argument("file", type=Path, help="the signed file")
    parser.add_argument("--original", type=Path, help="the signed file of a detached CAdES/JAdES signature")
    parser.add_argument("--at", help="validation time: ISO 8601 (2027-01-01T12:00:00Z) or an offset from the lab clock "
                                     "(+1d, now-2h); default: now on the lab clock")
    parser.add_argument("--detailed", type=Path, metavar="FILE", help="also save the detailed report (JSON)")
    parser.add_argument("--etsi", type=Path, metavar="FILE", help="also save the ETSI TS 119 102-2 report (XML)")
    parser.add_argument("--json", action="store_true", help="print the simple report as JSON")
    parser.set_defaults(handler=_validate)


def simple_report_text(report: dict[str, Any]) -> str:
    """The simple report in a few lines."""
    sub = f" / {report['sub_indication']}" if report.get("sub_indication") else ""
    lines = [f"{report.get('document')}: {report.get('indication')}{sub}  (validated at {report.get('validation_time')})"]
    for sig in report.get("signatures", []):
        sub = f" / {sig['sub_indication']}" if sig.get("sub_indication") else ""
        lines.append(f"  {sig.get('id')} ({sig.get('format')}): {sig.get('indication')}{sub}, level {sig.get('level') or '-'}, "
                     f"{sig.get('qualification')} at the signing time, {sig.get('qualification_at_validation_time') or '-'} "
                     "at the validation time")
        lines.append(f"    process {sig.get('validation_process') or '-'}, best signature time {sig.get('best_signature_time') or '-'}")
        poe = sig.get("proof_of_existence")
        if poe:
            lines.append(f"    proof of existence: {poe['of']} at {poe['time']} by the {poe['proof']}")
        for text in sig.get("explanations", []):
            lines.append(f"    {text}")
    return "\n".join(lines)


def _validate(args: argparse.Namespace) -> int:
    from signlab.commands.runtime import runtime_from
    from signlab.scenarios.environment import ecosystem_from_runtime

    runtime = runtime_from(args)
    if "portal" not in runtime.running():
        raise CommandError(f"the portal is not running from {runtime.data_dir}; start SignLab with 'signlab up'")
    eco = ecosystem_from_runtime(runtime)
    secret = eco.secret("SIGNLAB_PORTAL_API_CLIENT_SECRET")
    if not secret:
        raise CommandError(f"no partner credentials in {runtime.secrets_file}; start SignLab with 'signlab up'")
    try:
        signed = args.file.read_bytes()
        original = args.original.read_bytes() if args.original else None
    except OSError as exc:
        raise CommandError(f"cannot read {exc.filename}: {exc.strerror}") from None
    client = PortalClient(eco.url("portal"), client_id=str(eco.setting("portal", "api_client_id") or "signlab-lab"),
                          client_secret=secret)
    try:
        report = client.validate(signed, name=args.file.name, original=original, at=args.at)
        for path, part in ((args.detailed, "detailed"), (args.etsi, "etsi")):
            if path is not None:
                path.write_bytes(client.report(str(report["report_id"]), part))
    except SignLabError as exc:
        raise CommandError(f"the portal refused the validation: {exc}") from None
    print(json.dumps(report, indent=2) if args.json else simple_report_text(report))
    return 0 if report.get("indication") == "TOTAL_PASSED" else 1
