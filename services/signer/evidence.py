"""The identity evidence of the transactions in flight: each verified ID token, in memory only.

Step 5 verifies the IdP's signed ID token; step 7 hands it to the TSP, which verifies it again
before it issues a certificate in the person's name. Between the two the token is personal data
signed by the IdP (name, national identifier, birth date), so it never reaches the database (where
an update leaves the old value in the SQLite WAL and in free pages): it is kept here, next to the
one-time keys, for exactly as long as the transaction needs it, and dropped when step 7 is done or
the transaction ends (:class:`~services.signer.lifecycle.TransactionLifecycle`). The audit log
keeps the pseudonymised facts (``authentication.verified``: subject pseudonym, IdP, LoA, eID).

Limits: like the one-time keys, the evidence lives in the one worker process; a restart loses it,
and the start-up ends every transaction in flight anyway.
"""

from __future__ import annotations

import threading

__all__ = ["IdentityEvidence"]


class IdentityEvidence:
    """Verified ID tokens by transaction id. Thread-safe."""

    def __init__(self) -> None:
        self._tokens: dict[str, str] = {}
        self._lock = threading.Lock()

    def keep(self, transaction_id: str, id_token: str) -> None:
        """Step 5: keep the verified ID token of ``transaction_id`` until step 7."""
        with self._lock:
            self._tokens[transaction_id] = id_token

    def of(self, transaction_id: str) -> str | None:
        """The ID token of ``transaction_id``; ``None`` when it was dropped (or made before a restart)."""
        with self._lock:
            return self._tokens.get(transaction_id)

    def drop(self, transaction_id: str) -> None:
        """Forget the ID token of ``transaction_id`` (step 7 done, or the transaction ended)."""
        with self._lock:
            self._tokens.pop(transaction_id, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._tokens)
