"""An append-only, hash-chained audit log (JSON lines), usable by any service.

Each entry is one JSON line::

    {"seq": 7, "time": "2026-01-01T12:00:00.123456Z", "event": "key.destroyed", "step": 9,
     "data": {...}, "prev": "<hex sha-256 of entry 6>", "hash": "<hex sha-256 of this entry>"}

``hash`` is SHA-256 over the canonical JSON (sorted keys, no spaces) of the entry without its
``hash`` field, and ``prev`` is the previous entry's ``hash`` (64 zeros for the first entry). Any
edit, insertion, deletion or reordering of a line therefore breaks the chain from that line on,
and :meth:`AuditLog.verify` names the first broken entry.

Crashes and full disks: an append is all or nothing. The whole line is written (and fsynced) or
the file is cut back to its last good length and :class:`AuditWriteFailed` is raised, so a full
disk never leaves half a line. A final line without its newline can still be left by a process
killed inside a write (or by an OS crash): it is an *interrupted write*, not tampering. The next
append cuts it and records an explicit ``audit.recovered`` entry in the chain (how many bytes were
cut and their SHA-256), as it records the appends that failed since the last good one; verify
lists these recovery entries. Any other damage (a line that is not JSON, an altered, missing or
reordered entry) is tampering, and an append refuses to chain onto a damaged end
(:class:`AuditLogDamaged`).

Limits: the chain detects tampering by someone who cannot recompute it; an attacker with write
access can rewrite the whole file consistently (a real service would anchor the head hash in a
time-stamp or a witness). Callers must put no personal data in clear and no document content in
entries: use :func:`pseudonymise` for subject identifiers and digests, not documents.
"""

from __future__ import annotations

import errno
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

from shared.errors import InsufficientStorage

__all__ = ["GENESIS", "RECOVERY_EVENT", "AuditEntry", "AuditLog", "AuditLogDamaged", "AuditVerification",
           "AuditWriteFailed", "entry_hash", "pseudonymise"]

RECOVERY_EVENT = "audit.recovered"
"""The entry that records an interrupted write cut from the end, or appends that failed."""

_SPACE_ERRORS = (errno.ENOSPC, errno.EDQUOT)

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
    recoveries: tuple[AuditEntry, ...] = ()
    """The ``audit.recovered`` entries of the intact part, oldest first."""
    torn_bytes: int = 0
    """Length of an interrupted write at the end (a final line without newline) that the next
    append will cut and record; 0 when the file ends with a complete line."""

    def summary(self) -> str:
        """One line for people: intact (with its recoveries) or where it was tampered with."""
        if not self.ok:
            return f"TAMPERED at entry {self.first_broken}: {self.reason}"
        parts = ["intact"]
        parts += [f"recovery at entry {r.seq} ({describe_recovery(r)})" for r in self.recoveries]
        if self.torn_bytes:
            parts.append(f"{self.torn_bytes} bytes of an interrupted write at the end (cut and recorded by "
                         "the next append)")
        return "; ".join(parts)


def describe_recovery(entry: AuditEntry) -> str:
    """What an ``audit.recovered`` entry says, in words."""
    data = entry.data
    said = []
    if data.get("failed_appends"):
        said.append(f"{data['failed_appends']} append(s) failed from {data.get('first_failure')} "
                    f"({data.get('error')}); nothing of them was kept")
    if data.get("cut_bytes"):
        said.append(f"{data['cut_bytes']} bytes of an interrupted write cut (sha-256 {str(data.get('cut_sha256'))[:16]}…)")
    return "; ".join(said) or "nothing to repair"


class AuditWriteFailed(InsufficientStorage):
    """An entry could not be written (full disk: 507; another I/O error: 503); nothing of it was kept."""

    default_description = "the audit log could not be written"


