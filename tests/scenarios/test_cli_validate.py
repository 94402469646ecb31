"""``signlab validate`` and ``signlab clock`` against the running ecosystem: a B-B and a B-LTA
signature validated now, then a day later on the lab clock (no test waits for an expiry)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.portal.etsi_report import schema_problems
from signlab.cli import main
from signlab.runtime import LocalRuntime
from signlab.scenarios.agent import UserAgent, materialize
from signlab.scenarios.environment import Ecosystem
from signlab.scenarios.faults import plan_faults
from signlab.scenarios.loader import load_all, samples_dir
from signlab.scenarios.results import ScenarioResult

pytestmark = pytest.mark.processes


def _sign(ecosystem: Ecosystem, name: str) -> bytes:
    """Sign as the catalogue scenario ``name`` does (the real flow); the signed PDF."""
    scenario = {s.name: s for s in load_all()}[name]
    agent = UserAgent(ecosystem, scenario, ScenarioResult(scenario), login_hint=plan_faults(scenario, ecosystem).login_hint(scenario))
    outcome = agent.run_portal(materialize(scenario.documents, samples_dir()))
    [(_name, signed)] = outcome.signed
    return signed


def test_validate_now_and_a_day_later(scenario_runtime: LocalRuntime, ecosystem: Ecosystem, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    data_dir = ["--data-dir", str(scenario_runtime.data_dir)]
    b_b, b_lta = tmp_path / "b-b.pdf", tmp_path / "b-lta.pdf"
    b_b.write_bytes(_sign(ecosystem, "qes-pades-b-b"))
    b_lta.write_bytes(_sign(ecosystem, "qes-pades-b-lta"))
    assert main([*data_dir, "validate", str(b_b)]) == 0
    assert "b-b.pdf: TOTAL_PASSED" in capsys.readouterr().out
    try:
        assert main([*data_dir, "clock", "advance", "+1d"]) == 0
        assert "machine time +1 d" in capsys.readouterr().out
        assert main([*data_dir, "validate", str(b_b)]) == 1
        out = capsys.readouterr().out
        assert "b-b.pdf: INDETERMINATE / OUT_OF_BOUNDS_NO_POE" in out and "process Basic" in out
        etsi, detailed = tmp_path / "etsi.xml", tmp_path / "detailed.json"
        assert main([*data_dir, "validate", str(b_lta), "--etsi", str(etsi), "--detailed", str(detailed)]) == 0
        out = capsys.readouterr().out
        assert "b-lta.pdf: TOTAL_PASSED" in out and "level B-LTA, QES at the signing time" in out
        assert "proof of existence: signature at" in out and "by the signature time-stamp by SignLab Time-Stamping" in out
        assert schema_problems(etsi.read_bytes()) == []
        assert json.loads(detailed.read_text())["signatures"][0]["validation_process"].startswith(
            "validation process for signatures providing long-term availability")
        # --at: the same B-B file validated at a time inside its certificate's life passes again
        assert main([*data_dir, "validate", str(b_b), "--at", "now-1d", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["indication"] == "TOTAL_PASSED"
        assert main([*data_dir, "validate", str(b_b), "--at", "someday"]) == 1
        assert "'at': 'someday' is not a time" in capsys.readouterr().err
    finally:
        main([*data_dir, "clock", "reset"])
        capsys.readouterr()
