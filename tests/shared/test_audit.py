"""The hash-chained audit log: appends chain, verify finds the first broken entry for each kind of tampering."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from shared.audit import GENESIS, AuditLog, entry_hash, pseudonymise


def _log(tmp_path: Path, n: int = 4) -> AuditLog:
    log = AuditLog(tmp_path / "audit.jsonl")
    for i in range(n):
        log.append("test.event", step=(i % 10) + 1, index=i, note="ålesund")
    return log


def test_entries_chain_and_verify(tmp_path: Path) -> None:
    log = _log(tmp_path)
    entries = list(log.entries())
    assert [e.seq for e in entries] == [1, 2, 3, 4]
    assert entries[0].prev == GENESIS
    assert all(b.prev == a.hash for a, b in zip(entries, entries[1:], strict=False))
    assert entries[0].data == {"index": 0, "note": "ålesund"}
    result = log.verify()
    assert result.ok and result.entries == 4 and result.first_broken is None and result.head == entries[-1].hash
    assert (tmp_path / "audit.jsonl").stat().st_mode & 0o777 == 0o600


def test_reopened_log_continues_the_chain(tmp_path: Path) -> None:
    _log(tmp_path, 2)
    again = AuditLog(tmp_path / "audit.jsonl")
    entry = again.append("more")
    assert entry.seq == 3
    assert again.verify().ok


def _rewrite(path: Path, change) -> None:  # type: ignore[no-untyped-def]
    lines = path.read_text().splitlines()
    path.write_text("\n".join(change(lines)) + "\n")


def _edit(lines: list[str]) -> list[str]:
    entry = json.loads(lines[1])
    entry["data"]["index"] = 99
    return [lines[0], json.dumps(entry), *lines[2:]]


def _edit_and_rehash(lines: list[str]) -> list[str]:
    entry = json.loads(lines[1])
    entry["data"]["index"] = 99
    entry["hash"] = entry_hash(entry)  # consistent line, but entry 3 no longer chains to it
    return [lines[0], json.dumps(entry), *lines[2:]]


@pytest.mark.parametrize(
    ("change", "broken", "reason"),
    [
        (_edit, 2, "altered"),
        (_edit_and_rehash, 3, "does not chain"),
        (lambda lines: [lines[0], *lines[2:]], 2, "does not chain"),
        (lambda lines: [lines[0], lines[2], lines[1], lines[3]], 2, "does not chain"),
        (lambda lines: [*lines[:3], "{not json"], 4, "not JSON"),
    ],
    ids=["edited", "edited-and-rehashed", "deleted", "reordered", "garbage"],
)
def test_tampering_is_found_at_the_first_broken_entry(tmp_path: Path, change, broken: int, reason: str) -> None:  # type: ignore[no-untyped-def]
    log = _log(tmp_path)
    _rewrite(log.path, change)
    result = log.verify()
    assert not result.ok
    assert result.first_broken == broken
    assert reason in result.reason


def test_concurrent_appends_keep_one_chain(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    threads = [threading.Thread(target=lambda: [log.append("t") for _ in range(20)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result = log.verify()
    assert result.ok and result.entries == 80


def test_pseudonyms_are_stable_and_keyed() -> None:
    assert pseudonymise(b"k1", "alice") == pseudonymise(b"k1", "alice")
    assert pseudonymise(b"k1", "alice") != pseudonymise(b"k2", "alice")
    assert "alice" not in pseudonymise(b"k1", "alice")


def test_lines_are_the_canonical_json_of_the_entry(tmp_path: Path) -> None:
    """The line is assembled from the canonical text (hash spliced in): it must be exactly
    ``json.dumps(entry, sort_keys=True)`` — also with nested keys named like the top-level ones."""
    log = AuditLog(tmp_path / "audit.jsonl")
    log.append("a.b", step=7, prev="x", hash="y", nested={"prev": "z,\"prev\":\"", "seq": 1}, sync=False)
    log.append("c.d", note="ålesund ✓")  # non-ASCII: escaped in the line, hashed unescaped
    for line in (tmp_path / "audit.jsonl").read_text().splitlines():
        entry = json.loads(line)
        assert line == json.dumps(entry, sort_keys=True, separators=(",", ":"))
        assert entry["hash"] == entry_hash(entry)
    assert log.verify().ok


def test_two_writers_on_one_file_keep_one_chain(tmp_path: Path) -> None:
    """The cached head is not trusted after another writer (another object, or process) appended."""
    first, second = AuditLog(tmp_path / "audit.jsonl"), AuditLog(tmp_path / "audit.jsonl")
    for i in range(5):
        (first if i % 2 else second).append("e", index=i, sync=i % 3 == 0)
    first.append("last")
    result = first.verify()
    assert result.ok and result.entries == 6
    assert [e.seq for e in first.entries()] == [1, 2, 3, 4, 5, 6]


def test_unsynced_entries_are_written_at_once(tmp_path: Path) -> None:
    """sync=False skips only the fsync: the line is in the file (a reader, or a process killed
    right after, sees it) and a later sync makes it durable."""
    log = AuditLog(tmp_path / "audit.jsonl")
    log.append("csr.sent", step=7, sync=False)
    assert [e.event for e in AuditLog(tmp_path / "audit.jsonl").entries()] == ["csr.sent"]
    log.sync()
    assert log.verify().ok
