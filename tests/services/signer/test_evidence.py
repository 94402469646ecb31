"""The identity evidence waits for step 7 in memory; an older database's stored ID tokens are
purged when it is opened (review V7)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from services.signer.evidence import IdentityEvidence
from services.signer.store import Store

ID_TOKEN = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJrYXJpIn0.c2lnbmF0dXJl"


def test_evidence_is_kept_until_dropped() -> None:
    evidence = IdentityEvidence()
    evidence.keep("tx-1", ID_TOKEN)
    assert evidence.of("tx-1") == ID_TOKEN and evidence.of("tx-2") is None and len(evidence) == 1
    evidence.drop("tx-1")
    evidence.drop("tx-1")  # dropping twice is harmless (a failure after step 7 drops again)
    assert evidence.of("tx-1") is None and len(evidence) == 0


def test_an_older_database_loses_its_stored_id_tokens_everywhere(tmp_path: Path) -> None:
    """A database of the version that stored ``id_token``: opening it drops the column and leaves
    no copy of the token in the file or its WAL."""
    path = tmp_path / "signer.sqlite3"
    Store(path)  # today's schema …
    db = sqlite3.connect(path, isolation_level=None)  # … as the older version had it, with a stored token
    db.execute("ALTER TABLE transactions ADD COLUMN id_token TEXT")
    db.execute("INSERT INTO transactions (id, kind, client_id, state, created, updated, expires_at, request, "
               "id_token) VALUES ('tx-old', 'sign', 'portal', 'completed', 0, 0, 0, '{}', ?)", (ID_TOKEN,))
    db.execute("UPDATE transactions SET id_token = NULL WHERE id = 'tx-old'")  # "wiped" the old way
    db.close()
    assert any(ID_TOKEN.encode() in p.read_bytes() for p in tmp_path.glob("signer.sqlite3*"))
    store = Store(path)
    assert store.transaction("tx-old") is not None
    assert not any(ID_TOKEN.encode() in p.read_bytes() for p in tmp_path.glob("signer.sqlite3*"))
