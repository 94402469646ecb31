"""The trace store: span files written by the services, read by the portal and the CLI.

Layout of the store directory (``<SIGNLAB_DATA_DIR>/traces`` in a local run)::

    20260321-signer-4711.jsonl   one JSON object per line, one finished span per line
    20260321-portal-4712.jsonl   (file per day, service and process: one writer per file)

Each process appends to its own file only, so concurrent writers never interleave; readers read
every file incrementally (remembering how far they got) and tolerate a half-written last line.

A *transaction* is a set of traces linked by correlation keys. The browser redirect chain of one
signing cannot carry a ``traceparent`` (browsers do not send one), so every request that arrives
without one starts a new trace. Each span therefore stores salted hashes of the values that
identify the transaction as it travels (``request_uri``, ``state``, ``code``, transaction ids,
login-request ids, taken from query and form fields, JSON bodies, URL path ids and redirect
``Location`` headers); :meth:`TraceStore.groups` joins all traces sharing a key into one
group (union-find), so that the ten steps of one signing are one diagram.

A group is a *signing transaction* when it holds at least one exchange of the signing flow (a
labelled exchange that is neither activity nor a supporting call, :mod:`shared.tracing.labels`);
page views, downloads, stand-alone validations, health checks and metadata fetches that join no
signing are *activity*. ``latest`` means the latest signing (:meth:`TraceStore.transactions`).

Limits: the reader keeps every span of the retained days in memory, as its JSON line plus the
index fields (about 1 kB per span; parsed again when a transaction is viewed).
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.tracing.redact import correlation_key

__all__ = ["SpanWriter", "TraceStore"]

_FILE = re.compile(r"^(\d{8})-([A-Za-z0-9_-]+)-(\d+)\.jsonl$")
_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")
_CHUNK = 1 << 20


class SpanWriter:
    """Appends span records of one service process to the store (thread-safe).

    The file of the day stays open between spans (opening and closing it for every span cost a
    tenth of the tracing CPU). It is reopened when the day changes, in a forked child (the file
    name carries the pid), after a write error, and when the file was removed or replaced behind
    the writer's back (checked at most once a second, so spans written in that second to a deleted
    file are lost).

    :param directory: the store directory (created, mode 0700).
    :param service: the service name, part of the file name.
    :param retention_days: span files older than this are deleted when the writer starts a new day.
    """

    _RECHECK_SECONDS = 1.0

    def __init__(self, directory: Path, service: str, retention_days: int = 7) -> None:
        self.directory = Path(directory)
        self.service = service
        self.retention_days = retention_days
        self._lock = threading.Lock()
        self._day = ""
        self._day_end = 0.0  # time.time() at which the current day's file is no longer the right one
        self._fd: int | None = None
        self._fd_pid = 0
        self._fd_path = ""
        self._checked = 0.0

    def path_for(self, day: str) -> Path:
        """The file this process writes on ``day`` (``YYYYMMDD``)."""
        return self.directory / f"{day}-{self.service}-{os.getpid()}.jsonl"

    def write(self, record: dict[str, Any]) -> None:
        """Append one span record as one line."""
        data = (json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str) + "\n").encode()
        now = time.time()
        with self._lock:
            if now >= self._day_end:
                day = time.strftime("%Y%m%d", time.gmtime(now))
                self._day_end = (now // 86400 + 1) * 86400
                if day != self._day:
                    self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
                    self._day = day
                    self._close()
                    self.prune()
            fd = self._current_fd(now)
            try:
                # One write() per line in append mode: readers never see interleaved lines.
                os.write(fd, data)
            except OSError:
                self._close()  # e.g. the directory went away: the next span opens the file again
                raise

    def _current_fd(self, now: float) -> int:
        """The open descriptor of today's file (opened, or reopened, when needed); holds ``_lock``."""
        pid = os.getpid()
        if self._fd is not None and self._fd_pid != pid:
            self._close()  # a forked child: its copy of the parent's descriptor names the parent's file
        if self._fd is not None and now - self._checked >= self._RECHECK_SECONDS:
            self._checked = now
            try:
                same = os.path.samestat(os.stat(self._fd_path), os.fstat(self._fd))
            except OSError:
                same = False
            if not same:
                self._close()
        if self._fd is None:
            path = str(self.path_for(self._day))
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0), 0o600)
            self._fd_pid, self._fd_path, self._checked = pid, path, now
        return self._fd

    def _close(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None

    def close(self) -> None:
        """Close the open file (the next write opens it again)."""
        with self._lock:
            self._close()

    def __del__(self) -> None:
        # Apps made and dropped by tests must not leak a descriptor each.
        if getattr(self, "_fd", None) is not None:
            self._close()

    def prune(self) -> None:
        """Delete span files older than the retention period (any service's)."""
        cutoff = time.strftime("%Y%m%d", time.gmtime(time.time() - self.retention_days * 86400))
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return
        for name in names:
            match = _FILE.match(name)
            if match and match.group(1) < cutoff:
                (self.directory / name).unlink(missing_ok=True)


@dataclass
class _FileCursor:
    offset: int = 0
    partial: bytes = b""


@dataclass(slots=True)
class _StoredSpan:
    """One span as a reader keeps it: what the index needs, plus the line it came from.

    The record itself is parsed again only when a view asks for it (:meth:`record`): a parsed span
    takes about five times the memory of its line, and a service's view holds 1,500 of them.
    """

    trace_id: str
    start: int
    end: int
    file: str
    correlation: tuple[str, ...]
    transaction_ids: tuple[str, ...]
    line: bytes
    flow: bool = False
    """An exchange of the signing flow (what makes its group a transaction, not activity)."""

    def record(self) -> dict[str, Any]:
        """The span record (as the service wrote it, plus ``_file``)."""
        record = json.loads(self.line)
        record["_file"] = self.file
        return record


class TraceGroup:
    """The spans of one transaction, as stitched by the store (see :mod:`shared.tracing.model`).

    :param trace_ids: the traces of the transaction, earliest first.
    :param spans: the span records, by start time; a store passes ``stored`` instead and the
        records are parsed the first time :attr:`spans` is read.
    """

    def __init__(self, trace_ids: list[str], spans: list[dict[str, Any]] | None = None, *,
                 stored: list[_StoredSpan] | None = None) -> None:
        self.trace_ids = trace_ids
        self._stored = stored or []
        self._spans: list[dict[str, Any]] | None = None if stored is not None else (spans or [])

    @property
    def spans(self) -> list[dict[str, Any]]:
        """The span records, by start time."""
        if self._spans is None:
            self._spans = [span.record() for span in self._stored]
        return self._spans

    @property
    def id(self) -> str:
        """The transaction's id in the store: the trace id of its earliest span."""
        return self.trace_ids[0]

    @property
    def start(self) -> int:
        """Start of the earliest span (ns since the epoch)."""
        return min(s.start for s in self._stored) if self._stored else min(s["start"] for s in self.spans)

    @property
    def end(self) -> int:
        """End of the latest span (ns)."""
        return max(s.end for s in self._stored) if self._stored else max(s["end"] for s in self.spans)

    @property
    def is_signing(self) -> bool:
        """The group holds an exchange of the signing flow: it is a transaction, not activity."""
        if self._stored:
            return any(s.flow for s in self._stored)
        return any(_is_flow(s.get("attributes") or {}) for s in self.spans)

    @property
    def flow_start(self) -> int:
        """Start of its first signing-flow span (its start when it has none): the order of transactions."""
        if self._stored:
            return min((s.start for s in self._stored if s.flow), default=self.start)
        return min((s["start"] for s in self.spans if _is_flow(s.get("attributes") or {})), default=self.start)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TraceGroup) and (self.trace_ids, self.spans) == (other.trace_ids, other.spans)

    __hash__ = None  # type: ignore[assignment] - mutable, compared by value

    def __repr__(self) -> str:
        return f"TraceGroup({self.trace_ids!r}, {len(self._stored) or len(self.spans)} spans)"


