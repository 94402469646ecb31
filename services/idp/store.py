"""The IdP's state in SQLite (``<data_dir>/idp.sqlite3``): login requests in progress, authorization
codes, access tokens, armed failures and the debugger's event log.

Codes are consumed atomically (``DELETE … RETURNING``), so a code is redeemed at most once even
under concurrent token requests. Expired rows are purged on the way. Authorization codes and access
tokens are kept only as their SHA-256 (:func:`at_rest`): a copy of the database file (or of its
WAL) holds nothing a caller could redeem.

Limits: one SQLite file, one connection guarded by a lock (the service runs one process with
threads).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.clock import lab_clock

__all__ = ["ArmedFailure", "IdpStore", "StoredCode", "StoredPending", "StoredToken", "at_rest"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pending (
    rid TEXT PRIMARY KEY, expires REAL NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS codes (
    code TEXT PRIMARY KEY, client_id TEXT NOT NULL, expires REAL NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (
    token TEXT PRIMARY KEY, client_id TEXT NOT NULL, expires REAL NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS armed (
    id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, value REAL, client_id TEXT,
    remaining INTEGER, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS failed_codes (
    person TEXT NOT NULL, time REAL NOT NULL);
CREATE INDEX IF NOT EXISTS failed_codes_person ON failed_codes (person, time);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, kind TEXT NOT NULL, data TEXT NOT NULL);
"""


def at_rest(value: str) -> str:
    """How a bearer value (code, access token) is stored: its SHA-256, hex. Codes and tokens are
    random values of 128 bits or more, so an unsalted hash cannot be reversed by guessing."""
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass(frozen=True)
class StoredPending:
    """A login in progress (the authorization request waits for the person)."""

    rid: str
    expires: float
    data: dict[str, Any]


@dataclass(frozen=True)
class StoredCode:
    """An authorization code (as stored: :func:`at_rest`) and what it was issued for."""

    code: str
    client_id: str
    expires: float
    data: dict[str, Any]


@dataclass(frozen=True)
class StoredToken:
    """An access token (as stored: :func:`at_rest`) for the userinfo endpoint."""

    token: str
    client_id: str
    expires: float
    data: dict[str, Any]


@dataclass(frozen=True)
class ArmedFailure:
    """A failure armed through the admin API for the next authorization requests."""

    id: int
    name: str
    value: float | None
    client_id: str | None
    """Only requests of this client consume it (None: any client)."""
    remaining: int | None
    """How many more requests it applies to (None: until removed)."""
    created: float

    def as_dict(self) -> dict[str, Any]:
        """JSON form for the admin API."""
        return {"id": self.id, "name": self.name, "value": self.value, "client_id": self.client_id,
                "remaining": self.remaining, "created": self.created}


_PRUNE_EVERY = 50
"""Debugger events inserted between two prunings of the events table."""


