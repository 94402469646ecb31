"""The portal's transaction store (SQLite in WAL mode).

One row per signing transaction and one per document. Documents never leave this store except as
digests (step 2), as the review page's preview shown to the signer, and as the signed result its
owner downloads. Every transaction and validation report has an ``owner`` (``browser:<hash>`` of a
browser session, or ``app:<id>`` of a partner application); the review link is kept only as its
SHA-256. The signed outputs and the
``completed`` state are written in ONE SQL transaction, so a failure while packaging never leaves
half-written output that looks signed: a failed transaction keeps its error and no signed bytes.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.clock import lab_clock

__all__ = ["COMPLETED", "EXPIRED", "FAILED", "PENDING", "PROCESSING", "REVIEW", "StoredDocument", "Transaction",
           "TransactionStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS transactions (
    id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    state TEXT NOT NULL,
    options TEXT NOT NULL,
    oauth_state TEXT UNIQUE,
    code_verifier TEXT,
    authorize_url TEXT,
    error TEXT,
    error_description TEXT,
    meta TEXT NOT NULL DEFAULT '{}',
    owner TEXT NOT NULL DEFAULT '',
    review_key TEXT,
    signer_token TEXT
);
CREATE TABLE IF NOT EXISTS documents (
    transaction_id TEXT NOT NULL REFERENCES transactions(id),
    idx INTEGER NOT NULL,
    label TEXT NOT NULL,
    media_type TEXT NOT NULL,
    original BLOB NOT NULL,
    prepared BLOB,
    digest BLOB NOT NULL,
    reserved_start INTEGER,
    reserved_end INTEGER,
    field_name TEXT,
    signed BLOB,
    signed_name TEXT,
    report TEXT,
    pending_signature TEXT,
    PRIMARY KEY (transaction_id, idx)
);
CREATE TABLE IF NOT EXISTS reports (
    id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    body TEXT NOT NULL,
    owner TEXT NOT NULL DEFAULT ''
);
"""

_ADDED_COLUMNS = (("transactions", "owner", "TEXT NOT NULL DEFAULT ''"), ("transactions", "review_key", "TEXT"),
                  ("reports", "owner", "TEXT NOT NULL DEFAULT ''"), ("transactions", "signer_token", "TEXT"),
                  ("documents", "pending_signature", "TEXT"))
"""Columns newer than the first schema: added to an older database at start (rows without an owner
belong to nobody and answer 404)."""

REVIEW = "review"
"""Documents prepared and shown to the signer; nothing sent to the SSASP yet."""
PENDING = "pending"
PROCESSING = "processing"
COMPLETED = "completed"
FAILED = "failed"
EXPIRED = "expired"


@dataclass
class StoredDocument:
    """One document of a transaction (see the ``documents`` table)."""

    idx: int
    label: str
    media_type: str
    original: bytes
    digest: bytes
    prepared: bytes | None = None
    reserved_start: int | None = None
    reserved_end: int | None = None
    field_name: str | None = None
    signed: bytes | None = None
    signed_name: str | None = None
    report: dict[str, Any] | None = None
    pending_signature: dict[str, str] | None = None
    """Certificate first, while the person approves the hashes: the DTBS/R and what it is the hash
    of (signed attributes or JWS header), standard base64 (:mod:`services.portal.certificate_first`)."""


@dataclass
class Transaction:
    """One signing transaction."""

    id: str
    created_at: float
    expires_at: float
    state: str
    options: dict[str, Any]
    oauth_state: str | None
    code_verifier: str | None
    authorize_url: str | None
    error: str | None
    error_description: str | None
    meta: dict[str, Any]
    documents: list[StoredDocument] = field(default_factory=list)
    owner: str = ""
    review_key: str | None = None
    signer_token: str | None = None
    """Certificate first, between the two rounds: the SSASP service token of the one-time credential."""

    @property
    def awaiting_hash_approval(self) -> bool:
        """Certificate first: the credential exists and the person is asked to approve the hashes."""
        return self.meta.get("awaiting") == "hash-approval"

    @property
    def expired(self) -> bool:
        """True when a transaction waiting for the signer (review or SSASP) has outlived its lifetime."""
        return self.state in (REVIEW, PENDING) and lab_clock().time() > self.expires_at


