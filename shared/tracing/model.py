"""From stored spans to a transaction: exchanges between roles, arrows in time order, step timings.

An *exchange* is one labelled span: an HTTP request a service served (its SERVER span, labelled
from :data:`shared.tracing.labels.ROUTES`), a step inside a service (a :func:`flow_span`), or an
outbound call that got no traced answer (the callee was down: drawn as a failed arrow to the role
its URL belongs to). Each exchange becomes a request arrow (at its start) and a response arrow (at
its end); a step inside one role (step 8) becomes one self-arrow. The renderers draw the arrows.

Roles: the receiving role is the serving service's; the sending role is the calling service's
when the request came on the back channel (its CLIENT span is the parent), else the table's
(the signer's browser, or the role whose redirect sent the browser there).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from shared.flow import Role, step
from shared.tracing.labels import BACK, FRONT, INTERNAL, guess_label
from shared.tracing.store import TraceGroup

__all__ = ["LANES", "LANE_TITLES", "WALLET_LANES", "Arrow", "Exchange", "Transaction", "build_transaction", "lanes_for"]

LANES: tuple[str, ...] = (Role.SIGNER, Role.SCASP, Role.SSASP, Role.HSM, Role.IPSP, Role.TSP)
"""The diagram's lanes, left to right (the HSM is a lane of the SSASP, drawn beside it)."""
WALLET_LANES: tuple[str, ...] = (Role.WALLET, Role.PIDP)
"""Lanes drawn right of the IPSP only in a transaction that used the EUDI Wallet."""

LANE_TITLES = {
    Role.SIGNER: "signer (browser)", Role.SCASP: "portal", Role.SSASP: "signing service",
    Role.HSM: "HSM of the SSASP", Role.IPSP: "eID provider", Role.TSP: "CA · TSA",
    Role.WALLET: "EUDI Wallet (phone)", Role.PIDP: "PID provider",
}


def lanes_for(roles: set[str]) -> tuple[str, ...]:
    """The lanes of a diagram whose arrows touch ``roles``: the six base lanes, plus the wallet's
    two (after the IPSP) when a wallet role takes part."""
    if not roles & set(WALLET_LANES):
        return LANES
    at = LANES.index(Role.IPSP) + 1
    return LANES[:at] + WALLET_LANES + LANES[at:]


@dataclass(frozen=True)
class Exchange:
    """One labelled request and its response."""

    span_id: str
    trace_id: str
    service: str
    step: int
    response_step: int
    source: str
    target: str
    message: str
    response: str
    channel: str
    start: int
    end: int
    status_code: int | None
    outcome: str
    error: str | None = None
    error_description: str | None = None
    error_step: int | None = None
    received_error: bool = False
    summary: dict[str, Any] = field(default_factory=dict)
    response_summary: dict[str, Any] = field(default_factory=dict)
    draw: bool = True

    @property
    def failed(self) -> bool:
        """The exchange ended in an error."""
        return self.outcome == "error"

    @property
    def duration_ms(self) -> float:
        """Its duration in milliseconds."""
        return round((self.end - self.start) / 1e6, 1)

    @property
    def failure_step(self) -> int:
        """The step the failure belongs to (the error's own step when the service named one)."""
        return self.error_step or self.step

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "span_id": self.span_id, "trace_id": self.trace_id, "service": self.service, "step": self.step,
            "response_step": self.response_step, "source": self.source, "target": self.target,
            "message": self.message, "response": self.response, "channel": self.channel,
            "start": _iso(self.start), "duration_ms": self.duration_ms, "status_code": self.status_code,
            "outcome": self.outcome, "error": self.error, "error_description": self.error_description,
            "error_step": self.error_step, "summary": self.summary, "response_summary": self.response_summary,
        }


