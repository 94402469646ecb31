"""Orphan certificates: what the TSP issued for a flow that then failed is revoked, not left valid.

From the moment a transaction's one-time key exists, step 7 may send its CSR and the TSP may
issue a certificate for it — even when the signing service never gets the answer (a timeout, a
crash). Such a certificate names a real person, is valid for minutes and has a key that no longer
exists: nothing can be signed with it, but a relying party could not tell. So:

* the transaction is marked ``certificate_revocation = "pending"`` when its key is made (in the
  same database write that records the key, so a crash anywhere later leaves the mark);
* when the partner reports that the answer of a completed transaction never reached it
  (``oauth2/transaction-status`` with ``answer_lost``, audited ``transaction.answer_lost``), the
  mark is set again and the certificate revoked: a signature nobody received must not stay valid;
* when it completes, the mark is cleared (its certificate signed what the person approved); a
  certificate-first credential that made at least one signature keeps its certificate too
  (``"kept"``): revoking it would make those signatures look revoked to a validator;
* when it fails or expires with the mark set, :meth:`OrphanCertificates.revoke` asks the TSP to
  revoke every certificate it issued for the transaction (``POST /api/v1/certificates/revocations``
  with this service's RFC 7523 client assertion, by transaction id — which also finds a
  certificate whose answer never arrived — reason ``cessationOfOperation``, the failure as the
  note). Best effort: the outcome is audited (``certificate.revoked`` with the serials, or
  ``certificate.revocation_unneeded`` when the TSP issued nothing: its 404); when the TSP cannot be
  reached or refuses, the mark stays ``"pending"`` (``certificate.revocation_failed``) and the
  sweep retries (:meth:`OrphanCertificates.retry_pending`), also after a restart — the start-up
  only marks, so that a TSP that is down cannot hold the service's start.

Limits: between a failure and a successful retry the certificate stays valid (the TSP's CRL and
OCSP show the revocation from the moment it is made); the TSP's own start-up reconciliation
handles what it stored without completing the issuance.
"""

from __future__ import annotations

from services.signer.store import Store
from services.signer.upstream import CertificateGateway
from shared.audit import AuditLog
from shared.errors import UpstreamError, UpstreamUnavailable

__all__ = ["KEPT", "NOTHING_ISSUED", "PENDING", "REVOKED", "OrphanCertificates"]

PENDING = "pending"
"""A certificate may exist for the transaction and is not known to be revoked."""
REVOKED = "revoked"
"""The TSP revoked what it issued for the transaction."""
NOTHING_ISSUED = "nothing_issued"
"""The TSP issued nothing for the transaction (its revocation answered 404)."""
KEPT = "kept"
"""The certificate signed something the person approved; it stays valid until it expires."""


class OrphanCertificates:
    """Revokes the certificates of failed transactions at the TSP, best effort, retried.

    :param ca: the TSP client.
    :param store: the transaction database (the ``certificate_revocation`` mark).
    :param audit: the hash-chained audit log.
    """

    def __init__(self, ca: CertificateGateway, store: Store, audit: AuditLog) -> None:
        self.ca = ca
        self.store = store
        self.audit = audit

    def revoke(self, transaction_id: str, why: str) -> str:
        """Ask the TSP to revoke what it issued for ``transaction_id``; the new mark.

        :param why: the failure, kept as the revocation's note (at most 200 characters).
        """
        note = f"the signing flow failed after its key was made: {why}"[:200]
        try:
            revoked = self.ca.revoke_for_transaction(transaction_id, note=note)
        except UpstreamError as exc:
            if exc.upstream_status == 404:
                self.store.update_transaction(transaction_id, certificate_revocation=NOTHING_ISSUED)
                self.audit.append("certificate.revocation_unneeded", step=7, transaction_id=transaction_id,
                                  reason="the TSP issued no certificate for this transaction")
                return NOTHING_ISSUED
            return self._still_pending(transaction_id, exc.error_description)
        except UpstreamUnavailable as exc:
            return self._still_pending(transaction_id, exc.error_description)
        self.store.update_transaction(transaction_id, certificate_revocation=REVOKED)
        self.audit.append("certificate.revoked", step=7, transaction_id=transaction_id, serials=revoked,
                          reason="cessationOfOperation", note=note)
        return REVOKED

    def _still_pending(self, transaction_id: str, error: str) -> str:
        self.store.update_transaction(transaction_id, certificate_revocation=PENDING)
        self.audit.append("certificate.revocation_failed", step=7, transaction_id=transaction_id, error=error[:300],
                          retry="by the sweep")
        return PENDING

    def retry_pending(self) -> int:
        """Revoke the certificates of every ended transaction still marked pending; how many were tried."""
        pending = self.store.ended_with_pending_revocation()
        for record in pending:
            lost = "step 10: the signed answer never reached the partner" if record.state == "completed" else None
            self.revoke(record.id, record.error or lost or f"the transaction {record.state}")
        return len(pending)