class TraceStore:
    """Reads the trace store and stitches traces into transactions.

    Reading is incremental: each refresh parses only what was appended, and the stitching
    (union-find over trace ids joined by correlation keys) and the indexes that :meth:`find` uses
    are updated span by span, so finding one transaction costs the size of that transaction, not
    of the store (the portal's result page looks one up on every signing).

    :param directory: the store directory (it may not exist yet).
    :param max_spans: keep at most about this many of the newest spans in memory (``None``: all of
        the retained days). A long-running service reader sets it to bound its memory; the oldest
        transactions then drop out of its view (the files keep them for ``signlab trace``).
    """

    def __init__(self, directory: Path, *, max_spans: int | None = None) -> None:
        self.directory = Path(directory)
        self.max_spans = max_spans
        self._lock = threading.Lock()
        self._cursors: dict[str, _FileCursor] = {}
        self._spans: list[_StoredSpan] = []
        self._groups: list[TraceGroup] | None = None
        self._reset_index()

    # -- reading ------------------------------------------------------------------------------

    def _reset_index(self) -> None:
        self._parent: dict[str, str] = {}
        self._by_trace: dict[str, list[_StoredSpan]] = {}
        self._members: dict[str, list[str]] = {}
        self._first_trace_of_key: dict[str, str] = {}
        self._trace_of_transaction: dict[str, str] = {}

    def _root(self, node: str) -> str:
        parent = self._parent
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    def _index(self, span: _StoredSpan) -> None:
        """Add one span to the union-find and the lookup indexes."""
        trace_id = span.trace_id
        if trace_id not in self._parent:
            self._parent[trace_id] = trace_id
            self._by_trace[trace_id] = []
            self._members[trace_id] = [trace_id]
        self._by_trace[trace_id].append(span)
        for tx_id in span.transaction_ids:
            self._trace_of_transaction.setdefault(tx_id, trace_id)
        for key in span.correlation:
            other = self._first_trace_of_key.setdefault(key, trace_id)
            a, b = self._root(other), self._root(trace_id)
            if a != b:
                if len(self._members[a]) < len(self._members[b]):
                    a, b = b, a  # merge the smaller member list into the larger
                self._parent[b] = a
                self._members[a].extend(self._members.pop(b))

    def _reindex(self) -> None:
        self._reset_index()
        for span in self._spans:
            self._index(span)
        self._groups = None

    def _group_of(self, trace_id: str) -> TraceGroup:
        trace_ids = self._members[self._root(trace_id)]
        spans = sorted((s for t in trace_ids for s in self._by_trace[t]), key=lambda s: (s.start, s.end))
        first_start = {t: min(s.start for s in self._by_trace[t]) for t in trace_ids}
        return TraceGroup(sorted(trace_ids, key=lambda t: first_start[t]), stored=spans)

    def refresh(self) -> bool:
        """Read what was appended since the last call; True when new spans arrived."""
        try:
            names = sorted(n for n in os.listdir(self.directory) if _FILE.match(n))
        except FileNotFoundError:
            names = []
        added = False
        gone = set(self._cursors) - set(names)
        for name in gone:  # pruned files
            del self._cursors[name]
        if gone:
            self._spans = [s for s in self._spans if s.file not in gone]
            self._reindex()
        for name in names:
            cursor = self._cursors.setdefault(name, _FileCursor())
            try:
                handle = open(self.directory / name, "rb")  # noqa: SIM115 - closed below
            except FileNotFoundError:
                continue
            with handle:
                handle.seek(cursor.offset)
                # In bounded chunks: a reader started on a large store never holds it whole.
                while chunk := handle.read(_CHUNK):
                    cursor.offset += len(chunk)
                    lines = (cursor.partial + chunk).split(b"\n")
                    cursor.partial = lines.pop()  # an unfinished last line waits for the next read
                    added = self._add_lines(name, lines) or added
        if added:
            self._groups = None
        return added

    def _add_lines(self, name: str, lines: list[bytes]) -> bool:
        added = False
        for line in lines:
            if not line.strip():
                continue
            try:
                span = _stored_span(name, line)
            except (ValueError, TypeError, AttributeError, KeyError):
                continue  # a damaged line never breaks the reader
            self._spans.append(span)
            self._index(span)
            added = True
            if self.max_spans is not None and len(self._spans) > self.max_spans * 5 // 4:
                self._trim(self.max_spans)
        return added

    def _trim(self, keep: int) -> None:
        """Keep the ``keep`` newest spans (by end time); the oldest quarter goes at once, so the
        rebuild of the index is paid rarely."""
        self._spans.sort(key=lambda s: s.end)
        self._spans = self._spans[-keep:]
        self._reindex()

    def spans(self) -> list[dict[str, Any]]:
        """Every span in the store (after a refresh)."""
        with self._lock:
            self.refresh()
            return [span.record() for span in self._spans]

    def groups(self) -> list[TraceGroup]:
        """All groups — transactions and activity — newest first."""
        with self._lock:
            self.refresh()
            if self._groups is None:
                self._groups = sorted((self._group_of(root) for root in self._members),
                                      key=lambda g: g.flow_start, reverse=True)
            return list(self._groups)

    def transactions(self) -> list[TraceGroup]:
        """The signing transactions only (no page views, validations or health checks), newest first."""
        return [group for group in self.groups() if group.is_signing]

    def activity(self) -> list[TraceGroup]:
        """The groups that are not signing transactions, newest first."""
        return [group for group in self.groups() if not group.is_signing]

    def find(self, key: str) -> TraceGroup | None:
        """The transaction identified by ``key``.

        ``key`` may be a trace id (or a unique prefix of at least 8 hex digits), any transaction id
        a service reported (the portal's ``tx-…``, the signer's ``transactionID``), a correlation
        value (``request_uri``, ``state``), or ``latest`` for the newest signing transaction (page
        views and other activity never count).
        """
        if key in ("latest", "last"):
            signings = self.transactions()
            return signings[0] if signings else None
        lowered = key.lower()
        with self._lock:
            self.refresh()
            if _TRACE_ID.match(lowered):
                return self._group_of(lowered) if lowered in self._parent else None
            trace_id = self._trace_of_transaction.get(key) or self._first_trace_of_key.get(correlation_key(key))
            if trace_id is not None:
                return self._group_of(trace_id)
        if len(lowered) >= 8 and all(c in "0123456789abcdef" for c in lowered):
            matches = [g for g in self.groups() if any(t.startswith(lowered) for t in g.trace_ids)]
            if len(matches) == 1:
                return matches[0]
        return None


