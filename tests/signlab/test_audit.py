"""``signlab audit verify`` on real hash-chained logs in a data directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.audit import AuditLog
from signlab.cli import main


def _write_logs(data_dir: Path) -> tuple[Path, Path]:
    signer_log = data_dir / "signer" / "audit.jsonl"
    ca_log = data_dir / "ca" / "issuance-log.jsonl"
    for path, events in ((signer_log, ["key.created", "key.destroyed", "sad.refused"]),
                         (ca_log, ["certificate.issued", "issuance.refused"])):
        log = AuditLog(path)
        for number, event in enumerate(events):
            log.append(event, step=7, serial=f"{number:04x}")
    return signer_log, ca_log


def test_intact_logs_pass(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write_logs(tmp_path)
    assert main(["--data-dir", str(tmp_path), "audit", "verify"]) == 0
    out = capsys.readouterr().out
    assert "signer (SSASP) audit log: 3 entries, intact" in out
    assert "ca (TSP) issuance log: 2 entries, intact" in out


def test_an_edited_entry_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    signer_log, _ = _write_logs(tmp_path)
    lines = signer_log.read_text().splitlines()
    entry = json.loads(lines[1])
    entry["data"]["serial"] = "ffff"
    lines[1] = json.dumps(entry)
    signer_log.write_text("\n".join(lines) + "\n")
    assert main(["--data-dir", str(tmp_path), "audit", "verify", "--json"]) == 1
    results = {item["log"]: item for item in json.loads(capsys.readouterr().out)}
    broken = results["signer (SSASP) audit log"]
    assert (broken["ok"], broken["first_broken"]) == (False, 2)
    assert results["ca (TSP) issuance log"]["ok"] is True


def test_missing_logs_are_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--data-dir", str(tmp_path), "audit", "verify"]) == 1
    assert "not found" in capsys.readouterr().err
