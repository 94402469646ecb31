"""Expectations and invariants: compare what happened with what the scenario says.

* **outcome** — signed (and how many signatures), or refused with ``error`` at ``step`` (and an
  optional text in the description);
* **trace** — the listed steps appear in the observed trace in this order (a subsequence), and the
  steps of ``trace_absent`` do not appear at all; and the step the runner reports is the step the
  distributed trace shows (a refusal's step is the trace's failure step; a signing is completed).
  The trace is merged from the user agent's own exchanges and the services' hash-chained audit
  logs (signer audit log, CA issuance log), entries written during the scenario;
* **validation** — the portal's validation API (``POST /api/v1/validate``) on each signed
  document: indication, sub-indication, level, qualified (QES per the trusted list), revoked;
* **invariants** — no key left in the HSM (the signer's ``/healthz`` key-object count), audit
  chains intact (:class:`shared.audit.AuditLog.verify`), no document bytes at the signing service
  (its database, audit log, data files and process log are searched for windows of every document),
  no certificate issued / no signature created during the scenario (audit windows), every
  certificate issued for a flow that did not complete revoked in OCSP and on the CRL.

Every failed check says which step and which expectation, e.g. ``expected refused with
invalid_token at step 6, but the flow signed 1 document(s)``.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from signlab.scenarios.agent import Document
from signlab.scenarios.environment import Ecosystem
from signlab.scenarios.model import Scenario, ValidationExpectation
from signlab.scenarios.results import Check, ScenarioResult, TraceEvent

__all__ = ["AuditWindow", "Baseline", "check_invariants", "check_outcome", "check_reports", "check_timeline", "check_trace",
           "check_trace_agrees",
           "check_validation", "is_subsequence", "trace_from"]


@dataclass
class AuditWindow:
    """One audit log and how many entries it had when the scenario started."""

    label: str
    path: Path
    start: int = 0

    def entries(self) -> list[Any]:
        """Entries written since the start of the scenario."""
        from shared.audit import AuditLog

        if not self.path.exists():
            return []
        return [e for e in AuditLog(self.path).entries() if e.seq > self.start]


@dataclass
class Baseline:
    """State of the ecosystem taken before a scenario, to tell its own effects apart."""

    windows: list[AuditWindow] = field(default_factory=list)
    hsm_keys: int | None = None

    @classmethod
    def take(cls, eco: Ecosystem) -> Baseline:
        """Record the audit log positions and the HSM key count now."""
        from shared.audit import AuditLog

        windows = []
        for label, path in audit_logs(eco):
            start = max((e.seq for e in AuditLog(path).entries()), default=0) if path.exists() else 0
            windows.append(AuditWindow(label, path, start))
        return cls(windows, eco.hsm_key_objects())

    def window(self, label: str) -> AuditWindow | None:
        """The window of one log by label."""
        return next((w for w in self.windows if w.label == label), None)


def audit_logs(eco: Ecosystem) -> list[tuple[str, Path]]:
    """The hash-chained logs the runner can read: (label, path)."""
    logs = []
    signer_audit = eco.setting("signer", "audit_path")
    if signer_audit is not None:
        logs.append(("signer audit", Path(signer_audit)))
    issuance_log = eco.setting("ca", "issuance_log_path")
    if issuance_log is not None:
        logs.append(("ca issuance log", Path(issuance_log)))
    return logs


def _epoch(iso: str) -> float:
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def trace_from(result: ScenarioResult, baseline: Baseline, transaction: Any = None) -> list[TraceEvent]:
    """The observed trace: agent exchanges that were answered without error (at their end time,
    since the work they trigger happens before they return), audit entries of the window, and —
    when the run has a distributed trace (``shared.tracing``) — its arrows that did not fail."""
    events = []
    if transaction is not None:
        for arrow in transaction.arrows():
            # The store may stitch an earlier run with the same correlation values (same document
            # digest) into this transaction: keep only what happened during this run.
            if arrow.time / 1e9 < result.started - 1.0:
                continue
            if not arrow.failed and not arrow.relay and arrow.kind != "response":
                events.append(TraceEvent(arrow.time / 1e9, int(arrow.step), "trace",
                                         f"{arrow.source} → {arrow.target}: {arrow.label}"))
    for record in result.steps:
        for exchange in record.exchanges:
            if exchange.step is None or exchange.status is None or exchange.status >= 400:
                continue
            location = exchange.response.get("location", {})
            if isinstance(location, dict) and "error" in location.get("params", {}):
                continue
            events.append(TraceEvent(exchange.started + exchange.duration, exchange.step, "agent",
                                     f"{exchange.method} {exchange.url} → {exchange.status}"))
    for window in baseline.windows:
        for entry in window.entries():
            if entry.step:
                events.append(TraceEvent(_epoch(entry.time), int(entry.step), window.label, entry.event))
    return sorted(events, key=lambda e: e.time)


def is_subsequence(expected: tuple[int, ...] | list[int], observed: list[int]) -> tuple[bool, int | None]:
    """Whether ``expected`` appears in ``observed`` in order; else the first expected step missing."""
    position = 0
    for wanted in expected:
        while position < len(observed) and observed[position] != wanted:
            position += 1
        if position == len(observed):
            return False, wanted
        position += 1
    return True, None


def check_outcome(scenario: Scenario, result: ScenarioResult) -> list[Check]:
    """Signed vs refused, error code, step, description text, signature count."""
    exp = scenario.expect
    refusal = result.refusal
    checks = []
    if exp.outcome == "signed":
        if refusal is not None:
            checks.append(Check("outcome", False, f"expected signed, but refused with {refusal.error} at step "
                                f"{refusal.step}: {refusal.description}", refusal.step))
        else:
            checks.append(Check("outcome", True, f"signed {result.signed_documents} document(s)", 10))
            if exp.signatures is not None:
                checks.append(Check("signatures", result.signed_documents == exp.signatures,
                                    f"expected {exp.signatures} signed document(s), got {result.signed_documents}", 10))
        return checks
    wanted = f"refused with {exp.error} at step {exp.step}"
    if refusal is None:
        checks.append(Check("outcome", False, f"expected {wanted}, but the flow signed "
                            f"{result.signed_documents} document(s)", exp.step))
        return checks
    checks.append(Check("outcome", True, f"refused: {refusal.error} at step {refusal.step} ({refusal.where})", refusal.step))
    checks.append(Check("error", refusal.error == exp.error,
                        f"expected error {exp.error!r}, got {refusal.error!r}: {refusal.description}", refusal.step))
    checks.append(Check("step", refusal.step == exp.step,
                        f"expected the refusal at step {exp.step}, it came at step {refusal.step} ({refusal.where}): "
                        f"{refusal.description}", refusal.step))
    if exp.message_contains:
        found = exp.message_contains.lower() in refusal.description.lower()
        checks.append(Check("message", found, f"expected the description to contain {exp.message_contains!r}; "
                            f"it is {refusal.description!r}", refusal.step))
    return checks


def check_trace_agrees(result: ScenarioResult, transaction: Any) -> list[Check]:
    """The step the runner reports is the step the distributed trace shows (design §6: one step
    table): a refusal's step is the trace's failure step (or, when the refusing exchange left no
    span — a service that did not answer the browser — the step where the trace stops); a signing
    is a completed transaction. Nothing to compare without a trace."""
    if transaction is None:
        return []
    refusal = result.refusal
    if refusal is None:
        if result.signed_documents == 0:
            return []
        ok = transaction.outcome == "completed"
        return [Check("trace agrees", ok, f"the trace of the signing is {transaction.outcome}"
                      + ("" if ok else f" (steps {transaction.steps})"), 10)]
    shown = transaction.failure_step if transaction.failure is not None else transaction.current_step
    where = "fails" if transaction.failure is not None else f"is {transaction.outcome}, stopping"
    return [Check("trace agrees", shown == refusal.step,
                  f"reported at step {refusal.step}; the trace {where} at step {shown}"
                  + (f" ({transaction.failure.error})" if transaction.failure is not None else ""), refusal.step)]


def check_trace(scenario: Scenario, events: list[TraceEvent]) -> list[Check]:
    """Expected steps in order; absent steps absent."""
    observed = [e.step for e in events]
    compact = [s for i, s in enumerate(observed) if i == 0 or observed[i - 1] != s]
    checks = []
    if scenario.expect.trace:
        ok, missing = is_subsequence(scenario.expect.trace, observed)
        checks.append(Check("trace order", ok, f"expected steps {list(scenario.expect.trace)} in this order; "
                            f"observed {compact}" + ("" if ok else f"; step {missing} missing or out of order"),
                            missing))
    for absent in scenario.expect.trace_absent:
        seen = [e for e in events if e.step == absent]
        checks.append(Check(f"step {absent} absent", not seen,
                            f"step {absent} must not happen; observed: " + ", ".join(f"{e.source}: {e.name}" for e in seen)
                            if seen else f"step {absent} did not happen", absent))
    return checks


def check_validation(scenario: Scenario, reports: list[dict[str, Any]]) -> list[Check]:
    """Each validation report against ``expect.validation``."""
    exp = scenario.expect.validation
    if exp is None:
        return []
    return check_reports("validation", exp, reports)


def check_timeline(results: list[tuple[str, ValidationExpectation, list[dict[str, Any]]]]) -> list[Check]:
    """The validations of the scenario's timeline, each against its own expectation."""
    return [check for name, exp, reports in results for check in check_reports(name, exp, reports)]


