"""Flow tracing end to end: four real apps on loopback, one signing, one trace, drawn and redacted."""

from __future__ import annotations

import fcntl
import json
import re
import shutil
import subprocess
import tempfile
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the miniature ecosystem beside this file

import tracing_ecosystem  # noqa: E402

from shared.flow import STEPS, step  # noqa: E402
from shared.tracing import TraceStore, build_transaction, render_json, render_mermaid, render_svg  # noqa: E402
from shared.tracing.model import Transaction  # noqa: E402


@pytest.fixture(scope="module")
def eco(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tracing_ecosystem.Ecosystem]:
    ecosystem = tracing_ecosystem.start(tmp_path_factory.mktemp("tracing"))
    yield ecosystem
    for server in ecosystem.servers:
        server.stop()


@pytest.fixture(scope="module")
def signed(eco: tracing_ecosystem.Ecosystem) -> Transaction:
    response = eco.sign()
    assert response.status_code == 200 and "/transactions/tx-" in response.url
    tx_id = response.url.rsplit("/", 1)[1]
    group = TraceStore(eco.trace_dir).find(tx_id)
    assert group is not None, "the portal's transaction id finds the transaction"
    return build_transaction(group)


@pytest.fixture(scope="module")
def refused(eco: tracing_ecosystem.Ecosystem, signed: Transaction) -> Transaction:
    response = eco.sign(acr="substantial")
    assert "error=access_denied" in response.url
    return build_transaction(TraceStore(eco.trace_dir).transactions()[0])


def test_one_signing_is_one_transaction_with_steps_1_to_10_in_order(signed: Transaction) -> None:
    assert signed.steps == list(range(1, 11))
    assert signed.outcome == "completed"
    # The browser chain started 7+ traces (no traceparent from a browser): stitched into one.
    assert len(signed.trace_ids) >= 7
    assert any(t.startswith("tx-") for t in signed.transaction_ids)


def test_back_channel_calls_share_the_callers_trace(signed: Transaction, eco: tracing_ecosystem.Ecosystem) -> None:
    spans = TraceStore(eco.trace_dir).find(signed.id).spans  # type: ignore[union-attr]
    by_id = {s["span_id"]: s for s in spans}
    ca_issuance = next(s for s in spans if s["attributes"].get("signlab.step") == 7 and s["kind"] == "SERVER")
    client = by_id[ca_issuance["parent_id"]]
    assert client["kind"] == "CLIENT" and client["service"] == "signer"
    assert ca_issuance["remote_parent"] is True
    sign_doc = by_id[client["parent_id"]]
    assert sign_doc["attributes"]["signlab.message"].startswith("CSC signDoc")
    assert len({ca_issuance["trace_id"], client["trace_id"], sign_doc["trace_id"]}) == 1


def test_each_step_is_drawn_between_its_roles(signed: Transaction) -> None:
    requests = {(a.step, a.source, a.target) for a in signed.arrows() if a.kind in ("request", "self")}
    for flow_step in STEPS:
        if flow_step.number in (1, 4):  # browser steps: the signer acts
            assert (flow_step.number, "Signer", str(flow_step.target)) in requests
        elif flow_step.number == 3:  # the SSASP sends the browser to the IPSP
            assert (3, "SSASP", "IPSP") in requests
        elif flow_step.number == 10:  # the signDoc response returns to the SCASP
            assert any(a.step == 10 and a.source == "SSASP" and a.target == "SCASP" for a in signed.arrows())
        else:
            assert (flow_step.number, str(flow_step.source), str(flow_step.target)) in requests, flow_step.label
    # The exchanges carry their protocol messages.
    messages = {(e.step, e.message) for e in signed.exchanges}
    assert (2, "pushed authorization request (PAR)") in messages
    assert (7, "certificate request (CSR + ID token + client assertion)") in messages
    assert (6, "C_GenerateKeyPair") in messages


def test_payloads_are_decoded(signed: Transaction) -> None:
    by_message = {e.message: e for e in signed.exchanges}
    par = by_message["pushed authorization request (PAR)"]
    details = par.summary["form"]["authorization_details"][0]
    assert details["signatureQualifier"] == "eu_eidas_qes"
    assert details["hashAlgorithmOID"].endswith("(SHA-256)")
    assert re.fullmatch(r"SHA-256( [0-9A-F]{8}){8}", details["documentDigests"][0]["hash"])
    assert par.summary["authorization"] == {"scheme": "Basic", "client_id": "signlab-portal",
                                            "client_secret": par.summary["authorization"]["client_secret"]}
    token = by_message["OIDC token request (code + PKCE verifier)"]
    claims = token.response_summary["json"]["id_token"]["claims"]
    assert claims["acr"] == "http://eidas.europa.eu/LoA/high" and claims["given_name"] == "Kari"
    issuance = by_message["certificate request (CSR + ID token + client assertion)"]
    assert issuance.summary["json"]["csr"]["proof_of_possession"] == "signature valid"
    # The trace keeps what the diagram needs: the identifier's type and country, not the number.
    assert "PNONO-•••••••••45" in issuance.summary["json"]["csr"]["csr_subject"]
    assert "01017012345" not in str(issuance.summary)
    assert issuance.summary["json"]["client_assertion"]["claims"]["iss"] == "signlab-signer"
    certificate = issuance.response_summary["json"]["certificate"]
    assert certificate["policies"] == ["0.4.0.194112.1.2"] and certificate["validity_minutes"] == 16.0
    assert by_message["C_GenerateKeyPair"].summary["algorithm"] == "EC P-256"