class AuditLogDamaged(InsufficientStorage):
    """The log's last line is not a valid entry (tampering, not an interrupted write): nothing can be
    chained onto it until an operator repairs it (``signlab audit verify`` names the entry)."""

    status = 503
    default_description = "the audit log is damaged at its end; run 'signlab audit verify'"


class AuditLog:
    """Appends chained entries to ``path`` and verifies the chain.

    Thread-safe within a process (a lock) and across processes (an exclusive ``flock`` around
    read-head-then-append), so several workers — or several :class:`AuditLog` objects on one file,
    as in the CA — may share it. :meth:`verify` reads under a shared ``flock``, so it never sees a
    line being written.

    Durability: every :meth:`append` writes its line before it returns, so the entry survives a
    crash of the process (SIGKILL) and other readers see it at once. ``sync=True`` (the default)
    also fsyncs the file, which makes that entry *and every entry written before it* durable
    against a crash of the machine. A caller that records several steps of one operation may pass
    ``sync=False`` for the intermediate ones and ``sync=True`` for the entry it must not return
    without (the signer syncs once per signDoc, before the signature leaves the service). An OS
    crash or power loss may lose the entries written since the last fsync (the log then ends
    earlier and still verifies) or leave the last of them torn (cut and recorded by the next
    append, see the module notes).

    The chain head (sequence number and hash of the last line) is kept between appends and reused
    while the file is provably the one this object last wrote (same device, inode, size and
    modification time, checked under the lock); otherwise it is read back from the file.

    :param path: the JSON-lines file (created with mode 0600 when missing).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._head_cache: tuple[tuple[int, int, int, int], int, str] | None = None
        self._failed: dict[str, Any] | None = None
        """Appends of this object that failed since its last good one (recorded by the next)."""
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            os.close(fd)

    def recover(self) -> AuditEntry | None:
        """Repair the end of the log at start-up: cut an interrupted write (a final line without
        its newline) and record it in an ``audit.recovered`` entry (synced). None when the log
        ends cleanly. Appends do the same on their own, so calling this is about recording the
        repair when the service starts, not about correctness.

        :raises AuditWriteFailed: the recovery entry could not be written.
        :raises AuditLogDamaged: the log ends in a line that is not a valid entry.
        """
        return self._write(None, None, True, {})

    def append(self, event: str, *, step: int | None = None, sync: bool = True, **data: Any) -> AuditEntry:
        """Append one entry and return it. ``data`` must be JSON-serialisable.

        All or nothing: when the line cannot be written whole (or fsynced), the file is cut back
        to its length before the append and :class:`AuditWriteFailed` is raised; the next
        successful append first records the failures in an ``audit.recovered`` entry.

        :param sync: ``fsync`` before returning (see the class notes); ``False`` only for entries
            that a later synced entry of the same operation will make durable.
        :raises AuditWriteFailed: the entry was not written (507 when the disk is full).
        :raises AuditLogDamaged: the log ends in a line that is not a valid entry.
        """
        entry = self._write(event, step, sync, data)
        if entry is None:  # _write returns None only for event=None (a recovery check), never here
            raise AuditWriteFailed(f"the {event!r} entry was not written")
        return entry

    def _write(self, event: str | None, step: int | None, sync: bool, data: dict[str, Any]) -> AuditEntry | None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            with self._lock:
                fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    entry, start, end = self._append_locked(fd, event, step, data)
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
            if sync and entry is not None:
                # Outside the locks: the chain order is fixed once the line is written, and
                # fsync covers the whole file, so other appenders need not wait for this disk
                # flush (they did, one fsync at a time, which queued the signer's threads).
                try:
                    os.fsync(fd)
                except OSError as exc:
                    self._undo_unsynced(fd, start, end)
                    raise self._failure(exc) from None
        finally:
            os.close(fd)
        return entry

    def _append_locked(self, fd: int, event: str | None, step: int | None,
                       data: dict[str, Any]) -> tuple[AuditEntry | None, int, int]:
        """Write the entry (after a recovery entry, when one is due; only that for ``event=None``)
        and return the last entry written (None: nothing was due) with the span it took; holds
        both locks."""
        try:
            stat = os.fstat(fd)
            size = stat.st_size
            cached = self._head_cache
            if cached is not None and cached[0] == _identity(stat):
                (_, seq, prev), torn = cached, b""  # the file ends with this object's last line
            else:
                end = _complete_length(fd, size)
                torn = os.pread(fd, size - end, end) if size > end else b""
                seq, prev = self._head(fd, end)
        except OSError as exc:
            self._head_cache = None
            raise self._failure(exc) from None
        lines = []
        recovery = dict(self._failed or {})
        if torn:
            recovery.update(cut_bytes=len(torn), cut_sha256=hashlib.sha256(torn).hexdigest(),
                            cause=("interrupted write" if not recovery else recovery["cause"] + "; interrupted write"))
        entry: AuditEntry | None = None
        if recovery:
            entry, line = _chained(seq, prev, RECOVERY_EVENT, None, recovery)
            lines.append(line)
            seq, prev = entry.seq, entry.hash
        if event is not None:
            entry, line = _chained(seq, prev, event, step, data)
            lines.append(line)
        if entry is None:
            return None, size, size
        start = size - len(torn)
        payload = "".join(lines).encode("ascii")
        try:
            if torn:
                os.ftruncate(fd, start)
            _write_whole(fd, payload)
        except OSError as exc:
            self._head_cache = None
            try:
                os.ftruncate(fd, start)  # all or nothing: no part of the line stays
            except OSError:
                pass  # the torn rest is cut (and recorded) by the next append
            raise self._failure(exc) from None
        self._failed = None
        self._head_cache = (_identity(os.fstat(fd)), entry.seq, entry.hash)
        return entry, start, start + len(payload)

    def _failure(self, exc: OSError) -> AuditWriteFailed:
        """Remember a failed append (for the next recovery entry) and the error to raise."""
        reason = exc.strerror or exc.__class__.__name__
        now = _now()
        if self._failed is None:
            self._failed = {"cause": "append failed", "failed_appends": 0, "first_failure": now}
        self._failed.update(failed_appends=self._failed["failed_appends"] + 1, last_failure=now, error=reason)
        space = exc.errno in _SPACE_ERRORS
        return AuditWriteFailed(f"the audit log {self.path.name} could not be written ({reason}); the entry was not "
                                "recorded" + ("; it works again once disk space is freed" if space else ""),
                                status=507 if space else 503)

    def _undo_unsynced(self, fd: int, start: int, end: int) -> None:
        """After a failed fsync: cut the entry again if it is still the last one (else it stays,
        written but not known to be durable, and a later fsync may yet make it so)."""
        with self._lock:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                if os.fstat(fd).st_size == end:
                    os.ftruncate(fd, start)
                self._head_cache = None
            except OSError:
                pass
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def sync(self) -> None:
        """``fsync`` the log: every entry written so far becomes durable."""
        with self._lock, open(self.path, "ab") as handle:
            os.fsync(handle.fileno())

    def _head(self, fd: int, end: int) -> tuple[int, str]:
        """Sequence number and hash of the last complete line, which ends at ``end`` (0 and
        :data:`GENESIS` for none).

        :raises AuditLogDamaged: that line is not an audit entry.
        """
        if end == 0:
            return 0, GENESIS
        # Read backwards in blocks until the whole last complete line is in the buffer.
        data = b""
        position = end
        while position > 0:
            step = min(4096, position)
            position -= step
            data = os.pread(fd, step, position) + data
            lines = data[:-1].split(b"\n")
            if len(lines) > 1 or position == 0:
                try:
                    last = json.loads(lines[-1])
                    return int(last["seq"]), str(last["hash"])
                except (ValueError, KeyError, TypeError):
                    raise AuditLogDamaged(f"the audit log {self.path.name} ends in a line that is not an audit entry "
                                          "(not an interrupted write: its newline is there); nothing is chained onto "
                                          "it until it is repaired ('signlab audit verify' names it)") from None
        raise AssertionError("unreachable")

    def entries(self) -> Iterator[AuditEntry]:
        """All complete entries, in order (no verification; use :meth:`verify` for that). An
        interrupted write at the end (no newline) is not an entry."""
        with open(self.path, "rb") as handle:
            for line in handle:
                if line.endswith(b"\n") and line.strip():
                    yield AuditEntry(**json.loads(line))

    def verify(self) -> AuditVerification:
        """Check every line: parseable, hash matches content, ``prev`` chains, ``seq`` increments.

        A final line without its newline is an interrupted write (reported in ``torn_bytes``), not
        tampering; every ``audit.recovered`` entry is listed in ``recoveries``.
        """
        prev = GENESIS
        count = 0
        recoveries: list[AuditEntry] = []

        def broken(number: int, reason: str) -> AuditVerification:
            return AuditVerification(False, number, number, reason, prev, tuple(recoveries))

        with open(self.path, "rb") as handle:
            fcntl.flock(handle, fcntl.LOCK_SH)  # never read a line while it is being written
            for number, raw in enumerate(handle, start=1):
                if not raw.endswith(b"\n"):
                    return AuditVerification(True, count, None, "intact", prev, tuple(recoveries), len(raw))
                count = number
                try:
                    entry = json.loads(raw)
                except ValueError as exc:
                    return broken(number, f"line {number} is not JSON ({exc})")
                if not isinstance(entry, dict) or "hash" not in entry:
                    return broken(number, f"line {number} is not an audit entry")
                if entry_hash(entry) != entry.get("hash"):
                    return broken(number, f"entry {number} was altered (hash mismatch)")
                if entry.get("prev") != prev:
                    return broken(number, f"entry {number} does not chain to entry {number - 1} "
                                          "(an entry was removed, inserted or reordered)")
                if entry.get("seq") != number:
                    return broken(number, f"entry {number} has sequence number {entry.get('seq')}")
                if entry.get("event") == RECOVERY_EVENT:
                    recoveries.append(AuditEntry(**entry))
                prev = entry["hash"]
        return AuditVerification(True, count, None, "intact", prev, tuple(recoveries))


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _chained(seq: int, prev: str, event: str, step: int | None, data: dict[str, Any]) -> tuple[AuditEntry, str]:
    """The entry after (``seq``, ``prev``) and its line (canonical JSON with the hash, newline)."""
    entry: dict[str, Any] = {"seq": seq + 1, "time": _now(), "event": event, "step": step, "data": data, "prev": prev}
    canonical = json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    entry["hash"] = digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    if canonical.isascii():
        # The line is the canonical text with the hash inserted in its sorted place (between
        # "event" and "prev"); the last ',"prev":"' is the top-level key, since only hex,
        # integers and the time follow it.
        cut = canonical.rindex(',"prev":"')
        line = f'{canonical[:cut]},"hash":"{digest}"{canonical[cut:]}\n'
    else:
        line = json.dumps(entry, sort_keys=True, separators=(",", ":")) + "\n"
    return AuditEntry(**entry), line


def _complete_length(fd: int, size: int) -> int:
    """Length of the file up to and including its last newline (0 when it has none)."""
    position = size
    while position > 0:
        step = min(4096, position)
        position -= step
        block = os.pread(fd, step, position)
        newline = block.rfind(b"\n")
        if newline >= 0:
            return position + newline + 1
    return 0


def _write_whole(fd: int, payload: bytes) -> None:
    """Write all of ``payload`` (a regular file may take part of it, then refuse the rest)."""
    view = memoryview(payload)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[written:]


def _identity(stat: os.stat_result) -> tuple[int, int, int, int]:
    """What tells whether a file changed since it was last seen: device, inode, size, mtime."""
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns
