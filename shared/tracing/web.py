"""The trainer dashboard and the live sequence diagram, as a blueprint the portal mounts.

``app.register_blueprint(trainer_blueprint(service_urls={...}))`` adds, under ``/trainer``:

| route | what |
|---|---|
| ``GET /trainer/`` | the four services with role and health, recent signings (person, qualifier, format, level, outcome), the live diagram of the latest, following new signings as they arrive |
| ``GET /trainer/transactions/<id>`` | one transaction: live diagram, click an arrow for its decoded payload, step timings, exports |
| ``GET /trainer/api/transactions`` | recent signings (JSON; ``?kind=activity`` the traced activity that is no signing, ``?kind=all`` both; ``?limit=N``, at most 100) |
| ``GET /trainer/api/transactions/<id>`` | the transaction (JSON, as ``signlab trace --format json``) |
| ``GET /trainer/api/transactions/<id>.svg`` / ``.mmd`` | SVG / Mermaid export |
| ``GET /trainer/api/status`` | the services' ``/healthz`` (JSON) |

``<id>`` is anything ``signlab trace`` accepts (portal ``tx-…``, signer transaction id, trace id,
``latest``). It also adds the template global ``signlab_trace_embed(id, urls)``: the live diagram for
a page of the app; ``urls`` names where the page's reader may fetch it (the portal's result page
passes its owner-only trace routes, :func:`trace_response`), the trainer's pages leave it out.

The pages poll the JSON endpoint and redraw while the transaction grows (static JS and CSS served
from ``/signlab-static``; no CDN); the SVG routes take ``?expand=4`` to draw the folded login hops
one by one. ``/trainer`` is never traced itself (see
:data:`shared.tracing.instrument.EXCLUDED_PATHS`).

Every route of the blueprint first calls ``guard`` (the portal passes
:func:`shared.trainer_access.require_trainer`: 401 without the trainer token), because it shows
every person's flow. The JSON view masks personal data once more on the way out
(:mod:`shared.personal_data`; the spans are stored masked already).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests
from flask import Blueprint, Flask, Response, current_app, jsonify, render_template, request, url_for
from markupsafe import Markup

from shared.errors import NotFound
from shared.flow import SERVICES, STEPS
from shared.personal_data import mask_personal_data
from shared.tracing.instrument import store_dir_of
from shared.tracing.model import (
    ABANDONED_AFTER_SECONDS,
    ACTIVITY,
    SIGNING,
    Transaction,
    build_transaction,
    describe_facts,
    shown_facts,
)
from shared.tracing.render import lane_layout, render_mermaid, render_svg
from shared.tracing.store import TraceStore

__all__ = ["SERVICE_VIEW_SPANS", "trace_response", "trainer_blueprint"]

SERVICE_VIEW_SPANS = 1_500
"""Spans a service's trainer view keeps in memory (about 40 signings, a few kB each; older ones: ``signlab trace``)."""


def _store() -> TraceStore:
    """The app's trace store, as the trainer blueprint configured it."""
    cached = current_app.extensions.get("signlab.trace_store")
    if cached is None:
        directory = current_app.extensions.get("signlab.trace_store_dir") or store_dir_of(current_app)
        if directory is None:
            raise NotFound("tracing is off in this service (SIGNLAB_TRACE_ENABLED=false)")
        # A service runs for days: its view keeps the newest spans only (bounded memory).
        cached = current_app.extensions["signlab.trace_store"] = TraceStore(directory, max_spans=SERVICE_VIEW_SPANS)
    return cached  # type: ignore[no-any-return]


def _transaction(key: str) -> Transaction:
    group = _store().find(key)
    if group is None:
        raise NotFound(f"no transaction {key!r} in the trace store (yet)")
    return build_transaction(group)


def _expanded() -> frozenset[int]:
    """The steps the reader unfolded (``?expand=4``)."""
    return frozenset(int(n) for n in request.args.getlist("expand") if n.isdigit())


def trace_response(key: str, fmt: str = "json") -> Response:
    """The trace of ``key`` as ``json`` (personal data masked), ``svg`` (``?expand=4`` unfolds the
    login hops) or ``mmd``. The caller decided that the reader may see it (trainer token, or the
    transaction's owner)."""
    if fmt == "svg":
        response = Response(render_svg(_transaction(key), expand=_expanded()), mimetype="image/svg+xml")
        response.headers["Cache-Control"] = "no-store"
        return response
    if fmt == "mmd":
        return Response(render_mermaid(_transaction(key)), mimetype="text/plain")
    show = bool(getattr(current_app.extensions["signlab.settings"], "show_personal_data", False))
    response = jsonify(mask_personal_data(_transaction(key).as_dict(), show=show))
    response.headers["Cache-Control"] = "no-store"
    return response


