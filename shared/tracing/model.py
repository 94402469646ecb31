"""From stored spans to a transaction: exchanges between roles, arrows in time order, step states.

An *exchange* is one labelled span: an HTTP request a service served (its SERVER span, labelled
from :data:`shared.tracing.labels.ROUTES`), a step inside a service (a :func:`flow_span`), or an
outbound call that got no traced answer (the callee was down: drawn as a failed arrow to the role
its URL belongs to). Each exchange becomes a request arrow (at its start) and a response arrow (at
its end); a step inside one role (step 8) becomes one self-arrow. The renderers draw the arrows.

What a transaction is (design §6, the fidelity rule):

* **kind** — a *signing* (person signing or certificate first) when the group holds an exchange
  of the signing flow; otherwise *activity* (page views, downloads, stand-alone validations,
  metadata fetches), which ``latest`` and the dashboard never show as a transaction.
* **its end** — the end of its last signing-flow exchange. Exchanges that start later (the result
  page reloaded, a download, a status poll, a validation of the signed file) are not part of it:
  they never extend its duration or its diagram (:attr:`Transaction.later`).
* **outcome** — ``completed`` (the completing exchange answered: the portal's callback, or
  ``signDoc`` / ``signHash`` called by a partner directly), ``refused`` at the step where the
  first failure happened, ``pending`` while it runs, ``abandoned`` when it stopped without an end
  for :data:`ABANDONED_AFTER_SECONDS`.
* **where it failed** — the first failed exchange that did not just carry an earlier failure on.
  An exchange *relays* a failure when it received it (an OAuth2 error arriving at a redirect URI)
  or when one of its own callees failed (the SSASP's signDoc answering the HSM's error, the
  portal's callback answering the SSASP's). Relayed failures are drawn at the step of the failure
  they carry, so exactly one step is marked failed and the later steps are "not reached".

Roles: the receiving role is the serving service's; the sending role is the calling service's
when the request came on the back channel (its CLIENT span is the parent), else the table's
(the signer's browser, or the role whose redirect sent the browser there).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from typing import Any

from shared.flow import CERTIFICATE_FIRST_ORDER, PERSON_SIGNING_ORDER, Role, step, step_in_text
from shared.tracing.labels import BACK, FRONT, INTERNAL, guess_label
from shared.tracing.store import TraceGroup

__all__ = [
    "ABANDONED",
    "ABANDONED_AFTER_SECONDS",
    "ACTIVITY",
    "COMPLETED",
    "LANES",
    "LANE_TITLES",
    "PENDING",
    "REFUSED",
    "SIGNING",
    "WALLET_LANES",
    "Arrow",
    "Exchange",
    "Transaction",
    "build_transaction",
    "describe_facts",
    "lanes_for",
    "shown_facts",
]

LANES: tuple[str, ...] = (Role.SIGNER, Role.SCASP, Role.SSASP, Role.HSM, Role.IPSP, Role.TSP)
"""The diagram's lanes, left to right (the HSM is a lane of the SSASP, drawn beside it)."""
WALLET_LANES: tuple[str, ...] = (Role.WALLET, Role.PIDP)
"""Lanes drawn right of the IPSP only in a transaction that used the EUDI Wallet."""

LANE_TITLES = {
    Role.SIGNER: "signer (browser)", Role.SCASP: "portal", Role.SSASP: "signing service",
    Role.HSM: "HSM of the SSASP", Role.IPSP: "eID provider", Role.TSP: "CA · TSA",
    Role.WALLET: "EUDI Wallet (phone)", Role.PIDP: "PID provider",
}

SIGNING = "signing"
"""A signing transaction (person signing or certificate first), from step 1 to its end."""
ACTIVITY = "activity"
"""Traced requests that are no signing: page views, downloads, validations, metadata."""

COMPLETED, REFUSED, PENDING, ABANDONED = "completed", "refused", "pending", "abandoned"
"""The outcomes of a signing transaction."""

