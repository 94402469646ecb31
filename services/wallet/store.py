"""The wallet service's state in SQLite: the PID provider's status entries (``pid-provider.sqlite3``)
and the wallet's credentials and open presentation requests (``wallet.sqlite3``).

Two files, because they belong to two parties that only share a process: the provider knows which
status index it gave which PID and what that status is now; the wallet knows which PID it holds for
which person and which verifier requests are on its screen.

Limits: one connection per file guarded by a lock (the service runs one process with threads).
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.clock import lab_clock

__all__ = ["HeldCredential", "PendingRequest", "StatusStore", "WalletStore"]


class _Database:
    """One SQLite file with WAL and a lock."""

    def __init__(self, path: Path, schema: str) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(schema)

    def run(self, sql: str, parameters: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, parameters).fetchall()

    def changed(self, sql: str, parameters: tuple[Any, ...] = ()) -> int:
        with self._lock:
            return int(self._db.execute(sql, parameters).rowcount)

    def close(self) -> None:
        with self._lock:
            self._db.close()


class StatusStore:
    """The PID provider's status entries: index → (holder, purpose, status)."""

    def __init__(self, path: Path) -> None:
        self._db = _Database(path, """
            CREATE TABLE IF NOT EXISTS status (
                idx INTEGER PRIMARY KEY, holder TEXT NOT NULL, purpose TEXT NOT NULL, status INTEGER NOT NULL,
                created REAL NOT NULL);
        """)

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def allocate(self, holder: str, purpose: str, size: int) -> int:
        """A fresh random index in ``[0, size)`` with status VALID (HAIP: random, not sequential, so an
        index links no two credentials).

        :raises RuntimeError: the list is full.
        """
        for _ in range(64):
            index = secrets.randbelow(size)
            try:
                self._db.run("INSERT INTO status VALUES (?, ?, ?, 0, ?)", (index, holder, purpose, lab_clock().time()))
                return index
            except sqlite3.IntegrityError:
                continue
        raise RuntimeError(f"the PID provider's status list ({size} entries) is full")

    def sample_index(self, purpose: str, status: int, size: int) -> int:
        """The one index kept for ``purpose`` (created with ``status`` on first use)."""
        rows = self._db.run("SELECT idx FROM status WHERE purpose = ?", (purpose,))
        if rows:
            return int(rows[0][0])
        index = self.allocate(purpose.split(":", 1)[-1], purpose, size)
        self.set_status(index, status)
        return index

    def set_status(self, index: int, status: int) -> None:
        """Change the status of ``index``.

        :raises KeyError: no PID has this index.
        """
        if not self._db.changed("UPDATE status SET status = ? WHERE idx = ?", (int(status), index)):
            raise KeyError(f"no PID has status index {index}")

    def status_of(self, index: int) -> int | None:
        """The status at ``index`` (None when unassigned)."""
        rows = self._db.run("SELECT status FROM status WHERE idx = ?", (index,))
        return int(rows[0][0]) if rows else None

    def statuses(self) -> list[tuple[int, int]]:
        """Every assigned (index, status) whose status is not VALID (the list's default)."""
        return [(int(i), int(s)) for i, s in self._db.run("SELECT idx, status FROM status WHERE status != 0")]


@dataclass(frozen=True)
class HeldCredential:
    """A PID the wallet holds for one person."""

    holder: str
    sd_jwt: str
    status_index: int
    issued_at: int
    expires_at: int


@dataclass(frozen=True)
class PendingRequest:
    """A verifier's request the wallet fetched and shows (browser mode), waiting for a decision."""

    id: str
    expires: float
    data: dict[str, Any]


class WalletStore:
    """The wallet's credentials (one PID per test person) and the requests on its screen."""

    def __init__(self, path: Path) -> None:
        self._db = _Database(path, """
            CREATE TABLE IF NOT EXISTS credentials (
                holder TEXT PRIMARY KEY, sd_jwt TEXT NOT NULL, status_index INTEGER NOT NULL,
                issued_at INTEGER NOT NULL, expires_at INTEGER NOT NULL);
            CREATE TABLE IF NOT EXISTS requests (id TEXT PRIMARY KEY, expires REAL NOT NULL, data TEXT NOT NULL);
        """)

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def put_credential(self, credential: HeldCredential) -> None:
        """Store (or replace) the PID of ``credential.holder``."""
        self._db.run("INSERT OR REPLACE INTO credentials VALUES (?, ?, ?, ?, ?)",
                     (credential.holder, credential.sd_jwt, credential.status_index, credential.issued_at,
                      credential.expires_at))

    def credential(self, holder: str) -> HeldCredential | None:
        """The PID held for ``holder``."""
        rows = self._db.run("SELECT holder, sd_jwt, status_index, issued_at, expires_at FROM credentials "
                            "WHERE holder = ?", (holder,))
        return HeldCredential(*rows[0]) if rows else None

    def credentials(self) -> list[HeldCredential]:
        """Every PID held, by holder."""
        rows = self._db.run("SELECT holder, sd_jwt, status_index, issued_at, expires_at FROM credentials "
                            "ORDER BY holder")
        return [HeldCredential(*row) for row in rows]

    def put_request(self, data: dict[str, Any], lifetime: float) -> PendingRequest:
        """Keep a fetched request for the wallet's screen; returns it with its new id."""
        now = lab_clock().time()
        self._db.run("DELETE FROM requests WHERE expires < ?", (now,))
        pending = PendingRequest(secrets.token_urlsafe(18), now + lifetime, data)
        self._db.run("INSERT INTO requests VALUES (?, ?, ?)", (pending.id, pending.expires, json.dumps(data)))
        return pending

    def take_request(self, request_id: str) -> PendingRequest | None:
        """Remove and return a request (a decision is made once)."""
        rows = self._db.run("DELETE FROM requests WHERE id = ? RETURNING id, expires, data", (request_id,))
        if not rows or rows[0][1] < lab_clock().time():
            return None
        return PendingRequest(rows[0][0], rows[0][1], json.loads(rows[0][2]))

    def get_request(self, request_id: str) -> PendingRequest | None:
        """A request on the screen, unless decided or expired."""
        rows = self._db.run("SELECT id, expires, data FROM requests WHERE id = ?", (request_id,))
        if not rows or rows[0][1] < lab_clock().time():
            return None
        return PendingRequest(rows[0][0], rows[0][1], json.loads(rows[0][2]))