def check_reports(label: str, exp: ValidationExpectation, reports: list[dict[str, Any]]) -> list[Check]:
    """Each of ``reports`` (the portal's simple reports) against ``exp``; one check per report."""
    if not reports:
        return [Check(label, False, "expected a validation result, but there is no signed document to validate", 10)]
    checks = []
    for i, report in enumerate(reports, start=1):
        name = f"{label} #{i}" if len(reports) > 1 else label
        problems, text = _report_problems(exp, report)
        checks.append(Check(name, not problems, ("; ".join(problems) + f" — report: {text}") if problems else text, 10))
    return checks


def _report_problems(exp: ValidationExpectation, report: dict[str, Any]) -> tuple[list[str], str]:
    first = (report.get("signatures") or [{}])[0]
    poe = first.get("proof_of_existence") or {}
    timestamp = first.get("timestamp") or {}
    got = {"indication": report.get("indication"), "sub_indication": report.get("sub_indication"),
           "level": first.get("level"), "qualification": first.get("qualification"),
           "at_validation": first.get("qualification_at_validation_time")}
    text = (f"{got['indication']}" + (f"/{got['sub_indication']}" if got["sub_indication"] else "") +
            f", level {got['level']}, {got['qualification']}" +
            (f" ({got['at_validation']} at the validation time)" if got["at_validation"] not in (None, got["qualification"]) else "") +
            f", validated at {report.get('validation_time') or '?'}" +
            (f", proof of existence: {poe.get('proof')} at {poe.get('time')}" if poe else ""))
    problems = []
    if exp.indication and got["indication"] != exp.indication:
        problems.append(f"indication {got['indication']} (expected {exp.indication})")
    if exp.sub_indication and got["sub_indication"] != exp.sub_indication:
        problems.append(f"sub-indication {got['sub_indication']} (expected {exp.sub_indication})")
    if exp.level and not str(got["level"] or "").endswith(exp.level.split("-", 1)[-1] if exp.level.count("-") > 1 else exp.level):
        problems.append(f"level {got['level']} (expected {exp.level})")
    if exp.qualified is not None and (got["qualification"] == "QES") != exp.qualified:
        problems.append(f"qualification {got['qualification']} (expected {'QES' if exp.qualified else 'not QES'})")
    if exp.qualification and got["qualification"] != exp.qualification:
        problems.append(f"qualification at the signing time {got['qualification']} (expected {exp.qualification})")
    if exp.qualification_at_validation_time and got["at_validation"] != exp.qualification_at_validation_time:
        problems.append(f"qualification at the validation time {got['at_validation']} "
                        f"(expected {exp.qualification_at_validation_time})")
    if exp.proof_of_existence is not None:
        wanted = exp.proof_of_existence.lower()
        shown = str(poe.get("proof") or "").lower()
        if (wanted == "none") != (not poe) or (wanted != "none" and wanted not in shown):
            problems.append(f"proof of existence {poe.get('proof') or 'none'} (expected {exp.proof_of_existence})")
    if exp.timestamp_qualified is not None and timestamp.get("qualified") is not exp.timestamp_qualified:
        problems.append(f"time-stamp qualified {timestamp.get('qualified')} (expected {exp.timestamp_qualified})")
    if exp.revoked is not None:
        revoked = "REVOKED" in str(report).upper()
        if revoked != exp.revoked:
            problems.append(f"revocation {'shown' if revoked else 'not shown'} (expected {'revoked' if exp.revoked else 'not revoked'})")
    return problems, text


