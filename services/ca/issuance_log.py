"""The TSP's issuance log: every issuance, revocation and refusal, hash-chained (step 7).

A thin, CA-specific layer over :class:`shared.audit.AuditLog` (``<data_dir>/issuance-log.jsonl``):
it fixes the event names and their fields (serial, pseudonymised subject id, profile, LoA,
requester, transaction id, refusal reason). No personal data in clear: the subject is
``subject_id`` = :func:`shared.audit.pseudonymise` of the certificate serialNumber (``PNONO-…``)
under the CA's pseudonymisation key.

Issuance is logged before it is effective: ``certificate.issued`` is written (and fsynced) before
the certificate is stored in the CA database and answered, and a revocation is logged before the
database marks it. So the database never holds a certificate the log lacks; a crash between the
two leaves a logged certificate that the database lacks, which never left the CA. The start-up
reconciliation (:meth:`services.ca.authority.CertificateAuthority.reconcile`) closes such gaps with
explicit entries, and :func:`cross_check` — also run by ``signlab audit verify`` — compares the
two sides:

========================= ===============================================================================
event                     meaning
========================= ===============================================================================
``certificate.issued``    the certificate is issued (``recovered`` set: found in the database only, at start-up)
``certificate.withdrawn`` a logged certificate never reached the database, so it never left the CA
``certificate.revoked``   revoked (by the admin API, by its requester for a failed flow, or at start-up)
``issuance.refused``      a refused issuance request (nothing issued)
``revocation.refused``    a refused revocation request of a requester (nothing revoked)
========================= ===============================================================================
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.audit import AuditEntry, AuditLog, AuditVerification

__all__ = ["EVENT_ISSUED", "EVENT_REFUSED", "EVENT_REVOCATION_REFUSED", "EVENT_REVOKED", "EVENT_WITHDRAWN", "CrossCheck", "IssuanceGate",
           "IssuanceLog", "Mismatch", "cross_check", "verify_log"]

EVENT_ISSUED = "certificate.issued"
EVENT_REVOKED = "certificate.revoked"
EVENT_WITHDRAWN = "certificate.withdrawn"
EVENT_REFUSED = "issuance.refused"
EVENT_REVOCATION_REFUSED = "revocation.refused"


class IssuanceLog:
    """Append-only issuance log of the CA."""

    def __init__(self, path: Path) -> None:
        self._log = AuditLog(path)
        self.path = path

    def issued(self, *, serial: str, subject_id: str, profile: str, loa: str, requester: str,
               transaction_id: str, policy_oid: str, not_before: str, not_after: str,
               recovered: str | None = None) -> None:
        """Record an issued certificate (before it is stored and answered).

        :param recovered: why it is logged only now (start-up reconciliation), else ``None``.
        """
        extra: dict[str, Any] = {"recovered": recovered} if recovered else {}
        self._log.append(EVENT_ISSUED, step=7, serial=serial, subject_id=subject_id, profile=profile, loa=loa,
                         requester=requester, transaction_id=transaction_id, policy_oid=policy_oid,
                         not_before=not_before, not_after=not_after, **extra)

    def withdrawn(self, *, serial: str, cause: str) -> None:
        """Record that a logged certificate never reached the database (it never left the CA)."""
        self._log.append(EVENT_WITHDRAWN, step=7, serial=serial, cause=cause)

    def revoked(self, *, serial: str, reason: str, requester: str, transaction_id: str | None = None,
                note: str | None = None, recovered: str | None = None) -> None:
        """Record a revocation (before the database marks it).

        :param note: why the requester revoked it (e.g. the failed step of its flow).
        :param recovered: why it is logged only now (start-up reconciliation), else ``None``.
        """
        extra: dict[str, Any] = {key: value for key, value in (("transaction_id", transaction_id), ("note", note),
                                               ("recovered", recovered)) if value}
        self._log.append(EVENT_REVOKED, serial=serial, reason=reason, requester=requester, **extra)

    def refused(self, *, error: str, reason: str, description: str, requester: str, profile: str | None,
                transaction_id: str | None, subject_id: str | None = None, loa: str | None = None) -> None:
        """Record a refused issuance request (nothing was issued)."""
        self._log.append(EVENT_REFUSED, step=7, error=error, reason=reason, description=description,
                         requester=requester, profile=profile, transaction_id=transaction_id,
                         subject_id=subject_id, loa=loa)

    def revocation_refused(self, *, error: str, reason: str, description: str, requester: str) -> None:
        """Record a refused revocation request of a requester (nothing was revoked)."""
        self._log.append(EVENT_REVOCATION_REFUSED, error=error, reason=reason, description=description,
                         requester=requester)

    def recover(self) -> AuditEntry | None:
        """Cut and record an interrupted write at the end (start-up); see :meth:`AuditLog.recover`."""
        return self._log.recover()

    def raw_entries(self) -> list[AuditEntry]:
        """All entries, oldest first."""
        return list(self._log.entries())

    def entries(self) -> list[dict[str, Any]]:
        """All entries, oldest first, as dictionaries."""
        return [{"seq": e.seq, "time": e.time, "event": e.event, "step": e.step, **e.data}
                for e in self._log.entries()]

    def verify(self) -> AuditVerification:
        """Recompute the chain; the result names the first altered entry."""
        return self._log.verify()


class IssuanceGate:
    """Keeps the log/database comparison away from issuances halfway between the two.

    Each issuance holds a shared ``flock`` on a lock file beside the issuance log from before its
    log entry until its database commit; :meth:`quiet` takes it exclusively, so the start-up
    reconciliation and ``signlab audit verify`` see no issuance in the middle (in any process).

    :param log_path: the issuance log; the lock file is the same name with ``.lock``.
    """

    def __init__(self, log_path: Path) -> None:
        self.path = log_path.with_suffix(".lock")

    @contextmanager
    def issuing(self) -> Iterator[None]:
        """Hold the gate shared for one issuance."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)

    @contextmanager
    def quiet(self, timeout: float) -> Iterator[bool]:
        """Hold the gate exclusively: no issuance is halfway. Yields False when issuances kept it
        for ``timeout`` seconds (a CA paused in the middle of one); True when none ever ran here."""
        if not self.path.exists():
            yield True
            return
        fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        yield False
                        return
                    time.sleep(0.01)
            yield True
        finally:
            os.close(fd)


