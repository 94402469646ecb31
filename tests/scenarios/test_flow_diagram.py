"""Issue 7's acceptance, end to end on real processes: after one QES signing in the portal, its
result page draws the flow — steps 1-10 between the right roles, each arrow's payload redacted.

Real processes matter here: each service records its spans under its own role, as in production.
"""

from __future__ import annotations

import pytest
import requests

from signlab.scenarios.environment import Ecosystem
from signlab.scenarios.loader import load_all
from signlab.scenarios.runner import run_scenario

pytestmark = pytest.mark.processes

ROLES_OF_STEP = {1: ("Signer", "SCASP"), 2: ("SCASP", "SSASP"), 6: ("SSASP", "HSM"), 7: ("SSASP", "TSP"),
                 8: ("SSASP", "SSASP"), 9: ("SSASP", "HSM")}


def test_result_page_draws_steps_1_to_10(ecosystem: Ecosystem) -> None:
    scenario = next(s for s in load_all() if s.name == "qes-pades-b-b")
    result = run_scenario(scenario, ecosystem, progress=lambda _line: None)
    assert result.status == "passed", result.reason
    portal = ecosystem.url("portal")
    # The scenario's request belongs to the lab's partner application: its trace is the
    # application's (the result page of a browser session's own request embeds the same diagram,
    # tests/interop/test_browser.py); the trainer sees every flow with the trainer token.
    partner = (ecosystem.setting("portal", "api_client_id"), ecosystem.secret("SIGNLAB_PORTAL_API_CLIENT_SECRET"))
    owned = requests.get(f"{portal}/api/v1/transactions/{result.transaction_id}/trace", auth=partner, timeout=30)
    assert owned.status_code == 200 and {a["step"] for a in owned.json()["arrows"]} >= set(range(1, 11))
    trainer = {"Authorization": f"Bearer {ecosystem.secret('SIGNLAB_PORTAL_TRAINER_TOKEN')}"}
    page = requests.get(f"{portal}/trainer/transactions/{result.transaction_id}", headers=trainer, timeout=30).text
    diagram = page[page.index("signlab-trace-live"):]
    assert "<svg" in diagram and "C_GenerateKeyPair" in diagram and "C_DestroyObject" in diagram

    arrows = requests.get(f"{portal}/trainer/api/transactions/{result.transaction_id}", headers=trainer,
                          timeout=30).json()["arrows"]
    assert {a["step"] for a in arrows} >= set(range(1, 11))
    for number, (source, target) in ROLES_OF_STEP.items():
        assert any(a["step"] == number and a["source"] == source and a["target"] == target for a in arrows), number
    text = str(arrows)
    for secret in (ecosystem.secret("SIGNLAB_PORTAL_API_CLIENT_SECRET"), ecosystem.secret("SIGNLAB_SIGNER_HSM_USER_PIN")):
        assert secret and secret not in text and secret not in page


def test_the_runner_reads_the_same_trace_through_the_trainer_api(ecosystem: Ecosystem) -> None:
    """On containers the trace store is a volume: the runner asks the portal's trainer API instead
    (``--engine docker``). Same run, both readers: the same arrows, to the millisecond, and the same
    trace check."""
    from dataclasses import replace

    from signlab.scenarios.diagram import RemoteTransaction, trace_of

    remote_view = replace(ecosystem, trace_dir=None, trace_api=f"{ecosystem.url('portal')}/trainer/api")
    scenario = next(s for s in load_all() if s.name == "qes-pades-b-b")
    result = run_scenario(scenario, remote_view, progress=lambda _line: None)
    assert result.status == "passed", result.reason
    assert "from the distributed trace" in result.diagram_note and "trainer API" in result.diagram_note
    assert result.diagram_svg and result.diagram_svg.lstrip().startswith("<svg")
    trace_check = next(c for c in result.checks if c.name == "trace order")
    assert trace_check.ok and not trace_check.skipped, trace_check.detail

    remote = trace_of(remote_view, result)
    local = trace_of(ecosystem, result)
    assert isinstance(remote, RemoteTransaction) and local is not None
    pairs = list(zip(remote.arrows(), local.arrows(), strict=True))
    assert pairs
    for got, want in pairs:
        assert (got.step, got.source, got.target, got.label, got.kind, got.failed) == \
            (want.step, str(want.source), str(want.target), want.label, want.kind, want.failed)
        assert abs(got.time - want.time) < 1_100_000  # the export's millisecond start and 0.1 ms offsets
