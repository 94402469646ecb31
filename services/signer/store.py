"""Persistent state of the SSASP: transactions, tokens and one-time credentials in SQLite (WAL).

A *transaction* is one authorization request of a partner (a PAR or a direct ``oauth2/authorize``)
and everything that follows from it. Its ``state`` moves through the machine of the issue::

    requested -> authenticated -> consented -> key_created -> certificate_issued -> signed -> completed
         \\____________\\______________\\____________\\________________\\______________\\-> failed | expired

Transitions are compare-and-set (``UPDATE … WHERE state IN (…)``), so two concurrent requests can
never both move the same transaction (single use of codes and SADs rests on the same trick).

Secrets (request URIs, codes, tokens, CSRF and browser-binding values) are stored as SHA-256
hashes only. The signed ID token (the identity evidence the CA needs at step 7) is never stored
here: it waits for step 7 in memory (:mod:`services.signer.evidence`), because a value wiped from
a row still lingers in the WAL and in free pages. A database of an older version that had an
``id_token`` column is cleaned when it is opened (column dropped, file rewritten, WAL truncated).

Limits: one SQLite file per service; fine for one process with threads (the runtime's shape).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.errors import Conflict

__all__ = [
    "ACTIVE_STATES",
    "FINAL_STATES",
    "STATES",
    "CredentialRecord",
    "Store",
    "TokenRecord",
    "TransactionRecord",
    "secret_hash",
]

STATES = ("requested", "authenticated", "consented", "key_created", "certificate_issued", "signed",
          "completed", "failed", "expired")
"""Every transaction state, in flow order."""
FINAL_STATES = ("completed", "failed", "expired")
"""States a transaction never leaves."""
ACTIVE_STATES = tuple(s for s in STATES if s not in FINAL_STATES)
"""States of a transaction still in flight."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS transactions (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    client_id TEXT NOT NULL,
    state TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    expires_at REAL NOT NULL,
    request TEXT NOT NULL,
    par_hash TEXT UNIQUE,
    idp_state TEXT UNIQUE,
    idp_nonce TEXT,
    idp_verifier TEXT,
    browser_hash TEXT,
    csrf_hash TEXT,
    subject TEXT,
    identity TEXT,
    code_hash TEXT UNIQUE,
    code_expires REAL,
    code_used INTEGER NOT NULL DEFAULT 0,
    key_id TEXT,
    certificate_serial TEXT,
    error TEXT,
    certificate_revocation TEXT
);
CREATE INDEX IF NOT EXISTS transactions_state ON transactions(state, expires_at);
CREATE TABLE IF NOT EXISTS tokens (
    token_hash TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    client_id TEXT NOT NULL,
    transaction_id TEXT NOT NULL,
    credential_id TEXT,
    subject TEXT,
    hash_alg TEXT,
    digests TEXT NOT NULL,
    num_signatures INTEGER NOT NULL,
    expires_at REAL NOT NULL,
    used_at REAL,
    revoked INTEGER NOT NULL DEFAULT 0,
    authorization_details TEXT
);
CREATE INDEX IF NOT EXISTS tokens_transaction ON tokens(transaction_id);
CREATE TABLE IF NOT EXISTS credentials (
    id TEXT PRIMARY KEY,
    transaction_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    key_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    public_key TEXT NOT NULL,
    certificate TEXT NOT NULL,
    chain TEXT NOT NULL,
    qualifier TEXT NOT NULL,
    serial TEXT NOT NULL,
    multisign INTEGER NOT NULL,
    remaining INTEGER NOT NULL,
    status TEXT NOT NULL,
    expires_at REAL NOT NULL,
    created REAL NOT NULL,
    scal TEXT NOT NULL DEFAULT '2'
);
"""


def secret_hash(value: str) -> str:
    """SHA-256 (hex) of a secret value, the only form in which secrets are stored."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class TransactionRecord:
    """A row of ``transactions`` (JSON columns decoded)."""

    id: str
    kind: str
    client_id: str
    state: str
    created: float
    updated: float
    expires_at: float
    request: dict[str, Any]
    idp_state: str | None = None
    idp_nonce: str | None = None
    idp_verifier: str | None = None
    browser_hash: str | None = None
    csrf_hash: str | None = None
    subject: str | None = None
    identity: dict[str, Any] = field(default_factory=dict)
    code_expires: float | None = None
    code_used: int = 0
    key_id: str | None = None
    certificate_serial: str | None = None
    error: str | None = None
    par_hash: str | None = None
    code_hash: str | None = None
    certificate_revocation: str | None = None
    """Whether a certificate the TSP may have issued for it must be revoked (:mod:`services.signer.orphans`)."""


