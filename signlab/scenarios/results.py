"""What a scenario run records: HTTP exchanges, steps, checks, and the verdict.

These records feed the progress output, the summary table, the JUnit XML and the HTML report.
Secrets are masked when an exchange is recorded (:func:`signlab.scenarios.messages.redact`), so
nothing here needs care when written to a report.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

from signlab.scenarios.model import Scenario

__all__ = ["Check", "Exchange", "Refusal", "ScenarioResult", "StepRecord", "TraceEvent"]

Status = Literal["passed", "failed", "error", "skipped", "refused"]
"""``refused`` is for steps only: the ecosystem refused at this step (expected in negative scenarios)."""


@dataclass
class Exchange:
    """One HTTP request and its answer, as the user agent saw it (decoded and redacted)."""

    step: int | None
    """The flow step its answer reached (:data:`shared.tracing.labels.ROUTES`' ``response_step``:
    the portal's callback answers at step 10), or the step the caller named; None: no step owns it."""
    method: str
    url: str
    status: int | None
    request: dict[str, Any]
    """Decoded request parameters / JSON body (secrets masked, JWTs decoded)."""
    response: dict[str, Any]
    """Decoded answer: status, Location (with its parameters), JSON body, or an HTML summary."""
    started: float
    duration: float


@dataclass
class StepRecord:
    """One action of the scenario (a protocol step the agent drives, a fault, a check phase)."""

    step: int | None
    """The flow step (1-10) it belongs to; None for runner phases (setup, validation …)."""
    name: str
    status: Status = "passed"
    detail: str = ""
    started: float = field(default_factory=time.time)
    duration: float = 0.0
    exchanges: list[Exchange] = field(default_factory=list)

    @property
    def label(self) -> str:
        """``step 5`` or ``-`` for a runner phase."""
        return f"step {self.step}" if self.step else "-"


@dataclass(frozen=True)
class Refusal:
    """The flow was refused: the protocol error, its description and the step it happened at."""

    error: str
    description: str
    step: int | None
    where: str
    """Which exchange carried the refusal (method + URL, or the portal transaction)."""


@dataclass(frozen=True)
class Check:
    """One expectation or invariant, checked."""

    name: str
    ok: bool
    detail: str
    step: int | None = None
    skipped: bool = False
    """True when the check could not be made (e.g. no data directory in docker mode); not a pass."""


@dataclass(frozen=True)
class TraceEvent:
    """One observed event of the flow, from the user agent, an audit log, or the trace."""

    time: float
    step: int
    source: str
    """``agent``, ``signer audit``, ``ca issuance log``, ``trace`` …"""
    name: str


@dataclass
class ScenarioResult:
    """The outcome of one scenario run."""

    scenario: Scenario
    iteration: int = 1
    status: Status = "passed"
    reason: str = ""
    """One line: why it failed / errored / was skipped."""
    started: float = field(default_factory=time.time)
    duration: float = 0.0
    steps: list[StepRecord] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    trace: list[TraceEvent] = field(default_factory=list)
    refusal: Refusal | None = None
    signed_documents: int = 0
    transaction_id: str | None = None
    validation: list[dict[str, Any]] = field(default_factory=list)
    timeline_validations: list[tuple[str, Any, list[dict[str, Any]]]] = field(default_factory=list)
    """The timeline's validations: (name, expectation, the portal's reports)."""
    diagram_svg: str | None = None
    diagram_note: str = ""

    @property
    def id(self) -> str:
        """``name`` or ``name#2`` for a repeat."""
        return self.scenario.name if self.iteration == 1 else f"{self.scenario.name}#{self.iteration}"

    @property
    def failed_checks(self) -> list[Check]:
        """Checks that were made and failed."""
        return [c for c in self.checks if not c.ok and not c.skipped]