@dataclass(frozen=True)
class Arrow:
    """One arrow of the sequence diagram."""

    index: int
    time: int
    step: int
    source: str
    target: str
    label: str
    kind: str
    """``request``, ``response`` or ``self``."""
    channel: str
    failed: bool
    origin: bool
    """This arrow is where the transaction failed first."""
    error: str | None
    exchange: int
    offset_ms: float
    duration_ms: float | None
    summary: dict[str, Any]
    span_id: str = ""

    def as_dict(self) -> dict[str, Any]:
        """JSON form (the live view draws from it)."""
        return {"index": self.index, "step": self.step, "source": self.source, "target": self.target,
                "label": self.label, "kind": self.kind, "channel": self.channel, "failed": self.failed,
                "origin": self.origin, "error": self.error, "exchange": self.exchange, "offset_ms": self.offset_ms,
                "duration_ms": self.duration_ms, "summary": self.summary,
                "span_id": self.span_id}


@dataclass
class Transaction:
    """One signing transaction: stitched traces and the exchanges between roles."""

    id: str
    trace_ids: list[str]
    transaction_ids: list[str]
    exchanges: list[Exchange]
    start: int
    end: int
    span_count: int

    @property
    def failure(self) -> Exchange | None:
        """Where the transaction failed first: the earliest error that did not just carry an
        earlier one on (an error response arriving at a redirect URI)."""
        errors = [e for e in self.exchanges if e.failed]
        own = [e for e in errors if not e.received_error]
        candidates = own or errors
        return min(candidates, key=lambda e: e.end) if candidates else None

    @property
    def outcome(self) -> str:
        """``ok`` or ``error``."""
        return "error" if self.failure else "ok"

    @property
    def steps(self) -> list[int]:
        """The flow steps of the drawn arrows, in order of first appearance."""
        seen: list[int] = []
        for arrow in self.arrows():
            if arrow.step not in seen:
                seen.append(arrow.step)
        return seen

    @property
    def lanes(self) -> tuple[str, ...]:
        """The lanes of this transaction's diagram (:func:`lanes_for`)."""
        return lanes_for({role for e in self.exchanges for role in (e.source, e.target)})

    @property
    def duration_ms(self) -> float:
        """From the first span's start to the last span's end, in ms."""
        return round((self.end - self.start) / 1e6, 1)

    def arrows(self) -> list[Arrow]:
        """The arrows in time order (requests at their start, responses at their end)."""
        failure = self.failure
        events: list[tuple[int, int, int, Exchange, str]] = []
        drawn = [e for e in self.exchanges if e.draw or e.failed]
        for number, exchange in enumerate(drawn):
            if exchange.channel == INTERNAL and exchange.source == exchange.target:
                events.append((exchange.start, 0, number, exchange, "self"))
                continue
            events.append((exchange.start, 0, number, exchange, "request"))
            events.append((exchange.end, 1, -number, exchange, "response"))
        events.sort(key=lambda item: (item[0], item[1], item[2]))
        arrows = []
        for index, (moment, _, _, exchange, kind) in enumerate(events):
            number = drawn.index(exchange)
            is_failure = exchange.failed and kind in ("response", "self")
            origin = is_failure and exchange is failure
            error_text = f"{exchange.error}: {exchange.error_description}" if is_failure and exchange.error else None
            if kind == "request":
                label = exchange.message + (" (via browser)" if exchange.channel == FRONT and exchange.source != Role.SIGNER else "")
                source, target, step_no, summary, duration = exchange.source, exchange.target, exchange.step, exchange.summary, None
            elif kind == "response":
                label = exchange.response + (f" [{exchange.status_code}]" if exchange.status_code else "")
                source = exchange.target
                target = Role.SIGNER if exchange.channel == FRONT else exchange.source
                step_no = exchange.failure_step if is_failure else exchange.response_step
                summary, duration = exchange.response_summary, exchange.duration_ms
            else:
                label, source, target, step_no = exchange.message, exchange.source, exchange.target, exchange.step
                summary, duration = {"request": exchange.summary, "result": exchange.response_summary}, exchange.duration_ms
            if is_failure:
                label = f"✗ {error_text or 'failed'}"
            arrows.append(Arrow(index, moment, step_no, str(source), str(target), label, kind, exchange.channel,
                                is_failure, origin, error_text, number, round((moment - self.start) / 1e6, 1),
                                duration, summary, exchange.span_id))
        return arrows

    def step_timings(self) -> list[dict[str, Any]]:
        """Per step: first and last moment (ms from the start), duration, number of arrows, outcome."""
        table: dict[int, dict[str, Any]] = {}
        for arrow in self.arrows():
            row = table.setdefault(arrow.step, {"step": arrow.step, "name": step(arrow.step).name,
                                                "roles": f"{step(arrow.step).source} → {step(arrow.step).target}",
                                                "first_ms": arrow.offset_ms, "last_ms": arrow.offset_ms,
                                                "arrows": 0, "outcome": "ok"})
            row["first_ms"] = min(row["first_ms"], arrow.offset_ms)
            row["last_ms"] = max(row["last_ms"], arrow.offset_ms)
            row["arrows"] += 1
            if arrow.failed:
                row["outcome"] = "error"
        for row in table.values():
            row["duration_ms"] = round(row["last_ms"] - row["first_ms"], 1)
        return [table[n] for n in sorted(table)]

    def as_dict(self) -> dict[str, Any]:
        """The JSON export (``signlab trace ID --format json``, the live view's endpoint)."""
        failure = self.failure
        return {
            "id": self.id,
            "trace_ids": self.trace_ids,
            "transaction_ids": self.transaction_ids,
            "start": _iso(self.start),
            "duration_ms": self.duration_ms,
            "outcome": self.outcome,
            "failure": None if failure is None else {
                "step": failure.failure_step, "service": failure.service, "error": failure.error,
                "error_description": failure.error_description, "message": failure.message,
            },
            "steps": self.steps,
            "step_timings": self.step_timings(),
            "lanes": [{"role": str(lane), "title": LANE_TITLES[lane]} for lane in self.lanes],
            "arrows": [a.as_dict() for a in self.arrows()],
            "exchanges": [e.as_dict() for e in self.exchanges],
            "span_count": self.span_count,
        }

    def summary_row(self) -> dict[str, Any]:
        """One line of the transaction list."""
        failure = self.failure
        return {"id": self.id, "transaction_ids": self.transaction_ids, "start": _iso(self.start),
                "duration_ms": self.duration_ms, "outcome": self.outcome, "steps": self.steps,
                "failure": None if failure is None else f"step {failure.failure_step}: {failure.error}"}


