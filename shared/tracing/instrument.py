"""OpenTelemetry set-up for the services: Flask and requests instrumentation, labels, store, OTLP.

:func:`instrument_app` is called once per app by :func:`shared.web.create_service_app`; services
need no code for the HTTP exchanges. It

* instruments the app (one SERVER span per request; the W3C ``traceparent`` of a back-channel
  call makes it a child of the caller's CLIENT span) and, once per process, ``requests`` (one
  CLIENT span per outbound call; :class:`~shared.http_client.ServiceClient` calls carry the
  context);
* labels each SERVER span from :data:`shared.tracing.labels.ROUTES` (flow step, the two roles,
  protocol message, channel) and, after the view ran, records the outcome (``ok`` / ``error``
  with the protocol error and the step it happened at), redacted request and response summaries
  (:mod:`shared.tracing.redact`) and correlation keys (see :mod:`shared.tracing.store`);
* writes finished spans to the trace store (:class:`~shared.tracing.store.SpanWriter`) with URL
  query values masked and the service's own secrets scrubbed, and, when configured, exports the
  same sanitized spans over OTLP/HTTP.

For steps inside a service (HSM, CMS) see :func:`shared.tracing.api.flow_span`.

Limits: one TracerProvider per process (OpenTelemetry allows one global provider); several apps in
one process (tests) share it, and each span is written to the store of the app that was serving
when it started. Every hook is guarded: a tracing failure is logged and never fails a request.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from flask import Flask, Response, current_app, g, has_app_context, has_request_context, request
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from pydantic import SecretStr

from shared.clock import lab_clock
from shared.errors import SignLabError, UpstreamError, UpstreamUnavailable
from shared.flow import ServiceInfo
from shared.settings import ServiceSettings
from shared.tracing.api import PROCESS_SCRUBBER, register_secrets
from shared.tracing.labels import label_for
from shared.tracing.redact import (
    Scrubber,
    correlation_key,
    summarize,
    summarize_authorization_header,
    summarize_der,
    to_json,
)
from shared.tracing.settings import TraceSettings
from shared.tracing.store import SpanWriter

__all__ = ["EXCLUDED_PATHS", "AppTracing", "instrument_app", "refused", "sanitize_url", "tracer"]

log = logging.getLogger(__name__)

EXCLUDED_PATHS = (r"/healthz(\?|$)", r"/signlab-static/", r"/static/", r"/favicon\.ico", r"/trainer(/|\?|$)",
                  r"/transactions/[^/]+/trace(\.|$)")
"""Requests that are never traced: health polling, static files, the trainer pages and a
transaction owner's trace routes (which poll the store: tracing them would grow the store by
looking at it)."""

CORRELATION_FIELDS = frozenset({
    "request_uri", "state", "code", "transaction_id", "transactionid", "tx_id", "rid", "credentialid", "sad",
    "access_token",
})
"""Field names whose values identify a transaction as it travels between roles."""
TRANSACTION_ID_FIELDS = frozenset({"transaction_id", "transactionid", "tx_id"})
SAFE_QUERY = frozenset({
    "client_id", "response_type", "scope", "prompt", "acr_values", "code_challenge_method", "redirect_uri", "error",
    "error_description", "response_mode", "max_age", "ui_locales", "claims_locales",
})
"""Query parameters whose values are kept in stored URLs; every other value is masked."""
_TITLE = re.compile(r"<title>(.*?)</title>", re.S)
_ID_LIKE = re.compile(r"^[A-Za-z0-9._~:-]{12,512}$")
_MAX_BODY = 512 * 1024
_DER_TYPES = ("application/pkix-cert", "application/pkix-crl", "application/timestamp-query",
              "application/timestamp-reply", "application/ocsp-request", "application/ocsp-response",
              "application/x-x509-ca-cert")
_KEPT_ATTRIBUTES = ("http.method", "http.request.method", "http.route", "http.status_code",
                    "http.response.status_code", "http.host", "server.address", "server.port", "net.peer.name",
                    "net.peer.port")
_FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})
_URL_ATTRIBUTES = ("http.target", "http.url", "url.full", "url.path", "url.query")


@dataclass
class AppTracing:
    """The tracing state of one app: its service, store writer and secret scrubber."""

    info: ServiceInfo
    writer: SpanWriter
    scrub: Scrubber
    settings: TraceSettings


class _State:
    """Process-wide: the one provider, the store processor, the OTLP exporters."""

    lock = threading.Lock()
    provider: TracerProvider | None = None
    store: _StoreProcessor | None = None
    otlp_endpoints: set[str] = set()
    requests_instrumented = False


def tracer() -> trace.Tracer:
    """The SignLab tracer (a no-op tracer until a service app was instrumented)."""
    return trace.get_tracer("signlab")


def instrument_app(app: Flask, info: ServiceInfo, settings: ServiceSettings,
                   trace_settings: TraceSettings | None = None) -> None:
    """Trace every request of ``app`` (once; further calls do nothing).

    :param info: the service (its role labels the spans).
    :param settings: the service's settings: its data directory locates the default store, its
        ``SecretStr`` values are scrubbed from every stored span.
    :param trace_settings: default: :meth:`TraceSettings.from_env`.
    """
    if "signlab.tracing" in app.extensions:
        return
    trace_settings = trace_settings or TraceSettings.from_env()
    if not trace_settings.enabled:
        return
    provider = _provider(info)
    secret_values = [value.get_secret_value() for value in _secret_values(settings)]
    state = AppTracing(info, SpanWriter(trace_settings.store_dir(settings.data_dir), info.name,
                                        trace_settings.retention_days), Scrubber(secret_values), trace_settings)
    register_secrets(secret_values)
    app.extensions["signlab.tracing"] = state
    if trace_settings.otlp_endpoint:
        _add_otlp(provider, trace_settings.otlp_endpoint)
    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    # No metrics (SignLab reads none; the default proxy meter still cost a call per request) and no
    # SQL commenter context (no database instrumentation reads it).
    FlaskInstrumentor().instrument_app(app, tracer_provider=provider, excluded_urls=",".join(EXCLUDED_PATHS),
                                       enable_commenter=False, meter_provider=NoOpMeterProvider())
    _instrument_requests(provider)
    _install_hooks(app, state)


def _secret_values(settings: ServiceSettings) -> list[SecretStr]:
    values = []
    for name in type(settings).model_fields:
        value = getattr(settings, name, None)
        if isinstance(value, SecretStr):
            values.append(value)
    return values


def _provider(info: ServiceInfo) -> TracerProvider:
    with _State.lock:
        if _State.provider is None:
            provider = TracerProvider(resource=Resource.create({"service.name": f"signlab-{info.name}",
                                                                "signlab.role": str(info.role)}))
            _State.store = _StoreProcessor()
            provider.add_span_processor(_State.store)
            current = trace.get_tracer_provider()
            if isinstance(current, TracerProvider):
                # Someone (a test, an embedding app) set a provider first: add our processor to it.
                current.add_span_processor(_State.store)
                provider = current
            else:
                trace.set_tracer_provider(provider)
            _State.provider = provider
        return _State.provider


def _add_otlp(provider: TracerProvider, endpoint: str) -> None:
    with _State.lock:
        if endpoint in _State.otlp_endpoints:
            return
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(SanitizingExporter(OTLPSpanExporter(endpoint=endpoint))))
        _State.otlp_endpoints.add(endpoint)


def _instrument_requests(provider: TracerProvider) -> None:
    with _State.lock:
        if _State.requests_instrumented:
            return
        from opentelemetry.instrumentation.requests import RequestsInstrumentor

        instrumentor = RequestsInstrumentor()
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument(tracer_provider=provider, excluded_urls=r"/healthz(\?|$)",
                                    request_hook=_client_request_hook, meter_provider=NoOpMeterProvider())
        _State.requests_instrumented = True


def _client_request_hook(span: Span, prepared: Any) -> None:
    """Outbound call: note its method and path (for failed calls, the renderer guesses the role)."""
    try:
        if span.is_recording():
            parts = urlsplit(prepared.url or "")
            span.set_attribute("signlab.peer", f"{parts.scheme}://{parts.netloc}")
            span.set_attribute("signlab.peer_path", parts.path)
            span.set_attribute("signlab.peer_method", prepared.method or "")
    except Exception:  # tracing must never break a call
        log.debug("tracing: client hook failed", exc_info=True)


# ---------------------------------------------------------------------------- request hooks


def _install_hooks(app: Flask, state: AppTracing) -> None:
    @app.before_request
    def _label() -> None:
        try:
            _label_request(state)
        except Exception:
            log.warning("tracing: could not label %s %s", request.method, request.path, exc_info=True)

    @app.after_request
    def _record(response: Response) -> Response:
        try:
            _record_response(state, response)
        except Exception:
            log.warning("tracing: could not record %s %s", request.method, request.path, exc_info=True)
        return response

    # Every exception a view raises passes here before the shared error handlers render it, so the
    # span learns the protocol error and the flow step even when the answer is an HTML page.
    original_user, original_unhandled = app.handle_user_exception, app.handle_exception

    def handle_user_exception(exc: Exception) -> Any:
        g.signlab_trace_exception = exc
        return original_user(exc)

    def handle_exception(exc: Exception) -> Any:
        g.signlab_trace_exception = exc
        return original_unhandled(exc)

    app.handle_user_exception = handle_user_exception  # type: ignore[method-assign]
    app.handle_exception = handle_exception  # type: ignore[method-assign]


def _label_request(state: AppTracing) -> None:
    span = trace.get_current_span()
    if not span.is_recording():
        return
    span.set_attribute("http.target", sanitize_url(request.full_path if request.query_string else request.path))
    label = label_for(state.info.name, request.method, request.path)
    if label is None:
        return
    span.set_attributes({
        "signlab.step": label.step, "signlab.source_role": str(label.source), "signlab.target_role": str(label.target),
        "signlab.message": label.message, "signlab.response": label.response,
        "signlab.response_step": label.response_step or label.step, "signlab.channel": label.channel,
        "signlab.inherit_step": label.inherit_step, "signlab.draw": label.draw,
        "signlab.activity": label.activity, "signlab.completes": label.completes,
    })
    span.update_name(f"step-{label.step:02d} {label.message}")


def _record_response(state: AppTracing, response: Response) -> None:
    span = trace.get_current_span()
    if not span.is_recording():
        return
    # The request itself, not its context-local proxy: every proxy attribute access is a lookup.
    req = request._get_current_object()  # type: ignore[attr-defined]
    keys: list[str] = []
    ids: list[str] = []
    request_summary: dict[str, Any] = {}
    if req.args:
        request_summary["query"] = _fields(req.args, keys, ids)
    if req.view_args:
        for name, value in req.view_args.items():
            if isinstance(value, str) and len(value) >= 8:  # path ids: transaction, login request, serial
                keys.append(correlation_key(value))
                if name.lower() in TRANSACTION_ID_FIELDS:
                    ids.append(value)
    # Only these bodies fill request.form and request.files; asking another request for them
    # built (empty) form data for nothing. An over-size body (413) is never read: reading it
    # would raise again inside this hook and lose the span.
    oversized = response.status_code == 413
    if oversized:
        request_summary["body"] = f"{req.content_length or 'unknown'} bytes: over the size limit, not read"
    has_form = req.mimetype in _FORM_TYPES and not oversized
    if has_form and req.form:
        request_summary["form"] = _fields(req.form, keys, ids)
    if has_form and req.files:
        request_summary["files"] = [{"field": name, "filename": f.filename, "content_type": f.content_type}
                                    for name, f in req.files.items(multi=True)][:10]
    if req.is_json and not oversized:
        body = req.get_json(silent=True)
        if body is not None:
            request_summary["json"] = summarize(body)
            _json_keys(body, keys, ids)
    elif req.mimetype in _DER_TYPES and not oversized and (req.content_length or 0) <= _MAX_BODY:
        request_summary["body"] = summarize_der(req.mimetype, req.get_data(cache=True))
    # Werkzeug's parsed authorization comes from this header only: without it there is none.
    authorization = req.headers.get("Authorization")
    if authorization:
        request_summary["authorization"] = summarize_authorization_header(authorization)
        scheme, _, token = authorization.partition(" ")
        attributes_now = getattr(span, "attributes", None) or {}
        if (scheme.lower() == "bearer" and len(token) >= 8 and "signlab.step" in attributes_now
                and not attributes_now.get("signlab.activity") and not attributes_now.get("signlab.inherit_step")):
            # The SAD (or service token) a partner presents at signDoc / signHash joins the call to
            # the transaction that issued it, also when the partner is not traced (a replayed SAD).
            keys.append(correlation_key(token.strip()))

    response_summary: dict[str, Any] = {"status": response.status_code}
    outcome, error, description, error_step = "ok", None, None, None
    location = response.headers.get("Location")
    if location:
        response_summary["redirect"] = _redirect_summary(location, keys, ids)
        query = dict(parse_qsl(urlsplit(location).query))
        if "error" in query:
            outcome, error, description = "error", query["error"], query.get("error_description", "")
        elif "code" in query:
            span.set_attribute("signlab.response", "authentication response (code) via redirect")
    body_json = None
    if not response.direct_passthrough and not response.is_streamed and (response.content_length or 0) <= _MAX_BODY:
        if response.is_json:
            body_json = response.get_json(silent=True)
            if body_json is not None:
                response_summary["json"] = summarize(body_json)
                _json_keys(body_json, keys, ids)
        elif response.mimetype in _DER_TYPES:
            response_summary["body"] = summarize_der(response.mimetype, response.get_data())
        elif response.mimetype == "text/html":
            # The title is near the top: decode no more than the first 4,096 characters can take
            # (result pages are large).
            title = _TITLE.search(response.get_data()[:4 * 4096].decode("utf-8", "ignore")[:4096])
            if title:
                response_summary["page"] = " ".join(title.group(1).split())
    exc = g.pop("signlab_trace_exception", None)
    if isinstance(exc, SignLabError):
        outcome, error, description = "error", exc.error, exc.error_description
        error_step = exc.step.number if exc.step else None
        if isinstance(exc, UpstreamError | UpstreamUnavailable):
            span.set_attribute("signlab.upstream_role", str(exc.role))
    elif exc is not None and response.status_code >= 400:
        outcome, error = "error", getattr(exc, "name", type(exc).__name__).lower().replace(" ", "_")
        description = getattr(exc, "description", None) or str(exc)
    elif response.status_code >= 400:
        outcome = "error"
        if isinstance(body_json, dict) and isinstance(body_json.get("error"), str):
            error, description = body_json["error"], str(body_json.get("error_description") or "")
        else:
            error = f"http_{response.status_code}"
    if "error" in req.args:
        # An OAuth2/OIDC error response arriving at a redirect URI: this hop carries an earlier
        # failure on (whatever it answers: a page, or the error passed on to the next redirect URI).
        if outcome == "ok":
            outcome, error, description = "error", req.args["error"], req.args.get("error_description", "")
        span.set_attribute("signlab.received_error", True)

    attributes: dict[str, Any] = {"signlab.outcome": outcome}
    if error:
        attributes["signlab.error"] = state.scrub(str(error))[:200]
        attributes["signlab.error_description"] = state.scrub(str(description or ""))[:1000]
    if error_step:
        attributes["signlab.error_step"] = error_step
    if state.settings.payloads:
        # What the view added with annotate() is kept (it is already redacted).
        request_summary.update(_annotated(span, "signlab.summary"))
        response_summary.update(_annotated(span, "signlab.response_summary"))
        attributes["signlab.summary"] = to_json(request_summary, state.scrub)
        attributes["signlab.response_summary"] = to_json(response_summary, state.scrub)
    extra_keys = list(span.attributes.get("signlab.correlation") or ()) if isinstance(span, Span) and span.attributes else []
    if keys or extra_keys:
        attributes["signlab.correlation"] = sorted(set(keys) | set(extra_keys))
    extra_ids = list(span.attributes.get("signlab.transaction_ids") or ()) if isinstance(span, Span) and span.attributes else []
    if ids or extra_ids:
        attributes["signlab.transaction_ids"] = sorted(set(ids) | set(extra_ids))
    span.set_attributes(attributes)


def _annotated(span: Any, attribute: str) -> dict[str, Any]:
    raw = (getattr(span, "attributes", None) or {}).get(attribute)
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {"annotation": value}


def _fields(fields: Any, keys: list[str], ids: list[str]) -> dict[str, Any]:
    """Summarize a query or form multidict; collect correlation keys."""
    result: dict[str, Any] = {}
    for name in list(fields.keys())[:40]:
        values = fields.getlist(name)
        value = values[0] if len(values) == 1 else values
        result[name] = summarize(value, name)
        _note(name, values, keys, ids)
    return result


def _note(name: str, values: Any, keys: list[str], ids: list[str]) -> None:
    lowered = name.lower()
    if lowered not in CORRELATION_FIELDS:
        return
    for value in values if isinstance(values, list) else [values]:
        if isinstance(value, str) and len(value) >= 8:
            if lowered == "state" and value.isalpha() and value.islower():
                continue  # a lifecycle word ("completed", "pending" in a status body), not an OAuth state
            keys.append(correlation_key(value))
            if lowered in TRANSACTION_ID_FIELDS:
                ids.append(value)


def _json_keys(body: Any, keys: list[str], ids: list[str]) -> None:
    if not isinstance(body, dict):
        return
    for name, value in body.items():
        if isinstance(value, str):
            _note(name, value, keys, ids)
            if value.startswith(("http://", "https://")) and name.lower().endswith(("_url", "_uri")):
                _url_keys(value, keys, ids)


def _url_keys(url: str, keys: list[str], ids: list[str]) -> None:
    parts = urlsplit(url)
    for name, value in parse_qsl(parts.query):
        _note(name, value, keys, ids)
    for segment in parts.path.split("/"):
        if _ID_LIKE.match(segment) and (any(c.isdigit() for c in segment) or
                                        (any(c.isupper() for c in segment) and any(c.islower() for c in segment))):
            keys.append(correlation_key(segment))


def _redirect_summary(location: str, keys: list[str], ids: list[str]) -> dict[str, Any]:
    _url_keys(location, keys, ids)
    parts = urlsplit(location)
    summary: dict[str, Any] = {"to": f"{parts.scheme}://{parts.netloc}{parts.path}" if parts.netloc else parts.path}
    query = parse_qsl(parts.query)
    if query:
        summary["params"] = {name: summarize(value, name) for name, value in query[:40]}
    return summary


def sanitize_url(url: str) -> str:
    """``url`` with every query value masked except harmless OAuth parameters (client_id, scope …)."""
    if "?" not in url:
        return url
    base, _, query = url.partition("?")
    kept = []
    for name, value in parse_qsl(query, keep_blank_values=True):
        kept.append(f"{name}={value if name in SAFE_QUERY else '…'}")
    return f"{base}?{'&'.join(kept)}" if kept else base


# ---------------------------------------------------------------------------- span processing


_ATTRIBUTE_KIND: dict[str, str] = {}
"""Attribute name → ``url`` (kept masked), ``keep`` or ``""`` (dropped): the names are few and
fixed, and testing each against the lists for every span was a visible cost."""


def sanitized_attributes(attributes: Mapping[str, Any] | None, scrub: Scrubber) -> dict[str, Any]:
    """The attributes kept in the store and exported: ``signlab.*``, HTTP basics, URLs masked."""
    kept: dict[str, Any] = {}
    for key, value in (attributes or {}).items():
        kind = _ATTRIBUTE_KIND.get(key)
        if kind is None:
            kind = ("url" if key in _URL_ATTRIBUTES else
                    "keep" if key.startswith("signlab.") or key in _KEPT_ATTRIBUTES else "")
            if len(_ATTRIBUTE_KIND) < 1000:
                _ATTRIBUTE_KIND[key] = kind
        if not kind:
            continue
        if kind == "url" and isinstance(value, str):
            kept[key] = scrub(sanitize_url(value))
        elif kind == "keep":
            if isinstance(value, str):
                value = scrub(value)
            elif isinstance(value, tuple | list):
                value = [scrub(v) if isinstance(v, str) else v for v in value]
            kept[key] = value
    return kept


def span_record(span: ReadableSpan, scrub: Scrubber, service: str | None = None, role: str | None = None) -> dict[str, Any]:
    """The store's JSON form of a finished span."""
    ctx = span.context
    attributes = sanitized_attributes(span.attributes, scrub)
    record: dict[str, Any] = {
        "v": 1,
        "trace_id": format(ctx.trace_id, "032x"),
        "span_id": format(ctx.span_id, "016x"),
        "parent_id": format(span.parent.span_id, "016x") if span.parent else None,
        "remote_parent": bool(span.parent and span.parent.is_remote),
        "name": scrub(span.name),
        "kind": span.kind.name,
        "service": attributes.get("signlab.service", service),
        "role": attributes.get("signlab.role", role),
        "start": span.start_time,
        "end": span.end_time,
        "status": span.status.status_code.name,
        "attributes": attributes,
    }
    events = [{"name": e.name, "type": (e.attributes or {}).get("exception.type"),
               "message": scrub(str((e.attributes or {}).get("exception.message", "")))[:500]}
              for e in span.events if e.name == "exception"]
    if events:
        record["exceptions"] = events
    return record


