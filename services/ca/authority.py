"""The certification authority core: issue, look up, revoke, and publish CRLs. No Flask.

:class:`CertificateAuthority` works on already-validated input (a CSR whose proof of possession
was checked, a verified identity, an allowed profile); the checks and refusals live in
:mod:`services.ca.issuance`. CRLs are rebuilt when a revocation happened or when half their
validity has passed, each with a new CRL number, so a fetched CRL is always fresh.

The revocation profile of a certificate (``SIGNLAB_CA_REVOCATION_PROFILE``, or the lab switch
``short-term-no-revocation`` for one issuance) decides whether it points to the CRL and OCSP or
carries noRevAvail. A ``short-term-no-revocation`` certificate is never revoked (the revoke API
refuses it, the OCSP responder does not vouch for it), and the issuing CA's CRL names its scope
(IssuingDistributionPoint = the CRL's URL, RFC 5280 §5.2.5): it covers the certificates that
point to it, so a validator never mistakes it for a statement about a certificate that said
"no revocation information".

Crash consistency: an issuance or revocation is written to the issuance log before the database
(see :mod:`services.ca.issuance_log`), and :meth:`CertificateAuthority.reconcile` closes any gap a
crash left between the two when the CA starts. A request id makes issuance idempotent: a retried
request gets the certificate already issued for it.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import logging
import sqlite3
import threading
import time
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPublicKeyTypes

from services.ca.errors import RevocationNotAvailable
from services.ca.faults import (
    EXPIRED_CERTIFICATE,
    HOLD_AFTER_LOG,
    HOLD_SECONDS,
    REVOKED_AT_ISSUANCE,
    SHORT_TERM_NO_REVOCATION,
    UNLISTED_CA,
)
from services.ca.issuance_log import IssuanceGate, IssuanceLog, cross_check
from services.ca.pki import Hierarchy, unlisted_ca
from services.ca.profiles import (
    CertificateUrls,
    Profile,
    RevocationProfile,
    SubjectIdentity,
    build_end_entity,
    has_no_rev_avail,
)
from services.ca.settings import CaSettings
from services.ca.store import CertificateRecord, CertificateStore
from shared.clock import LabClock, lab_clock
from shared.faults import FaultBoard
from shared.lab_pki import KeyPair

__all__ = ["CRL_NAMES", "RECONCILER", "REVOCATION_REASONS", "CertificateAuthority", "IssuedCertificate",
           "PublishedCrl"]

log = logging.getLogger(__name__)

RECONCILER = "ca-reconciliation"
"""The requester named in the entries the start-up reconciliation writes."""

CRL_NAMES = ("root", "issuing")
"""The CRLs the TSP publishes: ``/crl/root.crl`` (root CA) and ``/crl/issuing.crl`` (issuing CA)."""

REVOCATION_REASONS: dict[str, x509.ReasonFlags] = {
    "unspecified": x509.ReasonFlags.unspecified,
    "keyCompromise": x509.ReasonFlags.key_compromise,
    "affiliationChanged": x509.ReasonFlags.affiliation_changed,
    "superseded": x509.ReasonFlags.superseded,
    "cessationOfOperation": x509.ReasonFlags.cessation_of_operation,
    "privilegeWithdrawn": x509.ReasonFlags.privilege_withdrawn,
}
"""Revocation reasons the revoke API accepts (RFC 5280 names)."""


@dataclass(frozen=True)
class IssuedCertificate:
    """A certificate the CA issued (step 7), with what the signing service needs."""

    serial: str
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    profile: Profile
    policy_oid: str
    ocsp_url: str | None
    """The OCSP pointer in the certificate (None in the short-term-no-revocation profile)."""
    crl_urls: tuple[str, ...]
    der: bytes = b""
    """The certificate's DER, when the issuer already has it (saves encoding it again)."""

    def to_json(self) -> dict[str, object]:
        """The issuance API's JSON answer (base64 DER, ISO 8601 Z times)."""
        der = self.der or self.certificate.public_bytes(serialization.Encoding.DER)
        return {
            "serial": self.serial,
            "certificate": base64.b64encode(der).decode("ascii"),
            "chain": [_b64_certificate(c) for c in self.chain],
            "profile": str(self.profile),
            "policy_oid": self.policy_oid,
            "not_before": _iso(self.certificate.not_valid_before_utc),
            "not_after": _iso(self.certificate.not_valid_after_utc),
            "ocsp_url": self.ocsp_url,
            "crl_urls": list(self.crl_urls),
        }