def _iso(ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns / 1e9)) + f".{int(ns / 1e6) % 1000:03d}Z"


def _json(value: Any) -> dict[str, Any]:
    if not value:
        return {}
    try:
        parsed = json.loads(value)
    except (ValueError, TypeError):
        return {"value": str(value)}
    return parsed if isinstance(parsed, dict) else {"value": parsed}


def build_transaction(group: TraceGroup) -> Transaction:
    """The transaction of a stitched group of spans."""
    spans = group.spans
    by_id = {s["span_id"]: s for s in spans}
    children: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        if span.get("parent_id"):
            children.setdefault(span["parent_id"], []).append(span)
    exchanges: list[tuple[Exchange, bool]] = []
    ids: list[str] = []
    for span in spans:
        attrs = span.get("attributes", {})
        for tx in attrs.get("signlab.transaction_ids") or ():
            if tx not in ids:
                ids.append(tx)
        if "signlab.message" in attrs and "signlab.step" in attrs:
            exchanges.append((_exchange_from_label(span, attrs, by_id), bool(attrs.get("signlab.inherit_step"))))
        elif span.get("kind") == "CLIENT":
            orphan = _unanswered_call(span, attrs, children.get(span["span_id"], []))
            if orphan is not None:
                exchanges.append((orphan, False))
    # Supporting calls (JWKS, CRL, OCSP …) take the step of the latest event before them.
    timeline = sorted([(e.start, e.step) for e, inherit in exchanges if not inherit] +
                      [(e.end, e.response_step) for e, inherit in exchanges if not inherit])
    resolved = []
    for exchange, inherit in exchanges:
        if inherit:
            earlier = [number for moment, number in timeline if moment <= exchange.start]
            if earlier:
                exchange = _replace_step(exchange, earlier[-1])
        resolved.append(exchange)
    resolved.sort(key=lambda e: (e.start, e.end))
    return Transaction(group.id, group.trace_ids, ids, resolved, group.start, group.end, len(spans))


