"""The shared Flask frame: health, role page, error rendering, request ids, security headers."""

import json
import logging
import os
import re

import pytest
from flask import Flask, request

from shared.settings import ServiceSettings
from shared.errors import InvalidRequest, SignLabError
from shared.flow import SERVICES, service, step
from shared.logs import JsonFormatter, LineHandler
from shared.testing import fill_filesystem, small_filesystem
from shared.web import create_service_app, writes_nothing


@pytest.fixture(autouse=True)
def _in_a_temp_dir(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """The apps here use the default relative data dir: keep what they write (traces) out of the tree."""
    monkeypatch.chdir(tmp_path)


def _app(checks=None) -> Flask:  # type: ignore[no-untyped-def]
    app = create_service_app("services.idp", service("idp"), ServiceSettings(port=8001, max_body_bytes=2048), health_checks=checks)

    @app.post("/refuse")
    def refuse() -> str:
        raise InvalidRequest("the digest is 31 bytes, SHA-256 needs 32", step=step(6))

    @app.post("/echo")
    def echo() -> bytes:
        return request.get_data()

    @app.get("/crash")
    def crash() -> str:
        raise KeyError("secret-internal-detail")

    @app.get("/teapot")
    def teapot() -> str:
        raise SignLabError("busy", error="temporarily_unavailable", status=503)

    return app


def test_health_reports_role_and_version() -> None:
    response = _app().test_client().get("/healthz")
    assert response.status_code == 200
    assert response.json["status"] == "ok" and response.json["role"] == "IPSP" and response.json["service"] == "idp"
    assert response.json["version"]


def test_failing_health_check_answers_503() -> None:
    def broken() -> str:
        raise RuntimeError("token missing")

    response = _app({"hsm": broken, "db": lambda: "fine"}).test_client().get("/healthz")
    assert response.status_code == 503
    checks = response.json["checks"]
    assert {name: checks[name] for name in ("hsm", "db")} == {"hsm": {"status": "failing", "detail": "token missing"},
                                                              "db": {"status": "ok", "detail": "fine"}}
    assert response.json["status"] == "failing" and checks["disk"]["status"] == "ok"


def test_role_page_explains_the_role_and_steps() -> None:
    client = _app().test_client()
    page = client.get("/").get_data(as_text=True)
    assert "IPSP" in page and "level of assurance" in page
    for number in (3, 4, 5):
        assert f'<td class="step">{number}</td>' in page
    assert client.get("/role").status_code == 200
    with client.get("/signlab-static/signlab.css") as stylesheet:
        assert stylesheet.status_code == 200


def test_signlab_error_is_rendered_once_as_json() -> None:
    response = _app().test_client().post("/refuse")
    assert response.status_code == 400
    assert response.json == {"error": "invalid_request",
                             "error_description": "step 6 (SSASP → HSM): the digest is 31 bytes, SHA-256 needs 32"}
    other = _app().test_client().get("/teapot")
    assert (other.status_code, other.json["error"]) == (503, "temporarily_unavailable")


def test_browsers_get_an_html_error_page() -> None:
    response = _app().test_client().post("/refuse", headers={"Accept": "text/html,application/xhtml+xml"})
    assert response.status_code == 400 and response.mimetype == "text/html"
    assert "the digest is 31 bytes" in response.get_data(as_text=True)


@pytest.mark.parametrize(("method", "path", "status", "code"), [
    ("get", "/nowhere", 404, "not_found"),
    ("delete", "/healthz", 405, "method_not_allowed"),
])
def test_http_errors_become_protocol_errors(method: str, path: str, status: int, code: str) -> None:
    response = getattr(_app().test_client(), method)(path)
    assert response.status_code == status and response.json["error"] == code and response.json["error_description"]


def test_method_not_allowed_names_the_allowed_methods() -> None:
    response = _app().test_client().delete("/healthz")
    assert response.status_code == 405 and response.headers["Allow"] == "GET, HEAD, OPTIONS"


def test_oversized_body_is_refused_with_413() -> None:
    response = _app().test_client().post("/echo", data=b"x" * 4096, content_type="application/octet-stream")
    assert response.status_code == 413 and response.json["error"] == "invalid_request"


def test_unexpected_exception_is_500_without_internals(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        response = _app().test_client().get("/crash")
    assert response.status_code == 500 and response.json["error"] == "server_error"
    assert "secret-internal-detail" not in response.get_data(as_text=True)
    assert response.headers["X-Request-ID"] in response.json["error_description"]


def test_request_id_and_security_headers() -> None:
    client = _app().test_client()
    echoed = client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["X-Request-ID"] == "abc-123"
    for forged_id in ("evil injected", "x" * 100, '"}{"level": "ERROR'):
        forged = client.get("/healthz", headers={"X-Request-ID": forged_id})
        assert forged.headers["X-Request-ID"] != forged_id and len(forged.headers["X-Request-ID"]) == 16
    assert echoed.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in echoed.headers["Content-Security-Policy"]


def test_request_log_lines_are_json_with_the_request_id(capsys: pytest.CaptureFixture[str]) -> None:
    client = _app().test_client()
    client.get("/nowhere", headers={"X-Request-ID": "req-42"})
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    entry = next(line for line in lines if line["message"] == "GET /nowhere 404")
    assert entry["request_id"] == "req-42" and entry["service"] == "idp" and entry["http_status"] == 404


def test_each_service_has_its_own_session_cookie() -> None:
    """Cookies ignore ports: on 127.0.0.1 two services with one cookie name would overwrite each other."""
    names = {create_service_app(f"services.{info.name}", info, ServiceSettings()).config["SESSION_COOKIE_NAME"]
             for info in SERVICES}
    assert names == {"signlab_portal_session", "signlab_idp_session", "signlab_ca_session", "signlab_signer_session",
                     "signlab_wallet_session"}


# --- a full disk ----------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):  # type: ignore[no-untyped-def]
    with small_filesystem(tmp_path / "disk", size_mib=3) as mounted:
        yield mounted


def _disk_app(data_dir) -> Flask:  # type: ignore[no-untyped-def]
    app = create_service_app("services.ca", service("ca"), ServiceSettings(data_dir=data_dir, disk_min_free_mb=1))

    @app.post("/store")
    def store() -> str:
        (data_dir / "stored").write_text("x")
        return "stored"

    @app.post("/answer")
    @writes_nothing
    def answer() -> str:
        return "answered"

    @app.get("/read")
    def read() -> str:
        return "read"

    return app


def test_a_low_disk_degrades_health_refuses_writes_and_recovers(small_disk) -> None:  # type: ignore[no-untyped-def]
    """Below the threshold on a real filesystem: /healthz says degraded and why, writing requests
    get 507 with a plain message (nothing written), reads and write-free POSTs still work; freeing
    space brings everything back without a restart."""
    client = _disk_app(small_disk).test_client()
    assert client.get("/healthz").json["status"] == "ok"

    filler = fill_filesystem(small_disk)
    health = client.get("/healthz")
    assert health.status_code == 200 and health.json["status"] == "degraded"
    detail = health.json["checks"]["disk"]["detail"]
    assert health.json["checks"]["disk"]["status"] == "degraded"
    assert f"0.0 MiB free on the filesystem of {small_disk} (needs 1.0 MiB)" in detail and "507" in detail
    refused = client.post("/store")
    assert refused.status_code == 507 and refused.json["error"] == "temporarily_unavailable"
    assert refused.json["error_description"].startswith("the TSP (ca) cannot store anything right now: only 0.0 MiB")
    assert "as soon as space is freed" in refused.json["error_description"] and "log" not in refused.json["error_description"]
    assert not (small_disk / "stored").exists()
    assert client.post("/answer").data == b"answered" and client.get("/read").data == b"read"
    assert client.post("/no-such-endpoint").status_code == 404

    filler.unlink()
    assert client.get("/healthz").json["status"] == "ok"
    assert client.post("/store").data == b"stored"


def test_a_full_disk_met_mid_operation_is_a_plain_507(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """ENOSPC (or SQLite's "disk is full") escaping a view is not a 500 pointing at a log on that disk."""
    import errno
    import sqlite3

    app = _app()

    @app.get("/full")
    def full() -> str:
        raise OSError(errno.ENOSPC, "No space left on device")

    @app.get("/sqlite-full")
    def sqlite_full() -> str:
        try:
            raise sqlite3.OperationalError("database or disk is full")
        except sqlite3.OperationalError as exc:
            raise RuntimeError("store failed") from exc

    for path in ("/full", "/sqlite-full"):
        answer = app.test_client().get(path)
        assert answer.status_code == 507, path
        assert answer.json["error_description"].startswith("the IPSP (idp) could not store the result: its disk is full")


def test_log_lines_below_warning_are_held_back_while_the_log_disk_is_low(small_disk) -> None:  # type: ignore[no-untyped-def]
    """The log file's own filesystem decides; held-back records are counted once space returns,
    and every line in the file is whole JSON."""
    path = small_disk / "service.log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    handler = LineHandler(min_free_bytes=1024 * 1024, fd=fd)
    handler._RECHECK_SECONDS = 0  # measure on every record here
    handler.setFormatter(JsonFormatter("ca"))
    logger = logging.getLogger("test.disk")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        logger.info("before")
        filler = fill_filesystem(small_disk)
        for i in range(3):
            logger.info("while full %d", i)
        logger.warning("a warning on a full disk")  # tried: fits in the file's last page, or is lost
        filler.unlink()
        logger.info("after")
    finally:
        logger.removeHandler(handler)
        os.close(fd)
    lines = [json.loads(line) for line in path.read_text().splitlines()]  # every line whole JSON
    messages = [line["message"] for line in lines]
    assert lines[1]["held_back"] == 3
    if lines[1]["lost"] == 0:
        assert messages[0::2] == ["before", "a warning on a full disk"] and messages[3] == "after"
    else:
        assert lines[1]["lost"] == 1 and messages[0::2] == ["before", "after"]


def test_every_page_shows_the_lab_clock(tmp_path) -> None:  # type: ignore[no-untyped-def]
    app = _app()
    clock = app.extensions["signlab.clock"]
    assert clock.path == (tmp_path / "lab-clock.json").absolute()  # beside the service's data dir (var/)
    client = app.test_client()
    page = client.get("/").get_data(as_text=True)
    assert 'class="lab-clock"' in page and re.search(r"lab clock \d{4}-\d\d-\d\d \d\d:\d\d UTC</span>", page)
    try:
        clock.set_offset(86400 + 7200, note="test")
        moved = client.get("/role").get_data(as_text=True)
        assert 'class="lab-clock moved"' in moved and re.search(r"lab clock [0-9: -]+ UTC \(\+1 d 2 h\)</span>", moved)
        error_page = client.get("/no-such-page", headers={"Accept": "text/html"}).get_data(as_text=True)
        assert "(+1 d 2 h)" in error_page
    finally:
        clock.reset()
