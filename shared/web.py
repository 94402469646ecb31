"""The Flask frame every service shares: errors, request ids, health, role page, security headers.

Each service's ``create_app`` calls :func:`create_service_app` and then registers its own
blueprints. This module is the single place where :class:`~shared.errors.SignLabError` and
werkzeug's HTTP exceptions become ``{"error", "error_description"}`` responses (or an HTML error
page for a browser that asks for HTML), so views never build error bodies by hand.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, TypeVar

from flask import Blueprint, Flask, Response, g, jsonify, render_template, request, send_from_directory
from flask.json.provider import DefaultJSONProvider
from jinja2 import ChoiceLoader, FileSystemLoader
from werkzeug.exceptions import HTTPException

from shared.clock import ClockSettings, configure_lab_clock
from shared.disk import MIB, DiskGuard, storage_failure
from shared.errors import SignLabError
from shared.flow import SERVICES, ServiceInfo
from shared.logs import configure_logging, request_id_var
from shared.navigation import nav_links
from shared.settings import ServiceSettings

__all__ = ["HealthCheck", "create_service_app", "on_first_request", "signlab_version", "wants_html", "writes_nothing"]

log = logging.getLogger(__name__)

HealthCheck = Callable[[], str]
"""A readiness check: returns a short detail when healthy, raises when not."""

_SHARED_DIR = Path(__file__).parent
_REQUEST_ID_HEADER = "X-Request-ID"
_WRITING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_WRITES_NOTHING = "_signlab_writes_nothing"

ViewFunction = TypeVar("ViewFunction", bound=Callable[..., Any])


def writes_nothing(view: ViewFunction) -> ViewFunction:
    """Mark a POST (PUT, PATCH, DELETE) view that stores nothing — an OCSP or time-stamp answer —
    so it keeps serving while the disk is low (:mod:`shared.disk`); other writing requests are
    refused with 507 then."""
    setattr(view, _WRITES_NOTHING, True)
    return view


def on_first_request(app: Flask, task: Callable[[], object]) -> None:
    """Run ``task`` once, at the app's first request (the runtime's health check, right after the
    start) — in the serving worker, after any fork, and never in an app that serves nothing (a test
    that only builds it). For background work such as fetching a caller's keys ahead."""
    started, lock = threading.Event(), threading.Lock()

    @app.before_request
    def _once() -> None:
        if not started.is_set():
            with lock:
                if not started.is_set():
                    started.set()
                    task()


def signlab_version() -> str:
    """The installed SignLab version."""
    try:
        return version("signlab")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


def create_service_app(
    import_name: str,
    info: ServiceInfo,
    settings: ServiceSettings,
    *,
    health_checks: Mapping[str, HealthCheck] | None = None,
    role_page_at: str = "/",
    state_dir: Path | None = None,
) -> Flask:
    """Build the Flask app frame for one service.

    :param import_name: the service package (its ``templates/`` and ``static/`` are used).
    :param info: the service's entry in :data:`shared.flow.SERVICES`.
    :param settings: the service's settings (stored as ``app.extensions["signlab.settings"]``).
    :param health_checks: readiness checks shown by ``GET /healthz``; any failure answers 503.
    :param role_page_at: URL of the page explaining the service's eIDAS role (also at ``/role``).
    :param state_dir: where the service writes its state, when not ``settings.data_dir``: the disk
        guard (:mod:`shared.disk`) measures its filesystem.
    """
    disk = DiskGuard(state_dir or settings.data_dir, settings.disk_min_free_mb * MIB)
    configure_logging(info.name, settings.log_level, disk=disk)
    # One lab clock for the whole run (shared/clock.py): every service reads the same clock file.
    clock = configure_lab_clock(ClockSettings.from_env().clock_file(settings.data_dir))
    app = Flask(import_name)
    app.json = _BoundedJSONProvider(app)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    # Browsers ignore ports when sending cookies: on 127.0.0.1 the four services share one cookie
    # jar, so each service's session cookie needs its own name.
    app.config.update(SESSION_COOKIE_NAME=f"signlab_{info.name}_session", SESSION_COOKIE_SAMESITE="Lax",
                      SESSION_COOKIE_HTTPONLY=True)
    app.extensions["signlab.settings"] = settings
    app.extensions["signlab.service"] = info
    app.extensions["signlab.disk"] = disk
    app.extensions["signlab.clock"] = clock
    # Service templates first, then the shared ones (base layout, error page, role page).
    app.jinja_loader = ChoiceLoader([app.jinja_loader, FileSystemLoader(_SHARED_DIR / "templates")])  # type: ignore[list-item]
    app.register_blueprint(
        Blueprint("signlab_shared", __name__, static_folder="static", static_url_path="/signlab-static")
    )
    app.jinja_env.globals.update(signlab_service=info, signlab_services=SERVICES, signlab_version=signlab_version(),
                                 signlab_nav=nav_links(info), signlab_clock=clock)
    app.jinja_env.filters.update(utc_time=utc_time, pretty_json=pretty_json, json_digest=json_digest, sentence=sentence)
    # Browsers ask every service for /favicon.ico; one icon for the lab (never traced).
    app.add_url_rule("/favicon.ico", "signlab_favicon", lambda: send_from_directory(
        _SHARED_DIR / "static", "favicon.ico", mimetype="image/vnd.microsoft.icon", max_age=86400))

    _install_request_hooks(app)
    _install_disk_guard(app, info, disk)
    _register_error_handlers(app, info)
    _register_health(app, info, dict(health_checks or {}), disk)
    _register_role_page(app, info, role_page_at)
    from shared.tracing import instrument_app  # flow tracing (design §6): spans for every exchange, no service code

    instrument_app(app, info, settings)
    log.info("%s (%s) ready at %s", info.name, info.role, settings.base_url,
             extra={"steps": [s.number for s in info.steps]})
    return app


