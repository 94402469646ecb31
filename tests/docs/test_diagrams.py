"""The sequence diagrams in ``docs/diagrams`` and ``docs/flows.md`` were produced by SignLab and fit the flows.

The fast tests read the committed files only (no service is started):

* each diagram ``signlab docs diagrams`` writes exists, is a Mermaid ``sequenceDiagram`` with the
  generator's header (scenario, flow, outcome, steps, date), declares the lanes of
  ``shared.tracing`` and only uses them, and its arrows carry step numbers 1-10;
* its steps fit the flow: person signing has every step and all of step 2 before step 6; the
  certificate-first diagram shows the key and certificate (6, 7) before the DTBS/R is authorized
  (step 2) and signed (8); the refusal has no key, certificate or signature (no 6, 7, 9);
* the steps the scenario expects are there, the ones it forbids are not;
* ``docs/flows.md`` embeds exactly the committed files;
* when Mermaid's own parser is already installed for ``tests/shared/test_tracing.py``
  (``~/.cache/signlab/mermaid-check``), it accepts every diagram (never installed from here).

``test_regenerated_diagrams_have_the_same_structure`` (marked ``processes``, 10-30 s) runs
``signlab docs diagrams`` into a temporary directory on a fresh ecosystem and compares lanes,
step order and the arrows (roles, step, message; not timings or ids) with the committed files.
Deselect it with ``-m "not processes"``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from shared.flow import Role
from shared.tracing.model import WALLET_LANES, lanes_for
from signlab.commands.docs import DIAGRAMS, EMBED_END, GENERATOR_MARK, DiagramSpec, generate_diagrams
from signlab.scenarios.loader import catalogue_dir, load_scenario

ROOT = Path(__file__).resolve().parents[2]
DIAGRAM_DIR = ROOT / "docs" / "diagrams"
ARROW = re.compile(r"^\s*(\w+)(->>|-->>|--x|-x|-\))(\w+): (\d+) · (.*)$")
DURATION = re.compile(r" \(\d+ ms\)$")
IDS = re.compile(r"\b(tx|cred)-[0-9a-f]{8,}")


class Diagram:
    """A parsed generated diagram: header fields, participants, arrows (step, source, target, kind, text)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.lines = text.splitlines()
        self.header = {}
        for line in self.lines:
            if line.startswith("%% ") and ": " in line:
                key, _, value = line[3:].partition(": ")
                self.header[key] = value
        self.participants = [line.split()[1] for line in self.lines if line.strip().startswith("participant ")]
        self.arrows: list[tuple[int, str, str, str, str]] = []
        for line in self.lines:
            match = ARROW.match(line)
            if match:
                source, symbol, target, number, text_ = match.groups()
                self.arrows.append((int(number), source, target, symbol, DURATION.sub("", text_)))

    @property
    def steps(self) -> list[int]:
        return list(dict.fromkeys(step for step, *_ in self.arrows))

    def index(self, predicate: object) -> list[int]:
        return [i for i, arrow in enumerate(self.arrows) if predicate(arrow)]  # type: ignore[operator]

    def skeleton(self) -> set[tuple[int, str, str, str, str]]:
        """The arrows without anything that changes from run to run (durations, ids)."""
        return {(*arrow[:4], IDS.sub(r"\1-…", arrow[4])) for arrow in self.arrows}


def _load(spec: DiagramSpec, directory: Path = DIAGRAM_DIR) -> Diagram:
    path = directory / f"{spec.name}.mmd"
    assert path.exists(), f"{path} is missing: run 'signlab docs diagrams'"
    return Diagram(path.read_text())


SPECS = [pytest.param(spec, id=spec.name) for spec in DIAGRAMS]


@pytest.mark.parametrize("spec", SPECS)
def test_generated_by_signlab(spec: DiagramSpec) -> None:
    diagram = _load(spec)
    assert diagram.lines[0] == "sequenceDiagram"
    assert diagram.lines[1] == GENERATOR_MARK
    assert diagram.header["scenario"].split(" ")[0] == spec.scenario
    assert diagram.header["flow"].split(" ")[0] == spec.flow
    assert diagram.header["outcome"] == spec.outcome
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", diagram.header["date"])
    assert [int(n) for n in diagram.header["steps (first appearance)"].split()] == diagram.steps
    assert any(line.strip().startswith("title SignLab transaction ") for line in diagram.lines)