ABANDONED_AFTER_SECONDS = 600
"""A signing with no end and no exchange for this long was abandoned (the portal's default
transaction lifetime, ``SIGNLAB_PORTAL_TRANSACTION_TTL_SECONDS``: after it, the portal refuses the
signer's return anyway)."""


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
    activity: bool = False
    """A page view, download, validation or administrative call (never extends a transaction)."""
    inherit: bool = False
    """A supporting call (metadata, keys, CRLs, certificates, time-stamps)."""
    completes: bool = False
    """Its successful answer completes the signing when nothing traced called it."""
    caller_traced: bool = False
    """A traced service called it (its parent span is another service's)."""
    parent_id: str | None = None
    relays: bool = False
    """It failed only because it carried an earlier failure on (see the module docstring)."""
    wraps: bool = False
    """It failed because a step it encloses failed (a callee, or a step inside it)."""

    @property
    def failed(self) -> bool:
        """The exchange ended in an error."""
        return self.outcome == "error"

    @property
    def flow(self) -> bool:
        """An exchange of the signing flow (neither activity nor a supporting call)."""
        return not self.activity and not self.inherit

    @property
    def duration_ms(self) -> float:
        """Its duration in milliseconds."""
        return round((self.end - self.start) / 1e6, 1)

    @property
    def failure_step(self) -> int:
        """The step its failure belongs to: the innermost step its error names (an error relayed
        by several roles names each), else the step the service attached, else its own step."""
        return step_in_text(self.error_description) or self.error_step or self.step

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "span_id": self.span_id, "trace_id": self.trace_id, "service": self.service, "step": self.step,
            "response_step": self.response_step, "source": self.source, "target": self.target,
            "message": self.message, "response": self.response, "channel": self.channel,
            "start": _iso(self.start), "duration_ms": self.duration_ms, "status_code": self.status_code,
            "outcome": self.outcome, "error": self.error, "error_description": self.error_description,
            "error_step": self.error_step, "relays": self.relays or self.wraps,
            "summary": self.summary, "response_summary": self.response_summary,
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
    """This arrow is where the transaction failed."""
    error: str | None
    exchange: int
    offset_ms: float
    duration_ms: float | None
    summary: dict[str, Any]
    span_id: str = ""
    relay: bool = False
    """It carries the failure of an earlier arrow on (drawn at that failure's step)."""

    def as_dict(self) -> dict[str, Any]:
        """JSON form (the live view draws from it)."""
        return {"index": self.index, "step": self.step, "source": self.source, "target": self.target,
                "label": self.label, "kind": self.kind, "channel": self.channel, "failed": self.failed,
                "origin": self.origin, "relay": self.relay, "error": self.error, "exchange": self.exchange,
                "offset_ms": self.offset_ms, "duration_ms": self.duration_ms, "summary": self.summary,
                "span_id": self.span_id}