@dataclass(frozen=True)
class TokenRecord:
    """A row of ``tokens``: an access token (service or credential scope) or a v1 SAD."""

    token_hash: str
    kind: str
    client_id: str
    transaction_id: str
    credential_id: str | None
    subject: str | None
    hash_alg: str | None
    digests: list[str]
    num_signatures: int
    expires_at: float
    used_at: float | None
    revoked: int
    authorization_details: list[dict[str, Any]] | None


@dataclass(frozen=True)
class CredentialRecord:
    """A row of ``credentials``: a certificate-first one-time credential.

    :ivar scal: ``"2"`` (every SAD from the person's approval of the exact hashes) or ``"1"``
        (count only, asked for explicitly).
    """

    id: str
    transaction_id: str
    client_id: str
    subject: str
    key_id: str
    algorithm: str
    public_key: str
    certificate: str
    chain: list[str]
    qualifier: str
    serial: str
    multisign: int
    remaining: int
    status: str
    expires_at: float
    created: float
    scal: str = "2"


class Store:
    """The SQLite database of the service; one connection per thread, WAL mode.

    :param path: the database file (created when missing).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._write_lock = threading.Lock()
        with self._connect() as db:
            db.executescript(_SCHEMA)
            _purge_stored_id_tokens(db)
            _add_missing_columns(db)

    def _connect(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        return db

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction on this thread's connection.

        The process's writers queue on a lock first: SQLite makes a writer that finds the
        database locked sleep and retry (1, 2, 5, 10 … ms), which, with eight threads writing
        five times per signDoc, added milliseconds of idle waiting per request. Another process
        (a CLI) still meets SQLite's own busy timeout.
        """
        db = self._connect()
        with self._write_lock:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    # -- transactions ---------------------------------------------------------------------------

    def create_transaction(self, record: TransactionRecord) -> None:
        """Insert a new transaction (state ``requested``)."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO transactions (id, kind, client_id, state, created, updated, expires_at, request, par_hash)"
                " VALUES (?,?,?,?,?,?,?,?,?)",
                (record.id, record.kind, record.client_id, record.state, record.created, record.updated,
                 record.expires_at, json.dumps(record.request), record.par_hash),
            )

    def transaction(self, transaction_id: str) -> TransactionRecord | None:
        """The transaction with this id, or ``None``."""
        row = self._connect().execute("SELECT * FROM transactions WHERE id = ?", (transaction_id,)).fetchone()
        return _transaction(row) if row else None

    def transaction_by(self, column: str, value: str) -> TransactionRecord | None:
        """The transaction whose unique ``column`` (``par_hash``, ``idp_state``, ``code_hash``) is ``value``."""
        if column not in ("par_hash", "idp_state", "code_hash"):
            raise ValueError(column)
        row = self._connect().execute(f"SELECT * FROM transactions WHERE {column} = ?", (value,)).fetchone()  # noqa: S608 - column names are this module's constants; values are bound parameters
        return _transaction(row) if row else None

    def advance(self, transaction_id: str, from_states: Iterable[str], to_state: str, **fields: Any) -> TransactionRecord:
        """Move a transaction from one of ``from_states`` to ``to_state`` and set ``fields``, atomically.

        :return: the transaction as it is now.
        :raises Conflict: the transaction is not in one of ``from_states`` (it moved meanwhile,
            ended, or never existed).
        """
        self.move(transaction_id, from_states, to_state, **fields)
        record = self.transaction(transaction_id)
        if record is None:
            raise Conflict(f"transaction {transaction_id} vanished while it moved to {to_state}")
        return record

    def move(self, transaction_id: str, from_states: Iterable[str], to_state: str, **fields: Any) -> None:
        """:meth:`advance` without reading the transaction back (signDoc moves it four times and
        needs none of the rows).

        :raises Conflict: as :meth:`advance`.
        """
        allowed = tuple(from_states)
        values = {k: (json.dumps(v) if k in ("identity", "request") else v) for k, v in fields.items()}
        assignments = ", ".join(f"{k} = ?" for k in values)
        sql = (f"UPDATE transactions SET state = ?, updated = ?{', ' + assignments if assignments else ''} "  # noqa: S608 - column names are this module's constants; values are bound parameters
               f"WHERE id = ? AND state IN ({','.join('?' * len(allowed))})")
        with self._tx() as db:
            changed = db.execute(sql, (to_state, time.time(), *values.values(), transaction_id, *allowed)).rowcount
        if changed != 1:
            current = self.transaction(transaction_id)
            raise Conflict(
                f"transaction is {current.state if current else 'unknown'}, not {' or '.join(allowed)}"
            )

    def update_transaction(self, transaction_id: str, **fields: Any) -> None:
        """Set fields without a state change (e.g. the error text)."""
        values = {k: (json.dumps(v) if k in ("identity", "request") else v) for k, v in fields.items()}
        with self._tx() as db:
            db.execute(f"UPDATE transactions SET {', '.join(f'{k} = ?' for k in values)}, updated = ? WHERE id = ?",  # noqa: S608 - column names are this module's constants; values are bound parameters
                       (*values.values(), time.time(), transaction_id))

    def consume_par(self, par_hash: str, now: float) -> TransactionRecord | None:
        """Take a pushed request by its hashed ``request_uri``: single use (the hash is cleared)."""
        with self._tx() as db:
            row = db.execute("SELECT * FROM transactions WHERE par_hash = ?", (par_hash,)).fetchone()
            if row is None:
                return None
            db.execute("UPDATE transactions SET par_hash = NULL, updated = ? WHERE id = ?", (now, row["id"]))
        return _transaction(row)

    def consume_code(self, code_hash: str) -> tuple[TransactionRecord | None, bool]:
        """Take an authorization code: ``(transaction, first_use)``; a replay returns ``first_use`` False."""
        with self._tx() as db:
            row = db.execute("SELECT * FROM transactions WHERE code_hash = ?", (code_hash,)).fetchone()
            if row is None:
                return None, False
            first = db.execute("UPDATE transactions SET code_used = 1 WHERE id = ? AND code_used = 0",
                               (row["id"],)).rowcount == 1
        return _transaction(row), first

    def transactions_to_expire(self, now: float) -> list[TransactionRecord]:
        """Transactions still in flight whose deadline has passed."""
        rows = self._connect().execute(
            f"SELECT * FROM transactions WHERE state IN ({','.join('?' * len(ACTIVE_STATES))}) AND expires_at < ?",  # noqa: S608 - column names are this module's constants; values are bound parameters
            (*ACTIVE_STATES, now),
        ).fetchall()
        return [_transaction(r) for r in rows]

    def ended_with_pending_revocation(self) -> list[TransactionRecord]:
        """Ended transactions whose certificate revocation is still to be done: failed or expired
        ones, and completed ones whose signed answer never reached the partner."""
        rows = self._connect().execute(
            "SELECT * FROM transactions WHERE certificate_revocation = 'pending' "
            "AND state IN ('failed', 'expired', 'completed')"
        ).fetchall()
        return [_transaction(r) for r in rows]

    def active_transactions(self) -> list[TransactionRecord]:
        """Every transaction still in flight (used at start-up, where all of them end as expired)."""
        rows = self._connect().execute(
            f"SELECT * FROM transactions WHERE state IN ({','.join('?' * len(ACTIVE_STATES))})", ACTIVE_STATES  # noqa: S608 - column names are this module's constants; values are bound parameters
        ).fetchall()
        return [_transaction(r) for r in rows]

    # -- tokens ----------------------------------------------------------------------------------

    def add_token(self, record: TokenRecord) -> None:
        """Store an issued token (by hash)."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO tokens VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (record.token_hash, record.kind, record.client_id, record.transaction_id, record.credential_id,
                 record.subject, record.hash_alg, json.dumps(record.digests), record.num_signatures,
                 record.expires_at, record.used_at, record.revoked,
                 json.dumps(record.authorization_details) if record.authorization_details is not None else None),
            )

    def token(self, token_hash: str) -> TokenRecord | None:
        """The token with this hash, or ``None``."""
        row = self._connect().execute("SELECT * FROM tokens WHERE token_hash = ?", (token_hash,)).fetchone()
        return _token(row) if row else None

    def use_token(self, token_hash: str, now: float) -> bool:
        """Mark a single-use token used; False when it was already used or revoked (a replay)."""
        with self._tx() as db:
            return db.execute("UPDATE tokens SET used_at = ? WHERE token_hash = ? AND used_at IS NULL AND revoked = 0",
                              (now, token_hash)).rowcount == 1

    def revoke_token(self, token_hash: str, client_id: str) -> bool:
        """Revoke a token of ``client_id``; False when there is no such token."""
        with self._tx() as db:
            return db.execute("UPDATE tokens SET revoked = 1 WHERE token_hash = ? AND client_id = ?",
                              (token_hash, client_id)).rowcount == 1

    def revoke_transaction_tokens(self, transaction_id: str) -> int:
        """Revoke every token issued for a transaction (e.g. after an authorization-code replay)."""
        with self._tx() as db:
            return db.execute("UPDATE tokens SET revoked = 1 WHERE transaction_id = ?", (transaction_id,)).rowcount

    # -- credentials -----------------------------------------------------------------------------

    def add_credential(self, record: CredentialRecord) -> None:
        """Store a certificate-first one-time credential."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO credentials VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (record.id, record.transaction_id, record.client_id, record.subject, record.key_id, record.algorithm,
                 record.public_key, record.certificate, json.dumps(record.chain), record.qualifier, record.serial,
                 record.multisign, record.remaining, record.status, record.expires_at, record.created, record.scal),
            )

    def credential(self, credential_id: str) -> CredentialRecord | None:
        """The credential with this id, or ``None``."""
        row = self._connect().execute("SELECT * FROM credentials WHERE id = ?", (credential_id,)).fetchone()
        return _credential(row) if row else None

    def credentials_of(self, transaction_id: str) -> list[CredentialRecord]:
        """Credentials created by a (service-scope) transaction."""
        rows = self._connect().execute("SELECT * FROM credentials WHERE transaction_id = ? ORDER BY created",
                                       (transaction_id,)).fetchall()
        return [_credential(r) for r in rows]

    def spend_credential(self, credential_id: str, count: int) -> int | None:
        """Take ``count`` signatures from the credential's budget; the remaining budget, or ``None`` if short."""
        with self._tx() as db:
            changed = db.execute(
                "UPDATE credentials SET remaining = remaining - ? WHERE id = ? AND status = 'enabled' AND remaining >= ?",
                (count, credential_id, count),
            ).rowcount
            if changed != 1:
                return None
            return int(db.execute("SELECT remaining FROM credentials WHERE id = ?", (credential_id,)).fetchone()[0])

    def disable_credential(self, credential_id: str) -> None:
        """Disable a credential (its key is destroyed)."""
        with self._tx() as db:
            db.execute("UPDATE credentials SET status = 'disabled' WHERE id = ?", (credential_id,))