@pytest.mark.parametrize("spec", SPECS)
def test_lanes_and_arrows_are_well_formed(spec: DiagramSpec) -> None:
    diagram = _load(spec)
    used = {role for arrow in diagram.arrows for role in arrow[1:3]}
    assert diagram.participants == [str(lane) for lane in lanes_for(used)]
    depth = 0
    for number, line in enumerate(diagram.lines, 1):
        stripped = line.strip()
        if stripped.startswith(("box ", "rect ")):
            depth += 1
        elif stripped == "end":
            depth -= 1
            assert depth >= 0, f"line {number}: 'end' without a block"
        elif stripped and not stripped.startswith(("%%", "title ", "participant ", "Note over ", "sequenceDiagram")):
            assert ARROW.match(line), f"line {number} is not an arrow of the renderer: {line!r}"
            message = re.sub(r"#\d+;", "", line.split(": ", 1)[1])  # Mermaid entity codes end in ';'
            assert ";" not in message and "#" not in message, f"line {number}: unescaped ';' or '#'"
    assert depth == 0
    assert diagram.arrows, "no arrows"
    for step_number, source, target, _, _ in diagram.arrows:
        assert 1 <= step_number <= 10
        assert source in diagram.participants and target in diagram.participants


def _is(step_number: int, source: str, target: str, words: str = "") -> object:
    return lambda a: a[0] == step_number and a[1] == source and a[2] == target and words in a[4]


def test_person_signing_runs_steps_in_order() -> None:
    diagram = _load(DIAGRAMS[0])
    assert DIAGRAMS[0].flow == "person-signing"
    assert diagram.steps == list(range(1, 11))
    first_six = min(diagram.index(lambda a: a[0] == 6))
    assert max(diagram.index(lambda a: a[0] == 2)) < first_six, "step 2 (digests) must come before the key"
    key = diagram.index(_is(6, Role.SSASP, Role.HSM, "C_GenerateKeyPair"))
    certificate = diagram.index(_is(7, Role.SSASP, Role.TSP, "certificate request"))
    attributes = diagram.index(_is(8, Role.SSASP, Role.SSASP))
    signature = diagram.index(_is(9, Role.SSASP, Role.HSM, "C_Sign"))
    destroyed = diagram.index(_is(9, Role.SSASP, Role.HSM, "C_DestroyObject"))
    assert key and certificate and attributes and signature and destroyed, "an HSM/TSP/step-8 arrow is missing"
    assert key[0] < certificate[0] < attributes[0] < signature[0] < destroyed[0]
    assert diagram.index(_is(6, Role.SCASP, Role.SSASP, "signDoc"))


def test_certificate_first_makes_the_certificate_before_the_dtbsr() -> None:
    spec = DIAGRAMS[1]
    assert spec.flow == "certificate-first"
    diagram = _load(spec)
    assert set(diagram.steps) == set(range(1, 11))
    key = diagram.index(_is(6, Role.SSASP, Role.HSM, "C_GenerateKeyPair"))
    certificate = diagram.index(_is(7, Role.SSASP, Role.TSP, "certificate request"))
    # SCAL 2: the DTBS/R hashes go to the SSASP in a second authorization request, which the
    # person approves on a second consent page, before signHash.
    authorize = diagram.index(_is(2, Role.SCASP, Role.SSASP, "pushed authorization request"))
    consent = diagram.index(_is(5, Role.SIGNER, Role.SSASP, "consent decision"))
    sign_hash = diagram.index(_is(8, Role.SCASP, Role.SSASP, "signHash"))
    destroyed = diagram.index(_is(9, Role.SSASP, Role.HSM, "C_DestroyObject"))
    assert key and certificate and len(authorize) == 2 and len(consent) == 2 and sign_hash and destroyed
    assert authorize[0] < key[0] < certificate[0] < authorize[1] < consent[1] < sign_hash[0] < destroyed[0]
    assert not diagram.index(lambda a: "signDoc" in a[4])


def test_refusal_is_drawn_and_nothing_is_signed() -> None:
    spec = DIAGRAMS[2]
    diagram = _load(spec)
    assert spec.outcome == "refused"
    assert any(line.strip().startswith("rect ") for line in diagram.lines)
    assert any(symbol == "--x" for *_, symbol, _ in diagram.arrows)
    assert not diagram.index(lambda a: a[0] in (6, 7, 9)), "a refused flow must not reach the key, CA or HSM"
    assert not diagram.index(lambda a: Role.HSM in (a[1], a[2]) or Role.TSP in (a[1], a[2]))


@pytest.mark.parametrize("spec", SPECS)
def test_steps_match_the_scenario(spec: DiagramSpec) -> None:
    diagram = _load(spec)
    expect = load_scenario(catalogue_dir() / f"{spec.scenario}.yaml").expect
    assert set(expect.trace or ()) <= set(diagram.steps), f"the scenario expects steps {expect.trace}"
    assert not set(getattr(expect, "trace_absent", None) or ()) & set(diagram.steps)


