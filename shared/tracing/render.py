"""Sequence diagrams of a transaction: server-side SVG, Mermaid and JSON.

The SVG is drawn here (no JavaScript needed to see it): lanes Signer, SCASP, SSASP with its HSM,
IPSP, TSP; one row per arrow in time order; the flow step in a badge at the start of each arrow;
back-channel requests solid, browser-carried requests blue, responses dashed, failures red with
the error, the one failure marked (arrows that carry it on are drawn at its step, dashed); the
time since the start at the left; the payload summary as the arrow's tooltip (``<title>``) and in
``data-summary`` for the click panel of the live view; a long run of login hops (step 4) folded
into one row (``expand`` unfolds it); a table of the steps below — done, failed, not reached.

Mermaid output uses a small, fixed subset of the ``sequenceDiagram`` grammar (participants, one
``box``, arrows ``->>``, ``-)``, ``-->>``, ``--x``, ``-x``, notes and one ``rect``), with text
escaped by Mermaid's entity codes, so that any Mermaid renderer accepts it.
"""

from __future__ import annotations

import json
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from shared.flow import Role, step
from shared.tracing.labels import FRONT
from shared.tracing.model import LANE_TITLES, Arrow, Transaction

__all__ = ["FOLD_MIN", "FOLD_STEP", "lane_layout", "mermaid_text", "render_json", "render_mermaid", "render_svg"]

_WIDTHS = {Role.SIGNER: 170, Role.SCASP: 200, Role.SSASP: 210, Role.HSM: 120, Role.IPSP: 200, Role.TSP: 180,
           Role.WALLET: 190, Role.PIDP: 150}
_LEFT = 80
_TOP = 78
_ROW = 40
_RED = "#b3261e"
_MUTED_RED = "#d98b84"
_COLORS = {"back": "#1b2430", "front": "#1f5fbf", "internal": "#b3541e"}


def _centers(lanes: tuple[str, ...]) -> dict[str, float]:
    x = float(_LEFT)
    centers = {}
    for lane in lanes:
        centers[str(lane)] = x + _WIDTHS[lane] / 2
        x += _WIDTHS[lane]
    return centers


def _summary_text(summary_json: str, limit: int = 1800) -> str:
    # The compact form: with ``indent`` json falls back to its pure-Python encoder, which was a
    # third of drawing the diagram on every result page.
    text = summary_json if summary_json not in ("null", "{}") else "(no payload)"
    return text if len(text) <= limit else text[:limit] + "\n…"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


FOLD_STEP = 4
"""The step whose arrows fold into one row: the eID login at the IPSP (in a browser a dozen
page and form hops, with the EUDI Wallet more)."""
FOLD_MIN = 4
"""Fold a run of consecutive step-4 arrows when it has at least this many (and none failed)."""


def lane_layout(transaction: Transaction) -> list[dict[str, Any]]:
    """The lanes of the diagram with their share of its width (percent), left margin first: the
    live view draws its sticky lane headers over the SVG, which scales to the page's width."""
    lanes = transaction.lanes
    width = _LEFT + sum(_WIDTHS[lane] for lane in lanes) + 20
    rows = [{"role": "", "title": "", "percent": round(100 * _LEFT / width, 3)}]
    rows += [{"role": str(lane), "title": LANE_TITLES[lane], "percent": round(100 * _WIDTHS[lane] / width, 3)}
             for lane in lanes]
    rows.append({"role": "", "title": "", "percent": round(100 * 20 / width, 3)})
    return rows


def _rows(arrows: list[Arrow], expand: frozenset[int]) -> list[Arrow | list[Arrow]]:
    """The diagram's rows: an arrow each, except a long run of login arrows (step 4), folded into
    one row (a list) unless the reader expanded it."""
    rows: list[Arrow | list[Arrow]] = []
    run: list[Arrow] = []

    def flush() -> None:
        if len(run) >= FOLD_MIN and FOLD_STEP not in expand and not any(a.failed for a in run):
            rows.append(list(run))
        else:
            rows.extend(run)
        run.clear()

    for arrow in arrows:
        if arrow.step == FOLD_STEP:
            run.append(arrow)
            continue
        flush()
        rows.append(arrow)
    flush()
    return rows