def _replace_step(exchange: Exchange, number: int) -> Exchange:
    from dataclasses import replace

    return replace(exchange, step=number, response_step=number)


def _exchange_from_label(span: dict[str, Any], attrs: dict[str, Any], by_id: dict[str, dict[str, Any]]) -> Exchange:
    source = attrs.get("signlab.source_role", "")
    parent = by_id.get(span.get("parent_id") or "")
    if span.get("kind") == "SERVER" and parent is not None and parent.get("kind") == "CLIENT":
        caller = parent.get("role") or parent.get("attributes", {}).get("signlab.role")
        if caller and caller != span.get("role"):
            source = caller  # the back-channel caller, as traced
    status = attrs.get("http.status_code", attrs.get("http.response.status_code"))
    outcome = attrs.get("signlab.outcome") or ("error" if span.get("status") == "ERROR" else "ok")
    error = attrs.get("signlab.error")
    if outcome == "error" and not error and span.get("exceptions"):
        error = span["exceptions"][0].get("type")
    return Exchange(
        span_id=span["span_id"], trace_id=span["trace_id"], service=span.get("service") or "?",
        step=int(attrs["signlab.step"]), response_step=int(attrs.get("signlab.response_step") or attrs["signlab.step"]),
        source=source, target=attrs.get("signlab.target_role", span.get("role") or "?"),
        message=attrs["signlab.message"], response=attrs.get("signlab.response", "response"),
        channel=attrs.get("signlab.channel", BACK), start=span["start"], end=span["end"],
        status_code=int(status) if isinstance(status, int | str) and str(status).isdigit() else None,
        outcome=outcome, error=error, error_description=attrs.get("signlab.error_description"),
        error_step=attrs.get("signlab.error_step"), received_error=bool(attrs.get("signlab.received_error")),
        summary=_json(attrs.get("signlab.summary")), response_summary=_json(attrs.get("signlab.response_summary")),
        draw=bool(attrs.get("signlab.draw", True)),
    )


def _unanswered_call(span: dict[str, Any], attrs: dict[str, Any], children: list[dict[str, Any]]) -> Exchange | None:
    """A CLIENT span whose callee recorded nothing: drawn only when it failed (callee down)."""
    if any(c.get("kind") == "SERVER" for c in children):
        return None
    status = attrs.get("http.status_code", attrs.get("http.response.status_code"))
    failed = span.get("status") == "ERROR" or bool(span.get("exceptions"))
    if not failed:
        return None
    label = guess_label(attrs.get("signlab.peer_method", "GET"), attrs.get("signlab.peer_path", "/"))
    if label is None:
        return None  # not a SignLab endpoint: the caller's own span carries the error
    exception = (span.get("exceptions") or [{}])[0]
    return Exchange(
        span_id=span["span_id"], trace_id=span["trace_id"], service=span.get("service") or "?",
        step=label.step, response_step=label.step, source=span.get("role") or "?", target=str(label.target),
        message=label.message,
        response="no answer", channel=BACK, start=span["start"], end=span["end"],
        status_code=int(status) if isinstance(status, int) else None, outcome="error",
        error="unavailable", error_description=f"{attrs.get('signlab.peer', '')}: {exception.get('type') or 'no answer'}",
        summary={"to": attrs.get("signlab.peer", ""), "path": attrs.get("signlab.peer_path", "")},
    )