class TransactionStore:
    """SQLite store; one connection per thread, WAL so readers never block the writer."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        conn = self._conn()
        conn.executescript(_SCHEMA)  # executescript manages its own transaction
        for table, column, kind in _ADDED_COLUMNS:
            if column not in {row["name"] for row in conn.execute(f"PRAGMA table_info({table})")}:  # noqa: S608 - fixed names
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")  # noqa: S608 - fixed names
        conn.execute("CREATE UNIQUE INDEX IF NOT EXISTS transactions_review_key ON transactions (review_key)")

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=10, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            # As at the other services: in WAL mode NORMAL keeps every commit across a crash of the
            # process (the reliability tests kill it); only a power loss may take the last ones.
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.row_factory = sqlite3.Row
            self._local.conn = conn
        return conn

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def health(self) -> str:
        """A cheap readiness check."""
        count = self._conn().execute("SELECT COUNT(*) FROM transactions").fetchone()[0]
        return f"{count} transactions"

    def create(self, tx: Transaction) -> None:
        """Insert a new transaction with its prepared documents (atomically)."""
        with self._connect() as conn:
            conn.execute(
                "INSERT INTO transactions (id, created_at, expires_at, state, options, oauth_state, code_verifier,"
                " authorize_url, meta, owner, review_key) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (tx.id, tx.created_at, tx.expires_at, tx.state, json.dumps(tx.options), tx.oauth_state,
                 tx.code_verifier, tx.authorize_url, json.dumps(tx.meta), tx.owner, tx.review_key),
            )
            for doc in tx.documents:
                conn.execute(
                    "INSERT INTO documents (transaction_id, idx, label, media_type, original, prepared, digest,"
                    " reserved_start, reserved_end, field_name) VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (tx.id, doc.idx, doc.label, doc.media_type, doc.original, doc.prepared, doc.digest,
                     doc.reserved_start, doc.reserved_end, doc.field_name),
                )

    def set_authorization(self, tx_id: str, authorize_url: str, meta: dict[str, Any]) -> None:
        """Record the authorize URL after a successful PAR."""
        with self._connect() as conn:
            conn.execute("UPDATE transactions SET authorize_url=?, meta=? WHERE id=?", (authorize_url, json.dumps(meta), tx_id))

    def get(self, tx_id: str) -> Transaction | None:
        """The transaction with its documents, or ``None``."""
        row = self._conn().execute("SELECT * FROM transactions WHERE id=?", (tx_id,)).fetchone()
        return self._load(row) if row else None

    def by_review_key(self, review_key: str) -> Transaction | None:
        """The transaction a review link belongs to (``review_key``: the link token's hash)."""
        row = self._conn().execute("SELECT * FROM transactions WHERE review_key=?", (review_key,)).fetchone()
        return self._load(row) if row else None

    def confirm(self, tx_id: str) -> bool:
        """The signer confirmed the review: ``review`` → ``pending`` (only once; False otherwise)."""
        with self._connect() as conn:
            cur = conn.execute("UPDATE transactions SET state=? WHERE id=? AND state=?", (PENDING, tx_id, REVIEW))
            return cur.rowcount == 1

    def cancel_review(self, tx_id: str) -> bool:
        """The signer declined at the review: ``review`` → ``failed`` (False when no longer under review)."""
        with self._connect() as conn:
            cur = conn.execute(
                "UPDATE transactions SET state=?, error=?, error_description=?, code_verifier=NULL WHERE id=? AND state=?",
                (FAILED, "access_denied", "step 1: the signer declined at the portal's review; nothing was sent to the "
                 "signing service and nothing was signed", tx_id, REVIEW))
            return cur.rowcount == 1

    def by_oauth_state(self, state: str) -> Transaction | None:
        """The transaction a callback's ``state`` belongs to."""
        row = self._conn().execute("SELECT * FROM transactions WHERE oauth_state=?", (state,)).fetchone()
        return self._load(row) if row else None

    def _load(self, row: sqlite3.Row) -> Transaction:
        docs = [
            StoredDocument(
                idx=d["idx"], label=d["label"], media_type=d["media_type"], original=d["original"], digest=d["digest"],
                prepared=d["prepared"], reserved_start=d["reserved_start"], reserved_end=d["reserved_end"],
                field_name=d["field_name"], signed=d["signed"], signed_name=d["signed_name"],
                report=json.loads(d["report"]) if d["report"] else None,
                pending_signature=json.loads(d["pending_signature"]) if d["pending_signature"] else None,
            )
            for d in self._conn().execute("SELECT * FROM documents WHERE transaction_id=? ORDER BY idx", (row["id"],))
        ]
        return Transaction(
            id=row["id"], created_at=row["created_at"], expires_at=row["expires_at"], state=row["state"],
            options=json.loads(row["options"]), oauth_state=row["oauth_state"], code_verifier=row["code_verifier"],
            authorize_url=row["authorize_url"], error=row["error"], error_description=row["error_description"],
            meta=json.loads(row["meta"]), documents=docs, owner=row["owner"], review_key=row["review_key"],
            signer_token=row["signer_token"],
        )

    def claim(self, tx_id: str) -> bool:
        """Move a pending transaction to ``processing`` (only once: a replayed callback gets False)."""
        with self._connect() as conn:
            cur = conn.execute("UPDATE transactions SET state=?, code_verifier=NULL WHERE id=? AND state=?", (PROCESSING, tx_id, PENDING))
            return cur.rowcount == 1

    def await_hash_approval(self, tx_id: str, *, signer_token: str, oauth_state: str, code_verifier: str,
                            authorize_url: str, pending: list[tuple[StoredDocument, dict[str, str]]],
                            meta: dict[str, Any]) -> bool:
        """Certificate first, after the credential was made: keep what the second round needs (the
        prepared documents, each DTBS/R and what it is the hash of, the service token) and wait,
        ``processing`` → ``pending``, for the person's approval of the hashes — all or nothing.
        False (nothing changed) when the transaction is no longer processing."""
        with self._connect() as conn:  # BEGIN IMMEDIATE: nobody moves the transaction meanwhile
            row = conn.execute("SELECT state FROM transactions WHERE id=?", (tx_id,)).fetchone()
            if row is None or row["state"] != PROCESSING:
                return False
            for doc, signature in pending:
                conn.execute(
                    "UPDATE documents SET prepared=?, reserved_start=?, reserved_end=?, field_name=?, "
                    "pending_signature=? WHERE transaction_id=? AND idx=?",
                    (doc.prepared, doc.reserved_start, doc.reserved_end, doc.field_name, json.dumps(signature), tx_id,
                     doc.idx))
            conn.execute(
                "UPDATE transactions SET state=?, oauth_state=?, code_verifier=?, authorize_url=?, signer_token=?, "
                "meta=? WHERE id=?",
                (PENDING, oauth_state, code_verifier, authorize_url, signer_token, json.dumps(meta), tx_id))
        return True

    def complete(self, tx_id: str, outputs: list[tuple[int, bytes, str, dict[str, Any]]], meta: dict[str, Any]) -> None:
        """Store every signed output and mark the transaction completed — all or nothing."""
        with self._connect() as conn:
            for idx, signed, name, report in outputs:
                conn.execute(
                    "UPDATE documents SET signed=?, signed_name=?, report=?, pending_signature=NULL "
                    "WHERE transaction_id=? AND idx=?",
                    (signed, name, json.dumps(report), tx_id, idx),
                )
            conn.execute("UPDATE transactions SET state=?, meta=?, signer_token=NULL WHERE id=?",
                         (COMPLETED, json.dumps(meta), tx_id))

    def fail_interrupted(self) -> int:
        """At start-up: end every transaction a crash left in ``processing`` as failed, with the
        reason, and keep nothing of it as signed. Returns how many there were.

        Its code was already redeemed (steps 5-10 were under way), so it cannot be resumed safely:
        a signature is never requested twice.
        """
        with self._connect() as conn:
            ids = [row["id"] for row in conn.execute("SELECT id FROM transactions WHERE state=?", (PROCESSING,))]
            for tx_id in ids:
                conn.execute("UPDATE documents SET signed=NULL, signed_name=NULL WHERE transaction_id=?", (tx_id,))
            conn.execute(
                "UPDATE transactions SET state=?, error=?, error_description=?, code_verifier=NULL, signer_token=NULL "
                "WHERE state=?",
                (FAILED, "server_error", "step 10: the portal restarted while completing this transaction; "
                 "nothing was kept as signed — start a new signing", PROCESSING),
            )
        return len(ids)

    def fail(self, tx_id: str, error: str, description: str, *, state: str = FAILED) -> None:
        """Mark the transaction failed (or expired); signed outputs are cleared."""
        with self._connect() as conn:
            conn.execute("UPDATE documents SET signed=NULL, signed_name=NULL, pending_signature=NULL "
                         "WHERE transaction_id=?", (tx_id,))
            conn.execute(
                "UPDATE transactions SET state=?, error=?, error_description=?, code_verifier=NULL, signer_token=NULL "
                "WHERE id=?",
                (state, error, description, tx_id),
            )

    def pending_since(self, before: float) -> list[Transaction]:
        """Transactions waiting for the signer's return (``pending``) that were created before ``before``."""
        rows = self._conn().execute("SELECT * FROM transactions WHERE state=? AND created_at<? ORDER BY created_at",
                                    (PENDING, before)).fetchall()
        return [self._load(row) for row in rows]

    def abandon(self, tx_id: str, error: str, description: str) -> bool:
        """End a transaction that is still ``pending`` as failed (and only then: a callback may be
        claiming it); False when it moved on meanwhile."""
        with self._connect() as conn:
            changed = conn.execute(
                "UPDATE transactions SET state=?, error=?, error_description=?, code_verifier=NULL, signer_token=NULL "
                "WHERE id=? AND state=?", (FAILED, error, description, tx_id, PENDING)).rowcount
            if changed:
                conn.execute("UPDATE documents SET pending_signature=NULL WHERE transaction_id=?", (tx_id,))
        return changed == 1

    def save_report(self, report_id: str, body: dict[str, Any], owner: str) -> None:
        """Keep a validation report for its owner to download."""
        with self._connect() as conn:
            conn.execute("INSERT INTO reports (id, created_at, body, owner) VALUES (?,?,?,?)",
                         (report_id, time.time(), json.dumps(body), owner))

    def report(self, report_id: str, owner: str) -> dict[str, Any] | None:
        """A stored validation report of ``owner`` (None for another owner's: no oracle)."""
        row = self._conn().execute("SELECT body FROM reports WHERE id=? AND owner=? AND owner != ''",
                                   (report_id, owner)).fetchone()
        return json.loads(row["body"]) if row else None
