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
