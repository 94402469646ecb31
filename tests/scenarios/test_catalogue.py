"""The scenario catalogue (``scenarios/*.yaml``) as the project's end-to-end tests.

Every scenario runs against the real ecosystem of :func:`conftest.ecosystem` through the same
runner as ``signlab scenario run``. A scenario the ecosystem cannot inject a fault for is skipped
with the runner's reason (never passed); a scenario that shows a known gap of a service is an
``xfail(strict=True)`` naming the gap, so it turns red the day the gap is closed and the entry must
go.
"""

from __future__ import annotations

import pytest

from signlab.scenarios.environment import Ecosystem
from signlab.scenarios.loader import load_all
from signlab.scenarios.report import summary_table
from signlab.scenarios.runner import run_scenario

pytestmark = pytest.mark.processes

SCENARIOS = {s.name: s for s in load_all()}

KNOWN_GAPS: dict[str, str] = {}
"""Scenarios that show a known gap of a service, with the gap (none open)."""


def _param(name: str) -> object:
    marks = [pytest.mark.xfail(reason=KNOWN_GAPS[name], strict=True)] if name in KNOWN_GAPS else []
    return pytest.param(name, marks=marks, id=name)


@pytest.mark.parametrize("name", [_param(n) for n in sorted(SCENARIOS)])
def test_scenario(name: str, ecosystem: Ecosystem) -> None:
    lines: list[str] = []
    result = run_scenario(SCENARIOS[name], ecosystem, progress=lines.append)
    if result.status == "skipped":
        pytest.skip(result.reason)
    assert result.status == "passed", f"{result.reason}\n" + "\n".join(lines) + "\n" + summary_table([result])


def test_catalogue_covers_the_issue() -> None:
    """At least 25 scenarios, every required tag used."""
    assert len(SCENARIOS) >= 25
    tags = {t for s in SCENARIOS.values() for t in s.tags}
    assert {"smoke", "qes", "ades", "negative", "fault", "batch"} <= tags
