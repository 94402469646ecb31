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
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import threading
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPublicKeyTypes

from services.ca.issuance_log import IssuanceLog
from services.ca.pki import Hierarchy, KeyedCert
from services.ca.errors import RevocationNotAvailable
from services.ca.faults import SHORT_TERM_NO_REVOCATION
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
from shared.faults import FaultBoard

__all__ = ["CRL_NAMES", "REVOCATION_REASONS", "CertificateAuthority", "IssuedCertificate", "PublishedCrl"]

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
    """How many revoked certificates it lists (the cache's change check)."""

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
    """Lab switches (``short-term-no-revocation``); None unless ``SIGNLAB_CA_FAULTS_ENABLED``."""
    _crl_cache: dict[str, PublishedCrl] = field(default_factory=dict)
    _crl_lock: threading.Lock = field(default_factory=threading.Lock)

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
              subject_id: str, loa: str, requester: str, transaction_id: str,
              now: dt.datetime | None = None) -> IssuedCertificate:
        """Issue a short-term certificate for an already-checked request, store and log it."""
        now = now or dt.datetime.now(dt.UTC)
        now = now.replace(microsecond=0)
        not_before = now - dt.timedelta(seconds=self.settings.backdate_seconds)
        not_after = now + dt.timedelta(minutes=self.settings.cert_validity_minutes)
        serial = x509.random_serial_number()
        revocation = self.revocation_profile(transaction_id)
        cert = build_end_entity(issuer=self.hierarchy.issuing, public_key=public_key, subject=subject,
                                profile=profile, serial=serial, not_before=not_before, not_after=not_after,
                                urls=self.urls, pds_url=self.settings.pds_url, revocation=revocation)
        serial_hex = format(serial, "x")
        der = cert.public_bytes(serialization.Encoding.DER)
        self.store.add(serial=serial, issuer="issuing", profile=str(profile), subject=cert.subject.rfc4514_string(),
                       subject_id_hash=subject_id, loa=loa, requester=requester, transaction_id=transaction_id,
                       not_before=not_before, not_after=not_after, issued_at=now, der=der)
        self.log.issued(serial=serial_hex, subject_id=subject_id, profile=str(profile), loa=loa, requester=requester,
                        transaction_id=transaction_id, policy_oid=profile.policy_oid, not_before=_iso(not_before),
                        not_after=_iso(not_after))
        published = revocation is RevocationProfile.CRL_OCSP
        return IssuedCertificate(serial=serial_hex, certificate=cert,
                                 chain=(self.hierarchy.issuing.cert, self.hierarchy.root.cert), profile=profile,
                                 policy_oid=profile.policy_oid, ocsp_url=self.urls.ocsp if published else None,
                                 crl_urls=(self.urls.crl,) if published else (), der=der)

    def lookup(self, serial: int) -> CertificateRecord | None:
        """The stored end-entity certificate with ``serial``, if this CA issued it."""
        return self.store.get(serial)

    def revoke(self, serial: int, reason: str, requester: str, now: dt.datetime | None = None) -> CertificateRecord:
        """Revoke ``serial``; idempotent (a second revocation keeps the first time and reason).

        :raises KeyError: no such certificate.
        :raises ValueError: unknown reason.
        :raises RevocationNotAvailable: the certificate carries noRevAvail (never revoked).
        """
        if reason not in REVOCATION_REASONS:
            raise ValueError(f"unknown revocation reason {reason!r}; use one of {', '.join(REVOCATION_REASONS)}")
        record = self.store.get(serial)
        if record is None:
            raise KeyError(format(serial, "x"))
        if has_no_rev_avail(x509.load_der_x509_certificate(record.der)):
            raise RevocationNotAvailable(
                "revocation_not_available", f"certificate {record.serial} was issued in the revocation profile "
                "short-term-no-revocation (noRevAvail, RFC 9608): its CA publishes no revocation status for it, so "
                f"it cannot be revoked; it stops being valid at {_iso(record.not_after)}", step=None)
        moment = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0)
        if self.store.revoke(serial, reason, moment):
            self.log.revoked(serial=record.serial, reason=reason, requester=requester)
            with self._crl_lock:
                self._crl_cache.pop(record.issuer, None)
        updated = self.store.get(serial)
        assert updated is not None
        return updated

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
        now = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0)
        validity = dt.timedelta(minutes=self.settings.crl_validity_minutes)
        with self._crl_lock:
            cached = self._crl_cache.get(name)
            if (cached and now - cached.this_update < validity / 2
                    and cached.revoked_count == self.store.revoked_count(name)):
                return cached
            revoked = self.store.revoked(name)
            number = self.store.next_crl_number(name)
            issuer: KeyedCert = self.hierarchy.root if name == "root" else self.hierarchy.issuing
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
                assert record.revoked_at is not None
                entry = (x509.RevokedCertificateBuilder().serial_number(record.serial_int)
                         .revocation_date(record.revoked_at))
                if record.revocation_reason and record.revocation_reason != "unspecified":
                    entry = entry.add_extension(x509.CRLReason(REVOCATION_REASONS[record.revocation_reason]),
                                                critical=False)
                builder = builder.add_revoked_certificate(entry.build())
            der = builder.sign(issuer.key, hashes.SHA384()).public_bytes(serialization.Encoding.DER)
            published = PublishedCrl(der, number, now, len(revoked))
            self._crl_cache[name] = published
            return published
