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
from typing import Any

import requests

from shared.flow import step
from signlab.scenarios.environment import Ecosystem
from signlab.scenarios.results import ScenarioResult

__all__ = ["RemoteTransaction", "own_diagram", "sequence_diagram", "trace_of"]

TRAINER_TOKEN = "SIGNLAB_PORTAL_TRAINER_TOKEN"
"""The portal's secret that guards its trainer views (sent as a bearer token when the installation has it)."""

LANES = [("Signer", "Signer (browser)"), ("SCASP", "SCASP portal"), ("SSASP", "SSASP signer"),
         ("HSM", "HSM"), ("IPSP", "IPSP eID"), ("TSP", "TSP CA/TSA")]
SERVICE_ROLE = {"portal": "SCASP", "signer": "SSASP", "idp": "IPSP", "ca": "TSP"}


@dataclass(frozen=True)
class RemoteTransaction:
    """A transaction from the portal's trainer API: its JSON export and its SVG drawing."""

    id: str
    body: dict[str, Any]
    svg: str | None

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

            return render_svg(transaction), f"from the distributed trace {transaction.id} (shared.tracing)"
        except Exception as exc:  # noqa: BLE001 - fall back to the runner's own view
            return own_diagram(result), f"trace diagram failed ({exc.__class__.__name__}); drawn from the runner's observations"
    return own_diagram(result), ("drawn from the user agent's exchanges and the services' audit logs "
                                 "(no distributed trace found for this run)")


def own_diagram(result: ScenarioResult) -> str:
    """An SVG sequence diagram of the observed exchanges and audit events."""
    arrows: list[tuple[float, str, str, str, bool]] = []
    actor = "SCASP" if result.scenario.driver == "partner" else "Signer"
    for record in result.steps:
        for ex in record.exchanges:
            target = _role_of_url(ex.url, result) or "SCASP"
            source = "Signer" if (actor == "Signer" or "/oauth2/authorize" in ex.url or "/idp" in ex.url
                                  or "consent" in ex.url or target == "IPSP") else actor
            failed = ex.status is None or ex.status >= 400 or "error" in str(ex.response.get("location", ""))
            label = f"{'step ' + str(ex.step) + ': ' if ex.step else ''}{ex.method} {_path(ex.url)} → {ex.status or 'no answer'}"
            arrows.append((ex.started, source, target, label, failed))
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


def _role_of_url(url: str, result: Any) -> str | None:
    path = _path(url)
    if path.startswith(("/oauth2", "/csc")):
        return "SSASP"
    if path.startswith(("/api/v1/sign-requests", "/api/v1/transactions", "/sign/", "/api/v1/validate", "/transactions",
                        "/review/")):
        return "SCASP"
    if path.startswith(("/authorize", "/login", "/token")):
        return "IPSP"
    if path.startswith(("/api/v1/certificates", "/tsa", "/ocsp", "/crl")):
        return "TSP"
    return None