def render_svg(transaction: Transaction, *, title: str | None = None, expand: frozenset[int] = frozenset()) -> str:
    """The transaction as a standalone SVG document.

    :param expand: steps whose folded login hops are drawn one by one (``{4}``).
    """
    lanes = transaction.lanes
    centers = _centers(lanes)
    arrows = transaction.arrows()
    rows = _rows(arrows, expand)
    width = _LEFT + sum(_WIDTHS[lane] for lane in lanes) + 20
    timings = transaction.step_timings()
    diagram_bottom = _TOP + 30 + len(rows) * _ROW
    height = diagram_bottom + 50 + 22 * (len(timings) + 2) + 20
    out: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="signlab-trace" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="system-ui, sans-serif" font-size="12" '
        f'data-transaction={quoteattr(transaction.id)} data-arrows="{len(arrows)}" '
        f'data-outcome="{transaction.outcome}" role="img">',
        f"<title>{escape(title or _title(transaction))}</title>",
        '<defs>'
        '<marker id="sl-head" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse">'
        '<path d="M0,0 L10,5 L0,10 z" fill="context-stroke"/></marker>'
        '<marker id="sl-head-red" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" orient="auto">'
        f'<path d="M0,0 L10,5 L0,10 z" fill="{_RED}"/></marker>'
        '</defs>',
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
    ]
    # The SSASP and its HSM form one organisation: one frame around both lanes.
    ssasp_left = centers[Role.SSASP] - _WIDTHS[Role.SSASP] / 2 + 4
    hsm_right = centers[Role.HSM] + _WIDTHS[Role.HSM] / 2 - 4
    out.append(f'<rect x="{ssasp_left}" y="4" width="{hsm_right - ssasp_left}" height="{diagram_bottom - 4}" '
               'fill="#fbf3ee" stroke="#b3541e" stroke-dasharray="4 3" rx="6"/>')
    for lane in lanes:
        cx = centers[str(lane)]
        w = _WIDTHS[lane] - 24
        out.append(f'<g class="sl-lane" data-role="{lane}">'
                   f'<rect x="{cx - w / 2}" y="14" width="{w}" height="44" rx="6" fill="#f5f7fa" stroke="#5b6675"/>'
                   f'<text x="{cx}" y="33" text-anchor="middle" font-weight="700" font-size="14">{escape(str(lane))}</text>'
                   f'<text x="{cx}" y="50" text-anchor="middle" fill="#5b6675">{escape(LANE_TITLES[lane])}</text>'
                   f'<line x1="{cx}" y1="58" x2="{cx}" y2="{diagram_bottom}" stroke="#aab3bf" stroke-dasharray="3 4"/></g>')
    for row, item in enumerate(rows):
        y = _TOP + 20 + row * _ROW
        out.append(_svg_fold(item, centers, y) if isinstance(item, list) else _svg_arrow(item, centers, y))
    if not arrows:
        out.append(f'<text x="{width / 2}" y="{_TOP + 30}" text-anchor="middle" fill="#5b6675">no labelled exchange yet</text>')
    out.append(_svg_timings(transaction, timings, diagram_bottom + 30))
    out.append("</svg>")
    return "\n".join(out)


def _title(transaction: Transaction) -> str:
    ids = ", ".join(transaction.transaction_ids) or transaction.id
    where = f" at step {transaction.failure_step}" if transaction.failure is not None else ""
    return f"SignLab transaction {ids}: {transaction.outcome}{where}, {transaction.duration_ms:.0f} ms"


def _svg_fold(run: list[Arrow], centers: dict[str, float], y: float) -> str:
    """One row for a folded run of login arrows: a bracket over the lanes they touch."""
    lanes = [centers.get(r, _LEFT) for a in run for r in (a.source, a.target)]
    left, right = min(lanes), max(lanes)
    color = _COLORS["front"]
    label = f"{FOLD_STEP} · {step(FOLD_STEP).name} at the {run[0].target if run[0].target != Role.SIGNER else run[0].source}: " \
            f"{len(run)} messages — click to expand"
    tooltip = "\n".join(f"Step {a.step} · {a.source} → {a.target} · {a.label}" for a in run)
    return (f'<g class="sl-fold step-{FOLD_STEP}" data-fold="{FOLD_STEP}" data-step="{FOLD_STEP}" data-arrows="{len(run)}" '
            f'tabindex="0" role="button"><title>{escape(tooltip)}</title>'
            f'<text x="8" y="{y + 4}" fill="#5b6675" font-size="11">+{run[0].offset_ms:.0f} ms</text>'
            f'<rect x="{left - 10}" y="{y - 14}" width="{right - left + 20}" height="24" rx="12" fill="#eaf1fb" '
            f'stroke="{color}" stroke-dasharray="5 3"/>'
            f'<text x="{(left + right) / 2}" y="{y + 3}" text-anchor="middle" fill="{color}" font-weight="600">'
            f'{escape(label)} ▸</text></g>')


