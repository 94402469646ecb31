"""The tiny API services call for what HTTP instrumentation cannot see.

* :func:`flow_span` — a step inside a service (HSM key generation, CMS signed attributes, C_Sign,
  key destruction), drawn as an arrow to the HSM lane (steps 6, 9) or to the service itself (8)::

      with flow_span(step(6), "C_GenerateKeyPair", summary={"algorithm": "EC P-256"}) as span:
          handle = hsm.generate(...)
          span.response({"key_handle": handle.label})

* :func:`annotate` — add decoded facts to the current HTTP exchange (e.g. the verified identity
  at step 5: ``annotate(response={"acr": ..., "loa": "high"})``).
* :func:`trace_headers` — the W3C trace context for a call the ``requests`` instrumentation does not
  see (pyHanko's time-stamp client uses aiohttp), so the callee's span joins the caller's trace.
* :func:`correlate` — tell the store that a value identifies the current transaction when the
  automatic keys (``request_uri``, ``state``, ``code``, path ids, redirect targets) do not reach
  (e.g. an id a page carries in a hidden form field).

All three do nothing when tracing is off, and never raise because of tracing. This module does
not import Flask, so the services' Flask-free cores can call it; the Flask adapter
(:mod:`shared.tracing.instrument`) registers each app's secrets here with :func:`register_secrets`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind

from shared.errors import SignLabError
from shared.flow import FlowStep, Role
from shared.tracing.labels import INTERNAL
from shared.tracing.redact import Scrubber, correlation_key, summarize, to_json

__all__ = ["PROCESS_SCRUBBER", "FlowSpan", "annotate", "correlate", "flow_span", "register_secrets", "trace_headers"]

log = logging.getLogger(__name__)


PROCESS_SCRUBBER = Scrubber()
"""Masks the secrets of every traced app of this process. Spans made outside a request (steps 6-9
inside the signer) are scrubbed with it: more secrets than one app's, never fewer."""


def register_secrets(values: list[str]) -> None:
    """Mask ``values`` in every span this process records from now on."""
    PROCESS_SCRUBBER.add(values)


def _scrub() -> Scrubber:
    return PROCESS_SCRUBBER


_TRACER: tuple[object, trace.Tracer] | None = None


def _tracer() -> trace.Tracer:
    """The SignLab tracer of the current global provider (looked up once per provider: creating
    one per flow span cost more than the span)."""
    global _TRACER
    provider = trace.get_tracer_provider()
    cached = _TRACER
    if cached is None or cached[0] is not provider:
        cached = _TRACER = (provider, trace.get_tracer("signlab", tracer_provider=provider))
    return cached[1]


def _merge(span: trace.Span, attribute: str, fields: Mapping[str, Any]) -> None:
    current = getattr(span, "attributes", None) or {}
    try:
        existing = json.loads(current.get(attribute) or "{}")
    except ValueError:
        existing = {}
    if not isinstance(existing, dict):
        existing = {"value": existing}
    existing.update(summarize(dict(fields)))
    span.set_attribute(attribute, to_json(existing, _scrub()))


class FlowSpan:
    """The handle :func:`flow_span` yields."""

    def __init__(self, span: trace.Span) -> None:
        self.span = span
        self.failed = False

    def response(self, summary: Mapping[str, Any]) -> None:
        """Record what the step produced (redacted like every summary)."""
        if self.span.is_recording():
            _merge(self.span, "signlab.response_summary", summary)

    def fail(self, error: str, description: str = "") -> None:
        """Mark the step failed without raising (e.g. a check that refuses)."""
        self.failed = True
        if self.span.is_recording():
            scrub = _scrub()
            self.span.set_attributes({"signlab.outcome": "error", "signlab.error": scrub(error)[:200],
                                      "signlab.error_description": scrub(description)[:1000]})

    def correlate(self, *values: str) -> None:
        """See :func:`correlate`."""
        _add_keys(self.span, values)