_ADDED_COLUMNS = (("credentials", "scal", "TEXT NOT NULL DEFAULT '2'"),
                  ("transactions", "certificate_revocation", "TEXT"))
"""Columns newer than the first schema, added to an older database when it is opened."""


def _add_missing_columns(db: sqlite3.Connection) -> None:
    for table, column, kind in _ADDED_COLUMNS:
        if column not in {row["name"] for row in db.execute(f"PRAGMA table_info({table})")}:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


def _purge_stored_id_tokens(db: sqlite3.Connection) -> None:
    """Older versions kept the signed ID token in ``transactions.id_token``: drop the column and
    rewrite the file so that no copy stays in free pages or in the WAL (review V7)."""
    columns = {row["name"] for row in db.execute("PRAGMA table_info(transactions)")}
    if "id_token" not in columns:
        return
    db.execute("ALTER TABLE transactions DROP COLUMN id_token")
    db.execute("VACUUM")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _transaction(row: sqlite3.Row) -> TransactionRecord:
    data = dict(row)
    data["request"] = json.loads(data["request"])
    data["identity"] = json.loads(data["identity"]) if data.get("identity") else {}
    return TransactionRecord(**data)


def _token(row: sqlite3.Row) -> TokenRecord:
    data = dict(row)
    data["digests"] = json.loads(data["digests"])
    data["authorization_details"] = json.loads(data["authorization_details"]) if data["authorization_details"] else None
    return TokenRecord(**data)


def _credential(row: sqlite3.Row) -> CredentialRecord:
    data = dict(row)
    data["chain"] = json.loads(data["chain"])
    return CredentialRecord(**data)