def test_no_secret_reaches_the_store(eco: tracing_ecosystem.Ecosystem, signed: Transaction, refused: Transaction) -> None:
    stored = "".join(p.read_text() for p in eco.trace_dir.glob("*.jsonl"))
    assert stored, "spans were written"
    assert len(eco.used.values) > 20
    for name, value in eco.used.values.items():
        assert value not in stored, f"{name} leaked into the trace store"
    # Also the masks are there (the values were seen and redacted, not just absent).
    assert "•••• (masked" in stored
    assert "code_verifier" in stored and "client_secret" in stored


def test_a_refusal_is_drawn_at_step_5_in_red(refused: Transaction) -> None:
    assert refused.outcome == "refused" and refused.failure_step == 5
    failure = refused.failure
    assert failure is not None and failure.failure_step == 5 and failure.service == "signer"
    assert failure.error == "access_denied"
    assert refused.steps == [1, 2, 3, 4, 5]
    origin = [a for a in refused.arrows() if a.origin]
    assert len(origin) == 1 and origin[0].step == 5 and origin[0].failed
    svg = render_svg(refused)
    root = ET.fromstring(svg)
    ns = {"s": "http://www.w3.org/2000/svg"}
    marked = root.findall(".//s:g[@class='sl-arrow sl-response step-5 sl-failed sl-origin']", ns)
    assert len(marked) == 1
    assert "access_denied" in "".join(marked[0].itertext())
    assert any(line.get("stroke") == "#b3261e" for line in marked[0].iter("{http://www.w3.org/2000/svg}line"))
    mermaid = render_mermaid(refused)
    assert "--x" in mermaid and "Note over SSASP: failed at step 5" in mermaid
    check_mermaid(mermaid)


def test_svg_is_well_formed_with_lanes_and_hover_summaries(signed: Transaction) -> None:
    root = ET.fromstring(render_svg(signed))
    ns = "{http://www.w3.org/2000/svg}"
    assert root.tag == f"{ns}svg"
    lanes = [g.get("data-role") for g in root.iter(f"{ns}g") if g.get("class") == "sl-lane"]
    assert lanes == ["Signer", "SCASP", "SSASP", "HSM", "IPSP", "TSP"]
    arrows = [g for g in root.iter(f"{ns}g") if (g.get("class") or "").startswith("sl-arrow")]
    # The login hops of step 4 are folded into one row; expanded, every arrow has its own row.
    folded = [g for g in root.iter(f"{ns}g") if (g.get("class") or "").startswith("sl-fold")]
    assert len(folded) == 1 and folded[0].get("data-step") == "4"
    assert len(arrows) + int(folded[0].get("data-arrows")) == len(signed.arrows())
    expanded = ET.fromstring(render_svg(signed, expand=frozenset({4})))
    arrows = [g for g in expanded.iter(f"{ns}g") if (g.get("class") or "").startswith("sl-arrow")]
    assert len(arrows) == len(signed.arrows())
    assert [int(g.get("data-step")) for g in arrows if "sl-request" in g.get("class")] == sorted(
        int(g.get("data-step")) for g in arrows if "sl-request" in g.get("class"))
    for group in arrows:
        assert group.find(f"{ns}title") is not None
        json.loads(group.get("data-summary"))
    assert "Step 7" in "".join(root.itertext())


def test_json_export_round_trips(signed: Transaction) -> None:
    data = json.loads(render_json(signed))
    assert data["steps"] == list(range(1, 11)) and data["outcome"] == "completed"
    assert [row["step"] for row in data["step_timings"]] == list(range(1, 11))
    assert all(row["duration_ms"] >= 0 and row["state"] == "done" for row in data["step_timings"])
    assert [s["state"] for s in data["step_states"]] == ["done"] * 10


def test_mermaid_is_valid(signed: Transaction) -> None:
    check_mermaid(render_mermaid(signed))


