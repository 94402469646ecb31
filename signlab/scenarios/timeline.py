"""After signing: the scenario's timeline, and the validation and revocation calls it shares with the runner.

A scenario signs "now", then its ``timeline:`` runs in order (``scenarios/README.md``):

* ``clock: +1d`` — the lab clock moves by the offset (:mod:`shared.clock`: the runner writes the
  clock file every service reads; the machine's clock never changes);
* ``revoke: {reason}`` — the CA revokes the signer's certificate (its admin API);
* ``trusted_list: {service, status}`` — a listed service changes status, dated at the lab clock's now
  (the CA's lab admin API ``/admin/trusted-list``);
* ``validate: {at, expect}`` — the portal's validation API validates every signed document at
  ``at`` — ``now`` (the lab clock), ``signing`` or ``signing+10m`` (from the lab time the flow
  signed), an offset from now (``+1d``) or ISO 8601 — and the reports are checked against ``expect``.

The lab clock and the trusted list are put back after the scenario by the fault plan's restores
(:func:`signlab.scenarios.faults.plan_faults`).
"""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

from shared.clock import LabClock, parse_offset
from signlab.scenarios.agent import AgentError, Document, FlowOutcome, UserAgent
from signlab.scenarios.environment import Ecosystem
from signlab.scenarios.model import Scenario
from signlab.scenarios.results import ScenarioResult

__all__ = ["lab_clock_of", "resolve_validation_time", "revoke_certificate", "run_timeline", "validate_signed"]


def lab_clock_of(eco: Ecosystem) -> LabClock | None:
    """The ecosystem's lab clock, when the runner can write its clock file."""
    return LabClock(eco.clock_file) if eco.clock_file is not None else None


def resolve_validation_time(text: str, signed_at: dt.datetime) -> str | None:
    """What to send as the API's ``at``: None for ``now``; ``signing[±offset]`` made absolute from
    ``signed_at``; anything else as written (the portal reads offsets from its lab clock)."""
    value = text.strip()
    if value.lower() == "now":
        return None
    if value.lower().startswith("signing"):
        rest = value[len("signing"):]
        moment = signed_at + dt.timedelta(seconds=parse_offset(rest) if rest else 0)
        return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return value


def validate_signed(agent: UserAgent, eco: Ecosystem, outcome: FlowOutcome, signed: list[tuple[str, bytes]],
                    originals: list[Document], *, at: str | None = None) -> list[dict[str, Any]]:
    """The portal's validation API on each signed document (at ``at``, default now); the reports."""
    reports = []
    for i, (name, data) in enumerate(signed):
        body: dict[str, Any] = {"signed": base64.b64encode(data).decode(), "name": name}
        if outcome.format in ("cades", "jades") and i < len(originals):
            body["original"] = base64.b64encode(originals[i].content).decode()
        if at is not None:
            body["at"] = at
        response = agent.send("POST", f"{eco.url('portal')}/api/v1/validate", step=None, json=body,
                              auth=agent.partner_application(), headers={"Accept": "application/json"})
        if response.status_code != 200:
            raise AgentError(f"the portal's validation API answered HTTP {response.status_code}: {response.text[:200]}")
        reports.append(response.json())
    return reports


def revoke_certificate(agent: UserAgent, eco: Ecosystem, outcome: FlowOutcome, reason: str) -> None:
    """The CA revokes the signer's certificate through its admin API."""
    serial = outcome.certificate_serial
    with agent.step(None, f"the CA revokes the signer's certificate ({reason})"):
        if not serial:
            raise AgentError("the certificate serial is not known (the portal's transaction does not report it)")
        token = eco.secret("SIGNLAB_CA_ADMIN_TOKEN") or ""
        response = agent.send("POST", f"{eco.url('ca')}/api/v1/certificates/{serial}/revoke", step=None,
                              json={"reason": reason},
                              headers={"Authorization": f"Bearer {token}", "Accept": "application/json"})
        if response.status_code >= 300:
            raise AgentError(f"the CA refused to revoke {serial}: HTTP {response.status_code} {response.text[:200]}")


def change_trusted_list(agent: UserAgent, eco: Ecosystem, service: str, status: str) -> None:
    """A listed service changes status at the lab clock's now (the CA's lab admin API)."""
    with agent.step(None, f"the trusted list: the {service} service becomes {status}") as record:
        token = eco.secret("SIGNLAB_CA_ADMIN_TOKEN") or ""
        response = agent.send("POST", f"{eco.url('ca')}/admin/trusted-list/{service}", step=None,
                              json={"status": status, "note": f"scenario {agent.scenario.name}"},
                              headers={"Authorization": f"Bearer {token}", "Accept": "application/json"})
        if response.status_code != 201:
            raise AgentError(f"the CA refused the trusted-list change: HTTP {response.status_code} {response.text[:200]}")
        record.detail = f"since {response.json().get('since')}"


def run_timeline(agent: UserAgent, eco: Ecosystem, scenario: Scenario, outcome: FlowOutcome, result: ScenarioResult,
                 signed: list[tuple[str, bytes]], originals: list[Document], signed_at: dt.datetime) -> None:
    """Run ``scenario.timeline`` in order (see the module docstring)."""
    clock = lab_clock_of(eco)
    for item in scenario.timeline:
        if item.kind == "clock":
            if clock is None:
                raise AgentError("moving the lab clock needs its clock file (a local runtime)")
            with agent.step(None, f"timeline: {item.describe()}") as record:
                clock.advance(parse_offset(str(item.params["offset"])), note=f"scenario {scenario.name}")
                record.detail = clock.badge()
        elif item.kind == "revoke":
            revoke_certificate(agent, eco, outcome, str(item.params.get("reason", "keyCompromise")))
        elif item.kind == "trusted_list":
            change_trusted_list(agent, eco, str(item.params["service"]), str(item.params["status"]))
        else:
            at = str(item.params.get("at", "now"))
            with agent.step(None, f"timeline: {item.describe()}") as record:
                reports = validate_signed(agent, eco, outcome, signed, originals,
                                          at=resolve_validation_time(at, signed_at))
                record.detail = ", ".join(
                    f"{r.get('indication')}" + (f"/{r.get('sub_indication')}" if r.get("sub_indication") else "")
                    + f" at {r.get('validation_time')}" for r in reports)
            assert item.expect is not None
            result.timeline_validations.append((f"validation at {at}", item.expect, reports))
            result.validation += reports
