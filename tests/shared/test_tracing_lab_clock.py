"""Every recorded span says what the lab clock showed: span times are the machine's, so a trace of a
run with a moved lab clock carries the offset (``signlab.lab_clock_offset_seconds``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.flow import service
from shared.settings import ServiceSettings
from shared.web import create_service_app


def _offsets(store: Path) -> list[float]:
    records = [json.loads(line) for path in store.glob("*.jsonl") for line in path.read_text().splitlines() if line]
    return [r["attributes"]["signlab.lab_clock_offset_seconds"] for r in records
            if r.get("attributes", {}).get("http.target", "").startswith("/role")]


def test_spans_carry_the_lab_clock_offset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    app = create_service_app("services.idp", service("idp"), ServiceSettings(port=8001, data_dir=tmp_path / "idp"))
    clock = app.extensions["signlab.clock"]
    client = app.test_client()
    try:
        client.get("/role")
        clock.set_offset(86400)
        client.get("/role")
    finally:
        clock.reset()
    assert sorted(_offsets(tmp_path / "traces")) == [0, 86400]
