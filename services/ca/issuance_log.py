"""The TSP's issuance log: every issuance, revocation and refusal, hash-chained (step 7).

A thin, CA-specific layer over :class:`shared.audit.AuditLog` (``<data_dir>/issuance-log.jsonl``):
it fixes the event names (``certificate.issued``, ``certificate.revoked``, ``issuance.refused``)
and their fields (serial, pseudonymised subject id, profile, LoA, requester, transaction id,
refusal reason). No personal data in clear: the subject is ``subject_id`` =
:func:`shared.audit.pseudonymise` of the certificate serialNumber (``PNONO-…``) under the CA's
pseudonymisation key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shared.audit import AuditLog, AuditVerification

__all__ = ["EVENT_ISSUED", "EVENT_REFUSED", "EVENT_REVOKED", "IssuanceLog", "verify_log"]

EVENT_ISSUED = "certificate.issued"
EVENT_REVOKED = "certificate.revoked"
EVENT_REFUSED = "issuance.refused"


class IssuanceLog:
    """Append-only issuance log of the CA."""

    def __init__(self, path: Path) -> None:
        self._log = AuditLog(path)
        self.path = path

    def issued(self, *, serial: str, subject_id: str, profile: str, loa: str, requester: str,
               transaction_id: str, policy_oid: str, not_before: str, not_after: str) -> None:
        """Record an issued certificate."""
        self._log.append(EVENT_ISSUED, step=7, serial=serial, subject_id=subject_id, profile=profile, loa=loa,
                         requester=requester, transaction_id=transaction_id, policy_oid=policy_oid,
                         not_before=not_before, not_after=not_after)

    def revoked(self, *, serial: str, reason: str, requester: str) -> None:
        """Record a revocation."""
        self._log.append(EVENT_REVOKED, serial=serial, reason=reason, requester=requester)

    def refused(self, *, error: str, reason: str, description: str, requester: str, profile: str | None,
                transaction_id: str | None, subject_id: str | None = None, loa: str | None = None) -> None:
        """Record a refused issuance request (nothing was issued)."""
        self._log.append(EVENT_REFUSED, step=7, error=error, reason=reason, description=description,
                         requester=requester, profile=profile, transaction_id=transaction_id,
                         subject_id=subject_id, loa=loa)

    def entries(self) -> list[dict[str, Any]]:
        """All entries, oldest first, as dictionaries."""
        return [{"seq": e.seq, "time": e.time, "event": e.event, "step": e.step, **e.data}
                for e in self._log.entries()]

    def verify(self) -> AuditVerification:
        """Recompute the chain; the result names the first altered entry."""
        return self._log.verify()


def verify_log(path: Path) -> AuditVerification:
    """Verify the issuance log at ``path`` (for ``signlab audit verify``)."""
    return AuditLog(path).verify()