class IdpStore:
    """SQLite-backed state of one IdP instance."""

    def __init__(self, path: Path, *, event_limit: int = 200) -> None:
        self.path = path
        self.event_limit = event_limit
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # WAL + synchronous=NORMAL: a commit survives a crash of the process (codes, tokens and
        # logins in progress are still there after a SIGKILL); only an OS crash may lose the
        # last commits. FULL fsynced every statement of every login.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._events_since_prune = 0

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    def _purge(self, now: float) -> None:
        for table in ("pending", "codes", "tokens"):
            self._db.execute(f"DELETE FROM {table} WHERE expires < ?", (now,))  # noqa: S608 (fixed names)

    # -- pending logins ---------------------------------------------------------------------
    def put_pending(self, rid: str, expires: float, data: dict[str, Any]) -> None:
        """Store or replace a login in progress."""
        with self._lock:
            self._purge(lab_clock().time())
            self._db.execute("INSERT OR REPLACE INTO pending VALUES (?, ?, ?)", (rid, expires, json.dumps(data)))

    def get_pending(self, rid: str) -> StoredPending | None:
        """The login in progress ``rid``, unless expired or finished."""
        with self._lock:
            row = self._db.execute("SELECT rid, expires, data FROM pending WHERE rid = ?", (rid,)).fetchone()
        if row is None or row[1] < lab_clock().time():
            return None
        return StoredPending(row[0], row[1], json.loads(row[2]))

    def take_pending(self, rid: str) -> StoredPending | None:
        """Remove and return the login in progress (it finishes exactly once)."""
        with self._lock:
            row = self._db.execute("DELETE FROM pending WHERE rid = ? RETURNING rid, expires, data", (rid,)).fetchone()
        if row is None or row[1] < lab_clock().time():
            return None
        return StoredPending(row[0], row[1], json.loads(row[2]))

    # -- brute-force protection -------------------------------------------------------------
    def record_failed_code(self, person: str, now: float | None = None) -> None:
        """Remember one wrong one-time code entered for ``person`` (in any login, any browser)."""
        with self._lock:
            self._db.execute("INSERT INTO failed_codes VALUES (?, ?)", (person, now or lab_clock().time()))

    def failed_codes_since(self, person: str, since: float) -> int:
        """How many wrong one-time codes were entered for ``person`` since ``since``."""
        with self._lock:
            self._db.execute("DELETE FROM failed_codes WHERE time < ?", (since - 86400,))  # bounded table
            row = self._db.execute("SELECT COUNT(*) FROM failed_codes WHERE person = ? AND time >= ?",
                                   (person, since)).fetchone()
        return int(row[0])

    # -- codes ------------------------------------------------------------------------------
    def put_code(self, code: str, client_id: str, expires: float, data: dict[str, Any]) -> None:
        """Store a new authorization code."""
        with self._lock:
            self._purge(lab_clock().time())
            self._db.execute("INSERT INTO codes VALUES (?, ?, ?, ?)",
                             (at_rest(code), client_id, expires, json.dumps(data)))

    def take_code(self, code: str) -> StoredCode | None:
        """Consume a code: it is deleted whether or not the redemption succeeds."""
        with self._lock:
            row = self._db.execute(
                "DELETE FROM codes WHERE code = ? RETURNING code, client_id, expires, data", (at_rest(code),)).fetchone()
        if row is None:
            return None
        return StoredCode(row[0], row[1], row[2], json.loads(row[3]))

    def nonce_in_use(self, client_id: str, nonce: str) -> bool:
        """True when an unredeemed code of ``client_id`` already carries ``nonce``."""
        with self._lock:
            rows = self._db.execute("SELECT data FROM codes WHERE client_id = ? AND expires >= ?",
                                    (client_id, lab_clock().time())).fetchall()
        return any(json.loads(r[0]).get("nonce") == nonce for r in rows)

    # -- tokens -----------------------------------------------------------------------------
    def put_token(self, token: str, client_id: str, expires: float, data: dict[str, Any]) -> None:
        """Store an access token."""
        with self._lock:
            self._purge(lab_clock().time())
            self._db.execute("INSERT INTO tokens VALUES (?, ?, ?, ?)",
                             (at_rest(token), client_id, expires, json.dumps(data)))

    def get_token(self, token: str) -> StoredToken | None:
        """The access token, unless unknown or expired."""
        with self._lock:
            row = self._db.execute("SELECT token, client_id, expires, data FROM tokens WHERE token = ?",
                                   (at_rest(token),)).fetchone()
        if row is None or row[2] < lab_clock().time():
            return None
        return StoredToken(row[0], row[1], row[2], json.loads(row[3]))

    # -- armed failures ---------------------------------------------------------------------
    def arm(self, name: str, value: float | None, client_id: str | None, remaining: int | None) -> ArmedFailure:
        """Arm a failure for the next ``remaining`` authorization requests (None: until removed)."""
        now = lab_clock().time()
        with self._lock:
            cursor = self._db.execute("INSERT INTO armed (name, value, client_id, remaining, created) VALUES (?, ?, ?, ?, ?)",
                                      (name, value, client_id, remaining, now))
            row_id = int(cursor.lastrowid or 0)
        return ArmedFailure(row_id, name, value, client_id, remaining, now)

    def armed(self) -> list[ArmedFailure]:
        """All armed failures, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT id, name, value, client_id, remaining, created FROM armed ORDER BY id").fetchall()
        return [ArmedFailure(*row) for row in rows]

    def disarm(self, failure_id: int | None = None) -> int:
        """Remove one armed failure (or all with None); return how many were removed."""
        with self._lock:
            if failure_id is None:
                return self._db.execute("DELETE FROM armed").rowcount
            return self._db.execute("DELETE FROM armed WHERE id = ?", (failure_id,)).rowcount

    def consume_armed(self, client_id: str) -> list[ArmedFailure]:
        """The armed failures that apply to one request of ``client_id``; counts go down by one."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                rows = self._db.execute(
                    "SELECT id, name, value, client_id, remaining, created FROM armed "
                    "WHERE client_id IS NULL OR client_id = ? ORDER BY id", (client_id,)).fetchall()
                for row in rows:
                    if row[4] is not None:
                        if row[4] <= 1:
                            self._db.execute("DELETE FROM armed WHERE id = ?", (row[0],))
                        else:
                            self._db.execute("UPDATE armed SET remaining = remaining - 1 WHERE id = ?", (row[0],))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return [ArmedFailure(*row) for row in rows]

    # -- debugger events --------------------------------------------------------------------
    def record(self, kind: str, data: dict[str, Any]) -> None:
        """Append a debugger event (callers mask secrets first); old events are dropped."""
        text = json.dumps(data, ensure_ascii=False, default=str)
        with self._lock:
            self._db.execute("INSERT INTO events (time, kind, data) VALUES (?, ?, ?)", (lab_clock().time(), kind, text))
            # Old events are dropped every _PRUNE_EVERY inserts, not after each one (six events
            # per login); the table holds at most event_limit + _PRUNE_EVERY rows.
            self._events_since_prune += 1
            if self._events_since_prune >= _PRUNE_EVERY:
                self._events_since_prune = 0
                self._db.execute("DELETE FROM events WHERE id <= (SELECT MAX(id) FROM events) - ?",
                                 (self.event_limit,))

    def events(self, limit: int = 50, *, offset: int = 0, kind: str | None = None,
               text: str | None = None) -> list[dict[str, Any]]:
        """The newest events, newest first, ``offset`` skipped; only of ``kind`` and containing
        ``text`` (case-insensitive, in the stored JSON) when given."""
        where, values = self._event_filter(kind, text)
        query = f"SELECT id, time, kind, data FROM events{where} ORDER BY id DESC LIMIT ? OFFSET ?"  # noqa: S608 - fixed clauses
        with self._lock:
            rows = self._db.execute(query, (*values, limit, offset)).fetchall()
        return [{"id": r[0], "time": r[1], "kind": r[2], "data": json.loads(r[3])} for r in rows]

    def count_events(self, *, kind: str | None = None, text: str | None = None) -> int:
        """How many stored events match (for paging)."""
        where, values = self._event_filter(kind, text)
        query = f"SELECT COUNT(*) FROM events{where}"  # noqa: S608 - fixed clauses, values bound
        with self._lock:
            return int(self._db.execute(query, values).fetchone()[0])

    def event_kinds(self) -> list[str]:
        """The kinds of the stored events (the debugger's filter)."""
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT DISTINCT kind FROM events ORDER BY kind").fetchall()]

    @staticmethod
    def _event_filter(kind: str | None, text: str | None) -> tuple[str, tuple[str, ...]]:
        clauses, values = [], []
        if kind:
            clauses.append("kind = ?")
            values.append(kind)
        if text:
            clauses.append("instr(lower(data), lower(?)) > 0")
            values.append(text)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", tuple(values)