def _svg_arrow(arrow: Arrow, centers: dict[str, float], y: float) -> str:
    color = _RED if arrow.failed else _COLORS.get(arrow.channel if arrow.kind == "request" else "back", "#1b2430")
    if arrow.kind == "request" and arrow.channel == "internal":
        color = _COLORS["internal"]
    if arrow.relay and not arrow.failed:
        color = _MUTED_RED
    x1 = centers.get(arrow.source, _LEFT)
    x2 = centers.get(arrow.target, _LEFT)
    dash = ' stroke-dasharray="6 4"' if arrow.kind == "response" or arrow.relay else ""
    marker = "url(#sl-head-red)" if arrow.failed else "url(#sl-head)"
    label = f"{arrow.label}" + (f" · {arrow.duration_ms:.0f} ms" if arrow.duration_ms is not None else "")
    summary_json = json.dumps(arrow.summary, ensure_ascii=False, default=str)
    tooltip = (f"Step {arrow.step} · {arrow.source} → {arrow.target} · {arrow.label}"
               + (f" · {arrow.duration_ms} ms" if arrow.duration_ms is not None else "")
               + "\n" + _summary_text(summary_json))
    classes = f"sl-arrow sl-{arrow.kind} step-{arrow.step}" + (" sl-failed" if arrow.failed else "") + (
        " sl-origin" if arrow.origin else "") + (" sl-relay" if arrow.relay else "")
    parts = [f'<g class="{classes}" data-index="{arrow.index}" data-step="{arrow.step}" tabindex="0" '
             f'data-summary={quoteattr(summary_json)}>',
             f"<title>{escape(tooltip)}</title>",
             f'<text x="8" y="{y + 4}" fill="#5b6675" font-size="11">+{arrow.offset_ms:.0f} ms</text>']
    if arrow.kind == "self" or abs(x1 - x2) < 1:
        parts.append(f'<path d="M{x1},{y - 6} h36 v14 h-34" fill="none" stroke="{color}" stroke-width="1.6" '
                     f'marker-end="{marker}"/>')
        parts.append(f'<text x="{x1 + 44}" y="{y + 4}" fill="{color}">{escape(_cut(label, 46))}</text>')
        badge_x = x1 - 14
    else:
        direction = 1 if x2 > x1 else -1
        parts.append(f'<line x1="{x1 + 4 * direction}" y1="{y}" x2="{x2 - 2 * direction}" y2="{y}" stroke="{color}" '
                     f'stroke-width="{2.4 if arrow.origin else 1.6}"{dash} marker-end="{marker}"/>')
        span = abs(x2 - x1)
        weight = ' font-weight="700"' if arrow.origin else ""
        parts.append(f'<text x="{(x1 + x2) / 2}" y="{y - 6}" text-anchor="middle" fill="{color}"{weight}>'
                     f'{escape(_cut(label, max(18, int(span / 6.3))))}</text>')
        badge_x = x1 + 14 * direction
    parts.append(f'<circle cx="{badge_x}" cy="{y}" r="9" fill="{color if arrow.kind != "response" else "#ffffff"}" '
                 f'stroke="{color}"/>'
                 f'<text x="{badge_x}" y="{y + 4}" text-anchor="middle" font-size="10" font-weight="700" '
                 f'fill="{"#ffffff" if arrow.kind != "response" else color}">{arrow.step}</text>')
    if arrow.origin:
        cx = centers.get(arrow.source, _LEFT)
        parts.append(f'<g class="sl-failure-mark"><circle cx="{cx}" cy="{y}" r="11" fill="{_RED}"/>'
                     f'<text x="{cx}" y="{y + 5}" text-anchor="middle" fill="#ffffff" font-size="14" font-weight="700">✗</text></g>')
    parts.append("</g>")
    return "".join(parts)


