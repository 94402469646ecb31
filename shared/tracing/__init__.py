"""Flow tracing: every exchange between the roles as spans with flow step, roles and a redacted
payload summary; one transaction, one sequence diagram (design §6).

Services get HTTP tracing from :func:`shared.web.create_service_app` (which calls
:func:`instrument_app`); they call :func:`flow_span` for steps inside a process (HSM, CMS),
:func:`annotate` to add decoded facts, :func:`correlate` for an extra correlation value, :func:`refused`
when an exchange answers normally but refuses what it carried. The portal
mounts :func:`trainer_blueprint`. ``signlab trace`` and ``signlab tour`` read :class:`TraceStore`.
See ``docs/tracing.md``.

Importing this package does not import Flask: the Flask adapters (:func:`instrument_app`,
:func:`store_dir_of`, :func:`refused`, :func:`trainer_blueprint`) load on first use, so Flask-free cores can use
:func:`flow_span` and friends.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shared.tracing.api import FlowSpan, annotate, correlate, flow_span, trace_headers
from shared.tracing.labels import ROUTES, RouteLabel, label_for
from shared.tracing.model import Transaction, build_transaction
from shared.tracing.render import render_json, render_mermaid, render_svg
from shared.tracing.settings import TraceSettings
from shared.tracing.store import TraceStore

if TYPE_CHECKING:
    from shared.tracing.instrument import instrument_app, refused, store_dir_of
    from shared.tracing.web import trainer_blueprint

__all__ = [
    "ROUTES",
    "FlowSpan",
    "RouteLabel",
    "TraceSettings",
    "TraceStore",
    "Transaction",
    "annotate",
    "build_transaction",
    "correlate",
    "flow_span",
    "instrument_app",
    "label_for",
    "refused",
    "render_json",
    "render_mermaid",
    "render_svg",
    "store_dir_of",
    "trace_headers",
    "trainer_blueprint",
]


_FLASK_ADAPTERS = {
    "instrument_app": "shared.tracing.instrument",
    "store_dir_of": "shared.tracing.instrument",
    "refused": "shared.tracing.instrument",
    "trainer_blueprint": "shared.tracing.web",
}


def __getattr__(name: str) -> Any:
    """The Flask adapters, imported when first asked for (PEP 562)."""
    if name in _FLASK_ADAPTERS:
        import importlib

        return getattr(importlib.import_module(_FLASK_ADAPTERS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
