"""The sequence diagram of a scenario run, as inline SVG for the HTML report.

Preferred source: the trace store of ``shared.tracing`` (``<data dir>/traces``, or
``SIGNLAB_TRACE_DIR``): the run's transaction is found by its transaction id and drawn by
``shared.tracing.render_svg`` (role lanes, decoded payloads as tooltips, failures in red, step
timings). On containers the store is a volume: the transaction comes from the portal's trainer API
(``GET /trainer/api/transactions/<id>`` and its ``.svg``, the same model and drawing, read-only;
bearer ``SIGNLAB_PORTAL_TRAINER_TOKEN`` when the installation has that secret), as
:class:`RemoteTransaction`. When there is no trace (tracing off), the runner draws its own diagram
from what it observed: every HTTP exchange of the user agent (browser or partner → service) and every audit
entry the services wrote during the scenario (drawn between the roles of its flow step, from
:data:`shared.flow.STEPS`), in time order, refusals in red. The note returned says which it is.
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import requests

from shared.flow import step
from shared.tracing.labels import guess_label
from signlab.scenarios.environment import Ecosystem
from signlab.scenarios.results import ScenarioResult

__all__ = ["RemoteTransaction", "own_diagram", "sequence_diagram", "trace_of"]

TRAINER_TOKEN = "SIGNLAB_PORTAL_TRAINER_TOKEN"
"""The portal's secret that guards its trainer views (sent as a bearer token when the installation has it)."""

LANES = [("Signer", "Signer (browser)"), ("SCASP", "SCASP portal"), ("SSASP", "SSASP signer"),
         ("HSM", "HSM"), ("IPSP", "IPSP eID"), ("TSP", "TSP CA/TSA")]


@dataclass(frozen=True)
class RemoteTransaction:
    """A transaction from the portal's trainer API: its JSON export and its SVG drawing."""

    id: str
    body: dict[str, Any]
    svg: str | None

    @property
    def outcome(self) -> str:
        """``completed``, ``refused``, ``pending`` or ``abandoned`` (``shared.tracing.Transaction.outcome``)."""
        return str(self.body.get("outcome"))

    @property
    def failure(self) -> SimpleNamespace | None:
        """Where it was refused (``step``, ``error``, ``error_description`` …), or None."""
        failure = self.body.get("failure")
        return SimpleNamespace(**failure) if isinstance(failure, dict) else None

    @property
    def failure_step(self) -> int | None:
        """The step it was refused at (None when it was not)."""
        failure = self.failure
        return None if failure is None else failure.step

    @property
    def current_step(self) -> int | None:
        """Where it is, or stopped."""
        return self.body.get("current_step")

    @property
    def steps(self) -> list[int]:
        """The steps of its arrows, in order of first appearance."""
        return list(self.body.get("steps") or [])

    @property
    def transaction_ids(self) -> list[str]:
        """The services' transaction ids."""
        return list(self.body.get("transaction_ids") or [])

    def arrows(self) -> list[Any]:
        """The arrows in time order, as ``shared.tracing.Transaction.arrows`` gives them
        (``shared.tracing.model.Arrow``; ``time`` is the export's start, to the millisecond, plus
        the arrow's offset)."""
        from shared.tracing.model import Arrow

        start = int(datetime.fromisoformat(str(self.body["start"]).replace("Z", "+00:00")).timestamp() * 1000) * 1_000_000
        return [Arrow(time=start + int(float(a["offset_ms"]) * 1_000_000), **a) for a in self.body.get("arrows", [])]


def _fetch_remote(eco: Ecosystem, key: str) -> RemoteTransaction | None:
    """The transaction ``key`` from the trainer API, or None while the API does not know it."""
    token = eco.secret(TRAINER_TOKEN)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    base = f"{str(eco.trace_api).rstrip('/')}/transactions/{key}"
    answer = requests.get(base, headers=headers, timeout=10)
    if answer.status_code == 404:
        return None
    answer.raise_for_status()
    body = answer.json()
    drawing = requests.get(f"{base}.svg", headers=headers, timeout=10)
    return RemoteTransaction(str(body.get("id", key)), body, drawing.text if drawing.status_code == 200 else None)


def trace_of(eco: Ecosystem, result: ScenarioResult, *, wait: float = 1.0) -> Any:
    """The transaction of this run in the trace store (``shared.tracing``) or, when the runner cannot
    read the store, from the trainer API (:class:`RemoteTransaction`); None when there is none.

    Spans are written when they end, so the store (or the API) is asked again for up to ``wait`` seconds.
    """
    if not result.transaction_id or (eco.trace_dir is None and eco.trace_api is None):
        return None
    deadline = time.monotonic() + wait
    if eco.trace_dir is None:
        while True:
            try:
                found = _fetch_remote(eco, result.transaction_id)
            except (requests.RequestException, ValueError):
                return None  # no trace: the runner draws its own diagram and says so
            if found is not None or time.monotonic() > deadline:
                return found
            time.sleep(0.2)
    try:
        from shared.tracing import TraceStore, build_transaction
    except ImportError:
        return None
    store = TraceStore(eco.trace_dir)
    while True:
        store.refresh()
        group = store.find(result.transaction_id)
        if group is not None or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    return build_transaction(group) if group is not None else None


