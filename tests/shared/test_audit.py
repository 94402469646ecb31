"""The hash-chained audit log: appends chain, verify finds the first broken entry for each kind of tampering."""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.audit import GENESIS, RECOVERY_EVENT, AuditLog, AuditLogDamaged, AuditWriteFailed, entry_hash, pseudonymise
from shared.testing import fill_filesystem, small_filesystem


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
    assert all(b.prev == a.hash for a, b in itertools.pairwise(entries))
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


# --- crashes and full disks -----------------------------------------------------------------------


def test_an_interrupted_write_is_cut_and_recorded_not_tampering(tmp_path: Path) -> None:
    """A process killed inside a write leaves a final line without its newline: verify calls the
    log intact (naming the torn bytes), and the start-up recovery cuts it and records what it cut."""
    log = _log(tmp_path, 3)
    good = log.path.read_bytes()
    torn = b'{"data":{"index":3},"event":"test.ev'
    with open(log.path, "ab") as handle:
        handle.write(torn)

    before = AuditLog(log.path).verify()
    assert before.ok and before.entries == 3 and before.torn_bytes == len(torn)
    assert "interrupted write" in before.summary()
    assert [e.seq for e in AuditLog(log.path).entries()] == [1, 2, 3]

    recovery = AuditLog(log.path).recover()
    assert recovery is not None and recovery.event == RECOVERY_EVENT and recovery.seq == 4
    assert recovery.data["cut_bytes"] == len(torn)
    assert recovery.data["cut_sha256"] == hashlib.sha256(torn).hexdigest()
    assert log.path.read_bytes().startswith(good) and torn not in log.path.read_bytes()
    after = log.verify()
    assert after.ok and after.torn_bytes == 0 and [r.seq for r in after.recoveries] == [4]
    assert f"recovery at entry 4 ({len(torn)} bytes of an interrupted write cut" in after.summary()
    assert AuditLog(log.path).recover() is None  # nothing more to repair
    assert log.append("after").seq == 5 and log.verify().ok


def test_an_append_repairs_a_torn_end_by_itself(tmp_path: Path) -> None:
    """No start-up call needed: the next append (another process's object) cuts and records it."""
    log = _log(tmp_path, 2)
    with open(log.path, "ab") as handle:
        handle.write(b'{"seq":3,"ti')
    entry = AuditLog(log.path).append("next")
    assert [e.event for e in log.entries()] == ["test.event", "test.event", RECOVERY_EVENT, "next"]
    assert entry.seq == 4 and log.verify().ok


def test_other_damage_at_the_end_is_tampering_and_blocks_appends(tmp_path: Path) -> None:
    """A complete (newline-terminated) last line that is not an entry is not an interrupted write."""
    log = _log(tmp_path, 2)
    with open(log.path, "ab") as handle:
        handle.write(b"not an entry\n")
    size = log.path.stat().st_size
    result = log.verify()
    assert not result.ok and result.first_broken == 3 and "not JSON" in result.reason
    with pytest.raises(AuditLogDamaged) as refused:
        AuditLog(log.path).append("more")
    assert refused.value.status == 503 and "signlab audit verify" in refused.value.description
    assert log.path.stat().st_size == size


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with small_filesystem(tmp_path / "disk", size_mib=1) as mounted:
        yield mounted


def test_a_full_disk_never_leaves_part_of_a_line(small_disk: Path) -> None:
    """On a real full filesystem an append fails whole (507), the file keeps its last good bytes —
    also when the line fits partly in the file's last page — and the next append after space
    returns records the failures before its own entry."""
    log = AuditLog(small_disk / "audit.jsonl")
    log.append("before", note="x" * 100)
    filler = fill_filesystem(small_disk)
    good = log.path.read_bytes()
    failures = 0
    for size in (50, 5000, 20000):  # the first may fit in the last page; the others cannot
        try:
            log.append("during", padding="p" * size)
        except AuditWriteFailed as exc:
            failures += 1
            # appends in a loop until the disk is full: the failing one is not known beforehand
            assert exc.status == 507 and "No space left on device" in exc.description  # noqa: PT017
            assert log.path.read_bytes() == good  # nothing of it stayed
        else:
            good = log.path.read_bytes()
    assert failures >= 2
    assert log.verify().ok and log.verify().torn_bytes == 0

    filler.unlink()
    entry = log.append("after")
    events = list(log.entries())
    recovery = events[-2]
    assert recovery.event == RECOVERY_EVENT and recovery.data["failed_appends"] == failures
    assert recovery.data["error"] == "No space left on device" and "cut_bytes" not in recovery.data
    assert entry.seq == recovery.seq + 1
    result = log.verify()
    assert result.ok and f"{failures} append(s) failed" in result.summary()