def verify_log(path: Path) -> AuditVerification:
    """Verify the issuance log at ``path`` (for ``signlab audit verify``)."""
    return AuditLog(path).verify()


@dataclass(frozen=True)
class Mismatch:
    """One difference between the CA database and the issuance log."""

    kind: str
    """``not_in_database``, ``not_in_log``, ``revocation_not_in_database`` or ``revocation_not_in_log``."""
    serial: str
    detail: str
    reason: str | None = None
    """The revocation reason of the side that has the revocation (revocation mismatches)."""


@dataclass(frozen=True)
class CrossCheck:
    """The result of :func:`cross_check`."""

    certificates: int
    """End-entity certificates in the database."""
    logged: int
    """Certificates the log records as issued (withdrawn ones not counted)."""
    mismatches: tuple[Mismatch, ...]

    @property
    def ok(self) -> bool:
        """True when every certificate and revocation is on both sides."""
        return not self.mismatches

    def summary(self) -> str:
        """One line for people."""
        if self.ok:
            return f"{self.certificates} certificates, database and issuance log agree"
        shown = "; ".join(m.detail for m in self.mismatches[:5])
        more = f" (and {len(self.mismatches) - 5} more)" if len(self.mismatches) > 5 else ""
        return f"MISMATCH: {shown}{more}"


def cross_check(database: Mapping[str, str | None], log: Iterable[AuditEntry]) -> CrossCheck:
    """Compare the database (serial → revocation reason or ``None``, see
    :meth:`~services.ca.store.CertificateStore.states`) with the issuance log's entries.

    A certificate must be logged as issued (and not withdrawn) exactly when the database holds
    it; a revocation must be on both sides.
    """
    issued: set[str] = set()
    revoked: dict[str, str] = {}
    for entry in log:
        serial = entry.data.get("serial")
        if not isinstance(serial, str):
            continue
        if entry.event == EVENT_ISSUED:
            issued.add(serial)
        elif entry.event == EVENT_WITHDRAWN:
            issued.discard(serial)
        elif entry.event == EVENT_REVOKED:
            revoked.setdefault(serial, str(entry.data.get("reason") or "unspecified"))
    mismatches = []
    for serial in sorted(issued - database.keys()):
        mismatches.append(Mismatch("not_in_database", serial, f"serial {serial} is in the issuance log but not in "
                                   "the CA database"))
    for serial in sorted(database.keys() - issued):
        mismatches.append(Mismatch("not_in_log", serial, f"serial {serial} is in the CA database but not in the "
                                   "issuance log"))
    for serial in sorted(serial for serial in revoked.keys() & database.keys() if database[serial] is None):
        mismatches.append(Mismatch("revocation_not_in_database", serial, f"serial {serial} is revoked in the issuance "
                                   "log but not in the CA database", revoked[serial]))
    for serial, reason in sorted(database.items()):
        if reason is not None and serial not in revoked:
            mismatches.append(Mismatch("revocation_not_in_log", serial, f"serial {serial} is revoked in the CA "
                                       "database but the issuance log does not say so", reason))
    return CrossCheck(len(database), len(issued), tuple(mismatches))