def trainer_blueprint(*, service_urls: Mapping[str, str] | Callable[[], Mapping[str, str]] | None = None,
                      store_dir: Path | None = None, url_prefix: str = "/trainer",
                      guard: Callable[[], None] | None = None) -> Blueprint:
    """Build the trainer blueprint.

    :param service_urls: base URL of each service by name (``portal``, ``idp``, ``ca``,
        ``signer``), or a function returning them; default: the app's own ``base_url`` and its
        settings' ``<name>_url`` fields (the portal has ``idp_url``, ``ca_url``, ``signer_url``).
    :param store_dir: the trace store; default: the one the app writes to.
    :param guard: called before every route; raises to refuse (the trainer token check).
    """
    bp = Blueprint("signlab_trainer", __name__, url_prefix=url_prefix)
    if guard is not None:
        bp.before_request(guard)
    store, transaction = _store, _transaction
    def urls() -> dict[str, str]:
        if callable(service_urls):
            return dict(service_urls())
        if service_urls is not None:
            return dict(service_urls)
        settings = current_app.extensions["signlab.settings"]
        found = {current_app.extensions["signlab.service"].name: settings.base_url}
        for info in SERVICES:
            value = getattr(settings, f"{info.name}_url", None)
            if isinstance(value, str) and value:
                found.setdefault(info.name, value.rstrip("/"))
        return found

    @bp.record_once
    def _globals(state: Any) -> None:
        app: Flask = state.app
        if store_dir is not None:
            app.extensions["signlab.trace_store_dir"] = store_dir

        def embed(key: str, urls: Mapping[str, str] | None = None, follow: str | None = None) -> Markup:
            try:
                group = store().find(key)  # drawn server-side too: readable without JavaScript
            except NotFound:
                return Markup("")  # tracing is off: no diagram slot
            tx = build_transaction(group) if group is not None else None
            svg = Markup(render_svg(tx)) if tx is not None else None  # noqa: S704 - escaped by render_svg
            return Markup(render_template("signlab_trace_embed.html", key=key, svg=svg, tx=tx,  # noqa: S704 - a rendered template
                                          states=tx.step_states() if tx is not None else [],
                                          lanes=lane_layout(tx) if tx is not None else [],
                                          urls=urls or trace_urls(key), trainer=urls is None, follow=follow))

        app.jinja_env.globals["signlab_trace_embed"] = embed

    def rows(kind: str, limit: int) -> list[dict[str, Any]]:
        groups = {SIGNING: store().transactions, ACTIVITY: store().activity}.get(kind, store().groups)()
        listed = []
        for group in groups[:limit]:
            row = build_transaction(group).summary_row()
            row["facts_text"] = describe_facts(row["facts"])
            row["shown"] = shown_facts(row["facts"])
            row["urls"] = trace_urls(row["id"])
            listed.append(row)
        return listed

    @bp.get("/")
    def dashboard() -> str:
        kind = request.args.get("kind", SIGNING)
        listed = rows(kind, 25)
        latest = store().transactions()
        return render_template("signlab_trace_dashboard.html", statuses=_statuses(urls()), rows=listed, kind=kind,
                               latest=latest[0].id if latest else None, steps=STEPS,
                               listing=url_for("signlab_trainer.listing", kind=SIGNING, limit=25))

    @bp.get("/transactions/<key>")
    def view(key: str) -> str:
        tx = transaction(key)
        return render_template("signlab_trace_view.html", tx=tx, key=key, steps=STEPS,
                               abandoned_after=ABANDONED_AFTER_SECONDS)

    @bp.get("/api/status")
    def status() -> Response:
        return jsonify(_statuses(urls()))

    @bp.get("/api/transactions")
    def listing() -> Response:
        show = bool(getattr(current_app.extensions["signlab.settings"], "show_personal_data", False))
        limit = min(100, max(1, request.args.get("limit", 100, type=int) or 100))
        response = jsonify(mask_personal_data(rows(request.args.get("kind", SIGNING), limit), show=show))
        response.headers["Cache-Control"] = "no-store"
        return response

    @bp.get("/api/transactions/<key>")
    def as_json(key: str) -> Response:
        for fmt in ("svg", "mmd"):
            if key.endswith(f".{fmt}"):
                return trace_response(key.removesuffix(f".{fmt}"), fmt)
        return trace_response(key)

    @bp.app_template_global("signlab_trace_urls")
    def trace_urls(key: str) -> dict[str, str]:
        return {"json": url_for("signlab_trainer.as_json", key=key), "svg": url_for("signlab_trainer.as_json", key=key + ".svg"),
                "mermaid": url_for("signlab_trainer.as_json", key=key + ".mmd"),
                "page": url_for("signlab_trainer.view", key=key)}

    return bp


def _statuses(urls: Mapping[str, str]) -> list[dict[str, Any]]:
    """Each service's role and ``/healthz`` answer (in parallel, 2 s each)."""

    def probe(info: Any) -> dict[str, Any]:
        base = urls.get(info.name)
        row = {"service": info.name, "role": str(info.role), "title": info.title, "url": base, "status": "unknown",
               "detail": ""}
        if not base:
            row["detail"] = "URL not configured"
            return row
        try:
            answer = requests.get(f"{base}/healthz", timeout=2)
            body = answer.json()
            row["status"] = "healthy" if answer.status_code == 200 else "failing"
            row["detail"] = "; ".join(f"{k}: {v.get('detail', '')}" for k, v in (body.get("checks") or {}).items()
                                      if isinstance(v, dict))
            row["version"] = body.get("version")
        except requests.RequestException as exc:
            row["status"], row["detail"] = "not responding", exc.__class__.__name__
        except ValueError:
            row["status"], row["detail"] = "failing", "no JSON health answer"
        return row

    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(probe, SERVICES))