@functools.lru_cache(maxsize=8)
def _b64_certificate(cert: x509.Certificate) -> str:
    """Standard base64 of a CA certificate's DER (the chain is the same in every answer)."""
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode("ascii")


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class PublishedCrl:
    """A signed CRL as the CA serves it."""

    der: bytes
    number: int
    """Its CRLNumber (the HTTP ``ETag`` is this number, quoted)."""
    this_update: dt.datetime
    """When it was built (its thisUpdate is backdated from this)."""
    revoked_count: int
    """How many revocations the CA knew when it was built (the cache's change check)."""
    next_revocation: dt.datetime | None = None
    """The earliest known revocation after :attr:`this_update` (made while the lab clock stood
    later, then moved back): not listed yet, and the CRL is rebuilt once the clock reaches it."""

    @property
    def etag(self) -> str:
        """The strong entity tag of this CRL: its number, quoted (``"17"``)."""
        return f'"{self.number}"'


@dataclass
class CertificateAuthority:
    """The CA of the TSP: hierarchy, store, log and settings together."""

    settings: CaSettings
    hierarchy: Hierarchy
    store: CertificateStore
    log: IssuanceLog
    faults: FaultBoard | None = None
    """Lab switches and faults (``short-term-no-revocation``, ``hold-after-log``); None unless
    ``SIGNLAB_CA_FAULTS_ENABLED``."""
    clock: LabClock = field(default_factory=lab_clock)
    """The lab clock: issuance, revocation and CRL times."""
    _crl_cache: dict[str, PublishedCrl] = field(default_factory=dict)
    _crl_lock: threading.Lock = field(default_factory=threading.Lock)
    _revoke_lock: threading.Lock = field(default_factory=threading.Lock)

    @functools.cached_property
    def gate(self) -> IssuanceGate:
        """Brackets each issuance between its log entry and its database commit."""
        return IssuanceGate(self.log.path)

    # --- issuance -----------------------------------------------------------------------------

    @functools.cached_property
    def urls(self) -> CertificateUrls:
        """The public URLs written into end-entity certificates."""
        s = self.settings
        return CertificateUrls(ca_issuers=s.public_url_for("/certs/issuing.crt"), ocsp=s.public_url_for("/ocsp"),
                               crl=s.public_url_for("/crl/issuing.crl"))

    def revocation_profile(self, transaction_id: str) -> RevocationProfile:
        """The revocation profile of the next certificate: the setting, unless the lab switch
        ``short-term-no-revocation`` is armed (it is consumed then)."""
        if self.faults is not None and self.faults.fire(SHORT_TERM_NO_REVOCATION, transaction_id=transaction_id):
            return RevocationProfile.SHORT_TERM_NO_REVOCATION
        return RevocationProfile(self.settings.revocation_profile)

    def issue(self, *, public_key: CertificateIssuerPublicKeyTypes, subject: SubjectIdentity, profile: Profile,
              subject_id: str, loa: str, requester: str, transaction_id: str, request_id: str | None = None,
              now: dt.datetime | None = None) -> IssuedCertificate:
        """Issue a short-term certificate for an already-checked request: log it, then store it.

        The issuance log entry is written (fsynced) first, so the certificate is logged before it
        is effective; a crash before the database commit leaves a logged certificate that never
        left the CA (withdrawn by :meth:`reconcile`).

        :param request_id: the requester's id of this request: a second request with the same id
            (a retry) gets the first certificate; the second one is withdrawn in the log.
        """
        now = (now or self.clock.now()).replace(microsecond=0)
        not_before = now - dt.timedelta(seconds=self.settings.backdate_seconds)
        not_after = now + dt.timedelta(minutes=self.settings.cert_validity_minutes)
        serial = x509.random_serial_number()
        serial_hex = format(serial, "x")
        revocation = self.revocation_profile(transaction_id)
        issuer, issuer_name = self.hierarchy.issuing, "issuing"
        chain: tuple[x509.Certificate, ...] = (self.hierarchy.issuing.cert, self.hierarchy.root.cert)
        if self._lab_fault(EXPIRED_CERTIFICATE, serial_hex, transaction_id):
            not_after = now - dt.timedelta(minutes=1)  # lab fault: its validity ended before it was issued
            not_before = not_after - dt.timedelta(minutes=self.settings.cert_validity_minutes)
        if self._lab_fault(UNLISTED_CA, serial_hex, transaction_id):
            # lab fault: a CA on no trusted list, whose certificates point to no revocation service
            issuer, issuer_name, revocation = unlisted_ca(), "unlisted", RevocationProfile.SHORT_TERM_NO_REVOCATION
            chain = (issuer.cert,)
        cert = build_end_entity(issuer=issuer, public_key=public_key, subject=subject,
                                profile=profile, serial=serial, not_before=not_before, not_after=not_after,
                                urls=self.urls, pds_url=self.settings.pds_url, revocation=revocation)
        der = cert.public_bytes(serialization.Encoding.DER)
        with self.gate.issuing():
            self.log.issued(serial=serial_hex, subject_id=subject_id, profile=str(profile), loa=loa,
                            requester=requester, transaction_id=transaction_id, policy_oid=profile.policy_oid,
                            not_before=_iso(not_before), not_after=_iso(not_after))
            if self.faults is not None and self.faults.fire(HOLD_AFTER_LOG, serial=serial_hex,
                                                            transaction_id=transaction_id):
                time.sleep(HOLD_SECONDS)  # lab fault: the window between log and database, held open
            try:
                self.store.add(serial=serial, issuer=issuer_name, profile=str(profile),
                               subject=cert.subject.rfc4514_string(), subject_id_hash=subject_id, loa=loa,
                               requester=requester, transaction_id=transaction_id, not_before=not_before,
                               not_after=not_after, issued_at=now, der=der, request_id=request_id)
            except sqlite3.IntegrityError:
                first = self.store.by_request(requester, request_id) if request_id else None
                if first is None:
                    self._withdraw_unstored(serial_hex, "the database refused it")
                    raise
                self.log.withdrawn(serial=serial_hex, cause="a retry of a request already issued (same request "
                                   f"id); its first certificate, serial {first.serial}, was answered instead")
                return self.issued_from(first)
            except BaseException as exc:
                self._withdraw_unstored(serial_hex, f"storing it failed ({exc.__class__.__name__})")
                raise
        if self._lab_fault(REVOKED_AT_ISSUANCE, serial_hex, transaction_id):
            self.revoke(serial, "keyCompromise", requester="lab fault revoked-at-issuance", now=now,
                        transaction_id=transaction_id or None, note="revoked the moment it was issued (lab fault)")
        published = revocation is RevocationProfile.CRL_OCSP
        return IssuedCertificate(serial=serial_hex, certificate=cert, chain=chain, profile=profile,
                                 policy_oid=profile.policy_oid, ocsp_url=self.urls.ocsp if published else None,
                                 crl_urls=(self.urls.crl,) if published else (), der=der)

    def _lab_fault(self, name: str, serial: str, transaction_id: str) -> bool:
        """Whether the lab fault ``name`` is armed for this issuance (it is consumed then)."""
        return self.faults is not None and self.faults.fire(name, serial=serial, transaction_id=transaction_id) is not None

    def _withdraw_unstored(self, serial: str, why: str) -> None:
        """Log that a logged certificate was not stored (so it is not answered); when even that
        fails, :meth:`reconcile` writes it at the next start."""
        try:
            self.log.withdrawn(serial=serial, cause=f"{why}; it was not answered and never left the CA")
        except Exception:  # the original failure is what the caller must see
            log.exception("step 7: could not log the withdrawal of serial %s; the next start reconciles it", serial)

    def issued_from(self, record: CertificateRecord) -> IssuedCertificate:
        """The issuance answer for a stored certificate (a retried request gets its first one)."""
        profile = Profile(record.profile)
        certificate = x509.load_der_x509_certificate(record.der)
        published = not has_no_rev_avail(certificate)
        return IssuedCertificate(serial=record.serial, certificate=certificate,
                                 chain=(self.hierarchy.issuing.cert, self.hierarchy.root.cert), profile=profile,
                                 policy_oid=profile.policy_oid, ocsp_url=self.urls.ocsp if published else None,
                                 crl_urls=(self.urls.crl,) if published else (), der=record.der)

    def lookup(self, serial: int) -> CertificateRecord | None:
        """The stored end-entity certificate with ``serial``, if this CA issued it."""
        return self.store.get(serial)

    def revoke(self, serial: int, reason: str, requester: str, now: dt.datetime | None = None, *,
               transaction_id: str | None = None, note: str | None = None) -> CertificateRecord:
        """Revoke ``serial``; idempotent (a second revocation keeps the first time and reason).
        Logged before the database marks it.

        :raises KeyError: no such certificate.
        :raises ValueError: unknown reason.
        :raises RevocationNotAvailable: the certificate carries noRevAvail (never revoked).
        """
        if reason not in REVOCATION_REASONS:
            raise ValueError(f"unknown revocation reason {reason!r}; use one of {', '.join(REVOCATION_REASONS)}")
        with self._revoke_lock:
            record = self.store.get(serial)
            if record is None:
                raise KeyError(format(serial, "x"))
            if has_no_rev_avail(x509.load_der_x509_certificate(record.der)):
                raise RevocationNotAvailable(
                    "revocation_not_available", f"certificate {record.serial} was issued in the revocation profile "
                    "short-term-no-revocation (noRevAvail, RFC 9608): its CA publishes no revocation status for it, "
                    f"so it cannot be revoked; it stops being valid at {_iso(record.not_after)}", step=None)
            if record.revoked_at is None:
                moment = (now or self.clock.now()).replace(microsecond=0)
                self.log.revoked(serial=record.serial, reason=reason, requester=requester,
                                 transaction_id=transaction_id, note=note)
                self.store.revoke(serial, reason, moment)
                self._drop_crl(record.issuer)
        updated = self.store.get(serial)
        if updated is None:  # the store never deletes: only a database replaced meanwhile gets here
            raise KeyError(format(serial, "x"))
        return updated

    def revoke_issued_to(self, requester: str, *, serial: int | None, transaction_id: str | None, reason: str,
                         note: str | None) -> list[CertificateRecord]:
        """Revoke the certificates issued to ``requester`` with ``serial`` and/or for its
        ``transaction_id`` (a flow of the requester that failed after step 7); a certificate of
        another requester is never touched. Empty when there is none."""
        found: dict[str, CertificateRecord] = {}
        if serial is not None:
            record = self.store.get(serial)
            if record is not None and record.requester == requester:
                found[record.serial] = record
        if transaction_id:
            found.update((r.serial, r) for r in self.store.of_transaction(requester, transaction_id))
        return [self.revoke(r.serial_int, reason, requester, transaction_id=r.transaction_id or None, note=note)
                for r in found.values()]

    def _drop_crl(self, issuer: str) -> None:
        with self._crl_lock:
            self._crl_cache.pop(issuer, None)

    # --- start-up reconciliation --------------------------------------------------------------

    def reconcile(self, *, timeout: float = 30.0) -> list[str]:
        """Close the gaps a crash left between the issuance log and the database; return what was done.

        Run when the CA starts, while no issuance is halfway (:class:`IssuanceGate`):

        * an interrupted write at the end of the log is cut and recorded;
        * a certificate logged but not stored never left the CA: ``certificate.withdrawn``;
        * a certificate stored but not logged (its issuance never completed): logged as issued
          (``recovered``) and revoked, reason ``cessationOfOperation``;
        * a revocation on one side only is completed on the other.
        """
        done = []
        if self.log.recover() is not None:
            done.append("cut an interrupted write at the end of the issuance log (recorded as audit.recovered)")
        with self.gate.quiet(timeout) as quiet:
            if not quiet:
                log.warning("issuance log reconciliation skipped: an issuance kept the gate for %s s", timeout)
                return [*done, f"reconciliation skipped: an issuance stayed halfway for {timeout:g} s"]
            for mismatch in cross_check(self.store.states(), self.log.raw_entries()).mismatches:
                done.append(self._mend(mismatch.kind, mismatch.serial, mismatch.reason))
        for line in done:
            log.warning("issuance log reconciliation: %s", line)
        return done

    def _mend(self, kind: str, serial: str, reason: str | None) -> str:
        """Repair one mismatch found by :meth:`reconcile`; the line says what was done."""
        number = int(serial, 16)
        now = self.clock.now().replace(microsecond=0)
        if kind == "not_in_database":
            self.log.withdrawn(serial=serial, cause="the CA stopped after logging it and before storing it; it was "
                               "never answered and never left the CA (start-up reconciliation)")
            return f"serial {serial}: logged but never stored, recorded as withdrawn"
        record = self.store.get(number)
        if record is None:  # gone since the cross-check (the store never deletes: a replaced database)
            return f"serial {serial}: no longer in the database, nothing to mend"
        if kind == "not_in_log":
            self.log.issued(serial=serial, subject_id=record.subject_id_hash, profile=record.profile, loa=record.loa,
                            requester=record.requester, transaction_id=record.transaction_id,
                            policy_oid=Profile(record.profile).policy_oid, not_before=_iso(record.not_before),
                            not_after=_iso(record.not_after), recovered="found in the CA database only, at start-up")
            if record.revoked_at is not None:
                self.log.revoked(serial=serial, reason=record.revocation_reason or "unspecified",
                                 requester=RECONCILER, recovered="revoked in the CA database only, at start-up")
                return f"serial {serial}: stored but not logged, now logged (already revoked)"
            self.revoke(number, "cessationOfOperation", RECONCILER, now, transaction_id=record.transaction_id or None,
                        note="its issuance never completed (stored but not logged)")
            return f"serial {serial}: stored but not logged, now logged and revoked (cessationOfOperation)"
        if kind == "revocation_not_in_database":
            self.store.revoke(number, reason or "unspecified", now)
            self._drop_crl(record.issuer)
            return f"serial {serial}: revocation logged but not stored, now stored"
        self.log.revoked(serial=serial, reason=reason or "unspecified", requester=RECONCILER,
                         recovered="revoked in the CA database only, at start-up")
        return f"serial {serial}: revocation stored but not logged, now logged"

    # --- CRLs ---------------------------------------------------------------------------------

    def crl(self, name: str, now: dt.datetime | None = None) -> bytes:
        """The current DER CRL of ``name`` (``root`` or ``issuing``), rebuilt when stale or outdated."""
        return self.published_crl(name, now).der

    def published_crl(self, name: str, now: dt.datetime | None = None) -> PublishedCrl:
        """The current CRL of ``name`` with its number.

        The signed CRL is kept and served again until the revocation set changes (a revocation
        through :meth:`revoke` drops it at once; one made by another process changes the revoked
        count, which is checked on every call through the partial index) or half its validity
        has passed; each rebuild gets a new CRL number. So the very next fetch after a revocation
        lists it, and an unchanged CRL keeps its number (and ``ETag``).
        """
        if name not in CRL_NAMES:
            raise KeyError(name)
        now = (now or self.clock.now()).replace(microsecond=0)
        validity = dt.timedelta(minutes=self.settings.crl_validity_minutes)
        with self._crl_lock:
            cached = self._crl_cache.get(name)
            if (cached and dt.timedelta(0) <= now - cached.this_update < validity / 2
                    and (cached.next_revocation is None or now < cached.next_revocation)
                    and cached.revoked_count == self.store.revoked_count(name)):
                return cached
            known = self.store.revoked(name)
            # The CA's view as of the lab clock: a revocation recorded at a later lab time (the
            # clock was moved back since) has not happened yet.
            revoked = [r for r in known if r.revoked_at is not None and r.revoked_at <= now]
            upcoming = min((r.revoked_at for r in known if r.revoked_at is not None and r.revoked_at > now), default=None)
            number = self.store.next_crl_number(name)
            issuer: KeyPair = self.hierarchy.root if name == "root" else self.hierarchy.issuing
            builder = (
                x509.CertificateRevocationListBuilder()
                .issuer_name(issuer.cert.subject)
                .last_update(now - dt.timedelta(seconds=self.settings.backdate_seconds))
                .next_update(now + validity)
                .add_extension(x509.CRLNumber(number), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
                               critical=False)
            )
            if name == "issuing":
                # Its scope: the certificates whose CRL DP names this CRL (RFC 5280 §5.2.5, critical).
                builder = builder.add_extension(x509.IssuingDistributionPoint(
                    full_name=[x509.UniformResourceIdentifier(self.urls.crl)], relative_name=None,
                    only_contains_user_certs=True, only_contains_ca_certs=False, only_some_reasons=None,
                    indirect_crl=False, only_contains_attribute_certs=False), critical=True)
            for record in revoked:
                if record.revoked_at is None:  # filtered out above; the check narrows the type
                    continue
                entry = (x509.RevokedCertificateBuilder().serial_number(record.serial_int)
                         .revocation_date(record.revoked_at))
                if record.revocation_reason and record.revocation_reason != "unspecified":
                    entry = entry.add_extension(x509.CRLReason(REVOCATION_REASONS[record.revocation_reason]),
                                                critical=False)
                builder = builder.add_revoked_certificate(entry.build())
            der = builder.sign(issuer.key, hashes.SHA384()).public_bytes(serialization.Encoding.DER)
            published = PublishedCrl(der, number, now, len(known), upcoming)
            self._crl_cache[name] = published
            return published
