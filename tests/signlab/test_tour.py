"""``signlab tour`` against the real ecosystem (four gunicorn processes on free loopback ports)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.registry import REGISTRY
from signlab.cli import main
from signlab.runtime import LocalRuntime
from shared.testing import free_port
from shared.tracing import TraceStore, build_transaction, render_mermaid

sys.path.insert(0, str(Path(__file__).parents[1] / "shared"))

from test_tracing import check_mermaid  # noqa: E402


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntime]:
    runtime = LocalRuntime(tmp_path_factory.mktemp("tour") / "var", {e.info.name: free_port() for e in REGISTRY})
    runtime.up(timeout=90, progress=lambda _line: None)
    yield runtime
    runtime.down()


@pytest.mark.processes
@pytest.mark.hsm
def test_auto_tour_runs_and_explains_every_step(running: LocalRuntime, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--data-dir", str(running.data_dir), "tour", "--auto", "--delay", "0"])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    for flow_step in range(1, 11):
        assert f"━━ Step {flow_step}: " in out
    assert "Why: " in out
    assert "SCASP → SSASP  pushed authorization request (PAR)" in out
    assert "SSASP → TSP    certificate request (CSR + ID token + client assertion)" in out
    assert "Signed: 1 document(s), transaction tx-" in out
    # Decoded, and redacted: no generated secret appears on the trainer's screen.
    assert '"signatureQualifier": "eu_eidas_qes"' in out
    for line in running.secrets_file.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            assert line.split("=", 1)[1] not in out
    tx_id = out.split("Signed: 1 document(s), transaction ")[1].split(".")[0]
    group = TraceStore(running.data_dir / "traces").find(tx_id)
    assert group is not None
    transaction = build_transaction(group)
    assert transaction.outcome == "ok"
    assert {1, 2, 3, 4, 5, 6, 7, 10} <= set(transaction.steps)
    check_mermaid(render_mermaid(transaction))


def test_tour_needs_a_running_ecosystem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--data-dir", str(tmp_path), "tour", "--auto"])
    assert code == 2 and "signlab up" in capsys.readouterr().err
