"""The TSP client's URL mapping (the HTTP methods are exercised in tests/services/ca)."""

from __future__ import annotations

import asyncio
import threading

from flask import Flask

from shared.clients.ca import CaClient, UrlMapper
from shared.testing import LiveServer


def test_url_mapper_maps_only_the_public_base() -> None:
    mapper = UrlMapper("http://ca.signlab.example.com", "http://127.0.0.1:8002")
    assert mapper("http://ca.signlab.example.com/crl/issuing.crl") == "http://127.0.0.1:8002/crl/issuing.crl"
    assert mapper("http://ca.signlab.example.com") == "http://127.0.0.1:8002"
    assert mapper("http://ca.signlab.example.com.evil.org/x") == "http://ca.signlab.example.com.evil.org/x"
    assert mapper("http://other.example.com/x") == "http://other.example.com/x"


def test_fetcher_backend_fetches_public_urls_from_the_real_ca() -> None:
    seen: list[str] = []
    lock = threading.Lock()
    app = Flask("fake-ca")

    @app.get("/crl/issuing.crl")
    def crl() -> tuple[bytes, int, dict[str, str]]:
        with lock:
            seen.append("crl")
        return b"not-a-crl", 200, {"Content-Type": "application/pkix-crl"}

    with LiveServer(app) as server:
        client = CaClient(server.url, public_cert_base="http://ca.signlab.example.com")
        fetchers = client.fetcher_backend().get_fetchers()
        response = asyncio.run(fetchers.crl_fetcher._get(  # type: ignore[attr-defined]
            "http://ca.signlab.example.com/crl/issuing.crl", acceptable_content_types=("application/pkix-crl",)))
        assert response.content == b"not-a-crl"
        assert seen == ["crl"]
        assert client.map_url("http://ca.signlab.example.com/ocsp") == f"{server.url}/ocsp"
