"""SQLite store of issued certificates, revocations and CRL numbers (``<data_dir>/ca.sqlite3``).

Flask-free. One connection per thread (SQLite handles the locking); the CA's threads share nothing else.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CertificateRecord", "CertificateStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS certificates (
    serial TEXT PRIMARY KEY,          -- lower-case hex, no leading zeros
    issuer TEXT NOT NULL,             -- 'issuing' (end entities), 'root', or 'unlisted' (lab fault unlisted-ca)
    profile TEXT NOT NULL,            -- 'qes' | 'ades' | 'infrastructure'
    subject TEXT NOT NULL,            -- RFC 4514 subject (personal data: shown to trainers only)
    subject_id_hash TEXT NOT NULL,    -- SHA-256 of the serialNumber attribute (pseudonymised)
    loa TEXT NOT NULL,
    requester TEXT NOT NULL,
    transaction_id TEXT NOT NULL,
    not_before TEXT NOT NULL,
    not_after TEXT NOT NULL,
    issued_at TEXT NOT NULL,
    der BLOB NOT NULL,
    revoked_at TEXT,
    revocation_reason TEXT,
    request_id TEXT                   -- the requester's id of the issuance request (deduplicates retries)
);
CREATE INDEX IF NOT EXISTS certificates_issued_at ON certificates(issued_at);
-- The CRL reads the revoked certificates on every request: without this (partial) index that was a
-- scan of every certificate ever issued.
CREATE INDEX IF NOT EXISTS certificates_revoked ON certificates(issuer, revoked_at) WHERE revoked_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS crl_numbers (name TEXT PRIMARY KEY, number INTEGER NOT NULL);
-- Status changes of the services on the trusted list (lab: a withdrawal with its date).
CREATE TABLE IF NOT EXISTS trusted_list_changes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    service TEXT NOT NULL,            -- 'ca' | 'tsa'
    status TEXT NOT NULL,             -- 'granted' | 'withdrawn'
    since TEXT NOT NULL,              -- status starting time (UTC)
    note TEXT NOT NULL
);
"""

_INDEXES = """
CREATE UNIQUE INDEX IF NOT EXISTS certificates_request ON certificates(requester, request_id)
    WHERE request_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS certificates_transaction ON certificates(requester, transaction_id);
"""


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(text: str | None) -> dt.datetime | None:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC) if text else None


def _states(db: sqlite3.Connection) -> dict[str, str | None]:
    # end-entity certificates: the issuing CA's, and the lab fault unlisted-ca's (logged alike)
    rows = db.execute("SELECT serial, revoked_at, revocation_reason FROM certificates WHERE issuer != 'root'")
    return {serial: (reason or "unspecified") if revoked else None for serial, revoked, reason in rows}


@dataclass(frozen=True)
class CertificateRecord:
    """One issued certificate as stored."""

    serial: str
    issuer: str
    profile: str
    subject: str
    subject_id_hash: str
    loa: str
    requester: str
    transaction_id: str
    not_before: dt.datetime
    not_after: dt.datetime
    issued_at: dt.datetime
    der: bytes
    revoked_at: dt.datetime | None
    revocation_reason: str | None
    request_id: str | None = None
    """The requester's id of the issuance request, when it sent one."""

    @property
    def serial_int(self) -> int:
        """The serial as an integer."""
        return int(self.serial, 16)


