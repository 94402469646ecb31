"""The lab clock: one time for the whole ecosystem, movable by the trainer, never the machine's.

Short-term certificates live minutes; what keeps a signature valid next year is its time-stamps
and validation data. To show that, a scenario or a trainer signs "now", moves the lab clock a day
ahead and validates again. Every service reads the time from :func:`lab_clock`: the machine's
clock **plus an offset** kept in one small JSON file that all services of a run share (the *clock
file*). The machine's clock is never changed.

* **The clock file** is ``SIGNLAB_CLOCK_FILE``, by default ``<service data dir>/../lab-clock.json``
  — under ``signlab up`` that is ``<SIGNLAB_DATA_DIR>/lab-clock.json`` for every service. In
  compose, mount one volume in every container and point ``SIGNLAB_CLOCK_FILE`` into it. No file
  (or an unreadable one) means offset 0. ``signlab clock set +1d | show | reset`` writes it.
* **Reading** it costs one ``stat`` per call; the file is parsed again only when it changed, so a
  new offset holds from the next request on, in every process, without a restart.
* **Libraries that read the clock themselves.** pyHanko's AdES validation reads the machine's
  clock in places no argument reaches (the initial control time of past certificate validation,
  the proof-of-existence manager's "now"). :func:`route_library_clocks` replaces, once at import
  time, the ``datetime`` name in those modules by :class:`LabDatetime`, whose ``now()`` answers
  the time pinned for the current context (:func:`pinned_at`, a :class:`contextvars.ContextVar`,
  so concurrent validations in threads or asyncio tasks each see their own time) or else the lab
  clock. Unlike freezegun, nothing is patched per call, so threads cannot race on it; unlike
  running the validator under libfaketime in a subprocess, it costs nothing per validation.

Also here: how time offsets are stated in error messages (:func:`seconds`). A check such as
``iat > now + leeway`` compares real numbers: an offset of 30.4 s fails a 30 s leeway. Cutting it
to whole seconds ("issued 30 s in the future (leeway 30 s)") contradicts the refusal, so offsets
are stated to the tenth of a second, rounded away from the limit.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import importlib
import json
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from shared.settings import EnvSettings

__all__ = [
    "PYHANKO_CLOCK_MODULES",
    "ClockSettings",
    "LabClock",
    "LabDatetime",
    "configure_lab_clock",
    "format_offset",
    "lab_clock",
    "parse_moment",
    "parse_offset",
    "pinned_at",
    "route_library_clocks",
    "seconds",
]

MAX_OFFSET_SECONDS = 100 * 366 * 86400
"""The lab clock moves at most a century either way (certificates, CRLs and ASN.1 times stay sane)."""


def seconds(offset: float) -> str:
    """``offset`` (positive) in seconds, rounded up to a tenth: ``31``, ``30.1``, ``0.3``."""
    return f"{math.ceil(round(offset * 10, 3)) / 10:g}"  # round first: float noise is no tenth


class ClockSettings(EnvSettings):
    """Where the lab clock's offset is kept (``SIGNLAB_CLOCK_*``), common to every service."""

    env_prefix: ClassVar[str] = "SIGNLAB_CLOCK_"
    error_label: ClassVar[str] = "invalid lab clock settings"

    file: Path | None = Field(
        None, description="The lab clock file shared by every service (JSON: the offset from the machine's clock); "
        "empty means DATA_DIR/../lab-clock.json of each service, i.e. <SIGNLAB_DATA_DIR>/lab-clock.json under "
        "'signlab up'. In compose: a file on a volume mounted in every container.",
    )

    def clock_file(self, service_data_dir: Path) -> Path:
        """The clock file for a service whose data directory is ``service_data_dir``."""
        return (self.file or Path(service_data_dir).absolute().parent / "lab-clock.json").absolute()


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_OFFSET = re.compile(r"^([+-]?)((?:\d+(?:\.\d+)?[smhdw])+)$")
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_offset(text: str) -> float:
    """Seconds of an offset such as ``+1d``, ``-90m``, ``+1d2h30m``, ``45s``, ``0``.

    :raises ValueError: not an offset (the message shows the accepted forms).
    """
    compact = text.strip().replace(" ", "").lower()
    if compact in ("0", "+0", "-0"):
        return 0.0
    match = _OFFSET.match(compact)
    if not match:
        raise ValueError(f"{text!r} is not a time offset; use e.g. +1d, -90m, +1d2h30m, 45s (units s m h d w)")
    total = sum(float(n) * _UNITS[unit] for n, unit in _PART.findall(match.group(2)))
    value = -total if match.group(1) == "-" else total
    if abs(value) > MAX_OFFSET_SECONDS:
        raise ValueError(f"{text!r} moves the lab clock more than a century")
    return value


