"""The scenario loader: every catalogue file valid; problems named by file, line, column and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from signlab.scenarios.loader import ScenarioFormatError, discover, load_all, load_scenario, parse_scenario

GOOD = """\
title: A valid scenario
description: Kari signs one PDF with BankID.
tags: [smoke, qes]
persona: {person: kari-nordmann, eid: no-bankid}
documents:
  - sample: employment-contract.pdf
request: {qualifier: qes, format: PAdES, level: B-B}
expect:
  outcome: signed
"""


def parse(text: str):  # noqa: ANN201 - helper
    return parse_scenario(text, file="x.yaml", name="x", base=Path("."))


def problems(text: str) -> list[str]:
    with pytest.raises(ScenarioFormatError) as info:
        parse(text)
    return [str(p) for p in info.value.problems]


def test_the_whole_catalogue_is_valid() -> None:
    scenarios = load_all()
    assert len(scenarios) == len(discover()) >= 25
    assert len({s.name for s in scenarios}) == len(scenarios)


def test_a_valid_file_builds_the_model() -> None:
    s = parse(GOOD)
    assert s.persona.person == "kari-nordmann" and s.request.signature_qualifier == "eu_eidas_qes"
    assert s.driver == "portal" and s.expect.invariants[0] == "no-key-left-in-hsm"


@pytest.mark.parametrize(("change", "expected"), [
    (("format: PAdES", "format: PDF"), "x.yaml:7:35: request.format: 'PDF' is not one of"),
    (("level: B-B}", "level: B-B, colour: red}"), "x.yaml:7:54: request.colour: unknown field 'colour'"),
    (("tags: [smoke, qes]", "tags: [smoke, qes, fast]"), "x.yaml:3:20: tags[2]: 'fast' is not one of"),
    (("  outcome: signed", "  outcome: refused"), "x.yaml:9:3: expect.error: missing required field"),
    (("person: kari-nordmann", "person: nobody"), "x.yaml:4:19: persona.person: unknown test person 'nobody'"),
    (("eid: no-bankid", "eid: no-passport"), "x.yaml:4:39: persona.eid: unknown eID means 'no-passport'"),
    (("sample: employment-contract.pdf", "sample: missing.pdf"), "x.yaml:6:13: documents[0].sample: no bundled sample"),
])
def test_problems_name_file_line_column_and_field(change: tuple[str, str], expected: str) -> None:
    found = problems(GOOD.replace(*change))
    assert any(p.startswith(expected) for p in found), found


def test_unknown_idp_failure_and_two_keys_in_one_fault() -> None:
    text = GOOD.replace("expect:", "faults:\n  - idp: teleport\n  - {idp: cancel, tamper: replay-sad}\nexpect:")
    found = problems(text)
    assert any("faults[1]: each fault is a mapping with exactly one key" in p for p in found), found
    found = problems(GOOD.replace("expect:", "faults:\n  - idp: teleport\nexpect:"))
    assert found == [p for p in found if "faults[0].idp: unknown IdP failure 'teleport'" in p] and found


def test_duplicate_keys_and_yaml_syntax() -> None:
    assert problems(GOOD + "title: again\n")[0].startswith("x.yaml:10:1: title: duplicate key 'title' (first at line 1)")
    assert problems("title: [unclosed\n")[0].startswith("x.yaml:2:1: (document): YAML syntax")
    assert problems("")[0] == "x.yaml:1:1: (document): the file is empty"


def test_partner_tampering_needs_the_partner_driver() -> None:
    text = GOOD.replace("expect:", "driver: portal\nfaults:\n  - tamper: replay-sad\nexpect:")
    assert any("faults[0].tamper: tamper 'replay-sad'" in p and "needs driver: partner" in p for p in problems(text))
    implied = parse(GOOD.replace("expect:", "faults:\n  - tamper: reuse-code\nexpect:"))
    assert implied.driver == "partner"


def test_load_all_reports_every_bad_file(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.yaml").write_text(GOOD.replace("qes, format", "qxs, format"))
    (tmp_path / "c.yaml").write_text(GOOD.replace("B-B}", "B-Z}"))
    with pytest.raises(ScenarioFormatError) as info:
        load_all(tmp_path)
    files = {Path(p.file).name for p in info.value.problems}
    assert files == {"b.yaml", "c.yaml"}
    assert load_scenario(tmp_path / "a.yaml").name == "a"


TIMELINE = GOOD.replace("expect:\n  outcome: signed\n", """\
faults:
  - trusted_list: {service: tsa, status: withdrawn}
  - ocsp: unavailable
timeline:
  - clock: +1d
  - revoke: {reason: keyCompromise}
  - trusted_list: {service: ca, status: withdrawn}
  - validate:
      at: signing+10m
      expect: {indication: TOTAL_PASSED, qualification: QES, qualification_at_validation_time: AdES,
               proof_of_existence: signature time-stamp, timestamp_qualified: false}
expect:
  outcome: signed
""")


def test_a_timeline_builds_its_steps_in_order() -> None:
    s = parse(TIMELINE)
    assert [(t.kind, t.params) for t in s.timeline] == [
        ("clock", {"offset": "+1d"}), ("revoke", {"reason": "keyCompromise"}),
        ("trusted_list", {"service": "ca", "status": "withdrawn"}), ("validate", {"at": "signing+10m"})]
    expect = s.timeline[3].expect
    assert expect is not None and (expect.qualification, expect.qualification_at_validation_time) == ("QES", "AdES")
    assert (expect.proof_of_existence, expect.timestamp_qualified) == ("signature time-stamp", False)
    assert [t.describe() for t in s.timeline][:1] == ["move the lab clock +1d"]
    assert [(f.kind, f.params) for f in s.faults] == [("trusted_list", {"service": "tsa", "status": "withdrawn"}),
                                                      ("ocsp", {"name": "unavailable"})]


@pytest.mark.parametrize(("change", "expected"), [
    (("  - clock: +1d", "  - clock: tomorrow"), "timeline[0].clock: 'tomorrow' does not match"),
    (("  - clock: +1d", "  - clock: +1d\n    revoke: {}"), "timeline[0]: each timeline step is a mapping with exactly one key"),
    (("      at: signing+10m\n", ""), None),
    (("{service: ca, status: withdrawn}", "{service: hsm, status: withdrawn}"), "timeline[2].trusted_list.service"),
    (("qualification: QES,", "qualification: QESig,"), "timeline[3].validate.expect.qualification"),
])
def test_timeline_problems(change: tuple[str, str], expected: str | None) -> None:
    text = TIMELINE.replace(*change)
    if expected is None:
        assert parse(text).timeline[3].params == {"at": "now"}
    else:
        assert any(expected in p for p in problems(text)), problems(text)


def test_a_timeline_needs_a_signed_outcome() -> None:
    text = TIMELINE.replace("  outcome: signed", "  outcome: refused\n  error: access_denied\n  step: 4")
    assert any("timeline: a timeline happens after signing" in p for p in problems(text))


def test_the_matrix_is_tagged_and_expects_an_indication_at_each_validation() -> None:
    matrix = [s for s in load_all() if "matrix" in s.tags]
    assert len(matrix) >= 15
    for scenario in matrix:
        validations = [t for t in scenario.timeline if t.kind == "validate"]
        if scenario.expect.outcome == "refused":
            assert not validations
            continue
        assert validations, scenario.name
        assert all(t.expect is not None and t.expect.indication for t in validations), scenario.name
        indeterminate = [t.expect for t in validations if t.expect and t.expect.indication != "TOTAL_PASSED"]
        assert all(e.sub_indication for e in indeterminate), scenario.name
