"""JSON logging with a request id.

Each log record becomes one JSON line with the time, level, service, logger, message, the id of the
HTTP request being served (when there is one) and any ``extra`` fields the caller passed. The
request id comes from the ``X-Request-ID`` header of the incoming request or is generated, and is
returned in the response (see :mod:`shared.web`).

Limits: never log secrets, PINs, tokens or document content; callers pass summaries. National
identifiers in the text of a record (``PNONO-…`` in a certificate subject) are masked here as a last
line of defence (:func:`shared.personal_data.mask_text`).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from contextvars import ContextVar
from typing import Any

from shared.personal_data import mask_text

__all__ = ["JsonFormatter", "configure_logging", "current_request_id", "request_id_var"]

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


def configure_logging(service: str, level: str = "INFO") -> None:
    """Send the process's log records, as JSON lines, to standard error.

    Called once per process by each app factory; calling it again replaces the handler, so tests
    that build several apps do not duplicate lines.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_signlab", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    handler._signlab = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