def format_offset(offset: float) -> str:
    """``+1 d 2 h``, ``-15 min``, ``+30 s``, ``±0`` — the offset as people read it."""
    if abs(offset) < 0.5:
        return "±0"
    sign = "+" if offset > 0 else "-"
    rest = round(abs(offset))
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        count, rest = divmod(rest, size)
        if count:
            parts.append(f"{count} {unit}")
    return sign + " ".join(parts)


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def parse_moment(text: str, now: dt.datetime) -> dt.datetime:
    """A point in time: ``now``, an offset from ``now`` (``+1d``, ``now-2h``), or ISO 8601
    (``2027-01-01T12:00:00Z``; no zone means UTC).

    :raises ValueError: none of these.
    """
    compact = text.strip()
    if compact.lower() == "now":
        return now
    relative = compact[3:] if compact.lower().startswith("now") else compact
    if relative[:1] in "+-" and relative:
        return now + dt.timedelta(seconds=parse_offset(relative))
    try:
        return _utc(dt.datetime.fromisoformat(compact.replace("Z", "+00:00")))
    except ValueError:
        raise ValueError(f"{text!r} is not a time; use 'now', an offset such as +1d or now-2h, or ISO 8601 "
                         "such as 2027-01-01T12:00:00Z") from None


class LabClock:
    """The machine's clock plus the offset in the clock file.

    :param path: the clock file (``None``: no file, offset 0 — a process outside any lab run).
    :param system: the underlying clock (seconds since the epoch); the machine's by default.
    """

    def __init__(self, path: Path | None = None, *, system: Callable[[], float] = time.time) -> None:
        self._path = path
        self._system = system
        self._lock = threading.Lock()
        self._seen: tuple[int, int] | None = None
        self._offset = 0.0
        self._note = ""

    @property
    def path(self) -> Path | None:
        """The clock file."""
        return self._path

    def use_file(self, path: Path | None) -> None:
        """Read the offset from ``path`` from now on (the services' app factory calls this)."""
        with self._lock:
            self._path, self._seen, self._offset, self._note = path, None, 0.0, ""

    def _refresh(self) -> None:
        path = self._path
        if path is None:
            return
        try:
            stat = path.stat()
        except OSError:
            self._seen, self._offset, self._note = None, 0.0, ""
            return
        key = (stat.st_mtime_ns, stat.st_size)
        if key == self._seen:
            return
        try:
            data = json.loads(path.read_text("utf-8"))
            offset = float(data.get("offset_seconds", 0.0))
            note = str(data.get("note", ""))[:200]
        except (OSError, ValueError, TypeError, AttributeError):
            offset, note = 0.0, ""  # a clock file being rewritten or damaged: the machine's time, not a crash
        if not math.isfinite(offset) or abs(offset) > MAX_OFFSET_SECONDS:
            offset = 0.0
        self._seen, self._offset, self._note = key, offset, note

    def offset(self) -> float:
        """Seconds the lab clock is ahead of the machine's (negative: behind)."""
        with self._lock:
            self._refresh()
            return self._offset

    def note(self) -> str:
        """Who set the offset and how (``signlab clock set +1d``), or empty."""
        with self._lock:
            self._refresh()
            return self._note

    def time(self) -> float:
        """Lab time in seconds since the epoch (what services use instead of ``time.time()``)."""
        return self._system() + self.offset()

    def now(self) -> dt.datetime:
        """Lab time as an aware UTC datetime (instead of ``datetime.now(UTC)``)."""
        return dt.datetime.fromtimestamp(self.time(), dt.UTC)

    def set_offset(self, offset: float, note: str = "") -> None:
        """Write ``offset`` to the clock file (atomically: readers see the old or the new one).

        :raises ValueError: no clock file, or the offset is out of range.
        """
        if self._path is None:
            raise ValueError("this lab clock has no clock file to write")
        if not math.isfinite(offset) or abs(offset) > MAX_OFFSET_SECONDS:
            raise ValueError("the lab clock moves at most a century")
        body = {"offset_seconds": offset, "note": note,
                "set_at_machine_time": dt.datetime.fromtimestamp(self._system(), dt.UTC).isoformat()}
        self._path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._path.with_name(f".{self._path.name}.{os.getpid()}.{threading.get_ident()}")
        tmp.write_text(json.dumps(body, indent=1) + "\n", "utf-8")
        os.replace(tmp, self._path)
        with self._lock:
            self._seen = None

    def advance(self, seconds_ahead: float, note: str = "") -> float:
        """Move the lab clock by ``seconds_ahead`` (negative: back); returns the new offset."""
        offset = self.offset() + seconds_ahead
        self.set_offset(offset, note)
        return offset

    def set_time(self, moment: dt.datetime, note: str = "") -> float:
        """Make the lab clock show ``moment`` now (it runs on from there); returns the new offset."""
        offset = _utc(moment).timestamp() - self._system()
        self.set_offset(offset, note)
        return offset

    def reset(self) -> None:
        """Back to the machine's time (the clock file is removed)."""
        if self._path is not None:
            with contextlib.suppress(FileNotFoundError):
                self._path.unlink()
        with self._lock:
            self._seen, self._offset, self._note = None, 0.0, ""

    def describe(self) -> dict[str, Any]:
        """JSON-ready state: lab time, offset (seconds and as read), note, file."""
        offset = self.offset()
        return {"now": self.now().strftime("%Y-%m-%dT%H:%M:%SZ"), "offset_seconds": round(offset, 3),
                "offset": format_offset(offset), "moved": abs(offset) >= 0.5, "note": self.note(),
                "file": str(self._path) if self._path else None}

    def badge(self) -> str:
        """One line for page frames: ``lab clock 2026-12-08 12:00 UTC (+1 d)``."""
        offset = self.offset()
        shown = self.now().strftime("%Y-%m-%d %H:%M UTC")
        return f"lab clock {shown}" + (f" ({format_offset(offset)})" if abs(offset) >= 0.5 else "")