def test_the_wallet_login_is_an_openid4vp_presentation_inside_step_4() -> None:
    spec = next(s for s in DIAGRAMS if s.name == "wallet-login")
    diagram = _load(spec)
    assert diagram.participants[diagram.participants.index(Role.IPSP) + 1:][:2] == list(WALLET_LANES)
    assert diagram.steps == list(range(1, 11))
    request = diagram.index(_is(4, Role.WALLET, Role.IPSP, "request object request"))
    response = diagram.index(_is(4, Role.WALLET, Role.IPSP, "authorization response (direct_post.jwt"))
    status = diagram.index(_is(4, Role.IPSP, Role.PIDP, "Token Status List"))
    code = diagram.index(_is(5, Role.SSASP, Role.IPSP, "token request"))
    assert request and response and status and code
    assert request[0] < response[0] < status[0] < code[0], "request, presentation, status check, then step 5"
    refused = _load(next(s for s in DIAGRAMS if s.name == "failure-wallet-revoked"))
    failed = [a for a in refused.arrows if a[3] == "--x"]
    assert failed[0][:3] == (4, Role.IPSP, Role.WALLET) and "status" in failed[0][4]
    assert not refused.index(lambda a: a[0] in (6, 7, 9))


def test_flows_md_embeds_the_committed_diagrams() -> None:
    text = (ROOT / "docs" / "flows.md").read_text()
    for spec in DIAGRAMS:
        marker = f"<!-- diagram: {spec.name} "
        assert marker in text, f"docs/flows.md does not embed {spec.name}"
        block = text.split(marker, 1)[1].split(EMBED_END, 1)[0]
        body = block.split("```mermaid\n", 1)[1].rsplit("```", 1)[0]
        assert body.rstrip() == (DIAGRAM_DIR / f"{spec.name}.mmd").read_text().rstrip(), (
            f"docs/flows.md holds another {spec.name} diagram than docs/diagrams: run 'signlab docs diagrams'")


def test_mermaid_accepts_the_diagrams() -> None:
    """Mermaid's own parser, if ``tests/shared/test_tracing.py`` already installed it (never installs)."""
    cache = Path.home() / ".cache" / "signlab" / "mermaid-check"
    node = shutil.which("node")
    if node is None or not (cache / "node_modules" / "mermaid").exists():
        pytest.skip("Mermaid's parser is not installed (tests/shared/test_tracing.py installs it when npm works)")
    script = cache / "check.mjs"
    shutil.copyfile(ROOT / "tests" / "shared" / "tracing_mermaid_check.mjs", script)
    for spec in DIAGRAMS:
        text = (DIAGRAM_DIR / f"{spec.name}.mmd").read_text()
        result = subprocess.run([node, str(script)], input=text, capture_output=True, text=True, timeout=120, cwd=cache)
        assert result.returncode == 0, f"{spec.name}: Mermaid rejected it: {result.stdout}{result.stderr}"
        assert json.loads(result.stdout.strip().splitlines()[-1]) == {"ok": True, "type": "sequence"}
    architecture = (ROOT / "docs" / "architecture.md").read_text()
    for block in re.findall(r"```mermaid\n(.*?)```", architecture, re.DOTALL):
        result = subprocess.run([node, str(script)], input=block, capture_output=True, text=True, timeout=120, cwd=cache)
        assert result.returncode == 0, f"docs/architecture.md: Mermaid rejected a diagram: {result.stdout}{result.stderr}"


@pytest.mark.processes
def test_regenerated_diagrams_have_the_same_structure(tmp_path: Path) -> None:
    """A fresh run draws the same lanes, steps and arrows as the committed diagrams."""
    lines: list[str] = []
    generate_diagrams(tmp_path, progress=lines.append)
    for spec in DIAGRAMS:
        fresh, committed = _load(spec, tmp_path), _load(spec)
        assert fresh.header["scenario"] == committed.header["scenario"]
        assert fresh.header["outcome"] == committed.header["outcome"]
        assert fresh.participants == committed.participants
        assert fresh.steps == committed.steps, f"{spec.name}: steps {fresh.steps} != committed {committed.steps}"
        missing, extra = committed.skeleton() - fresh.skeleton(), fresh.skeleton() - committed.skeleton()
        assert not missing and not extra, (
            f"{spec.name}: the committed diagram is out of date; run 'signlab docs diagrams'.\n"
            f"only in the committed file: {sorted(missing)}\nonly in a fresh run: {sorted(extra)}\n" + "\n".join(lines))
