"""Reports of a scenario run: the summary table, JUnit XML, and a self-contained HTML page.

* **summary table** — one row per scenario run: name, tags, result, time, why.
* **JUnit XML** — one ``<testcase>`` per run (classname ``scenarios.<first tag>``); ``<failure>``
  for a failed expectation (message names the step and the expectation), ``<error>`` for a broken
  run, ``<skipped>`` for a fault the ecosystem cannot inject; the steps and checks are in
  ``<system-out>``. CI systems read it as is.
* **HTML** — one file, no external resources (inline CSS, inline SVG, one inline script that opens
  the section a link points at): a verdict table, then per scenario its description, faults, steps
  with timings, each HTTP exchange decoded (JWT claims, authorization details, redirects; secrets
  masked), the checks, validation reports, the observed trace and the sequence diagram. Long values
  wrap; the page never grows wider than the window.
"""

from __future__ import annotations

import html
import json
import platform
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from signlab.scenarios.results import ScenarioResult

__all__ = ["exit_code", "summary_table", "write_html", "write_junit"]


def exit_code(results: list[ScenarioResult]) -> int:
    """0 when nothing failed or errored (skips are listed but do not fail the run), else 1."""
    return 1 if any(r.status in ("failed", "error") for r in results) else 0


def summary_table(results: list[ScenarioResult]) -> str:
    """The plain-text summary printed at the end of a run."""
    rows = [("SCENARIO", "TAGS", "RESULT", "TIME", "DETAIL")]
    for r in results:
        rows.append((r.id, ",".join(r.scenario.tags), r.status.upper(), f"{r.duration:.1f}s", r.reason[:110]))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(widths[i]) if i < 4 else cell for i, cell in enumerate(row)).rstrip() for row in rows]
    counts = {s: sum(1 for r in results if r.status == s) for s in ("passed", "failed", "error", "skipped")}
    total = sum(r.duration for r in results)
    lines.append("")
    lines.append(f"{len(results)} run(s): {counts['passed']} passed, {counts['failed']} failed, "
                 f"{counts['error']} error(s), {counts['skipped']} skipped in {total:.1f} s")
    return "\n".join(lines)


def _steps_text(r: ScenarioResult) -> str:
    lines = [f"{r.scenario.title}", f"file: {r.scenario.path}"]
    for s in r.steps:
        lines.append(f"  [{s.status}] {s.label} {s.name} ({s.duration:.2f} s) {s.detail}".rstrip())
    for c in r.checks:
        lines.append(f"  check {'skip' if c.skipped else ('ok' if c.ok else 'FAIL')}: {c.name}: {c.detail}")
    if r.trace:
        lines.append("  trace: " + " ".join(str(e.step) for e in r.trace))
    return "\n".join(lines)


def write_junit(results: list[ScenarioResult], path: Path) -> None:
    """Write the JUnit XML report."""
    suites = ET.Element("testsuites", name="signlab-scenarios")
    suite = ET.SubElement(suites, "testsuite", name="signlab-scenarios", tests=str(len(results)),
                          failures=str(sum(r.status == "failed" for r in results)),
                          errors=str(sum(r.status == "error" for r in results)),
                          skipped=str(sum(r.status == "skipped" for r in results)),
                          time=f"{sum(r.duration for r in results):.3f}",
                          timestamp=time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()),
                          hostname=platform.node())
    for r in results:
        case = ET.SubElement(suite, "testcase", classname=f"scenarios.{r.scenario.tags[0]}", name=r.id,
                             time=f"{r.duration:.3f}", file=str(r.scenario.path))
        if r.status == "failed":
            failure = ET.SubElement(case, "failure", message=r.reason, type="ExpectationFailed")
            failure.text = "\n".join(f"{c.name}: {c.detail}" for c in r.failed_checks)
        elif r.status == "error":
            error = ET.SubElement(case, "error", message=r.reason, type="ScenarioError")
            error.text = r.reason
        elif r.status == "skipped":
            ET.SubElement(case, "skipped", message=r.reason)
        out = ET.SubElement(case, "system-out")
        out.text = _steps_text(r)
    ET.indent(suites)
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(suites).write(path, encoding="utf-8", xml_declaration=True)


