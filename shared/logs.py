"""JSON logging with a request id.

Each log record becomes one JSON line with the time, level, service, logger, message, the id of the
HTTP request being served (when there is one) and any ``extra`` fields the caller passed. The
request id comes from the ``X-Request-ID`` header of the incoming request or is generated, and is
returned in the response (see :mod:`shared.web`).

Records go to standard error (a container runtime collects it; the local runtime appends it to
``logs/<service>.log``), each as one whole line in one ``write``, so threads and processes never
interleave inside a line. When standard error is a file on a filesystem below the service's
free-space threshold (:mod:`shared.disk`), records below WARNING are held back — a full disk must
not take the last bytes the service's state needs, nor leave torn lines — and one line says how
many were held back once space returns.

Limits: never log secrets, PINs, tokens or document content; callers pass summaries. National
identifiers in the text of a record (``PNONO-…`` in a certificate subject) are masked here as a last
line of defence (:func:`shared.personal_data.mask_text`).
"""

from __future__ import annotations

import json
import logging
import os
import stat
import sys
import threading
import time
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from shared.personal_data import mask_text

if TYPE_CHECKING:
    from shared.disk import DiskGuard

__all__ = ["JsonFormatter", "LineHandler", "configure_logging", "current_request_id", "request_id_var"]

request_id_var: ContextVar[str | None] = ContextVar("signlab_request_id", default=None)
"""The id of the request being served in this context (thread), or ``None``."""

# Attributes every LogRecord has; anything else on a record came from ``extra=`` and is logged.
_STANDARD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def current_request_id() -> str | None:
    """The request id of the current request, if any."""
    return request_id_var.get()


class JsonFormatter(logging.Formatter):
    """Formats records as single JSON lines; ``service`` names the emitting service."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as one JSON object."""
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "message": mask_text(record.getMessage()),
        }
        request_id = current_request_id()
        if request_id:
            entry["request_id"] = request_id
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = mask_text(self.formatException(record.exc_info))
        return json.dumps(entry, default=lambda value: mask_text(str(value)), ensure_ascii=False)


class LineHandler(logging.Handler):
    """Writes each formatted record as one line with one ``write`` to a file descriptor (standard
    error by default), holding back records below WARNING while that descriptor is a file on a
    filesystem with less than ``min_free_bytes`` free (measured at most once a second).

    :param min_free_bytes: the service's free-space threshold; 0 never holds anything back.
    :param fd: where to write; default: the descriptor of ``sys.stderr`` at each record (a
        ``sys.stderr`` without one, as under pytest's capture, is written as a text stream).
    """

    _RECHECK_SECONDS = 1.0

    def __init__(self, min_free_bytes: int = 0, fd: int | None = None) -> None:
        super().__init__()
        self._fd = fd
        self.min_free_bytes = min_free_bytes
        self._low = False
        self._checked = 0.0
        self._held = 0
        self._lost = 0
        self._state_lock = threading.Lock()

    def _target(self) -> int | None:
        """The descriptor to write to, or None for a ``sys.stderr`` that has none."""
        if self._fd is not None:
            return self._fd
        try:
            sys.stderr.flush()  # whatever was printed before goes first
            return sys.stderr.fileno()
        except (AttributeError, OSError, ValueError):
            return None

    def _disk_low(self, fd: int | None) -> bool:
        """Whether the log's file system is below the threshold (cached for a second)."""
        now = time.monotonic()
        if fd is not None and self.min_free_bytes and now - self._checked >= self._RECHECK_SECONDS:
            self._checked = now
            try:
                if stat.S_ISREG(os.fstat(fd).st_mode):
                    fs = os.fstatvfs(fd)
                    self._low = fs.f_bavail * fs.f_frsize < self.min_free_bytes
                else:
                    self._low = False  # a pipe or terminal takes no disk space here
            except OSError:
                self._low = False
        return self._low

    def emit(self, record: logging.LogRecord) -> None:
        """Write the record (or count it as held back or lost)."""
        try:
            line = (self.format(record) + "\n").encode("utf-8", "replace")
        except Exception:  # a record that cannot be formatted is logging's business
            self.handleError(record)
            return
        with self._state_lock:
            fd = self._target()
            if record.levelno < logging.WARNING and self._disk_low(fd):
                self._held += 1
                return
            if self._held or self._lost:
                note = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "level": "WARNING",
                        "logger": __name__, "message": f"{self._held} log records below WARNING were held back "
                        f"while the disk was low, {self._lost} could not be written", "held_back": self._held,
                        "lost": self._lost}
                line = (json.dumps(note) + "\n").encode() + line
            try:
                if fd is None:
                    sys.stderr.write(line.decode("utf-8"))
                    sys.stderr.flush()
                else:
                    view = memoryview(line)
                    while view:
                        view = view[os.write(fd, view):]
            except (OSError, ValueError):
                self._lost += 1  # nowhere left to say it; counted for the note once writes work again
                return
            self._held = self._lost = 0


def configure_logging(service: str, level: str = "INFO", *, disk: DiskGuard | None = None) -> None:
    """Send the process's log records, as JSON lines, to standard error (:class:`LineHandler`).

    Called once per process by each app factory; calling it again replaces the handler, so tests
    that build several apps do not duplicate lines.

    :param disk: the service's disk guard; its threshold holds back records below WARNING while
        standard error is a file on a low filesystem.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_signlab", False):
            root.removeHandler(handler)
    handler = LineHandler(disk.min_free_bytes if disk is not None else 0)
    handler.setFormatter(JsonFormatter(service))
    handler._signlab = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
