"""The scenario runner: for each scenario, inject the faults, drive the flow, check, restore.

One scenario run:

1. if a fault cannot be injected into this ecosystem (a hook a service does not offer), the
   scenario is **skipped** with the reason — never reported as passed;
2. baseline: audit-log positions and the HSM key count;
3. faults armed before the flow (hooks of step 1), the others just before their step;
4. the user agent drives the flow (portal or partner driver); tamper faults act between steps;
5. after signing: optional changes to the signed document, revocation, then the portal's
   validation API on every signed document;
6. faults undone (services started again, IdP failures disarmed) — always, in reverse order;
7. checks: outcome, trace, validation, invariants. ``failed`` when any check fails, ``error``
   when the run itself broke (a 500, a missing form, a fault that could not be armed).

Scenarios run one after the other (audit windows and HSM counts assume nobody else signs at the
same time).
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import requests

from signlab.scenarios.agent import AgentError, Document, FlowOutcome, Refused, UserAgent, materialize
from signlab.scenarios.diagram import sequence_diagram, trace_of
from signlab.scenarios.environment import Ecosystem
from signlab.scenarios.expect import (
    Baseline,
    check_invariants,
    check_outcome,
    check_timeline,
    check_trace,
    check_trace_agrees,
    check_validation,
    trace_from,
)
from signlab.scenarios.faults import FaultPlan, plan_faults, unsupported
from signlab.scenarios.loader import samples_dir
from signlab.scenarios.model import Scenario
from signlab.scenarios.results import Check, Refusal, ScenarioResult, StepRecord
from signlab.scenarios.timeline import lab_clock_of, revoke_certificate, run_timeline, validate_signed
from signlab.scenarios.wallet import wallet_driver

__all__ = ["Progress", "run_scenario", "run_scenarios"]

Progress = Callable[[str], None]
MAX_SAD_WAIT = 330.0


def run_scenarios(scenarios: list[Scenario], eco: Ecosystem, *, repeat: int = 1,
                  progress: Progress = print) -> list[ScenarioResult]:
    """Run each scenario ``repeat`` times, in order; print progress lines."""
    results = []
    total = len(scenarios) * repeat
    n = 0
    for iteration in range(1, repeat + 1):
        for scenario in scenarios:
            n += 1
            suffix = f" (run {iteration}/{repeat})" if repeat > 1 else ""
            progress(f"[{n}/{total}] {scenario.name} — {scenario.title}{suffix}")
            result = run_scenario(scenario, eco, iteration=iteration, progress=progress)
            verdict = result.status.upper()
            progress(f"  => {verdict} in {result.duration:.1f} s" + (f": {result.reason}" if result.reason else ""))
            results.append(result)
    return results


def _say_step(progress: Progress, record: StepRecord) -> None:
    mark = {"passed": "ok", "refused": "REFUSED", "failed": "FAIL", "error": "ERROR", "skipped": "skip"}[record.status]
    detail = f" — {record.detail}" if record.detail else ""
    progress(f"    {mark:<7} {record.label:<8} {record.name} ({record.duration:.2f} s){detail}")


def run_scenario(scenario: Scenario, eco: Ecosystem, *, iteration: int = 1, progress: Progress = print) -> ScenarioResult:
    """Run one scenario against ``eco``; never raises for a scenario problem (it is in the result)."""
    result = ScenarioResult(scenario, iteration)
    start = time.monotonic()
    reason = unsupported(scenario, eco)
    if reason is not None:
        result.status, result.reason = "skipped", reason
        return result
    plan = plan_faults(scenario, eco)
    baseline = Baseline.take(eco)
    documents = materialize(scenario.documents, samples_dir())
    agent = UserAgent(eco, scenario, result, login_hint=plan.login_hint(scenario), delays=plan.delays,
                      hooks=plan.hooks, timeout=min(scenario.timeout_seconds, 120.0),
                      wallet=wallet_driver(scenario, plan.wallet_faults))
    printed = 0

    def flush() -> None:
        nonlocal printed
        for record in result.steps[printed:]:
            _say_step(progress, record)
        printed = len(result.steps)

    outcome: FlowOutcome | None = None
    try:
        agent.before(1)
        if scenario.driver == "portal":
            outcome = agent.run_portal(documents, decision=plan.decision)
        else:
            outcome = _run_partner(agent, scenario, documents, plan)
        flush()
        result.signed_documents = len(outcome.signed)
        _after_signing(agent, eco, scenario, plan, outcome, result)
    except Refused as exc:
        result.refusal = exc.refusal
    except AgentError as exc:
        result.status, result.reason = "error", f"step {exc.step}: {exc}" if exc.step else str(exc)
    except requests.RequestException as exc:
        result.status, result.reason = "error", f"HTTP failure: {exc}"
    except Exception as exc:  # a runner bug must not stop the other scenarios
        result.status, result.reason = "error", f"{exc.__class__.__name__}: {exc}"
    finally:
        for description, undo in reversed(plan.restores):
            record = StepRecord(None, f"restore: {description}")
            begin = time.monotonic()
            try:
                record.detail = undo()
            except Exception as exc:  # noqa: BLE001 - report and go on restoring the rest
                record.status, record.detail = "error", f"{exc.__class__.__name__}: {exc}"
                if result.status == "passed":
                    result.status, result.reason = "error", f"could not undo a fault: {description}: {exc}"
            record.duration = time.monotonic() - begin
            result.steps.append(record)
        flush()
    if result.transaction_id is None and outcome is not None:
        result.transaction_id = outcome.transaction_id
    transaction = trace_of(eco, result)
    result.trace = trace_from(result, baseline, transaction)
    if result.status != "error":
        result.checks += check_outcome(scenario, result)
        result.checks += check_trace(scenario, result.trace)
        result.checks += check_trace_agrees(result, transaction)
        if scenario.expect.outcome == "signed" and result.refusal is None:
            result.checks += check_validation(scenario, result.validation[len(_timeline_reports(result)):])
            result.checks += check_timeline(result.timeline_validations)
    result.checks += check_invariants(scenario, eco, baseline, documents)
    for check in result.checks:
        mark = "skip" if check.skipped else ("ok" if check.ok else "FAIL")
        progress(f"    {mark:<7} {'expect':<8} {check.name}: {check.detail}")
    failed = result.failed_checks
    if result.status == "passed" and not failed:
        # A passed row says what passed: the expected refusal, or what was signed.
        result.reason = (f"refused as expected: {result.refusal.error} at step {result.refusal.step}"
                         if result.refusal is not None else f"signed {result.signed_documents} document(s)")
    if result.status == "passed" and failed:
        first = failed[0]
        where = f"step {first.step}: " if first.step else ""
        result.status, result.reason = "failed", f"{where}{first.name}: {first.detail}" + (
            f" (+{len(failed) - 1} more)" if len(failed) > 1 else "")
    result.diagram_svg, result.diagram_note = sequence_diagram(eco, result, transaction)
    result.duration = time.monotonic() - start
    return result


# -- partner driver with tampering -----------------------------------------------------------------

def _tampered(agent: UserAgent, action: Callable[[], Any], name: str) -> None:
    """Run a tampered action: a refusal is the expected result and ends the flow (it becomes the
    scenario's outcome); success is recorded and the flow goes on (so the outcome check fails)."""
    try:
        action()
    except Refused:
        raise
    if agent.result.steps:
        agent.result.steps[-1].detail += f" — NOT refused: the '{name}' tampering was accepted"


def _run_partner(agent: UserAgent, scenario: Scenario, documents: list[Document], plan: FaultPlan) -> FlowOutcome:
    digests = [hashlib.sha256(d.content).digest() for d in documents]
    labels = [d.name for d in documents]
    verifier = base64.urlsafe_b64encode(hashlib.sha256(str(time.time()).encode()).digest()).rstrip(b"=").decode()
    code, redirect_uri = agent.authorize_as_partner(digests, labels, verifier=verifier, decision=plan.decision)
    tampers = plan.tampers
    if "pkce-mismatch" in tampers:
        wrong = verifier[::-1]
        _tampered(agent, lambda: agent.exchange_code(code, redirect_uri, wrong,
                  label="step 5: redeem the code with a different PKCE code_verifier (tampered)"), "pkce-mismatch")
    token = agent.exchange_code(code, redirect_uri, verifier, label="step 5: redeem the code for the SAD (credential token)")
    if "reuse-code" in tampers:
        _tampered(agent, lambda: agent.exchange_code(code, redirect_uri, verifier,
                  label="step 5: redeem the same authorization code again (tampered)"), "reuse-code")
    access_token = str(token["access_token"])
    if "expire-sad" in tampers:
        wait = float(token.get("expires_in", 300)) + 2.0
        if wait > MAX_SAD_WAIT:
            raise AgentError(f"the SAD lives {wait - 2:g} s; waiting longer than {MAX_SAD_WAIT:g} s is not done", step=6)
        with agent.step(6, f"fault: wait {wait:g} s until the SAD has expired (expires_in {token.get('expires_in')})"):
            time.sleep(wait)
        _tampered(agent, lambda: agent.sign_doc(access_token, digests, label="steps 6-10: signDoc with the expired SAD (tampered)"),
                  "expire-sad")
    if "substitute-digest" in tampers:
        other = [hashlib.sha256(b"substituted: " + d).digest() for d in digests]
        _tampered(agent, lambda: agent.sign_doc(access_token, other,
                  label="steps 6-10: signDoc with a digest other than the authorised one (tampered)"), "substitute-digest")
    if "expire-sad" in tampers or "substitute-digest" in tampers:
        # the tampered call was not refused: the flow "signed"; fetch nothing more
        return FlowOutcome(originals=documents, format="cades")
    answer = agent.sign_doc(access_token, digests, label="steps 6-10: signDoc with the authorised digests")
    agent.result.transaction_id = answer.get("transactionID")
    if "replay-sad" in tampers:
        _tampered(agent, lambda: agent.sign_doc(access_token, digests, label="steps 6-10: signDoc again with the same SAD (replay)"),
                  "replay-sad")
    objects = answer.get("signatureObject") or answer.get("SignatureObject") or []
    outcome = FlowOutcome(transaction_id=answer.get("transactionID"), originals=documents, format="cades",
                          certificate_serial=answer.get("certificateSerial"))
    outcome.signed = [(f"{d.name}.p7s", base64.b64decode(o)) for d, o in zip(documents, objects, strict=False)]
    if "change-document-after-hashing" in tampers:
        outcome.originals = [Document(d.name, d.content + b"\n(changed after hashing)\n") for d in documents]
        agent.result.steps.append(StepRecord(None, "fault: the documents were changed after their digests were sent (tampered)"))
    return outcome


# -- after signing: document changes, revocation, validation ---------------------------------------

def _flip_in_signed_range(pdf: bytes) -> bytes:
    """Change one byte of the PDF's binary comment line (line 2, inside the signed byte range)."""
    newline = pdf.find(b"\n")
    if newline != -1 and pdf[newline + 1:newline + 2] == b"%" and len(pdf) > newline + 3:
        i = newline + 2
        return pdf[:i] + bytes([pdf[i] ^ 0x01]) + pdf[i + 1:]
    middle = len(pdf) // 3
    return pdf[:middle] + bytes([pdf[middle] ^ 0x01]) + pdf[middle + 1:]


def _after_signing(agent: UserAgent, eco: Ecosystem, scenario: Scenario, plan: FaultPlan, outcome: FlowOutcome,
                   result: ScenarioResult) -> None:
    if not outcome.signed:
        return
    clock = lab_clock_of(eco)
    signed_at = clock.now() if clock is not None else datetime.now(UTC)  # "signing" in the timeline
    signed = list(outcome.signed)
    originals = list(outcome.originals)
    if "change-document-after-signing" in plan.tampers:
        with agent.step(None, "fault: change the signed document after signing (one byte)"):
            if outcome.format == "pades":
                signed = [(name, _flip_in_signed_range(data)) for name, data in signed]
            else:
                originals = [Document(d.name, d.content + b"\n(changed after signing)\n") for d in originals]
    if plan.revoke_reason is not None:
        revoke_certificate(agent, eco, outcome, plan.revoke_reason)
    run_timeline(agent, eco, scenario, outcome, result, signed, originals, signed_at)
    if scenario.expect.validation is None:
        return
    with agent.step(None, "validation: the portal's validation API on each signed document") as record:
        reports = validate_signed(agent, eco, outcome, signed, originals)
        result.validation += reports
        record.detail = ", ".join(f"{r.get('indication')}" + (f"/{r.get('sub_indication')}" if r.get("sub_indication") else "")
                                  for r in reports)


def _timeline_reports(result: ScenarioResult) -> list[dict[str, Any]]:
    return [r for _name, _exp, reports in result.timeline_validations for r in reports]


def refusal_text(refusal: Refusal | None) -> str:
    """One line for a refusal."""
    return "" if refusal is None else f"{refusal.error} at step {refusal.step}: {refusal.description}"


def skipped_check(name: str, why: str) -> Check:
    """A check that could not be made."""
    return Check(name, False, why, skipped=True)