class _StoreProcessor(SpanProcessor):
    """Writes each finished span to the store of the app that was serving when it started."""

    def __init__(self) -> None:
        self._live: dict[int, AppTracing] = {}
        self._lock = threading.Lock()
        self.default: AppTracing | None = None

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        state: AppTracing | None = None
        if has_app_context():
            state = current_app.extensions.get("signlab.tracing")
        if state is None:
            parent = trace.get_current_span(parent_context)
            with self._lock:
                state = self._live.get(parent.get_span_context().span_id)
        if state is None:
            return  # a call made outside any traced service (a test's user agent, the CLI)
        with self._lock:
            self._live[span.context.span_id] = state
        # Span times are the machine's; the lab clock's offset says what time the services saw.
        span.set_attributes({"signlab.service": state.info.name, "signlab.role": str(state.info.role),
                             "signlab.lab_clock_offset_seconds": round(lab_clock().offset(), 3)})

    def on_end(self, span: ReadableSpan) -> None:
        with self._lock:
            state = self._live.pop(span.context.span_id, None)
        if state is None:
            return
        try:
            state.writer.write(span_record(span, state.scrub, state.info.name, str(state.info.role)))
        except OSError:
            log.warning("tracing: cannot write to the trace store %s", state.writer.directory, exc_info=True)

    def shutdown(self) -> None:
        """Nothing is buffered."""

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Nothing is buffered: every span is written when it ends."""
        return True


class SanitizingExporter(SpanExporter):
    """Wraps an exporter (OTLP) so that it sees the same sanitized attributes as the store."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner

    def export(self, spans: Any) -> SpanExportResult:
        """Export sanitized copies of ``spans``."""
        copies = [
            ReadableSpan(
                name=PROCESS_SCRUBBER(s.name), context=s.context, parent=s.parent, resource=s.resource,
                attributes=sanitized_attributes(s.attributes, PROCESS_SCRUBBER), events=(), links=s.links, kind=s.kind,
                status=s.status, start_time=s.start_time, end_time=s.end_time, instrumentation_scope=s.instrumentation_scope,
            )
            for s in spans
        ]
        return self.inner.export(copies)

    def shutdown(self) -> None:
        """Shut the wrapped exporter down."""
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Flush the wrapped exporter."""
        return self.inner.force_flush(timeout_millis)


def refused(error: SignLabError) -> None:
    """Mark the HTTP exchange being served as failed with ``error`` (its protocol error and step)
    although the view answers it normally (an OpenID4VP response endpoint answers 200 to a
    presentation it rejected): the same record an exception raised by the view makes."""
    if has_request_context():
        g.signlab_trace_exception = error


def store_dir_of(app: Flask) -> Path | None:
    """The trace store an instrumented app writes to (``None`` when tracing is off)."""
    state = app.extensions.get("signlab.tracing")
    return state.writer.directory if state else None
