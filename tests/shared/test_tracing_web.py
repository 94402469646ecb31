"""The trainer blueprint: dashboard, live transaction page, JSON/SVG/Mermaid endpoints, embed."""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask, render_template_string
from pydantic import SecretStr

sys.path.insert(0, str(Path(__file__).parent))

import tracing_ecosystem  # noqa: E402

from shared.flow import service  # noqa: E402
from shared.tracing import trainer_blueprint  # noqa: E402
from shared.web import create_service_app  # noqa: E402


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Flask, str]]:
    root = tmp_path_factory.mktemp("trainer")
    eco = tracing_ecosystem.start(root)
    response = eco.sign()
    tx_id = response.url.rsplit("/", 1)[1]
    settings = tracing_ecosystem.MiniSettings(data_dir=root / "portal-trainer", client_secret=SecretStr("x" * 12),
                                              pin=SecretStr("y" * 12))
    app = create_service_app(__name__, service("portal"), settings)
    urls = {name: url for name, url in eco.urls.items() if not name.startswith("_")}
    app.register_blueprint(trainer_blueprint(service_urls=urls))
    yield app, tx_id
    for server in eco.servers:
        server.stop()


def test_dashboard_lists_services_and_transactions(setup: tuple[Flask, str]) -> None:
    app, tx_id = setup
    page = app.test_client().get("/trainer/", headers={"Accept": "text/html"})
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert html.count(">healthy<") == 4
    assert tx_id in html and "signlab-trace.js" in html and "<svg" in html


def test_transaction_page_and_exports(setup: tuple[Flask, str]) -> None:
    app, tx_id = setup
    client = app.test_client()
    html = client.get(f"/trainer/transactions/{tx_id}").get_data(as_text=True)
    assert "Steps and timings" in html and 'class="sl-arrow' in html
    data = client.get(f"/trainer/api/transactions/{tx_id}").get_json()
    assert data["steps"] == list(range(1, 11)) and data["outcome"] == "completed" and data["kind"] == "signing"
    svg = client.get(f"/trainer/api/transactions/{tx_id}.svg")
    assert svg.mimetype == "image/svg+xml" and ET.fromstring(svg.get_data()).tag.endswith("svg")
    assert client.get(f"/trainer/api/transactions/{tx_id}.mmd").get_data(as_text=True).startswith("sequenceDiagram")
    listing = client.get("/trainer/api/transactions").get_json()
    assert listing[0]["transaction_ids"] and json.dumps(listing)
    status = client.get("/trainer/api/status").get_json()
    # The mini ecosystem runs the four providers, not the wallet: the status table says so.
    assert {s["role"]: s["status"] for s in status} == {"SCASP": "healthy", "IPSP": "healthy", "TSP": "healthy",
                                                        "SSASP": "healthy", "Wallet": "unknown"}


def test_unknown_transaction_is_404_and_trainer_pages_are_not_traced(setup: tuple[Flask, str]) -> None:
    app, _ = setup
    response = app.test_client().get("/trainer/api/transactions/tx-nope")
    assert response.status_code == 404 and response.get_json()["error"] == "not_found"
    store = Path(app.extensions["signlab.tracing"].writer.directory)
    assert "/trainer" not in "".join(p.read_text() for p in store.glob("*.jsonl"))


def test_embed_for_a_result_page(setup: tuple[Flask, str]) -> None:
    app, tx_id = setup
    with app.test_request_context("/"):
        html = render_template_string("{{ signlab_trace_embed(key) }}", key=tx_id)
    assert 'class="signlab-trace-live"' in html and "<svg" in html and f"/trainer/api/transactions/{tx_id}" in html
