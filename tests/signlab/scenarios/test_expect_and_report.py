"""Expectation checks (the messages a broken rule produces), the summary, JUnit and HTML reports."""

from __future__ import annotations

from pathlib import Path

from shared.xml_schemas import parse as parse_xml
from signlab.scenarios.expect import check_outcome, check_trace, check_validation, is_subsequence
from signlab.scenarios.loader import load_scenario
from signlab.scenarios.model import Scenario
from signlab.scenarios.report import exit_code, summary_table, write_html, write_junit
from signlab.scenarios.results import Check, Refusal, ScenarioResult, StepRecord, TraceEvent

CATALOGUE = Path(__file__).resolve().parents[3] / "scenarios"


def scenario(name: str) -> Scenario:
    return load_scenario(CATALOGUE / f"{name}.yaml")


def test_subsequence() -> None:
    assert is_subsequence([2, 5, 9], [2, 2, 3, 5, 6, 9, 10]) == (True, None)
    assert is_subsequence([2, 9, 5], [2, 5, 9]) == (False, 5)
    assert is_subsequence([7], []) == (False, 7)


def test_a_replay_that_is_not_refused_fails_naming_step_and_expectation() -> None:
    """As when SAD replay protection is switched off: the flow signs, the scenario fails."""
    result = ScenarioResult(scenario("sad-replay"), signed_documents=1)
    [check] = check_outcome(result.scenario, result)
    assert not check.ok and check.step == 6
    assert check.detail == "expected refused with invalid_request at step 6, but the flow signed 1 document(s)"


def test_refusal_at_the_wrong_step_or_with_the_wrong_code() -> None:
    result = ScenarioResult(scenario("idp-cancel"))
    result.refusal = Refusal("server_error", "step 5 (IPSP → SSASP): boom", 5, "GET /oauth2/idp-callback")
    checks = {c.name: c for c in check_outcome(result.scenario, result)}
    assert checks["outcome"].ok and not checks["error"].ok and not checks["step"].ok
    assert "expected the refusal at step 4, it came at step 5" in checks["step"].detail


def test_trace_checks() -> None:
    s = scenario("loa-too-low-for-qes")
    events = [TraceEvent(float(i), n, "signer audit", "e") for i, n in enumerate([2, 3, 4, 7])]
    checks = {c.name: c for c in check_trace(s, events)}
    assert not checks["step 7 absent"].ok and checks["step 6 absent"].ok


def test_validation_checks() -> None:
    s = scenario("qes-pades-b-t")
    good = {"indication": "TOTAL_PASSED", "signatures": [{"level": "B-T", "qualification": "QES"}]}
    weak = {"indication": "TOTAL_PASSED", "signatures": [{"level": "B-B", "qualification": "AdES"}]}
    assert check_validation(s, [good])[0].ok
    [bad] = check_validation(s, [weak])
    assert not bad.ok and "level B-B (expected B-T)" in bad.detail and "qualification AdES" in bad.detail
    assert not check_validation(s, [])[0].ok


def _results() -> list[ScenarioResult]:
    ok = ScenarioResult(scenario("qes-pades-b-b"), duration=1.2, transaction_id="tx1", diagram_svg="<svg></svg>")
    ok.steps.append(StepRecord(2, "create <request>", detail="fine"))
    ok.checks.append(Check("outcome", True, "signed 1 document(s)"))
    bad = ScenarioResult(scenario("sad-replay"), status="failed", reason="step 6: outcome: expected refused")
    bad.checks.append(Check("outcome", False, "expected refused with invalid_request at step 6", 6))
    skipped = ScenarioResult(scenario("hsm-failure-at-step-9"), status="skipped", reason="no HSM hook")
    return [ok, bad, skipped]


def test_summary_and_exit_code() -> None:
    results = _results()
    table = summary_table(results)
    assert "sad-replay" in table and "FAILED" in table and "1 passed, 1 failed, 0 error(s), 1 skipped" in table
    assert exit_code(results) == 1 and exit_code([results[0], results[2]]) == 0


def test_junit_and_html(tmp_path: Path) -> None:
    results = _results()
    write_junit(results, tmp_path / "j.xml")
    suite = parse_xml((tmp_path / "j.xml").read_bytes()).find("testsuite")
    assert suite is not None and suite.get("tests") == "3" and suite.get("failures") == "1" and suite.get("skipped") == "1"
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert cases["sad-replay"].find("failure").get("message") == "step 6: outcome: expected refused"  # type: ignore[union-attr]
    assert cases["hsm-failure-at-step-9"].find("skipped") is not None
    write_html(results, tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text()
    assert "<svg></svg>" in page and "create &lt;request&gt;" in page and "http://" not in page.split("<body>")[0]
    assert 'id="sad-replay" open' in page
