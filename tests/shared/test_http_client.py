"""The typed client base: timeouts, transport failures, error answers, trace context, all over real HTTP."""

import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from flask import Flask, jsonify, request

from shared import http_client
from shared.errors import UpstreamAnswerBroken, UpstreamError, UpstreamUnavailable
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

    @app.get("/html-page")
    def html_page():  # type: ignore[no-untyped-def]
        return "<h1>Welcome</h1>"

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
    with pytest.raises(UpstreamUnavailable, match=r"within 0\.3 s"):
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


# --- keep-alive races and broken answers ----------------------------------------------------------


class RacingServer:
    """A raw HTTP/1.1 server on loopback that plays a server whose keep-alive idle timeout fires
    exactly as the client reuses the connection: it answers the first request of a connection
    (keep-alive), and when the next request arrives on that connection it closes the connection
    without answering. A new connection gets an answer again. ``truncate`` instead answers every
    request with a body that breaks off after 10 of its announced 100 bytes.
    """

    def __init__(self, *, truncate: bool = False) -> None:
        self.truncate = truncate
        self.connections = 0
        self.requests: list[tuple[int, str]] = []
        """(connection number, request line) of every request received."""
        self.unanswered: list[tuple[int, str]] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn, self.connections), daemon=True).start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        reader = conn.makefile("rb")
        with conn, reader:
            for index in range(2):
                line = reader.readline().decode().strip()
                if not line:
                    return
                length = 0
                while (header := reader.readline()) not in (b"\r\n", b""):
                    if header.lower().startswith(b"content-length:"):
                        length = int(header.split(b":")[1])
                reader.read(length)
                self.requests.append((number, line))
                if index == 1:  # the reuse: the idle timeout "fires" now
                    self.unanswered.append((number, line))
                    return
                if self.truncate:
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
                                 b'{"partial"')
                    return
                body = json.dumps({"connection": number}).encode()
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: keep-alive\r\n"
                             + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)

    def close(self) -> None:
        self._listener.close()


@pytest.fixture
def racing() -> Iterator[RacingServer]:
    server = RacingServer()
    yield server
    server.close()


def test_a_reused_connection_closed_by_the_server_is_retried_once_for_a_get(racing: RacingServer) -> None:
    """The keep-alive race, deterministically: the reused connection is closed as the GET arrives;
    the client sends it once more on a new connection and gets the answer."""
    client = CaLikeClient(racing.url)
    assert client.request("GET", "/ok").json() == {"connection": 1}
    assert client.request("GET", "/again", step=step(10)).json() == {"connection": 2}
    assert racing.requests == [(1, "GET /ok HTTP/1.1"), (1, "GET /again HTTP/1.1"), (2, "GET /again HTTP/1.1")]
    assert racing.unanswered == [(1, "GET /again HTTP/1.1")]


def test_a_post_is_not_repeated_unless_its_caller_says_it_is_idempotent(racing: RacingServer) -> None:
    client = CaLikeClient(racing.url)
    client.request("GET", "/ok")
    with pytest.raises(UpstreamUnavailable) as caught:
        client.request("POST", "/csc/v2/signatures/signDoc", step=step(7), json={"x": 1})
    assert caught.value.status == 503
    assert caught.value.error_description.startswith(
        f"step 7 (SSASP → TSP): the TSP is unavailable: the connection to {racing.url}/csc/v2/signatures/signDoc "
        "closed without an answer (remote end closed)")
    assert [line for _, line in racing.requests].count("POST /csc/v2/signatures/signDoc HTTP/1.1") == 1

    assert client.request("GET", "/ok").json() == {"connection": 2}  # a new connection, to be reused next
    assert client.request("POST", "/api/v1/certificates", step=step(7), json={"request_id": "r1"},
                          idempotent=True).json() == {"connection": 3}
    assert [line for _, line in racing.requests].count("POST /api/v1/certificates HTTP/1.1") == 2


def test_a_fresh_connection_that_fails_is_not_retried() -> None:
    """Only a *reused* connection may have met the idle close; a new one that fails is an outage."""
    server = RacingServer(truncate=True)
    try:
        with pytest.raises(UpstreamAnswerBroken):
            CaLikeClient(server.url).request("GET", "/ok")
        assert server.connections == 1 and len(server.requests) == 1
    finally:
        server.close()


def test_a_truncated_answer_is_a_502_naming_role_and_step() -> None:
    server = RacingServer(truncate=True)
    try:
        with pytest.raises(UpstreamAnswerBroken) as caught:
            CaLikeClient(server.url).request("GET", "/crl/issuing.crl", step=step(7))
    finally:
        server.close()
    error = caught.value
    assert (error.status, error.error, error.role) == (502, "server_error", Role.TSP)
    assert error.error_description == (f"step 7 (SSASP → TSP): the answer of the TSP broke off or is unreadable: GET "
                                       f"{server.url}/crl/issuing.crl: the body ended early or is garbled "
                                       "(10 bytes read, 90 more expected)")
    assert isinstance(error, UpstreamUnavailable)  # callers that handle an outage handle this too


def test_an_answer_that_is_not_json_is_a_502(server: LiveServer) -> None:
    with pytest.raises(UpstreamAnswerBroken, match="expected JSON, got text/html"):
        CaLikeClient(server.url).request_json("GET", "/html-page", step=step(7))


def test_connections_idle_longer_than_the_limit_are_not_reused(racing: RacingServer,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The client drops a connection idle for longer than CLIENT_MAX_IDLE_SECONDS before reusing it,
    so it never meets the server's idle close: a new connection, no race, no retry."""
    monkeypatch.setattr(http_client, "CLIENT_MAX_IDLE_SECONDS", 0)
    client = CaLikeClient(racing.url)
    assert client.request("GET", "/ok").json() == {"connection": 1}
    assert client.request("POST", "/not-repeatable").json() == {"connection": 2}
    assert racing.unanswered == []


def test_clients_give_up_idle_connections_before_the_servers_do() -> None:
    assert http_client.CLIENT_MAX_IDLE_SECONDS < http_client.SERVER_KEEPALIVE_SECONDS
