"""How SSASP transactions end when they do not simply complete: failed, expired, and the
certificate-first completion; the start-up clean-up and the periodic sweep.

The state machine itself (``requested → … → completed | failed | expired``, compare-and-set
transitions) is in :mod:`services.signer.store`. This module decides what else happens at an
end: an expired transaction loses its keys (destroyed in the HSM) and its tokens (revoked); a
failed one loses its tokens; every ended one loses its identity evidence (the ID token, kept in
memory only: :mod:`services.signer.evidence`); nothing ever restarts.
"""

from __future__ import annotations

from collections.abc import Callable

from services.signer.evidence import IdentityEvidence
from services.signer.keys import OneTimeKeys
from services.signer.store import ACTIVE_STATES, Store, TransactionRecord
from shared.audit import AuditLog
from shared.errors import Conflict

__all__ = ["TransactionLifecycle"]


class TransactionLifecycle:
    """Ends transactions and cleans up after them.

    :param store: the transaction database.
    :param audit: the hash-chained audit log.
    :param keys: the one-time keys of this process.
    :param evidence: the ID tokens of the transactions in flight (memory only).
    :param clock: the time source (seconds since the epoch).
    """

    def __init__(self, store: Store, audit: AuditLog, keys: OneTimeKeys, evidence: IdentityEvidence,
                 clock: Callable[[], float]) -> None:
        self.store = store
        self.audit = audit
        self.keys = keys
        self.evidence = evidence
        self.clock = clock

    def startup(self) -> None:
        """Destroy leftover key objects and end every in-flight transaction as expired (recorded)."""
        self.keys.destroy_leftovers()
        for record in self.store.active_transactions():
            self.expire(record, "the signing service restarted while the transaction was in flight")

    def sweep(self) -> int:
        """Expire transactions past their deadline and destroy their keys; return how many."""
        expired = self.store.transactions_to_expire(self.clock())
        for record in expired:
            self.expire(record, "the transaction expired")
        return len(expired)

    def expire(self, record: TransactionRecord, reason: str) -> None:
        """End an in-flight transaction as expired: its keys destroyed, credentials disabled, tokens
        revoked, identity evidence dropped."""
        try:
            self.store.advance(record.id, ACTIVE_STATES, "expired", error=reason)
        except Conflict:
            return  # moved on meanwhile
        finally:
            self.evidence.drop(record.id)
        key_ids = {record.key_id} if record.key_id else set()
        for credential in self.store.credentials_of(record.id):
            key_ids.add(credential.key_id)
            self.store.disable_credential(credential.id)
        for key_id in key_ids:
            self.keys.step9_destroy(key_id, record.id)
        self.store.revoke_transaction_tokens(record.id)
        self.audit.append("transaction.expired", transaction_id=record.id, reason=reason)

    def fail(self, transaction: TransactionRecord, reason: str) -> None:
        """End a transaction as failed (if still in flight); its identity evidence is dropped and its
        tokens are revoked, except the person-signing token, which was already spent by the request
        that failed."""
        self.evidence.drop(transaction.id)
        try:
            self.store.advance(transaction.id, ACTIVE_STATES, "failed", error=reason[:500])
        except Conflict:
            pass
        if transaction.kind != "sign":
            self.store.revoke_transaction_tokens(transaction.id)

    def complete_certificate_first(self, transaction_id: str) -> None:
        """Step 10 of the certificate-first flow: the credential's last signature was made."""
        try:
            self.store.advance(transaction_id, ["certificate_issued"], "signed")
            self.store.advance(transaction_id, ["signed"], "completed")
            self.audit.append("transaction.completed", step=10, transaction_id=transaction_id)
        except Conflict:
            pass