_STATE_COLORS = {"failed": _RED, "not reached": "#8a94a3", "current": _COLORS["front"], "stopped": "#9a6400"}


def _svg_timings(transaction: Transaction, timings: list[dict[str, Any]], y: float) -> str:
    rows = [f'<g class="sl-timings"><text x="{_LEFT}" y="{y}" font-weight="700" font-size="13">'
            f'Steps and timings · {escape(_title(transaction))}</text>']
    for number, row in enumerate(timings, start=1):
        ry = y + 22 * number
        color = _STATE_COLORS.get(row["state"], "#1b2430")
        when = (f' · from +{row["first_ms"]:.0f} ms · {row["duration_ms"]:.0f} ms · {row["arrows"]} arrow(s)'
                if row["first_ms"] is not None else "")
        state = "" if row["state"] == "done" else f" · {row['state'].upper()}"
        rows.append(f'<text x="{_LEFT}" y="{ry}" fill="{color}" class="sl-step-row" data-step="{row["step"]}" '
                    f'data-state="{row["state"]}">'
                    f'<tspan font-weight="700">Step {row["step"]}</tspan> · {escape(row["name"])} · {escape(row["roles"])}'
                    f'{when}{state}</text>')
    payloads = any(a.summary for a in transaction.arrows())
    note = ("Each arrow's tooltip (hover, or the title in an SVG viewer) holds its decoded, redacted message."
            if payloads else "No payloads were recorded (SIGNLAB_TRACE_PAYLOADS=false): arrows show steps and roles only.")
    if transaction.later:
        note += f" {len(transaction.later)} later request(s) (result page, downloads, status) are not part of the transaction."
    rows.append(f'<text x="{_LEFT}" y="{y + 22 * (len(timings) + 1)}" fill="#5b6675" font-size="11">{escape(note)}</text>')
    rows.append("</g>")
    return "".join(rows)


# ---------------------------------------------------------------------------- Mermaid

_MERMAID_NAMES = {
    Role.SIGNER: "Signer (browser)", Role.SCASP: "SCASP (portal)", Role.SSASP: "SSASP (signing service)",
    Role.HSM: "HSM (of the SSASP)", Role.IPSP: "IPSP (eID provider)", Role.TSP: "TSP (CA and TSA)",
    Role.WALLET: "Wallet (the signer's EUDI Wallet)", Role.PIDP: "PIDP (PID provider)",
}


_MERMAID_ESCAPES = str.maketrans({c: f"#{ord(c)};" for c in "#;<>%{}\"`"})


def mermaid_text(text: str) -> str:
    """Text made safe for a Mermaid message or note: one line, entity codes for special characters."""
    return " ".join(str(text).split()).translate(_MERMAID_ESCAPES)


def render_mermaid(transaction: Transaction) -> str:
    """The transaction as a Mermaid ``sequenceDiagram``."""
    lines = ["sequenceDiagram", f"    title {mermaid_text(_title(transaction))}"]
    for lane in transaction.lanes:
        if lane is Role.SSASP:
            lines.append("    box SSASP and its HSM")
        indent = "        " if lane in (Role.SSASP, Role.HSM) else "    "
        lines.append(f"{indent}participant {lane} as {_MERMAID_NAMES[lane]}")
        if lane is Role.HSM:
            lines.append("    end")
    for arrow in transaction.arrows():
        text = f"{arrow.step} · {arrow.label}"
        if arrow.duration_ms is not None:
            text += f" ({arrow.duration_ms:.0f} ms)"
        if arrow.kind == "response":
            symbol = "--x" if arrow.failed else "-->>"
        elif arrow.kind == "self":
            symbol = "-x" if arrow.failed else "->>"
        else:
            symbol = "-)" if arrow.channel == FRONT else "->>"
        line = f"    {arrow.source}{symbol}{arrow.target}: {mermaid_text(text)}"
        if arrow.origin:
            lines.append("    rect rgb(255, 228, 225)")
            lines.append("    " + line)
            lines.append(f"        Note over {arrow.source}: {mermaid_text(f'failed at step {arrow.step}: {arrow.error or arrow.label}')}")
            lines.append("    end")
        else:
            lines.append(line)
    return "\n".join(lines) + "\n"


def render_json(transaction: Transaction) -> str:
    """The transaction as indented JSON."""
    return json.dumps(transaction.as_dict(), indent=2, ensure_ascii=False, default=str) + "\n"