def _windows_of(document: Document) -> list[bytes]:
    """Distinctive byte windows of a document: three 32-byte slices from its middle part, and the
    base64 of its first 48 bytes (base64 of the whole starts with it)."""
    content = document.content
    if len(content) < 64:
        return [content] if len(content) >= 16 else []
    windows = [content[len(content) * k // 4: len(content) * k // 4 + 32] for k in (1, 2, 3)]
    windows.append(base64.b64encode(content[:48]))
    return windows


def _search_files(root: Path, needles: list[bytes], skip: set[Path]) -> list[str]:
    hits = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path in skip or path.stat().st_size > 64 * 1024 * 1024:
            continue
        try:
            data = path.read_bytes()
        except OSError:
            continue
        if any(n in data for n in needles):
            hits.append(str(path))
    return hits


def check_invariants(scenario: Scenario, eco: Ecosystem, baseline: Baseline, documents: list[Document]) -> list[Check]:
    """The invariants listed in ``expect.invariants``."""
    checks = []
    for name in scenario.expect.invariants:
        if name == "no-key-left-in-hsm":
            keys = eco.hsm_key_objects()
            if keys is None:
                checks.append(Check(name, False, "the signer's /healthz does not report its key objects", 9, skipped=True))
            else:
                note = f" ({baseline.hsm_keys} before the scenario)" if baseline.hsm_keys else ""
                checks.append(Check(name, keys == 0, f"{keys} key object(s) in the HSM after the scenario{note}", 9))
        elif name == "audit-chain-valid":
            from shared.audit import AuditLog

            logs = audit_logs(eco)
            if not logs:
                checks.append(Check(name, False, "no audit log readable (not a local runtime)", skipped=True))
                continue
            for label, path in logs:
                if not path.exists():
                    checks.append(Check(f"{name} ({label})", False, f"{path} does not exist"))
                    continue
                verdict = AuditLog(path).verify()
                detail = (f"{verdict.entries} entries, chain intact" if verdict.ok else
                          f"broken at line {verdict.first_broken}: {verdict.reason}")
                checks.append(Check(f"{name} ({label})", verdict.ok, f"{path.name}: {detail}"))
        elif name == "no-document-bytes-at-signer":
            data_dir = eco.setting("signer", "data_dir")
            if data_dir is None:
                checks.append(Check(name, False, "the signer's data directory is not known (not a local runtime)", skipped=True))
                continue
            needles = [w for d in documents for w in _windows_of(d)]
            roots = {Path(data_dir)}
            state = eco.setting("signer", "state_dir")
            if state:
                roots.add(Path(state))
            hits = [h for root in roots if root.exists() for h in _search_files(root, needles, set())]
            log = eco.log_files.get("signer")
            if log is not None and log.exists() and any(n in log.read_bytes() for n in needles):
                hits.append(str(log))
            digest_note = ", ".join(hashlib.sha256(d.content).hexdigest()[:12] for d in documents)
            checks.append(Check(name, not hits, ("document bytes found in: " + ", ".join(hits)) if hits else
                                f"no byte window of {len(documents)} document(s) (sha256 {digest_note}…) in the signer's "
                                "database, audit log, data files or log"))
        elif name in ("no-certificate-issued", "no-signature-issued"):
            label, event, step = (("ca issuance log", "certificate.issued", 7) if name == "no-certificate-issued"
                                  else ("signer audit", "signature.created", 9))
            window = baseline.window(label)
            if window is None:
                checks.append(Check(name, False, f"the {label} is not readable (not a local runtime)", step, skipped=True))
                continue
            found = [e for e in window.entries() if e.event == event]
            checks.append(Check(name, not found, f"{len(found)} '{event}' entr{'y' if len(found) == 1 else 'ies'} in the "
                                f"{label} during the scenario", step))
        elif name == "failed-flow-certificates-revoked":
            checks.append(_failed_flow_certificates_revoked(eco, baseline))
    return checks


def _failed_flow_certificates_revoked(eco: Ecosystem, baseline: Baseline) -> Check:
    """Every certificate the CA issued during the scenario for a transaction the signer did not
    complete is revoked (cessationOfOperation) — as its OCSP responder and its CRL say."""
    name = "failed-flow-certificates-revoked"
    issued, signer = baseline.window("ca issuance log"), baseline.window("signer audit")
    if issued is None or signer is None:
        return Check(name, False, "the CA's issuance log or the signer's audit is not readable (not a local runtime)",
                     7, skipped=True)
    completed = {e.data.get("transaction_id") for e in signer.entries() if e.event == "transaction.completed"}
    orphans = [str(e.data["serial"]) for e in issued.entries()
               if e.event == "certificate.issued" and e.data.get("transaction_id") not in completed]
    if not orphans:
        return Check(name, True, "no certificate was issued for a flow that did not complete", 7)
    problems = [f"{serial[:16]}…: {state}" for serial in orphans
                if (state := certificate_revocation_state(eco.url("ca"), serial)) != "revoked in OCSP and CRL"]
    detail = (f"{len(orphans)} certificate(s) of failed flows, each revoked (cessationOfOperation) in OCSP and CRL"
              if not problems else "not revoked: " + "; ".join(problems))
    return Check(name, not problems, detail, 7)


def certificate_revocation_state(ca_url: str, serial: str) -> str:
    """What the CA's OCSP responder and CRL say of ``serial``: ``revoked in OCSP and CRL`` or why not."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509 import ocsp

    from shared.clients.ca import CaClient

    ca = CaClient(ca_url)
    try:
        issuing = x509.load_der_x509_certificate(ca.certificate("issuing"))
        name_hash, key_hash = hashes.Hash(hashes.SHA256()), hashes.Hash(hashes.SHA256())
        name_hash.update(issuing.subject.public_bytes())
        key_hash.update(issuing.public_key().public_bytes(serialization.Encoding.X962,
                                                          serialization.PublicFormat.UncompressedPoint))
        request = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
            name_hash.finalize(), key_hash.finalize(), int(serial, 16), hashes.SHA256()).build()
        answer = ocsp.load_der_ocsp_response(ca.ocsp(request.public_bytes(serialization.Encoding.DER)))
        listed = x509.load_der_x509_crl(ca.crl("issuing")).get_revoked_certificate_by_serial_number(int(serial, 16))
    finally:
        ca.close()
    if answer.certificate_status != ocsp.OCSPCertStatus.REVOKED:
        return f"OCSP says {answer.certificate_status.name.lower()}"
    if answer.revocation_reason != x509.ReasonFlags.cessation_of_operation:
        return f"OCSP names the reason {answer.revocation_reason}"
    if listed is None:
        return "not on the CRL"
    return "revoked in OCSP and CRL"
