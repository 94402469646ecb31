"""``signlab audit verify`` on real hash-chained logs in a data directory."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from services.ca.store import CertificateStore
from shared.audit import AuditLog
from signlab.cli import main


def _store(data_dir: Path, serial: int) -> CertificateStore:
    store = CertificateStore(data_dir / "ca" / "ca.sqlite3")
    now = dt.datetime.now(dt.UTC)
    store.add(serial=serial, issuer="issuing", profile="qes", subject="CN=x", subject_id_hash="ps-x", loa="high",
              requester="signlab-signer", transaction_id="t", not_before=now, not_after=now, issued_at=now, der=b"x")
    return store


def _write_logs(data_dir: Path) -> tuple[Path, Path]:
    signer_log = data_dir / "signer" / "audit.jsonl"
    ca_log = data_dir / "ca" / "issuance-log.jsonl"
    for path, events in ((signer_log, ["key.created", "key.destroyed", "sad.refused"]),
                         (ca_log, ["certificate.issued", "issuance.refused"])):
        log = AuditLog(path)
        for number, event in enumerate(events):
            log.append(event, step=7, serial=f"{number + 0xa0:x}")
    _store(data_dir, 0xa0)  # the certificate the issuance log records
    return signer_log, ca_log


def test_intact_logs_pass(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write_logs(tmp_path)
    assert main(["--data-dir", str(tmp_path), "audit", "verify"]) == 0
    out = capsys.readouterr().out
    assert "signer (SSASP) audit log: 3 entries, intact" in out
    assert "ca (TSP) issuance log: 2 entries, intact" in out
    assert "ca (TSP) database vs issuance log: 1 certificates, database and issuance log agree" in out


def test_a_certificate_missing_from_either_side_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, ca_log = _write_logs(tmp_path)
    _store(tmp_path, 0xb1)  # in the database only
    AuditLog(ca_log).append("certificate.issued", step=7, serial="c2")  # in the log only
    assert main(["--data-dir", str(tmp_path), "audit", "verify"]) == 1
    out = capsys.readouterr().out
    assert ("ca (TSP) database vs issuance log: MISMATCH: serial c2 is in the issuance log but not in the CA "
            "database; serial b1 is in the CA database but not in the issuance log") in out
    assert "ca (TSP) issuance log: 3 entries, intact" in out  # the chain itself is fine


def test_a_recovered_interrupted_write_is_shown_and_intact(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    signer_log, _ = _write_logs(tmp_path)
    with open(signer_log, "ab") as handle:
        handle.write(b'{"data":{"dtbsr')  # a process killed inside a write
    assert main(["--data-dir", str(tmp_path), "audit", "verify"]) == 0
    assert "3 entries, intact; 15 bytes of an interrupted write at the end" in capsys.readouterr().out
    AuditLog(signer_log).recover()  # what the service does when it starts
    assert main(["--data-dir", str(tmp_path), "audit", "verify"]) == 0
    assert ("signer (SSASP) audit log: 4 entries, intact; recovery at entry 4 (15 bytes of an interrupted write "
            "cut (sha-256") in capsys.readouterr().out


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