def _stored_span(file: str, line: bytes) -> _StoredSpan:
    """The reader's form of one line.

    :raises ValueError, TypeError, AttributeError, KeyError: not a span record.
    """
    record = json.loads(line)
    attributes = record.get("attributes") or {}
    trace_id = record["trace_id"]
    if not isinstance(trace_id, str):
        raise TypeError("trace_id is not a string")
    return _StoredSpan(trace_id, int(record.get("start") or 0), int(record.get("end") or 0), file,
                       tuple(attributes.get("signlab.correlation") or ()),
                       tuple(attributes.get("signlab.transaction_ids") or ()), bytes(line), _is_flow(attributes))


def _is_flow(attributes: dict[str, Any]) -> bool:
    """A span of the signing flow: labelled with a step, neither activity nor a supporting call."""
    return ("signlab.step" in attributes and not attributes.get("signlab.activity")
            and not attributes.get("signlab.inherit_step"))


def _stitch(spans: Iterable[dict[str, Any]]) -> list[TraceGroup]:
    """Group spans by trace, join traces that share a correlation key; newest group first."""
    parent: dict[str, str] = {}

    def root(node: str) -> str:
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    by_trace: dict[str, list[dict[str, Any]]] = {}
    first_trace_of_key: dict[str, str] = {}
    for span in spans:
        trace_id = span["trace_id"]
        if trace_id not in parent:
            parent[trace_id] = trace_id
            by_trace[trace_id] = []
        by_trace[trace_id].append(span)
        for key in span.get("attributes", {}).get("signlab.correlation") or ():
            other = first_trace_of_key.setdefault(key, trace_id)
            a, b = root(other), root(trace_id)
            if a != b:
                parent[b] = a
    members: dict[str, list[str]] = {}
    for trace_id in by_trace:
        members.setdefault(root(trace_id), []).append(trace_id)
    groups = []
    for trace_ids in members.values():
        group_spans = sorted((s for t in trace_ids for s in by_trace[t]), key=lambda s: (s["start"], s["end"]))
        first_start = {t: min(s["start"] for s in by_trace[t]) for t in trace_ids}
        groups.append(TraceGroup(sorted(trace_ids, key=lambda t: first_start[t]), group_spans))
    groups.sort(key=lambda g: g.flow_start, reverse=True)
    return groups
