"""``signlab trace``: the CLI renders a stored transaction in every format."""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "shared"))

import tracing_ecosystem  # noqa: E402

from signlab.cli import main  # noqa: E402


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("trace-cli")
    eco = tracing_ecosystem.start(root)
    try:
        eco.sign()
        eco.sign(acr="low")
    finally:
        for server in eco.servers:
            server.stop()
    return root  # the store is <data dir>/traces, as under 'signlab up'


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_and_formats(data_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SIGNLAB_TRACE_DIR", raising=False)
    code, out, _ = _run(capsys, "--data-dir", str(data_dir), "trace", "--list")
    assert code == 0
    lines = out.strip().splitlines()
    assert len(lines) == 2 and "refused" in lines[0] and "step 5: access_denied" in lines[0]
    assert "completed" in lines[1] and "1 2 3 4 5 6 7 8 9 10" in lines[1]
    assert "Kari Nordmann" in lines[1] and "· QES" in lines[1]  # who and what, told apart at a glance
    ok_id = lines[1].split()[1]

    code, out, _ = _run(capsys, "--data-dir", str(data_dir), "trace", ok_id, "--format", "json")
    assert code == 0 and json.loads(out)["steps"] == list(range(1, 11))
    code, out, _ = _run(capsys, "--data-dir", str(data_dir), "trace", ok_id, "--format", "svg")
    assert ET.fromstring(out).tag == "{http://www.w3.org/2000/svg}svg"
    code, out, _ = _run(capsys, "--data-dir", str(data_dir), "trace", ok_id, "--format", "mermaid")
    assert out.startswith("sequenceDiagram\n") and "SSASP->>TSP: 7 · certificate request" in out
    code, out, _ = _run(capsys, "--data-dir", str(data_dir), "trace")  # latest, as text
    assert code == 0 and "Refused at step 5 in the signer: access_denied" in out
    assert "Steps: 1 done, 2 done, 3 done, 4 done, 5 failed, 6 not reached" in out
    code, out, _ = _run(capsys, "--data-dir", str(data_dir), "trace", "--list", "--activity")
    assert code == 1 or "steps 1 2 3" not in out  # page views and metadata are never listed as signings


def test_unknown_transaction_is_a_clear_error(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "--data-dir", str(data_dir), "trace", "tx-does-not-exist")
    assert code == 1 and "no transaction 'tx-does-not-exist'" in err and "--list" in err


def test_output_file(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "t.mmd"
    code, _, err = _run(capsys, "--data-dir", str(data_dir), "trace", "latest", "--format", "mermaid", "-o", str(target))
    assert code == 0 and target.read_text().startswith("sequenceDiagram") and "wrote" in err