def sequence_diagram(eco: Ecosystem, result: ScenarioResult, transaction: Any = None) -> tuple[str | None, str]:
    """``(svg, note)`` for the report: the trace's diagram when the run has a trace, else the
    runner's own drawing."""
    if isinstance(transaction, RemoteTransaction) and transaction.svg:
        return transaction.svg, f"from the distributed trace {transaction.id} (the portal's trainer API)"
    if transaction is not None and not isinstance(transaction, RemoteTransaction):
        try:
            from shared.tracing import render_svg

            title = None
            refusal = result.refusal
            if refusal is not None and transaction.failure is None:
                # The refusing service left no span (it did not answer: an outage): say so, with the
                # step where the trace stops, instead of the trace's own "pending".
                title = (f"SignLab transaction {', '.join(transaction.transaction_ids) or transaction.id}: refused at "
                         f"step {refusal.step} ({refusal.error}: {refusal.description}); the trace stops at step "
                         f"{transaction.current_step}")
            return render_svg(transaction, title=title), f"from the distributed trace {transaction.id} (shared.tracing)"
        except Exception as exc:  # noqa: BLE001 - fall back to the runner's own view
            return own_diagram(result), f"trace diagram failed ({exc.__class__.__name__}); drawn from the runner's observations"
    return own_diagram(result), ("drawn from the user agent's exchanges and the services' audit logs "
                                 "(no distributed trace found for this run)")


def own_diagram(result: ScenarioResult) -> str:
    """An SVG sequence diagram of the observed exchanges and audit events."""
    arrows: list[tuple[float, str, str, str, bool]] = []
    for record in result.steps:
        for ex in record.exchanges:
            # The roles come from the one table of routes, like the traces' (the logical sender).
            label = guess_label(ex.method, _path(ex.url))
            source, target = (str(label.source), str(label.target)) if label else ("Signer", "SCASP")
            failed = ex.status is None or ex.status >= 400 or "error" in str(ex.response.get("location", ""))
            text = f"{'step ' + str(ex.step) + ': ' if ex.step else ''}{ex.method} {_path(ex.url)} → {ex.status or 'no answer'}"
            arrows.append((ex.started, source, target, text, failed))
    for event in result.trace:
        if event.source == "agent":
            continue
        info = step(event.step)
        source, target = str(info.source), str(info.target)
        if source == target:
            target = "HSM" if event.step in (6, 9) else source
        failed = "refused" in event.name or "failed" in event.name
        arrows.append((event.time, source, target, f"step {event.step}: {event.name} ({event.source})", failed))
    arrows.sort(key=lambda a: a[0])
    width, lane_gap, top, row = 1100, 180, 60, 26
    x = {role: 90 + i * lane_gap for i, (role, _) in enumerate(LANES)}
    height = top + 30 + row * max(len(arrows), 1)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">',
             '<defs><marker id="a" markerWidth="8" markerHeight="8" refX="7" refY="4" orient="auto">'
             '<path d="M0,0 L8,4 L0,8 z" fill="#333"/></marker>'
             '<marker id="r" markerWidth="8" markerHeight="8" refX="7" refY="4" orient="auto">'
             '<path d="M0,0 L8,4 L0,8 z" fill="#b00020"/></marker></defs>']
    for role, title in LANES:
        parts.append(f'<text x="{x[role]}" y="20" text-anchor="middle" font-weight="bold">{html.escape(title)}</text>')
        parts.append(f'<line x1="{x[role]}" y1="30" x2="{x[role]}" y2="{height - 10}" stroke="#bbb" stroke-dasharray="4,3"/>')
    for i, (_t, source, target, label, failed) in enumerate(arrows):
        y = top + i * row
        color, marker = ("#b00020", "r") if failed else ("#333", "a")
        x1, x2 = x.get(source, x["SCASP"]), x.get(target, x["SSASP"])
        if x1 == x2:
            parts.append(f'<path d="M{x1},{y} h30 v10 h-30" fill="none" stroke="{color}" marker-end="url(#{marker})"/>')
        else:
            parts.append(f'<line x1="{x1}" y1="{y}" x2="{x2}" y2="{y}" stroke="{color}" marker-end="url(#{marker})"/>')
        parts.append(f'<text x="{min(x1, x2) + 4}" y="{y - 4}" fill="{color}">{html.escape(label[:110])}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _path(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).path or url

