"""shared.clock: the lab clock (offset file), time parsing, and the clock pyHanko reads.

No test here depends on the machine's clock: every LabClock is built on a fixed ``system`` clock.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib
import importlib.util
import re
import threading
from pathlib import Path

import pytest

from shared.clock import (
    PYHANKO_CLOCK_MODULES,
    ClockSettings,
    LabClock,
    LabDatetime,
    format_offset,
    parse_moment,
    parse_offset,
    pinned_at,
    route_library_clocks,
    seconds,
)

MACHINE = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)


def _clock(tmp_path: Path) -> LabClock:
    return LabClock(tmp_path / "lab-clock.json", system=lambda: MACHINE.timestamp())


@pytest.mark.parametrize(("text", "value"), [("+1d", 86400), ("-90m", -5400), ("+1d2h30m", 95400), ("45s", 45),
                                             ("0", 0), ("+1w", 604800), ("1.5h", 5400)])
def test_parse_offset(text: str, value: float) -> None:
    assert parse_offset(text) == value


@pytest.mark.parametrize("text", ["tomorrow", "+1y", "1d+", "", "+200000d"])
def test_parse_offset_refuses_other_text(text: str) -> None:
    with pytest.raises(ValueError):
        parse_offset(text)


def test_format_offset() -> None:
    assert [format_offset(v) for v in (0, 0.3, 86400, -900, 93784)] == ["±0", "±0", "+1 d", "-15 min", "+1 d 2 h 3 min 4 s"]


def test_parse_moment_forms() -> None:
    now = MACHINE
    assert parse_moment("now", now) == now
    assert parse_moment("+1d", now) == now + dt.timedelta(days=1)
    assert parse_moment("now-2h", now) == now - dt.timedelta(hours=2)
    assert parse_moment("2027-01-01T12:00:00Z", now) == dt.datetime(2027, 1, 1, 12, tzinfo=dt.UTC)
    assert parse_moment("2027-01-01T12:00", now) == dt.datetime(2027, 1, 1, 12, tzinfo=dt.UTC)  # no zone: UTC
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_moment("yesterday", now)


def test_seconds_rounds_away_from_the_limit() -> None:
    assert [seconds(v) for v in (31, 30.04, 0.25)] == ["31", "30.1", "0.3"]


def test_no_file_is_the_machine_time(tmp_path: Path) -> None:
    clock = _clock(tmp_path)
    assert clock.offset() == 0 and clock.now() == MACHINE
    assert clock.describe()["moved"] is False


def test_set_advance_and_reset_go_through_the_file(tmp_path: Path) -> None:
    writer, reader = _clock(tmp_path), _clock(tmp_path)  # two processes sharing one clock file
    writer.set_offset(86400, note="signlab clock set +1d")
    assert reader.now() == MACHINE + dt.timedelta(days=1)
    assert reader.note() == "signlab clock set +1d"
    writer.advance(3600)
    assert reader.offset() == 90000
    assert reader.badge() == "lab clock 2026-12-08 13:00 UTC (+1 d 1 h)"
    writer.set_time(dt.datetime(2027, 1, 1, tzinfo=dt.UTC))
    assert reader.now() == dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
    writer.reset()
    assert not (tmp_path / "lab-clock.json").exists() and reader.offset() == 0


def test_a_damaged_or_absurd_clock_file_is_the_machine_time(tmp_path: Path) -> None:
    clock = _clock(tmp_path)
    path = tmp_path / "lab-clock.json"
    path.write_text("{not json")
    assert clock.offset() == 0
    path.write_text('{"offset_seconds": 1e12}')
    assert clock.offset() == 0
    with pytest.raises(ValueError, match="century"):
        clock.set_offset(1e12)


def test_clock_file_default_is_next_to_the_services_data_dirs(tmp_path: Path) -> None:
    assert ClockSettings().clock_file(tmp_path / "portal") == (tmp_path / "lab-clock.json").absolute()
    assert ClockSettings.from_env({"SIGNLAB_CLOCK_FILE": str(tmp_path / "x.json")}).clock_file(tmp_path) == tmp_path / "x.json"


def test_pinned_time_is_per_thread_and_per_task() -> None:
    route_library_clocks()
    ades = importlib.import_module("pyhanko.sign.validation.ades")
    a, b = dt.datetime(2030, 1, 1, tzinfo=dt.UTC), dt.datetime(2031, 1, 1, tzinfo=dt.UTC)
    seen: dict[str, dt.datetime] = {}
    ready = threading.Barrier(2)

    def in_thread(name: str, moment: dt.datetime) -> None:
        with pinned_at(moment):
            ready.wait()  # both pins are active at the same time
            seen[name] = ades.datetime.now(dt.UTC)

    threads = [threading.Thread(target=in_thread, args=("a", a)), threading.Thread(target=in_thread, args=("b", b))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == {"a": a, "b": b}

    async def in_task() -> dt.datetime:
        return await asyncio.to_thread(lambda: ades.datetime.now(dt.UTC))  # pyHanko's fetchers use to_thread

    with pinned_at(a):
        assert asyncio.run(in_task()) == a


def test_lab_datetime_is_still_the_datetime_class() -> None:
    moment = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    assert isinstance(moment, LabDatetime) and issubclass(dt.datetime, LabDatetime)
    with pinned_at(moment):
        assert LabDatetime.now() == moment.astimezone().replace(tzinfo=None)
        assert LabDatetime.utcnow() == moment.replace(tzinfo=None)
    assert LabDatetime(2030, 1, 1) == dt.datetime(2030, 1, 1)


def test_every_pyhanko_module_that_reads_the_clock_is_routed() -> None:
    """A pyHanko upgrade that reads the clock somewhere new must be noticed: scan the installed
    sources for ``datetime.now(`` / ``utcnow(`` / ``time.time(`` and compare with the routed list."""
    readers = set()
    for package in ("pyhanko", "pyhanko_certvalidator"):
        spec = importlib.util.find_spec(package)
        assert spec is not None and spec.submodule_search_locations
        root = Path(list(spec.submodule_search_locations)[0])
        for source in root.rglob("*.py"):
            text = source.read_text("utf-8")
            if re.search(r"\bdatetime\.(now|utcnow)\(|\btime\.time\(\)", text):
                readers.add(".".join(source.relative_to(root.parent).with_suffix("").parts))
    assert readers == set(PYHANKO_CLOCK_MODULES)
    route_library_clocks()
    assert all(importlib.import_module(m).datetime is LabDatetime for m in PYHANKO_CLOCK_MODULES)
