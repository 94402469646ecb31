"""The typed client base: timeouts, transport failures, error answers, trace context, all over real HTTP."""

import threading
import time

import pytest
from flask import Flask, jsonify, request

from shared.errors import UpstreamError, UpstreamUnavailable
from shared.flow import Role, step
from shared.http_client import ServiceClient
from shared.testing import LiveServer, free_port


class CaLikeClient(ServiceClient):
    role = Role.TSP


@pytest.fixture(scope="module")
def server() -> LiveServer:  # type: ignore[misc]
    app = Flask("peer")
    seen: dict[str, str] = {}

    @app.get("/ok")
    def ok():  # type: ignore[no-untyped-def]
        seen.update(request.headers)
        return jsonify(fine=True)

    @app.post("/refuse")
    def refuse():  # type: ignore[no-untyped-def]
        return jsonify(error="access_denied", error_description="LoA too low"), 403

    @app.get("/html-error")
    def html_error():  # type: ignore[no-untyped-def]
        return "<h1>Bad Gateway</h1>", 502

    @app.get("/slow")
    def slow():  # type: ignore[no-untyped-def]
        time.sleep(1.5)
        return jsonify(late=True)

    app.config["seen"] = seen
    with LiveServer(app) as live:
        yield live


def test_success_returns_the_response(server: LiveServer) -> None:
    assert CaLikeClient(server.url).request("GET", "/ok").json() == {"fine": True}


def test_error_answer_keeps_the_code(server: LiveServer) -> None:
    with pytest.raises(UpstreamError) as caught:
        CaLikeClient(server.url).request("POST", "/refuse", step=step(7))
    error = caught.value
    assert (error.upstream_error, error.upstream_status, error.role) == ("access_denied", 403, Role.TSP)
    assert error.error_description.startswith("step 7 (SSASP → TSP): the TSP answered 403 access_denied: LoA too low")


def test_non_json_error_answer(server: LiveServer) -> None:
    with pytest.raises(UpstreamError, match="http_502"):
        CaLikeClient(server.url).request("GET", "/html-error")


def test_connection_refused_names_role_and_step() -> None:
    with pytest.raises(UpstreamUnavailable, match=r"step 7 \(SSASP → TSP\): the TSP is unavailable: cannot connect"):
        CaLikeClient(f"http://127.0.0.1:{free_port()}").request("GET", "/ok", step=step(7))


def test_timeout_is_bounded(server: LiveServer) -> None:
    started = time.monotonic()
    with pytest.raises(UpstreamUnavailable, match="within 0.3 s"):
        CaLikeClient(server.url, timeout=0.3).request("GET", "/slow")
    assert time.monotonic() - started < 1.4


def test_trace_context_is_propagated(server: LiveServer) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("step-07 certificate issuance") as span:
        CaLikeClient(server.url).request("GET", "/ok")
        trace_id = format(span.get_span_context().trace_id, "032x")
    seen = server.app.config["seen"]
    assert seen["Traceparent"].split("-")[1] == trace_id


def test_concurrent_calls_share_the_pool(server: LiveServer) -> None:
    client = CaLikeClient(server.url)
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(client.request("GET", "/ok").status_code)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [200] * 8