# ---------------------------------------------------------------- template filters every service has


def utc_time(epoch: float | int | None) -> str:
    """``2026-03-21 14:05:09`` (UTC) for a Unix time: people do not read epochs."""
    if epoch is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(float(epoch)))


def pretty_json(value: Any) -> str:
    """Indented JSON with its characters as they are (``…``, ``ø``, ``•``), not ``\\u2026`` escapes."""
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def json_digest(value: Any, limit: int = 140) -> str:
    """One line of a JSON object's first fields (``client_id: signlab-signer · acr: high …``)."""
    if not isinstance(value, dict):
        return str(value)[:limit]
    parts = []
    for key, item in value.items():
        shown = item if isinstance(item, str | int | float | bool) or item is None else "…"
        parts.append(f"{key}: {shown}")
    text = " · ".join(parts)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def sentence(text: str) -> str:
    """The first letter upper-case, the rest as written (Jinja's ``capitalize`` lower-cases the
    rest: "Buypass ID" would become "buypass id")."""
    return text[:1].upper() + text[1:] if text else text


class _BoundedJSONProvider(DefaultJSONProvider):
    """Flask's JSON provider, but JSON nested too deeply for the parser is malformed input (a clear
    400 through ``get_json``), not a ``RecursionError`` that would surface as a 500."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        try:
            return super().loads(s, **kwargs)
        except RecursionError:
            raise ValueError("the JSON is nested too deeply") from None


def wants_html() -> bool:
    """True when the client (a browser) prefers an HTML page over JSON."""
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "text/html" and request.accept_mimetypes[best] > request.accept_mimetypes["application/json"]


def _install_request_hooks(app: Flask) -> None:
    @app.before_request
    def _start() -> None:
        incoming = request.headers.get(_REQUEST_ID_HEADER, "")
        # Accept a caller's id only if it is short and plain, so it cannot inject into logs.
        request_id = incoming if 0 < len(incoming) <= 64 and incoming.replace("-", "").isalnum() else secrets.token_hex(8)
        g.signlab_request_token = request_id_var.set(request_id)
        g.signlab_request_id = request_id
        g.signlab_started = time.perf_counter()

    @app.after_request
    def _finish(response: Response) -> Response:
        response.headers[_REQUEST_ID_HEADER] = g.get("signlab_request_id", "")
        # Pages of a signing service must never be framed (clickjacking on login and consent).
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Content-Security-Policy", "frame-ancestors 'none'")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        if request.path != "/healthz":
            log.info(
                "%s %s %s", request.method, request.path, response.status_code,
                extra={"http_status": response.status_code,
                       "duration_ms": round((time.perf_counter() - g.get("signlab_started", time.perf_counter())) * 1000, 2)},
            )
        return response

    @app.teardown_request
    def _reset(_exc: BaseException | None) -> None:
        token = g.pop("signlab_request_token", None)
        if token is not None:
            request_id_var.reset(token)


def _install_disk_guard(app: Flask, info: ServiceInfo, disk: DiskGuard) -> None:
    """Refuse requests that write (507) while the data directory's disk is below the threshold."""
    if not disk.enabled:
        return
    who = f"the {info.role} ({info.name})"

    @app.before_request
    def _refuse_writes_when_disk_low() -> None:
        if request.method not in _WRITING_METHODS or request.endpoint is None:
            return  # reads keep working; an unknown URL gets its 404
        if getattr(app.view_functions.get(request.endpoint), _WRITES_NOTHING, False):
            return
        disk.refuse_if_low(who)