_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#1d1d1f;max-width:1200px}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin:0}table{border-collapse:collapse;width:100%;margin:.5rem 0}
td,th{border:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top;font-size:.9rem}
th{background:#f4f4f6}.passed{color:#0a7d32}.failed,.error,.refused{color:#b00020}.skipped{color:#8a6d00}
details.scenario{border:1px solid #ccc;border-radius:6px;margin:1rem 0;padding:.5rem 1rem}
details.scenario>summary{cursor:pointer;font-weight:600}pre{background:#f7f7f9;padding:.5rem;overflow:auto;
font-size:.8rem;max-height:30rem;white-space:pre-wrap;overflow-wrap:anywhere}.badge{display:inline-block;padding:0 .4rem;
border-radius:4px;background:#eee;margin-right:.2rem;font-size:.8rem}.diagram{overflow:auto;border:1px solid #eee}
.diagram svg{width:100%;height:auto}td,summary,p,code{overflow-wrap:anywhere}
"""

_OPEN_TARGET = """
// A link to a scenario (#name) opens its section, also when the page is already open.
function openTarget(){var id=decodeURIComponent(location.hash.slice(1));var el=id&&document.getElementById(id);
if(el&&el.tagName==='DETAILS'){el.open=true;el.scrollIntoView();}}
window.addEventListener('hashchange',openTarget);openTarget();
"""


def _e(text: object) -> str:
    return html.escape(str(text))


def _scenario_html(r: ScenarioResult, *, open_: bool = False) -> str:
    s = r.scenario
    expanded = open_ or r.status in ("failed", "error")
    out = [f'<details class="scenario" id="{_e(r.id)}"{" open" if expanded else ""}>',
           f'<summary><span class="{r.status}">{r.status.upper()}</span> — {_e(r.id)}: {_e(s.title)} '
           f'({r.duration:.1f} s)</summary>',
           f"<p>{_e(s.description)}</p>",
           "<p>" + "".join(f'<span class="badge">{_e(t)}</span>' for t in s.tags) +
           f" file <code>{_e(s.path)}</code>; persona <code>{_e(s.persona.person)}"
           f"{'@' + _e(s.persona.eid) if s.persona.eid else ''}</code>; request {_e(s.request.qualifier.upper())} "
           f"{_e(s.request.format)} {_e(s.request.level)} ({_e(s.request.flow)}), {s.document_count} document(s); "
           f"driver {_e(s.driver)}</p>"]
    if s.faults:
        out.append("<p>Faults: " + ", ".join(f"<code>{_e(f.describe())}</code>" for f in s.faults) + "</p>")
    if r.reason:
        out.append(f'<p class="{r.status}"><strong>{_e(r.reason)}</strong></p>')
    if r.transaction_id:
        out.append(f"<p>Transaction <code>{_e(r.transaction_id)}</code></p>")
    out.append("<h3>Steps</h3><table><tr><th>step</th><th>action</th><th>result</th><th>time</th><th>detail</th></tr>")
    for st in r.steps:
        out.append(f"<tr><td>{_e(st.label)}</td><td>{_e(st.name)}</td><td class=\"{st.status}\">{st.status}</td>"
                   f"<td>{st.duration:.2f} s</td><td>{_e(st.detail)}</td></tr>")
    out.append("</table>")
    exchanges = [ex for st in r.steps for ex in st.exchanges]
    if exchanges:
        out.append("<h3>Messages (decoded, secrets masked)</h3>")
        for ex in exchanges:
            body = json.dumps({"request": ex.request, "response": ex.response}, indent=2, ensure_ascii=False, default=str)
            answer = ex.status if ex.status is not None else "no answer"
            out.append(f"<details><summary>{'step ' + str(ex.step) if ex.step else '-'} · {_e(ex.method)} "
                       f"{_e(ex.url)} → {_e(answer)} ({ex.duration * 1000:.0f} ms)</summary><pre>{_e(body)}</pre></details>")
    out.append("<h3>Checks</h3><table><tr><th>check</th><th>result</th><th>detail</th></tr>")
    for c in r.checks:
        status = "skipped" if c.skipped else ("passed" if c.ok else "failed")
        out.append(f"<tr><td>{_e(c.name)}</td><td class=\"{status}\">{status}</td><td>{_e(c.detail)}</td></tr>")
    out.append("</table>")
    if r.validation:
        out.append("<h3>Validation reports (portal API)</h3>")
        for report in r.validation:
            out.append(f"<pre>{_e(json.dumps(report, indent=2, ensure_ascii=False, default=str)[:20000])}</pre>")
    if r.trace:
        out.append("<h3>Observed trace</h3><table><tr><th>step</th><th>source</th><th>event</th></tr>")
        out += [f"<tr><td>{e.step}</td><td>{_e(e.source)}</td><td>{_e(e.name)}</td></tr>" for e in r.trace]
        out.append("</table>")
    if r.diagram_svg:
        out.append(f"<h3>Sequence diagram</h3><p><small>{_e(r.diagram_note)}</small></p><div class=\"diagram\">{r.diagram_svg}</div>")
    out.append("</details>")
    return "\n".join(out)


def write_html(results: list[ScenarioResult], path: Path) -> None:
    """Write the self-contained HTML report."""
    rows = "".join(
        f'<tr><td><a href="#{_e(r.id)}">{_e(r.id)}</a></td><td>{_e(", ".join(r.scenario.tags))}</td>'
        f'<td class="{r.status}">{r.status.upper()}</td><td>{r.duration:.1f} s</td><td>{_e(r.reason)}</td></tr>'
        for r in results)
    counts = {s: sum(1 for r in results if r.status == s) for s in ("passed", "failed", "error", "skipped")}
    page = (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>SignLab scenario report</title>"
            f"<style>{_CSS}</style></head><body><h1>SignLab scenario report</h1>"
            f"<p>{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())} · {len(results)} run(s): "
            f"<span class=\"passed\">{counts['passed']} passed</span>, <span class=\"failed\">{counts['failed']} failed</span>, "
            f"<span class=\"error\">{counts['error']} error(s)</span>, <span class=\"skipped\">{counts['skipped']} skipped</span></p>"
            f"<table><tr><th>scenario</th><th>tags</th><th>result</th><th>time</th><th>detail</th></tr>{rows}</table>"
            # A report of one scenario (make demo's) opens it; otherwise failures open, the rest fold.
            + "".join(_scenario_html(r, open_=len(results) == 1) for r in results)
            + f"<script>{_OPEN_TARGET}</script></body></html>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