_LAB_CLOCK = LabClock()


def lab_clock() -> LabClock:
    """The process's lab clock (one object for the life of the process; its file is set by
    :func:`configure_lab_clock`). Services and their cores take the time only from here."""
    return _LAB_CLOCK


def configure_lab_clock(path: Path | None) -> LabClock:
    """Point the process's lab clock at ``path`` (called by every service's app factory)."""
    _LAB_CLOCK.use_file(path)
    return _LAB_CLOCK


# ------------------------------------------------------------------ libraries that read the clock

_PINNED: contextvars.ContextVar[dt.datetime | None] = contextvars.ContextVar("signlab_pinned_time", default=None)


@contextlib.contextmanager
def pinned_at(moment: dt.datetime | None) -> Iterator[None]:
    """Within this context (thread, asyncio task and the threads it hands work to with
    ``asyncio.to_thread``), routed libraries see ``moment`` as "now". ``None``: the lab clock."""
    token = _PINNED.set(_utc(moment) if moment is not None else None)
    try:
        yield
    finally:
        _PINNED.reset(token)


def _library_now() -> dt.datetime:
    return _PINNED.get() or _LAB_CLOCK.now()


class _DatetimeType(type):
    """Keeps ``isinstance(value, datetime)`` true for every datetime in a routed module."""

    def __instancecheck__(cls, instance: object) -> bool:
        return isinstance(instance, dt.datetime)

    def __subclasscheck__(cls, subclass: type) -> bool:
        return issubclass(subclass, dt.datetime)


class LabDatetime(dt.datetime, metaclass=_DatetimeType):
    """``datetime`` whose ``now()``/``utcnow()`` read the pinned time or the lab clock; the rest is
    :class:`datetime.datetime` (constructors, arithmetic, comparisons)."""

    @classmethod
    def now(cls, tz: dt.tzinfo | None = None) -> dt.datetime:  # type: ignore[override]
        """The pinned time or the lab clock's, in ``tz`` (naive local time without one, as the original)."""
        moment = _library_now()
        return moment.astimezone(tz) if tz is not None else moment.astimezone().replace(tzinfo=None)

    @classmethod
    def utcnow(cls) -> dt.datetime:  # type: ignore[override]
        """Naive UTC of the pinned time or the lab clock."""
        return _library_now().replace(tzinfo=None)


PYHANKO_CLOCK_MODULES: tuple[str, ...] = (
    "pyhanko.sign.validation.ades",
    "pyhanko.sign.validation.qualified.assess",
    "pyhanko.sign.validation.qualified.eutl_fetch",
    "pyhanko.sign.signers.pdf_signer",
    "pyhanko.sign.signers.pdf_cms",
    "pyhanko.sign.signers.functions",
    "pyhanko.sign.signers.csc_signer",
    "pyhanko.sign.timestamps.dummy_client",
    "pyhanko.pdf_utils.metadata.info",
    "pyhanko.pdf_utils.metadata.xmp_xml",
    "pyhanko.stamp.text",
    "pyhanko_certvalidator.context",
    "pyhanko_certvalidator.ltv.poe",
    "pyhanko_certvalidator.ltv.ades_past",
    "pyhanko_certvalidator.ltv.types",
)
"""Every pyHanko / pyhanko-certvalidator module that calls ``datetime.now`` (a test re-reads the
installed sources and fails when a new one appears after an upgrade)."""


def route_library_clocks(modules: tuple[str, ...] = PYHANKO_CLOCK_MODULES) -> None:
    """Make ``modules`` read the time through :class:`LabDatetime` (idempotent, once per process).

    :raises RuntimeError: a module binds ``datetime`` to something other than the class (its code
        changed: the routing would be wrong, so it is refused).
    """
    for name in modules:
        module = importlib.import_module(name)
        bound = getattr(module, "datetime", None)
        if bound is LabDatetime:
            continue
        if bound is not dt.datetime:
            raise RuntimeError(f"{name} does not import the datetime class as 'datetime'; the lab clock cannot be routed there")
        module.datetime = LabDatetime  # type: ignore[attr-defined]