def _error_response(error: str, description: str, status: int, headers: Mapping[str, str] | None = None) -> Response:
    if wants_html():
        response = Response(render_template("signlab_error.html", error=error, description=description,
                                            status=status), status=status, mimetype="text/html")
    else:
        response = jsonify({"error": error, "error_description": description})
        response.status_code = status
    if status == 401:  # RFC 9110 §15.5.2: every 401 names the scheme (an error may name another)
        response.headers["WWW-Authenticate"] = f'Bearer error="{error}"'
    response.headers.update(headers or {})
    return response


def _register_error_handlers(app: Flask, info: ServiceInfo) -> None:
    @app.errorhandler(SignLabError)
    def _signlab_error(exc: SignLabError) -> Response:
        level = logging.ERROR if exc.status >= 500 else logging.INFO
        log.log(level, "refused: %s %s", exc.error, exc.error_description,
                extra={"error": exc.error, "step": exc.step.number if exc.step else None})
        return _error_response(exc.error, exc.error_description, exc.status, exc.headers)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        code = "invalid_request" if status in (400, 413, 415) else (exc.name or "error").lower().replace(" ", "_")
        # RFC 9110: a 405 names the methods the resource does allow.
        allowed = getattr(exc, "valid_methods", None)
        headers = {"Allow": ", ".join(sorted(allowed))} if status == 405 and allowed else None
        return _error_response(code, exc.description or exc.name, status, headers)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        full = storage_failure(exc, f"the {info.role} ({info.name})")
        if full is not None:  # a full disk met mid-operation: said plainly, not as a 500
            return _signlab_error(full)
        log.exception("unexpected error")
        return _error_response(
            "server_error", f"unexpected error; the service log has the details under request id {g.get('signlab_request_id')}", 500
        )


def _register_health(app: Flask, info: ServiceInfo, checks: dict[str, HealthCheck], disk: DiskGuard) -> None:
    """``GET /healthz``: 200 ``ok``; 200 ``degraded`` while the disk is low (reads still work, writes
    are refused, the service recovers by itself); 503 ``failing`` when a readiness check fails."""

    @app.get("/healthz")
    def healthz() -> tuple[Response, int]:
        results: dict[str, dict[str, str]] = {}
        healthy = True
        for name, check in checks.items():
            try:
                results[name] = {"status": "ok", "detail": check()}
            except Exception as exc:  # a failing check must report, never crash the endpoint
                healthy = False
                results[name] = {"status": "failing", "detail": str(exc)}
        degraded = False
        if disk.enabled:
            space = disk.check()
            degraded = space.low
            results["disk"] = {"status": "degraded" if degraded else "ok",
                               "detail": space.describe() + ("; requests that write are refused (507) until "
                                                             "space is freed" if degraded else "")}
        body = {
            "status": "failing" if not healthy else "degraded" if degraded else "ok",
            "service": info.name,
            "role": str(info.role),
            "version": signlab_version(),
            "checks": results,
        }
        return jsonify(body), 200 if healthy else 503


def _register_role_page(app: Flask, info: ServiceInfo, at: str) -> None:
    def role_page() -> str:
        return render_template("signlab_role.html", info=info, endpoints=_public_endpoints(app))

    app.add_url_rule("/role", "signlab_role", role_page)
    if at != "/role":
        app.add_url_rule(at, "signlab_role_home", role_page)


def _public_endpoints(app: Flask) -> list[tuple[str, str]]:
    """The service's own routes, for the role page (the frame's routes are left out)."""
    hidden = {"static", "signlab_shared.static", "signlab_role", "signlab_role_home", "signlab_favicon"}
    rows = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint in hidden:
            continue
        methods = ", ".join(sorted(m for m in rule.methods or () if m not in ("HEAD", "OPTIONS")))
        rows.append((rule.rule, methods))
    return sorted(rows)
