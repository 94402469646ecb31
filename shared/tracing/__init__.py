"""Flow tracing: every exchange between the roles as spans with flow step, roles and a redacted
payload summary; one transaction, one sequence diagram (DESIGN.md section 6).

Services get HTTP tracing from :func:`shared.web.create_service_app` (which calls
:func:`instrument_app`); they call :func:`flow_span` for steps inside a process (HSM, CMS),
:func:`annotate` to add decoded facts, :func:`correlate` for an extra correlation value. The portal
mounts :func:`trainer_blueprint`. ``signlab trace`` and ``signlab tour`` read :class:`TraceStore`.
See the README section "Flow tracing, sequence diagrams and the trainer tour".
"""

from __future__ import annotations

from shared.tracing.api import FlowSpan, annotate, correlate, flow_span, refused
from shared.tracing.instrument import instrument_app, store_dir_of
from shared.tracing.labels import ROUTES, RouteLabel, label_for
from shared.tracing.model import Transaction, build_transaction
from shared.tracing.render import render_json, render_mermaid, render_svg
from shared.tracing.settings import TraceSettings
from shared.tracing.store import TraceStore

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
    "trainer_blueprint",
]


def trainer_blueprint(*args, **kwargs):  # type: ignore[no-untyped-def]
    """The trainer dashboard blueprint (see :func:`shared.tracing.web.trainer_blueprint`)."""
    from shared.tracing.web import trainer_blueprint as build

    return build(*args, **kwargs)
