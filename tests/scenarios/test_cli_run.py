"""``signlab scenario run`` end to end: progress, summary, reports, --repeat, exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.xml_schemas import parse as parse_xml
from signlab.cli import main
from signlab.runtime import LocalRuntime

pytestmark = pytest.mark.processes

BROKEN_EXPECTATION = """\
title: Deliberately wrong expectation
description: The IdP cancel failure is expected to sign, which it must not.
tags: [negative]
persona: {person: kari-nordmann, eid: no-bankid}
documents:
  - sample: employment-contract.pdf
request: {qualifier: qes, format: PAdES, level: B-B}
faults:
  - idp: cancel
expect:
  outcome: signed
"""


def test_run_with_repeat_writes_junit_and_html(scenario_runtime: LocalRuntime, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    junit, html = tmp_path / "j.xml", tmp_path / "r.html"
    code = main(["--data-dir", str(scenario_runtime.data_dir), "scenario", "run", "qes-pades-b-b", "idp-cancel",
                 "--repeat", "2", "--junit", str(junit), "--html", str(html)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "[4/4] idp-cancel" in out and "ok      step 2" in out and "4 run(s): 4 passed" in out
    assert "qes-pades-b-b#2" in out and f"HTML report: {html}" in out
    suite = parse_xml(junit.read_bytes()).find("testsuite")
    assert suite is not None and suite.get("tests") == "4" and suite.get("failures") == "0"
    page = html.read_text()
    assert "<svg" in page and "Messages (decoded, secrets masked)" in page and "acr_values" in page and "login_hint" in page


def test_a_failed_expectation_exits_1_and_names_step_and_expectation(
        scenario_runtime: LocalRuntime, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "broken.yaml").write_text(BROKEN_EXPECTATION)
    code = main(["--data-dir", str(scenario_runtime.data_dir), "scenario", "run", "--all", "--dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAILED" in out and "step 4: outcome: expected signed, but refused with access_denied at step 4" in out


def test_list_and_selection_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scenario", "list", "--tag", "batch"]) == 0
    assert "batch-10-documents" in capsys.readouterr().out
    assert main(["scenario", "run"]) == 2
    assert "--all or --tag" in capsys.readouterr().err
    assert main(["scenario", "run", "no-such-scenario"]) == 2
    assert "unknown scenario(s): no-such-scenario" in capsys.readouterr().err
    (tmp_path / "bad.yaml").write_text(BROKEN_EXPECTATION.replace("PAdES", "PDF"))
    assert main(["scenario", "list", "--dir", str(tmp_path)]) == 2
    assert f"{tmp_path / 'bad.yaml'}:7:35: request.format: 'PDF' is not one of" in capsys.readouterr().err
