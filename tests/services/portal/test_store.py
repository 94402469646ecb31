"""The portal's transaction store: what survives a restart, and what must not."""

from __future__ import annotations

import time
from pathlib import Path

from services.portal.store import COMPLETED, FAILED, PENDING, StoredDocument, Transaction, TransactionStore


def _tx(tx_id: str) -> Transaction:
    now = time.time()
    return Transaction(id=tx_id, created_at=now, expires_at=now + 300, state=PENDING, options={"format": "cades"},
                       oauth_state="s-" + tx_id, code_verifier="v" * 43, authorize_url=None, error=None,
                       error_description=None, meta={},
                       documents=[StoredDocument(idx=0, label="a.txt", media_type="text/plain", original=b"a",
                                                 digest=bytes(32))])


def test_a_transaction_interrupted_while_completing_ends_failed_at_restart(tmp_path: Path) -> None:
    store = TransactionStore(tmp_path / "portal.sqlite3")
    for tx_id in ("waiting", "interrupted", "done"):
        store.create(_tx(tx_id))
    assert store.claim("interrupted") and store.claim("done")
    store.complete("done", [(0, b"signed", "a.txt.p7s", {"indication": "TOTAL_PASSED"})], {})

    restarted = TransactionStore(tmp_path / "portal.sqlite3")  # a new process opens the same file
    assert restarted.fail_interrupted() == 1
    interrupted = restarted.get("interrupted")
    assert interrupted is not None and interrupted.state == FAILED
    assert "restarted while completing" in (interrupted.error_description or "")
    assert interrupted.documents[0].signed is None and interrupted.code_verifier is None
    assert restarted.get("waiting").state == PENDING  # type: ignore[union-attr]  # can still complete later
    done = restarted.get("done")
    assert done is not None and done.state == COMPLETED and done.documents[0].signed == b"signed"
    assert restarted.fail_interrupted() == 0


def test_only_a_transaction_still_waiting_is_abandoned(tmp_path: Path) -> None:
    """The follow-up at the SSASP sees transactions pending longer than its age, and ends one only
    while it is still pending: a callback that claimed it meanwhile wins."""
    store = TransactionStore(tmp_path / "portal.sqlite3")
    for tx_id in ("waiting", "claimed"):
        store.create(_tx(tx_id))
    assert [t.id for t in store.pending_since(time.time() + 1)] == ["waiting", "claimed"]
    assert store.pending_since(time.time() - 60) == []  # none has waited a minute
    assert store.claim("claimed")
    assert [t.id for t in store.pending_since(time.time() + 1)] == ["waiting"]
    assert not store.abandon("claimed", "server_error", "ended by the signing service")
    assert store.get("claimed").state != FAILED  # type: ignore[union-attr]
    assert store.abandon("waiting", "expired_transaction", "step 5 (IPSP → SSASP): ended by the signing service")
    waiting = store.get("waiting")
    assert waiting is not None and waiting.state == FAILED and waiting.error == "expired_transaction"
    assert waiting.code_verifier is None and "ended by the signing service" in (waiting.error_description or "")
    assert not store.abandon("waiting", "server_error", "twice")