@contextmanager
def flow_span(step: FlowStep, message: str, *, summary: Mapping[str, Any] | None = None,
              source: Role | None = None, target: Role | None = None, response: str = "") -> Iterator[FlowSpan]:
    """Trace one step inside a service as an arrow from ``source`` to ``target``.

    :param step: the flow step (``step(6)`` key generation, ``step(8)`` signed attributes,
        ``step(9)`` signature and key destruction).
    :param message: the operation's name (``"C_GenerateKeyPair"``, ``"C_Sign"``, ``"C_DestroyObject"``).
    :param summary: facts about the request (redacted; never pass keys or PINs, they are masked anyway).
    :param source: default: the step's source role.
    :param target: default: the step's target role (HSM for steps 6 and 9).
    :param response: the name of the answer (e.g. ``"key handle"``).

    An exception leaving the block marks the span failed (protocol error and step for a
    :class:`~shared.errors.SignLabError`) and propagates unchanged.
    """
    tracer = _tracer()
    with tracer.start_as_current_span(f"{step.span_name}: {message}", kind=SpanKind.INTERNAL,
                                      record_exception=False, set_status_on_exception=False) as span:
        handle = FlowSpan(span)
        if span.is_recording():
            span.set_attributes({
                "signlab.step": step.number, "signlab.response_step": step.number,
                "signlab.source_role": str(source or step.source), "signlab.target_role": str(target or step.target),
                "signlab.message": message, "signlab.response": response or f"{message} done",
                "signlab.channel": INTERNAL, "signlab.draw": True,
            })
            if summary:
                span.set_attribute("signlab.summary", to_json(summarize(dict(summary)), _scrub()))
        try:
            yield handle
        except BaseException as exc:
            if span.is_recording():
                if isinstance(exc, SignLabError):
                    handle.fail(exc.error, exc.error_description)
                    if exc.step is not None:
                        span.set_attribute("signlab.error_step", exc.step.number)
                else:
                    handle.fail(type(exc).__name__, str(exc))
                    span.set_attribute("signlab.error_step", step.number)
            raise
        if span.is_recording() and not handle.failed:
            span.set_attribute("signlab.outcome", "ok")


def annotate(*, request: Mapping[str, Any] | None = None, response: Mapping[str, Any] | None = None,
             transaction_id: str | None = None) -> None:
    """Add redacted facts to the current span (the HTTP exchange being served, or a flow span).

    :param request: merged into the request summary.
    :param response: merged into the response summary.
    :param transaction_id: a transaction id to show and to find the trace by (``signlab trace ID``).
    """
    span = trace.get_current_span()
    if not span.is_recording():
        return
    try:
        if request:
            _merge(span, "signlab.summary", request)
        if response:
            _merge(span, "signlab.response_summary", response)
        if transaction_id:
            current = getattr(span, "attributes", None) or {}
            ids = set(current.get("signlab.transaction_ids") or ()) | {transaction_id}
            span.set_attribute("signlab.transaction_ids", sorted(ids))
            _add_keys(span, [transaction_id])
    except Exception:
        log.warning("tracing: annotate failed", exc_info=True)


def correlate(*values: str) -> None:
    """Link the current transaction to ``values`` (stored only as salted hashes)."""
    _add_keys(trace.get_current_span(), values)


def _add_keys(span: trace.Span, values: Any) -> None:
    if not span.is_recording():
        return
    current = getattr(span, "attributes", None) or {}
    keys = set(current.get("signlab.correlation") or ())
    keys.update(correlation_key(v) for v in values if isinstance(v, str) and v)
    span.set_attribute("signlab.correlation", sorted(keys))


def trace_headers() -> dict[str, str]:
    """The current span's W3C trace context (``traceparent``) as HTTP headers; empty outside a span."""
    from opentelemetry.propagate import inject

    headers: dict[str, str] = {}
    try:
        inject(headers)
    except Exception:  # tracing must never break a call
        log.debug("tracing: no trace context to propagate", exc_info=True)
    return headers
