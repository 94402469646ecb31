"""``signlab clock``: the lab clock file the services of a data directory read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.clock import LabClock
from signlab.cli import main


def _clock(tmp_path: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["--data-dir", str(tmp_path), "clock", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_set_advance_show_reset(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SIGNLAB_CLOCK_FILE", raising=False)
    services = LabClock(tmp_path / "lab-clock.json")  # what every service of this data directory reads
    code, out, _ = _clock(tmp_path, capsys, "set", "+1d")
    assert code == 0 and "machine time +1 d" in out and str(tmp_path / "lab-clock.json") in out
    assert services.offset() == 86400
    _clock(tmp_path, capsys, "advance", "+2h")
    code, out, _ = _clock(tmp_path, capsys, "show", "--json")
    state = json.loads(out)
    assert (state["offset_seconds"], state["offset"], state["moved"]) == (93600, "+1 d 2 h", True)
    assert state["note"] == "signlab clock advance +2h"
    _clock(tmp_path, capsys, "set", "2040-01-01T00:00:00Z")
    assert services.now().year == 2040
    code, out, _ = _clock(tmp_path, capsys, "reset")
    assert code == 0 and "the machine time" in out and services.offset() == 0


def test_bad_values_are_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _clock(tmp_path, capsys, "set", "next week")
    assert code == 2 and "is not a time" in err
    code, _, err = _clock(tmp_path, capsys, "advance", "+200000d")
    assert code == 2 and "century" in err
    assert not (tmp_path / "lab-clock.json").exists()


def test_the_clock_file_of_the_environment_wins(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIGNLAB_CLOCK_FILE", str(tmp_path / "shared" / "clock.json"))
    _clock(tmp_path / "data", capsys, "set", "--", "-30m")
    assert LabClock(tmp_path / "shared" / "clock.json").offset() == -1800