class CertificateStore:
    """Issued certificates and revocations of the CA."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._write_lock = threading.Lock()
        with self._connect(write=True) as db:
            # WAL (persistent in the file): a crash mid-write never loses a committed issuance, and
            # OCSP/CRL readers do not block the issuing writer.
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
            columns = {row[1] for row in db.execute("PRAGMA table_info(certificates)")}
            if "request_id" not in columns:  # a database made before request ids
                db.execute("ALTER TABLE certificates ADD COLUMN request_id TEXT")
            db.executescript(_INDEXES)

    @contextmanager
    def _connect(self, *, write: bool = False) -> Iterator[sqlite3.Connection]:
        """This thread's connection, in a transaction: committed on success, rolled back on error.

        One connection per thread, kept (opening one per call — file, WAL index, schema parse —
        was a measurable share of an issuance). ``synchronous=NORMAL`` in WAL mode: a committed
        issuance survives a crash of the process (the reliability tests SIGKILL the CA); only an
        OS crash or power loss may lose the last commits, never corrupt the database.

        :param write: the transaction writes: the process's writers queue on a lock first, since
            SQLite makes a writer that finds the database locked sleep and retry (1, 2, 5 … ms).
        """
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=10)
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        if write:
            with self._write_lock, db:
                yield db
        else:
            with db:
                yield db

    def add(self, *, serial: int, issuer: str, profile: str, subject: str, subject_id_hash: str, loa: str,
            requester: str, transaction_id: str, not_before: dt.datetime, not_after: dt.datetime,
            issued_at: dt.datetime, der: bytes, request_id: str | None = None) -> None:
        """Store a newly issued certificate.

        :raises sqlite3.IntegrityError: ``requester`` already has a certificate for ``request_id``.
        """
        with self._connect(write=True) as db:
            db.execute(
                "INSERT INTO certificates (serial, issuer, profile, subject, subject_id_hash, loa, requester,"
                " transaction_id, not_before, not_after, issued_at, der, request_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (format(serial, "x"), issuer, profile, subject, subject_id_hash, loa, requester, transaction_id,
                 _iso(not_before), _iso(not_after), _iso(issued_at), der, request_id),
            )

    @staticmethod
    def _record(row: tuple) -> CertificateRecord:  # type: ignore[type-arg]
        (serial, issuer, profile, subject, sid, loa, requester, txn, nb, na, issued, der, revoked, reason,
         request_id) = row
        return CertificateRecord(serial, issuer, profile, subject, sid, loa, requester, txn,
                                 _parse(nb), _parse(na), _parse(issued), bytes(der), _parse(revoked), reason,  # type: ignore[arg-type]
                                 request_id)

    _COLUMNS = ("serial, issuer, profile, subject, subject_id_hash, loa, requester, transaction_id, not_before,"
                " not_after, issued_at, der, revoked_at, revocation_reason, request_id")

    def get(self, serial: int) -> CertificateRecord | None:
        """The certificate with ``serial``, or ``None``."""
        with self._connect() as db:
            row = db.execute(f"SELECT {self._COLUMNS} FROM certificates WHERE serial = ?",
                             (format(serial, "x"),)).fetchone()
        return self._record(row) if row else None

    def by_request(self, requester: str, request_id: str) -> CertificateRecord | None:
        """The certificate issued to ``requester`` for its request ``request_id``, or ``None``."""
        with self._connect() as db:
            row = db.execute(f"SELECT {self._COLUMNS} FROM certificates WHERE requester = ? AND request_id = ?",
                             (requester, request_id)).fetchone()
        return self._record(row) if row else None

    def of_transaction(self, requester: str, transaction_id: str) -> list[CertificateRecord]:
        """The certificates issued to ``requester`` for its transaction ``transaction_id``."""
        with self._connect() as db:
            rows = db.execute(f"SELECT {self._COLUMNS} FROM certificates WHERE requester = ? AND transaction_id = ?"
                              " ORDER BY issued_at", (requester, transaction_id)).fetchall()
        return [self._record(row) for row in rows]

    def states(self) -> dict[str, str | None]:
        """Every end-entity certificate: serial → revocation reason (``None`` while not revoked).
        The database side of the issuance log cross-check."""
        with self._connect() as db:
            return _states(db)

    @staticmethod
    def read_states(path: Path) -> dict[str, str | None]:
        """:meth:`states` of the database at ``path``, opened read-only (for ``signlab audit verify``,
        which must change nothing).

        :raises sqlite3.Error: no such database.
        """
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as db:
            return _states(db)

    def recent(self, limit: int = 100) -> list[CertificateRecord]:
        """The most recently issued certificates, newest first."""
        with self._connect() as db:
            rows = db.execute(f"SELECT {self._COLUMNS} FROM certificates ORDER BY issued_at DESC, rowid DESC LIMIT ?",
                              (limit,)).fetchall()
        return [self._record(row) for row in rows]

    def revoked(self, issuer: str) -> list[CertificateRecord]:
        """Every revoked certificate of ``issuer``."""
        with self._connect() as db:
            rows = db.execute(f"SELECT {self._COLUMNS} FROM certificates WHERE issuer = ? AND revoked_at IS NOT NULL"
                              " ORDER BY revoked_at", (issuer,)).fetchall()
        return [self._record(row) for row in rows]

    def revoked_count(self, issuer: str) -> int:
        """How many certificates of ``issuer`` are revoked (from the partial index: cheap, for the
        CRL cache's freshness check on every CRL request)."""
        with self._connect() as db:
            (count,) = db.execute("SELECT COUNT(*) FROM certificates WHERE issuer = ? AND revoked_at IS NOT NULL",
                                  (issuer,)).fetchone()
        return int(count)

    def revoke(self, serial: int, reason: str, at: dt.datetime) -> bool:
        """Mark ``serial`` revoked; False when it was already revoked (the first revocation stays)."""
        with self._connect(write=True) as db:
            cursor = db.execute(
                "UPDATE certificates SET revoked_at = ?, revocation_reason = ? WHERE serial = ? AND revoked_at IS NULL",
                (_iso(at), reason, format(serial, "x")))
            return cursor.rowcount == 1

    def add_status_change(self, service: str, status: str, since: dt.datetime, note: str) -> int:
        """Record a status change of a trusted-list service; its id."""
        with self._connect(write=True) as db:
            cursor = db.execute("INSERT INTO trusted_list_changes (service, status, since, note) VALUES (?, ?, ?, ?)",
                                (service, status, _iso(since), note))
            return int(cursor.lastrowid or 0)

    def status_changes(self) -> list[tuple[int, str, str, dt.datetime, str]]:
        """Every recorded status change: ``(id, service, status, since, note)``, oldest first."""
        with self._connect() as db:
            rows = db.execute("SELECT id, service, status, since, note FROM trusted_list_changes ORDER BY id").fetchall()
        return [(int(i), str(service), str(status), _parse(since) or dt.datetime.min, str(note))
                for i, service, status, since, note in rows]

    def clear_status_changes(self) -> int:
        """Forget every status change (the list shows each service granted again); how many."""
        with self._connect(write=True) as db:
            return int(db.execute("DELETE FROM trusted_list_changes").rowcount)

    def next_crl_number(self, name: str) -> int:
        """Increment and return the CRL number of CRL ``name`` (monotonic, persisted)."""
        with self._connect(write=True) as db:
            db.execute("INSERT INTO crl_numbers (name, number) VALUES (?, 1)"
                       " ON CONFLICT(name) DO UPDATE SET number = number + 1", (name,))
            (number,) = db.execute("SELECT number FROM crl_numbers WHERE name = ?", (name,)).fetchone()
        return int(number)
