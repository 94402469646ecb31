"""How SSASP transactions end when they do not simply complete: failed, expired, and the
certificate-first completion; the start-up clean-up and the periodic sweep.

The state machine itself (``requested → … → completed | failed | expired``, compare-and-set
transitions) is in :mod:`services.signer.store`. This module decides what else happens at an
end: an expired transaction loses its keys (destroyed in the HSM) and its tokens (revoked); a
failed one loses its tokens; every ended one loses its identity evidence (the ID token, kept in
memory only: :mod:`services.signer.evidence`); and a certificate the TSP may have issued for a
transaction that did not complete is revoked (:mod:`services.signer.orphans`) — at once when it
fails or expires, by the sweep when the TSP could not be reached or the service restarted.
Nothing ever restarts.
"""

from __future__ import annotations

from collections.abc import Callable

from services.signer.evidence import IdentityEvidence
from services.signer.keys import OneTimeKeys
from services.signer.orphans import KEPT, PENDING, OrphanCertificates
from services.signer.store import ACTIVE_STATES, FINAL_STATES, Store, TransactionRecord
from shared.audit import AuditLog
from shared.errors import Conflict

__all__ = ["TransactionLifecycle"]


class TransactionLifecycle:
    """Ends transactions and cleans up after them.

    :param store: the transaction database.
    :param audit: the hash-chained audit log.
    :param keys: the one-time keys of this process.
    :param evidence: the ID tokens of the transactions in flight (memory only).
    :param orphans: revokes the certificates of transactions that did not complete.
    :param clock: the time source (seconds since the epoch).
    """

    def __init__(self, store: Store, audit: AuditLog, keys: OneTimeKeys, evidence: IdentityEvidence,
                 orphans: OrphanCertificates, clock: Callable[[], float]) -> None:
        self.store = store
        self.audit = audit
        self.keys = keys
        self.evidence = evidence
        self.orphans = orphans
        self.clock = clock

    def startup(self) -> None:
        """Destroy leftover key objects and end every in-flight transaction as expired (recorded);
        their certificates are only marked for revocation — the first sweep revokes them, so that a
        TSP that is down cannot hold the start."""
        self.keys.destroy_leftovers()
        for record in self.store.active_transactions():
            self.expire(record, "the signing service restarted while the transaction was in flight", revoke_now=False)

    def sweep(self) -> int:
        """Expire transactions past their deadline and destroy their keys, then retry the
        revocations still pending; return how many transactions expired."""
        expired = self.store.transactions_to_expire(self.clock())
        for record in expired:
            self.expire(record, "the transaction expired")
        self.orphans.retry_pending()
        return len(expired)

    def expire(self, record: TransactionRecord, reason: str, *, revoke_now: bool = True) -> None:
        """End an in-flight transaction as expired: its keys destroyed, credentials disabled, tokens
        revoked, identity evidence dropped, a certificate made for it revoked (unless it signed).

        :param revoke_now: ask the TSP at once (else the mark waits for the sweep).
        """
        try:
            ended = self.store.advance(record.id, ACTIVE_STATES, "expired", error=reason)
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
        self._settle_certificate(ended, reason, revoke_now=revoke_now)

    def fail(self, transaction: TransactionRecord, reason: str, *, revoke_now: bool = True) -> None:
        """End a transaction as failed (if still in flight); its identity evidence is dropped, its
        tokens are revoked (except the person-signing token, which was already spent by the
        request that failed), and a certificate made for it is revoked.

        :param revoke_now: ask the TSP at once; False when the TSP itself just failed to answer
            (the sweep retries).
        """
        self.evidence.drop(transaction.id)
        try:
            ended = self.store.advance(transaction.id, ACTIVE_STATES, "failed", error=reason[:500])
        except Conflict:
            return
        finally:
            if transaction.kind != "sign":
                self.store.revoke_transaction_tokens(transaction.id)
        self._settle_certificate(ended, reason, revoke_now=revoke_now)

    def revoke_certificate(self, transaction_id: str, why: str) -> None:
        """Revoke the certificate of an ended transaction that is still marked for it (now, not by
        the sweep: for a caller that ended it with ``revoke_now=False`` and has destroyed its key)."""
        ended = self.store.transaction(transaction_id)
        if ended is not None and ended.state in FINAL_STATES:
            self._settle_certificate(ended, why, revoke_now=True)

    def _settle_certificate(self, ended: TransactionRecord, why: str, *, revoke_now: bool) -> None:
        """A transaction that did not complete: keep the certificate of a credential that signed
        (its signatures must stay valid), revoke any other (marked pending: the TSP may have issued it)."""
        if ended.certificate_revocation != PENDING:
            return
        signed = sum(c.multisign - c.remaining for c in self.store.credentials_of(ended.id))
        if signed:
            self.store.update_transaction(ended.id, certificate_revocation=KEPT)
            self.audit.append("certificate.kept", step=7, transaction_id=ended.id, signatures=signed,
                              reason="the credential's certificate signed before the transaction ended")
        elif revoke_now:
            self.orphans.revoke(ended.id, why)

    def complete_certificate_first(self, transaction_id: str, *, unused_because: str | None = None) -> None:
        """Step 10 of the certificate-first flow: the credential's last signature was made, or its
        key failed (``unused_because``: no signature was ever made, so its certificate is revoked)."""
        try:
            self.store.advance(transaction_id, ["certificate_issued"], "signed")
            self.store.advance(transaction_id, ["signed"], "completed",
                               **({"certificate_revocation": None} if unused_because is None else {}))
            self.audit.append("transaction.completed", step=10, transaction_id=transaction_id)
        except Conflict:
            return
        if unused_because is not None:
            self.orphans.revoke(transaction_id, unused_because)
