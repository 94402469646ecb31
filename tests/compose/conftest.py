"""The Docker stage's log: what ``tests/compose/test_real_engine.py`` did on the engine, printed at
the end of the test session (the image build, the healthy containers, the scenarios, the teardown
and how long the stage took) so a ``make test`` log shows it next to the results."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest


class StageLog:
    """Timestamped lines (seconds since the stage began)."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.started: float | None = None

    def __call__(self, line: str) -> None:
        if self.started is None:
            self.started = time.monotonic()
        self.lines.append(f"[{time.monotonic() - self.started:6.1f} s] {line}")


STAGE = StageLog()


@pytest.fixture(scope="session")
def engine_stage() -> Iterator[StageLog]:
    """The Docker stage's log."""
    yield STAGE


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the Docker stage's log (only when the stage ran or skipped with a reason)."""
    if STAGE.lines:
        terminalreporter.section("SignLab on a real Docker engine (tests/compose/test_real_engine.py)")
        for line in STAGE.lines:
            terminalreporter.write_line(line)