@dataclass
class Transaction:
    """One signing transaction (or one group of activity): stitched traces, exchanges between roles.

    :ivar exchanges: the exchanges up to the transaction's end, in time order.
    :ivar later: exchanges of the same traces that started after the end (result page reloads,
        downloads, status polls): kept out of the diagram, the steps and the duration.
    :ivar now: the moment the outcome is judged at (ns; ``pending`` vs ``abandoned``).
    """

    id: str
    trace_ids: list[str]
    transaction_ids: list[str]
    exchanges: list[Exchange]
    start: int
    end: int
    span_count: int
    later: list[Exchange] = field(default_factory=list)
    now: int = 0

    # -- what it is --------------------------------------------------------------------------------

    @property
    def kind(self) -> str:
        """:data:`SIGNING` or :data:`ACTIVITY`."""
        return SIGNING if any(e.flow for e in self.exchanges) else ACTIVITY

    @property
    def failure(self) -> Exchange | None:
        """Where the transaction failed: the earliest failed exchange that did not just carry an
        earlier failure on (when every failure is relayed — the origin was not traced — the
        earliest of them)."""
        errors = [e for e in self.exchanges if e.failed]
        own = [e for e in errors if not e.relays and not e.wraps]
        candidates = own or errors
        return min(candidates, key=lambda e: (e.end, e.start)) if candidates else None

    @property
    def failure_step(self) -> int | None:
        """The step the transaction failed at (None when it did not fail)."""
        failure = self.failure
        return None if failure is None else failure.failure_step

    @property
    def completed(self) -> bool:
        """The completing exchange answered without error (and nothing failed)."""
        return self.failure is None and any(e.completes and not e.caller_traced and not e.failed
                                            for e in self.exchanges)

    @property
    def outcome(self) -> str:
        """``completed``, ``refused``, ``pending`` or ``abandoned`` for a signing; ``ok`` or
        ``error`` for activity."""
        if self.kind == ACTIVITY:
            return "error" if self.failure else "ok"
        if self.failure is not None:
            return REFUSED
        if self.completed:
            return COMPLETED
        idle = (self.now or time.time_ns()) - self.end
        return ABANDONED if idle > ABANDONED_AFTER_SECONDS * 1e9 else PENDING

    @property
    def order(self) -> tuple[int, ...]:
        """The step order of its flow (:data:`shared.flow.CERTIFICATE_FIRST_ORDER` or person signing)."""
        return CERTIFICATE_FIRST_ORDER if self.facts.get("flow") == "certificate-first" else PERSON_SIGNING_ORDER

    @property
    def current_step(self) -> int | None:
        """Where the flow is (or stopped): the failure's step, else the step of the last arrow."""
        if self.failure is not None:
            return self.failure_step
        arrows = self.arrows()
        return arrows[-1].step if arrows else None

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
        """From its first exchange's start to its end, in ms (later views never count)."""
        return round((self.end - self.start) / 1e6, 1)

    @property
    def facts(self) -> dict[str, Any]:
        """What a trainer tells transactions apart by: ``person`` (name and masked identifier),
        ``qualifier``, ``format``, ``level``, ``flow``, ``documents``, ``eid`` and ``loa`` — each
        when the trace shows it (the portal's signing request, the PAR, the ID token)."""
        return _facts(self.exchanges)

    # -- the diagram ---------------------------------------------------------------------------------

    def arrows(self) -> list[Arrow]:
        """The arrows in time order (requests at their start, responses at their end)."""
        failure = self.failure
        failure_step = failure.failure_step if failure is not None else None
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
        for index, (moment, _, number, exchange, kind) in enumerate(events):
            number = abs(number)
            carried = exchange is not failure and failure_step is not None and (
                (exchange.relays and exchange.failed) or (exchange.wraps and kind == "response"))
            is_failure = exchange.failed and kind in ("response", "self") and not (exchange.wraps and kind == "self")
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
                if exchange.wraps:
                    label += f" (interrupted by the step-{failure_step} failure)"
            if carried:
                step_no = failure_step  # type: ignore[assignment] - not None when carried
            if is_failure:
                label = (f"✗ carries the step-{failure_step} failure: {error_text or 'failed'}" if carried
                         else f"✗ {error_text or 'failed'}")
            arrows.append(Arrow(index, moment, step_no, str(source), str(target), label, kind, exchange.channel,
                                is_failure, origin, error_text, number, round((moment - self.start) / 1e6, 1),
                                duration, summary, exchange.span_id, carried))
        return arrows

    def step_states(self) -> list[dict[str, Any]]:
        """Each step of the flow's order: ``done``, ``failed`` (the one step a refusal happened
        at), ``current`` (where a pending flow is), ``stopped`` (where an abandoned one stopped),
        ``not reached`` or ``not shown`` (a step before the end that left no trace, e.g. step 1 of
        a partner calling the SSASP directly)."""
        reached = set(self.steps)
        outcome = self.outcome
        stop = self.current_step
        order = self.order
        stop_at = order.index(stop) if stop in order else len(order) - 1
        states = []
        for position, number in enumerate(order):
            if number == stop and outcome == REFUSED:
                state = "failed"
            elif number == stop and outcome == PENDING:
                state = "current"
            elif number == stop and outcome == ABANDONED:
                state = "stopped"
            elif number in reached:
                state = "done"
            elif position > stop_at and outcome != COMPLETED:
                state = "not reached"
            else:
                state = "not shown"
            flow_step = step(number)
            states.append({"step": number, "name": flow_step.name, "roles": f"{flow_step.source} → {flow_step.target}",
                           "state": state})
        return states

    def step_timings(self) -> list[dict[str, Any]]:
        """Per step of the flow's order: first and last moment (ms from the start), duration,
        number of arrows, and its state (:meth:`step_states`; steps without arrows have no times)."""
        table: dict[int, dict[str, Any]] = {}
        for arrow in self.arrows():
            row = table.setdefault(arrow.step, {"first_ms": arrow.offset_ms, "last_ms": arrow.offset_ms, "arrows": 0})
            row["first_ms"] = min(row["first_ms"], arrow.offset_ms)
            row["last_ms"] = max(row["last_ms"], arrow.offset_ms)
            row["arrows"] += 1
        rows = []
        for state in self.step_states():
            timing = table.get(state["step"])
            if timing is None and state["state"] == "not shown":
                continue
            row = {**state, "outcome": state["state"], "first_ms": None, "last_ms": None, "duration_ms": None,
                   "arrows": 0}
            if timing is not None:
                row.update(timing, duration_ms=round(timing["last_ms"] - timing["first_ms"], 1))
            rows.append(row)
        return rows

    def as_dict(self) -> dict[str, Any]:
        """The JSON export (``signlab trace ID --format json``, the live view's endpoint)."""
        failure = self.failure
        return {
            "id": self.id,
            "kind": self.kind,
            "trace_ids": self.trace_ids,
            "transaction_ids": self.transaction_ids,
            "start": _iso(self.start),
            "duration_ms": self.duration_ms,
            "outcome": self.outcome,
            "current_step": self.current_step,
            "failure": None if failure is None else {
                "step": failure.failure_step, "service": failure.service, "error": failure.error,
                "error_description": failure.error_description, "message": failure.message,
            },
            "facts": self.facts,
            "steps": self.steps,
            "step_states": self.step_states(),
            "step_timings": self.step_timings(),
            "lanes": [{"role": str(lane), "title": LANE_TITLES[lane]} for lane in self.lanes],
            "arrows": [a.as_dict() for a in self.arrows()],
            "exchanges": [e.as_dict() for e in self.exchanges],
            "later_views": len(self.later),
            "span_count": self.span_count,
        }

    def summary_row(self) -> dict[str, Any]:
        """One line of the transaction list."""
        failure = self.failure
        return {"id": self.id, "kind": self.kind, "transaction_ids": self.transaction_ids, "start": _iso(self.start),
                "duration_ms": self.duration_ms, "outcome": self.outcome, "steps": self.steps,
                "current_step": self.current_step, "facts": self.facts,
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


def build_transaction(group: TraceGroup, *, now: int | None = None) -> Transaction:
    """The transaction of a stitched group of spans.

    :param now: when the outcome is judged (ns since the epoch; default: now).
    """
    spans = group.spans
    by_id = {s["span_id"]: s for s in spans}
    children: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        if span.get("parent_id"):
            children.setdefault(span["parent_id"], []).append(span)
    exchanges: list[Exchange] = []
    ids: list[str] = []
    for span in spans:
        attrs = span.get("attributes", {})
        for tx in attrs.get("signlab.transaction_ids") or ():
            if tx not in ids:
                ids.append(tx)
        if "signlab.message" in attrs and "signlab.step" in attrs:
            exchanges.append(_exchange_from_label(span, attrs, by_id))
        elif span.get("kind") == "CLIENT":
            orphan = _unanswered_call(span, attrs, children.get(span["span_id"], []))
            if orphan is not None:
                exchanges.append(orphan)
    # Supporting calls (JWKS, CRL, OCSP …) take the step of the latest event before them.
    timeline = sorted([(e.start, e.step) for e in exchanges if not e.inherit] +
                      [(e.end, e.response_step) for e in exchanges if not e.inherit])
    resolved = []
    for exchange in exchanges:
        if exchange.inherit:
            earlier = [number for moment, number in timeline if moment <= exchange.start]
            if earlier:
                exchange = replace(exchange, step=earlier[-1], response_step=earlier[-1])
        resolved.append(exchange)
    resolved = _mark_relays(resolved, by_id)
    resolved.sort(key=lambda e: (e.start, e.end))
    flow = [e for e in resolved if e.flow]
    if flow:
        # A signing ends with its last signing-flow exchange; what starts later is not part of it.
        end = max(e.end for e in flow)
        kept = [e for e in resolved if e.start <= end]
        later = [e for e in resolved if e.start > end]
        start = min(e.start for e in kept)
    else:
        kept, later, start, end = resolved, [], group.start, group.end
    return Transaction(group.id, group.trace_ids, ids, kept, start, end, len(spans), later,
                       now if now is not None else time.time_ns())


def _mark_relays(exchanges: list[Exchange], by_id: dict[str, dict[str, Any]]) -> list[Exchange]:
    """Mark the failures that only carry another one on: received at a redirect URI, or caused by
    a failed span below them (a callee's, or a step inside them)."""
    failed_spans = {e.span_id for e in exchanges if e.failed}
    below: set[str] = set()  # spans that have a failed span somewhere below them
    for span_id in failed_spans:
        parent = (by_id.get(span_id) or {}).get("parent_id")
        seen: set[str] = set()
        while parent and parent in by_id and parent not in seen:
            seen.add(parent)
            below.add(parent)
            parent = by_id[parent].get("parent_id")
    marked = []
    for exchange in exchanges:
        if exchange.failed and (exchange.received_error or exchange.span_id in below):
            exchange = replace(exchange, relays=exchange.received_error, wraps=exchange.span_id in below)
        marked.append(exchange)
    return marked


def _exchange_from_label(span: dict[str, Any], attrs: dict[str, Any], by_id: dict[str, dict[str, Any]]) -> Exchange:
    source = attrs.get("signlab.source_role", "")
    parent = by_id.get(span.get("parent_id") or "")
    caller_traced = False
    if span.get("kind") == "SERVER" and parent is not None:
        caller = parent.get("role") or parent.get("attributes", {}).get("signlab.role")
        caller_traced = bool(caller) and caller != span.get("role")
        if parent.get("kind") == "CLIENT" and caller and caller != span.get("role"):
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
        draw=bool(attrs.get("signlab.draw", True)), activity=bool(attrs.get("signlab.activity")),
        inherit=bool(attrs.get("signlab.inherit_step")), completes=bool(attrs.get("signlab.completes")),
        caller_traced=caller_traced, parent_id=span.get("parent_id"),
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
    caller = span.get("role")
    flow_step = step(label.step)
    if caller in set(Role):
        flow_step = flow_step.between(Role(caller), label.target)
    return Exchange(
        span_id=span["span_id"], trace_id=span["trace_id"], service=span.get("service") or "?",
        step=label.step, response_step=label.step, source=span.get("role") or "?", target=str(label.target),
        message=label.message,
        response="no answer", channel=BACK, start=span["start"], end=span["end"],
        status_code=int(status) if isinstance(status, int) else None, outcome="error",
        error="unavailable",
        error_description=f"{flow_step.label}: the {label.target} did not answer "
                          f"({exception.get('type') or 'no answer'} from {attrs.get('signlab.peer', '')})",
        summary={"to": attrs.get("signlab.peer", ""), "path": attrs.get("signlab.peer_path", "")},
        activity=label.activity, inherit=label.inherit_step, parent_id=span.get("parent_id"),
    )


# ---------------------------------------------------------------------------- facts

_SHOWN = {"qes": "QES", "ades": "AdES", "pades": "PAdES", "cades": "CAdES", "jades": "JAdES"}


def shown_facts(facts: dict[str, Any]) -> dict[str, Any]:
    """:attr:`Transaction.facts` with display names (``QES``, ``AdES``, ``PAdES`` …)."""
    return {k: _SHOWN.get(str(v), v) for k, v in facts.items() if v}


def describe_facts(facts: dict[str, Any]) -> str:
    """``Kari Nordmann (PNONO-•••05) · QES · PAdES B-B · person-signing``: who and what, as far as
    the trace shows (:attr:`Transaction.facts`)."""
    shown = shown_facts(facts)
    kind = " ".join(str(shown[k]) for k in ("format", "level") if k in shown)
    return " · ".join(str(p) for p in (shown.get("person"), shown.get("qualifier"), kind, shown.get("flow")) if p)


def _facts(exchanges: list[Exchange]) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    for exchange in exchanges:
        request = exchange.summary
        body = request.get("json") if isinstance(request.get("json"), dict) else request.get("form")
        if exchange.step == 1 and exchange.flow and isinstance(body, dict):
            for name in ("qualifier", "format", "level", "flow"):
                if isinstance(body.get(name), str) and name not in facts:
                    facts[name] = body[name].strip().lower() if name != "level" else body[name]
            documents = body.get("documents")
            if isinstance(documents, list) and "documents" not in facts:
                facts["documents"] = len(documents)
            elif "documents" not in facts and (request.get("files") or body.get("samples")):
                samples = body.get("samples")
                facts["documents"] = len(request.get("files") or []) + (
                    len(samples) if isinstance(samples, list) else 1 if samples else 0)
        if isinstance(body, dict) and "qualifier" not in facts:
            for detail in body.get("authorization_details") or ():
                if isinstance(detail, dict) and isinstance(detail.get("signatureQualifier"), str):
                    facts["qualifier"] = detail["signatureQualifier"]
        if "person" not in facts:
            claims = _id_token_claims(exchange.response_summary)
            if claims:
                facts.update(_person(claims))
    if isinstance(facts.get("qualifier"), str):  # the CSC spelling (eu_eidas_qes) or the portal's (qes)
        facts["qualifier"] = "qes" if facts["qualifier"].endswith("qes") else "ades"
    return facts


def _id_token_claims(summary: dict[str, Any]) -> dict[str, Any] | None:
    body = summary.get("json")
    token = body.get("id_token") if isinstance(body, dict) else None
    claims = token.get("claims") if isinstance(token, dict) else None
    return claims if isinstance(claims, dict) else None


def _person(claims: dict[str, Any]) -> dict[str, Any]:
    """Name and the (already masked) identifier of an ID token's claims; eID means and LoA."""
    name = " ".join(str(claims[k]) for k in ("given_name", "family_name") if claims.get(k)) or str(claims.get("name") or "")
    found: dict[str, Any] = {}
    identifier = claims.get("signlab_person_id")
    if isinstance(identifier, dict) and identifier.get("value"):
        shown = f"{identifier.get('semantics', '')}{identifier.get('country', '')}-{identifier['value']}"
        name = f"{name} ({shown})" if name else shown
    if name:
        found["person"] = name
    eid = claims.get("signlab_eid")
    if isinstance(eid, dict):
        found["eid"] = eid.get("name")
        found["loa"] = eid.get("loa")
    return found