def test_store_finds_by_trace_id_prefix_and_latest(eco: tracing_ecosystem.Ecosystem, signed: Transaction,
                                                   refused: Transaction) -> None:
    store = TraceStore(eco.trace_dir)
    assert store.find(signed.trace_ids[-1]).id == signed.id  # type: ignore[union-attr]
    assert store.find(signed.id[:12]).id == signed.id  # type: ignore[union-attr]
    assert store.find("latest").id == refused.id  # type: ignore[union-attr]
    assert store.find("no-such-transaction") is None


# ---------------------------------------------------------------- a strict Mermaid checker

_ID = r"(Signer|SCASP|SSASP|HSM|IPSP|TSP)"
_TEXT = r"[^\n;#<>%{}\"`]*(?:#\d+;[^\n;#<>%{}\"`]*)*"
_LINES = [
    re.compile(r"^sequenceDiagram$"),
    re.compile(rf"^    title {_TEXT}$"),
    re.compile(rf"^ {{4,8}}participant {_ID} as [A-Za-z][A-Za-z ()]*$"),
    re.compile(r"^    box [A-Za-z ]+$"),
    re.compile(r"^    end$"),
    re.compile(r"^    rect rgb\(\d{1,3}, \d{1,3}, \d{1,3}\)$"),
    re.compile(rf"^ {{4,8}}{_ID}(->>|-\)|-->>|--x|-x){_ID}: \d{{1,2}} · {_TEXT}$"),
    re.compile(rf"^ {{4,8}}Note over {_ID}: {_TEXT}$"),
]


def check_mermaid(text: str) -> None:
    """The subset of Mermaid's sequenceDiagram grammar the renderer emits, checked line by line,
    with balanced box/rect … end blocks, known participants only, and (when Node and the mermaid
    package are available) Mermaid's own parser."""
    lines = text.rstrip("\n").split("\n")
    assert lines[0] == "sequenceDiagram"
    depth = 0
    declared: set[str] = set()
    for number, line in enumerate(lines, start=1):
        assert any(p.match(line) for p in _LINES), f"line {number} is outside the grammar: {line!r}"
        if line.strip().startswith(("box ", "rect ")):
            depth += 1
        elif line.strip() == "end":
            depth -= 1
            assert depth >= 0, f"line {number}: 'end' without an open block"
        elif line.strip().startswith("participant "):
            declared.add(line.split()[1])
        else:
            for actor in re.findall(_ID, line.split(":", 1)[0]):
                assert actor in declared, f"line {number}: {actor} not declared"
    assert depth == 0, "unclosed box/rect block"
    _mermaid_parse(text)


def _mermaid_parse(text: str) -> None:
    """Mermaid's own parser (mermaid + jsdom from the npm registry, cached per user); skipped
    when Node or the registry is unavailable — the strict check above always runs."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        return
    cache = Path.home() / ".cache" / "signlab" / "mermaid-check"
    cache.parent.mkdir(parents=True, exist_ok=True)
    # Several test runs may share the per-user cache: one installs under a lock, into a fresh
    # folder renamed into place, so nobody ever sees a half-installed node_modules.
    with (cache.parent / "mermaid-check.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (cache / "node_modules" / "jsdom" / "package.json").exists():
            staging = Path(tempfile.mkdtemp(prefix="mermaid-check-", dir=cache.parent))
            (staging / "package.json").write_text('{"name": "signlab-mermaid-check", "private": true}')
            try:
                subprocess.run([npm, "install", "--no-audit", "--no-fund", "mermaid@11", "jsdom@26"], cwd=staging,
                               capture_output=True, timeout=240, check=True)
            except (subprocess.SubprocessError, OSError):
                shutil.rmtree(staging, ignore_errors=True)
                return
            shutil.rmtree(cache, ignore_errors=True)
            staging.rename(cache)
    script = cache / "check.mjs"  # beside its node_modules: ES modules resolve imports from their own folder
    shutil.copyfile(Path(__file__).with_name("tracing_mermaid_check.mjs"), script)
    result = subprocess.run([node, str(script)], input=text, capture_output=True, text=True, timeout=120, cwd=cache)
    assert result.returncode == 0, f"Mermaid rejected the diagram: {result.stdout}{result.stderr}"
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"ok": True, "type": "sequence"}


def test_checker_rejects_what_mermaid_rejects() -> None:
    with pytest.raises(AssertionError):
        check_mermaid("sequenceDiagram\n    Signer->>>SCASP: 1 · x\n")
    with pytest.raises(AssertionError):
        check_mermaid("sequenceDiagram\n    participant Signer as Signer\n    Signer->>Signer: 1 · a;b\n")
    with pytest.raises(AssertionError):
        check_mermaid("sequenceDiagram\n    box SSASP\n")


def test_step_numbers_stay_valid() -> None:
    assert step(10).number == 10
