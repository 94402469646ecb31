"""The SSASP's side of a portal transaction that did not end normally (docs/reliability.md;
design §8: nothing already stored is lost): a signDoc answer lost on the way (step 10), a
transaction the SSASP ended while the person was still at the eID login or consent (a restart, an
expiry, a refusal), and the one-time credential of a certificate-first transaction that will not be
used any more.

Limits: a signHash answer lost in the certificate-first flow is not reported (that flow keeps the
certificate that signed); if the SSASP cannot be reached when an answer broke off, it cannot be told
and that certificate stays valid until it expires (the error says so).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from services.portal.errors import AnswerLost
from services.portal.signer_api import SignerApi
from services.portal.store import Transaction, TransactionStore
from shared.clock import lab_clock
from shared.errors import SignLabError, UpstreamAnswerBroken, UpstreamError, UpstreamUnavailable
from shared.flow import step

__all__ = ["SignerFollowUp"]

log = logging.getLogger(__name__)


class SignerFollowUp:
    """Tells the SSASP what the portal learned, and learns what the SSASP ended.

    :param store: the portal's transactions.
    :param signer: the SSASP client (None: a portal without a signing service does nothing here).
    """

    def __init__(self, store: TransactionStore, signer: SignerApi | None) -> None:
        self.store = store
        self.signer = signer

    def answer_lost(self, tx: Transaction, lost: UpstreamUnavailable) -> SignLabError:
        """signDoc got no (whole) answer: the SSASP may have signed and sent signatures that never
        arrived. Report it (``answer_lost``): the SSASP audits it and revokes the certificate of a
        signature it made, so no copy of it stays valid. The error says what happened and what
        became of that certificate; an answer that broke off is step 10's (the signature delivery)."""
        signer_tx = tx.meta.get("signer_transaction_id")
        broken = isinstance(lost, UpstreamAnswerBroken)
        if not signer_tx or self.signer is None:
            return lost
        try:
            status = self.signer.transaction_status(str(signer_tx), answer_lost=True)
        except SignLabError as exc:
            log.warning("step 10: could not report the lost answer of %s: %s", signer_tx, exc.error_description,
                        extra={"step": 10, "transaction_id": tx.id})
            if not broken:
                return lost
            return AnswerLost(lost, f"the signing service could not be told ({exc.description}); a signature it "
                              f"made may have a valid certificate (transaction {signer_tx})")
        revocation = getattr(status, "certificate_revocation", None)
        log.info("step 10: reported the lost answer of %s (%s, certificate %s)", signer_tx, status.state, revocation,
                 extra={"step": 10, "transaction_id": tx.id})
        if revocation == "revoked":
            return AnswerLost(lost, f"the signing service was told and revoked the certificate of the signature "
                              f"that did not arrive (transaction {signer_tx})")
        if revocation == "pending":
            return AnswerLost(lost, f"the signing service was told; it revokes the certificate of the signature "
                              f"that did not arrive as soon as the TSP answers (transaction {signer_tx})")
        return lost if not broken else AnswerLost(lost, f"the signing service made no signature for it "
                                                        f"(transaction {signer_tx}: {status.state})")

    def follow_up_pending(self, waiting_longer_than: float) -> int:
        """Ask the SSASP about each transaction that has waited for the signer's return (``pending``:
        eID login and consent, steps 3-5) longer than ``waiting_longer_than`` seconds, and end those
        the SSASP already ended — a restart of the SSASP, its expiry of the request, a refusal —
        as failed, with its reason, at once rather than at the portal's own expiry. Returns how
        many were ended; one the SSASP cannot be asked about now is asked again next time."""
        if self.signer is None:
            return 0
        ended = 0
        for tx in self.store.pending_since(lab_clock().time() - waiting_longer_than):
            signer_tx = tx.meta.get("signer_transaction_id")
            if not signer_tx:
                continue  # pushed before the SSASP named its transactions: the portal's expiry ends it
            try:
                status = self.signer.transaction_status(str(signer_tx))
                reason, state = status.error or f"it is {status.state}", status.state
                if not status.ended or state == "completed":
                    continue
            except UpstreamError as exc:
                if exc.upstream_status != 404:
                    continue
                reason, state = "the signing service does not know the transaction (any more)", "unknown"
            except SignLabError as exc:  # unreachable: ask again next time
                log.info("could not ask the signing service about %s: %s", signer_tx, exc.error_description)
                continue
            error = "expired_transaction" if state == "expired" else "server_error"
            description = (f"{step(5).label}: the signing service ended its transaction {signer_tx} ({state}: {reason[:300]}) "
                           "while the signer was at the eID login or consent; nothing was signed — start again")
            if self.store.abandon(tx.id, error, description):
                self.release_credential(tx)
                ended += 1
                log.info("step 5: the signing service ended %s (%s); transaction abandoned", signer_tx, state,
                         extra={"step": 5, "transaction_id": tx.id})
        return ended

    @contextmanager
    def discarding(self, service_token: str) -> Iterator[None]:
        """On any failure inside, revoke the service token (the SSASP destroys the credential's key)."""
        try:
            yield
        except BaseException:
            self.discard(service_token)
            raise

    def release_credential(self, tx: Transaction) -> None:
        """A certificate-first transaction that ends while the person approves the hashes: its
        one-time credential is of no use any more (revoking the service token destroys its key)."""
        if tx.signer_token:
            self.discard(tx.signer_token)

    def discard(self, token: str) -> None:
        """Best effort: revoke the service token so the credential cannot be used any more."""
        try:
            if self.signer is not None:
                self.signer.revoke(token)
        except SignLabError as exc:
            log.warning("could not revoke the service token: %s", exc.description)
