"""An append-only, hash-chained audit log (JSON lines), usable by any service.

Each entry is one JSON line::

    {"seq": 7, "time": "2026-01-01T12:00:00.123456Z", "event": "key.destroyed", "step": 9,
     "data": {...}, "prev": "<hex sha-256 of entry 6>", "hash": "<hex sha-256 of this entry>"}

``hash`` is SHA-256 over the canonical JSON (sorted keys, no spaces) of the entry without its
``hash`` field, and ``prev`` is the previous entry's ``hash`` (64 zeros for the first entry). Any
edit, insertion, deletion or reordering of a line therefore breaks the chain from that line on,
and :meth:`AuditLog.verify` names the first broken entry.

Limits: the chain detects tampering by someone who cannot recompute it; an attacker with write
access can rewrite the whole file consistently (a real service would anchor the head hash in a
time-stamp or a witness). Callers must put no personal data in clear and no document content in
entries: use :func:`pseudonymise` for subject identifiers and digests, not documents.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["GENESIS", "AuditEntry", "AuditLog", "AuditVerification", "entry_hash", "pseudonymise"]

GENESIS = "0" * 64
"""The ``prev`` value of the first entry."""


def entry_hash(entry: Mapping[str, Any]) -> str:
    """The SHA-256 (hex) of ``entry`` without its ``hash`` field, over canonical JSON."""
    body = {k: v for k, v in entry.items() if k != "hash"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def pseudonymise(key: bytes, value: str) -> str:
    """A stable pseudonym for ``value`` (e.g. an IdP subject): ``"ps-"`` + 24 hex of HMAC-SHA-256.

    The key stays with the service, so the log alone does not reveal who signed, while the
    service (or an auditor given the key) can link entries of one person.
    """
    return "ps-" + hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()[:24]


@dataclass(frozen=True)
class AuditEntry:
    """One parsed entry of the log."""

    seq: int
    """Position in the log, from 1."""
    time: str
    """UTC time of writing, ISO 8601 with ``Z``."""
    event: str
    """Dotted event name, e.g. ``sad.refused``."""
    step: int | None
    """The flow step (1-10) the event belongs to, when there is one."""
    data: dict[str, Any]
    """Event details (no personal data in clear, no document content)."""
    prev: str
    """Hash of the previous entry."""
    hash: str
    """Hash of this entry."""


@dataclass(frozen=True)
class AuditVerification:
    """Result of :meth:`AuditLog.verify`."""

    ok: bool
    """True when every entry is intact and chained."""
    entries: int
    """Number of lines read."""
    first_broken: int | None
    """1-based line number of the first broken entry, or ``None``."""
    reason: str
    """What is wrong with it (or ``"intact"``)."""
    head: str
    """Hash of the last intact entry (the chain head when ``ok``)."""


class AuditLog:
    """Appends chained entries to ``path`` and verifies the chain.

    Thread-safe within a process (a lock) and across processes (an exclusive ``flock`` around
    read-head-then-append), so several workers — or several :class:`AuditLog` objects on one file,
    as in the CA — may share it.

    Durability: every :meth:`append` writes its line before it returns, so the entry survives a
    crash of the process (SIGKILL) and other readers see it at once. ``sync=True`` (the default)
    also fsyncs the file, which makes that entry *and every entry written before it* durable
    against a crash of the machine. A caller that records several steps of one operation may pass
    ``sync=False`` for the intermediate ones and ``sync=True`` for the entry it must not return
    without (the signer syncs once per signDoc, before the signature leaves the service). An OS
    crash or power loss may lose the entries written since the last fsync (the log then ends
    earlier and still verifies) or leave the last of them torn (:meth:`verify` names it, as it
    did for a line torn mid-write before).

    The chain head (sequence number and hash of the last line) is kept between appends and reused
    while the file is provably the one this object last wrote (same device, inode, size and
    modification time, checked under the lock); otherwise it is read back from the file.

    :param path: the JSON-lines file (created with mode 0600 when missing).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._head_cache: tuple[tuple[int, int, int, int], int, str] | None = None
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            os.close(fd)

    def append(self, event: str, *, step: int | None = None, sync: bool = True, **data: Any) -> AuditEntry:
        """Append one entry and return it. ``data`` must be JSON-serialisable.

        :param sync: ``fsync`` before returning (see the class notes); ``False`` only for entries
            that a later synced entry of the same operation will make durable.
        """
        with open(self.path, "ab+") as handle:
            with self._lock:
                fcntl.flock(handle, fcntl.LOCK_EX)
                try:
                    seq, prev = self._current_head(handle)
                    entry: dict[str, Any] = {
                        "seq": seq + 1,
                        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                        "event": event,
                        "step": step,
                        "data": data,
                        "prev": prev,
                    }
                    canonical = json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
                    entry["hash"] = digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
                    if canonical.isascii():
                        # The line is the canonical text with the hash inserted in its sorted place
                        # (between "event" and "prev"); the last ',"prev":"' is the top-level key,
                        # since only hex, integers and the time follow it.
                        cut = canonical.rindex(',"prev":"')
                        line = f'{canonical[:cut]},"hash":"{digest}"{canonical[cut:]}\n'
                    else:
                        line = json.dumps(entry, sort_keys=True, separators=(",", ":")) + "\n"
                    handle.seek(0, os.SEEK_END)
                    handle.write(line.encode("ascii"))
                    handle.flush()
                    self._head_cache = (_identity(os.fstat(handle.fileno())), seq + 1, digest)
                except BaseException:
                    self._head_cache = None
                    raise
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)
            if sync:
                # Outside the locks: the chain order is fixed once the line is written, and
                # fsync covers the whole file, so other appenders need not wait for this disk
                # flush (they did, one fsync at a time, which queued the signer's threads).
                os.fsync(handle.fileno())
        return AuditEntry(**entry)

    def sync(self) -> None:
        """``fsync`` the log: every entry written so far becomes durable."""
        with self._lock, open(self.path, "ab") as handle:
            os.fsync(handle.fileno())

    def _current_head(self, handle: Any) -> tuple[int, str]:
        """The head, from the cache when the file is unchanged since this object's last append."""
        cached = self._head_cache
        if cached is not None and cached[0] == _identity(os.fstat(handle.fileno())):
            return cached[1], cached[2]
        return self._head(handle)

    @staticmethod
    def _head(handle: Any) -> tuple[int, str]:
        """Sequence number and hash of the last line (0 and :data:`GENESIS` for an empty log)."""
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        if size == 0:
            return 0, GENESIS
        # Read backwards in blocks until the last complete line is in the buffer.
        block = 4096
        data = b""
        position = size
        while position > 0:
            step = min(block, position)
            position -= step
            handle.seek(position)
            data = handle.read(step) + data
            lines = data.rstrip(b"\n").split(b"\n")
            if len(lines) > 1 or position == 0:
                last = json.loads(lines[-1])
                return int(last["seq"]), str(last["hash"])
        raise AssertionError("unreachable")

    def entries(self) -> Iterator[AuditEntry]:
        """All entries, in order (no verification; use :meth:`verify` for that)."""
        with open(self.path, encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    yield AuditEntry(**json.loads(line))

    def verify(self) -> AuditVerification:
        """Check every line: parseable, hash matches content, ``prev`` chains, ``seq`` increments."""
        prev = GENESIS
        count = 0
        with open(self.path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                count = number
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError as exc:
                    return AuditVerification(False, number, number, f"line {number} is not JSON ({exc.msg})", prev)
                if not isinstance(entry, dict) or "hash" not in entry:
                    return AuditVerification(False, number, number, f"line {number} is not an audit entry", prev)
                if entry_hash(entry) != entry.get("hash"):
                    return AuditVerification(False, number, number, f"entry {number} was altered (hash mismatch)", prev)
                if entry.get("prev") != prev:
                    return AuditVerification(
                        False, number, number, f"entry {number} does not chain to entry {number - 1} "
                        "(an entry was removed, inserted or reordered)", prev)
                if entry.get("seq") != number:
                    return AuditVerification(False, number, number,
                                             f"entry {number} has sequence number {entry.get('seq')}", prev)
                prev = entry["hash"]
        return AuditVerification(True, count, None, "intact", prev)


def _identity(stat: os.stat_result) -> tuple[int, int, int, int]:
    """What tells whether a file changed since it was last seen: device, inode, size, mtime."""
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns
