"""The two end-entity certificate profiles (docs/design.md §4): QES (QCP-n-qscd) and AdES (NCP), each in
one of two revocation profiles.

Both: subject C, SN, GN, serialNumber (EN 319 412-1 semantics, e.g. ``PNONO-01017012345``), CN;
basicConstraints cA=FALSE (critical); keyUsage nonRepudiation only (critical); AKI/SKI; AIA
caIssuers. QES adds QCStatements QcCompliance, QcSSCD, QcType esign and QcPDS next to
pkixQCSyntax-v2 with the natural-person semantics identifier; AdES carries only the semantics
identifier. Policy OIDs: only the ETSI ones. (A TSP-specific policy OID is usual but SignLab has
no registered arc, and pkilint rejects the unregistered forms — 2.999.x and 2.25.<uuid> — as
undecodable.)

Revocation (:class:`RevocationProfile`, the CA setting ``SIGNLAB_CA_REVOCATION_PROFILE``):

* ``crl-ocsp`` (default) — CRL DP and an AIA OCSP pointer; the CA publishes CRLs and answers
  OCSP for the certificate. No noRevAvail and no valassured mark: a certificate must not say
  "no revocation information" while pointing to it (RFC 9608).
* ``short-term-no-revocation`` — noRevAvail (RFC 9608, 2.5.29.56) and ext-etsi-valassured-ST-certs
  (EN 319 412-1, 0.4.0.194121.2.1), no CRL DP and no OCSP pointer: the CA never revokes the
  certificate (EN 319 411-1 short-term certificates); validators rely on its short validity.
  pkilint 0.13.3 applies EN 319 412-2 GEN-4.3.11-2 / GEN-4.4.1-8 without the val-assured
  exemption of newer readings and reports exactly :data:`SHORT_TERM_LINT_FINDINGS`.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

from asn1crypto import core
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPublicKeyTypes
from cryptography.x509.oid import NameOID, ObjectIdentifier

from shared.lab_pki import KeyPair

__all__ = [
    "NCP",
    "NO_REV_AVAIL",
    "QCP_N_QSCD",
    "SEMANTICS_NATURAL_PERSON",
    "SHORT_TERM_LINT_FINDINGS",
    "VALASSURED_ST_CERTS",
    "CertificateUrls",
    "Profile",
    "RevocationProfile",
    "has_no_rev_avail",
    "SubjectIdentity",
    "build_end_entity",
    "qc_statements_der",
    "PdsLocation",
    "PdsLocations",
    "QC_STATEMENTS",
    "QcStatement",
    "QcStatements",
    "QcTypes",
    "SemanticsInformation",
]

QCP_N_QSCD = "0.4.0.194112.1.2"
"""EN 319 411-2 QCP-n-qscd: qualified certificate for a natural person, key in a QSCD."""
NCP = "0.4.0.2042.1.1"
"""EN 319 411-1 NCP: normalized certificate policy."""
SEMANTICS_NATURAL_PERSON = "0.4.0.194121.1.1"
"""EN 319 412-1 id-etsi-qcs-semanticsId-Natural: serialNumber is ``TTTCC-value``."""
NO_REV_AVAIL = ObjectIdentifier("2.5.29.56")
"""RFC 9608 noRevAvail."""
VALASSURED_ST_CERTS = ObjectIdentifier("0.4.0.194121.2.1")
"""EN 319 412-1 ext-etsi-valassured-ST-certs: validity-assured short-term certificate."""
QC_STATEMENTS = ObjectIdentifier("1.3.6.1.5.5.7.1.3")
_PKIX_QC_SYNTAX_V2 = "1.3.6.1.5.5.7.11.2"
_QC_COMPLIANCE = "0.4.0.1862.1.1"
_QC_SSCD = "0.4.0.1862.1.4"
_QC_PDS = "0.4.0.1862.1.5"
_QC_TYPE = "0.4.0.1862.1.6"
_QCT_ESIGN = "0.4.0.1862.1.6.1"
_ASN1_NULL = b"\x05\x00"


class RevocationProfile(StrEnum):
    """How the revocation status of end-entity certificates is made known (the CA setting
    ``SIGNLAB_CA_REVOCATION_PROFILE`` names the values)."""

    CRL_OCSP = "crl-ocsp"
    """CRL DP + AIA OCSP; the CA publishes CRLs and answers OCSP (default)."""
    SHORT_TERM_NO_REVOCATION = "short-term-no-revocation"
    """noRevAvail + valassured-ST, no CRL DP / OCSP pointer: never revoked, short validity instead."""


SHORT_TERM_LINT_FINDINGS = frozenset({
    "etsi.en_319_412_2.gen-4.3.11-2.crldp_extension_missing",
    "etsi.en_319_412_2.gen-4.4.1-8.ocsp_aia_access_method_absent",
})
"""pkilint 0.13.3 ``lint_etsi_cert`` findings (ERROR) on a ``short-term-no-revocation`` leaf: EN 319
412-2 GEN-4.3.11-2 (a CRL DP is required when there is no OCSP pointer) and GEN-4.4.1-8 (an OCSP
pointer is required when there is no CRL DP) — one rule seen from both sides. Nothing else."""


def has_no_rev_avail(certificate: x509.Certificate) -> bool:
    """Whether ``certificate`` carries noRevAvail (RFC 9608): its CA publishes no revocation status."""
    try:
        certificate.extensions.get_extension_for_oid(NO_REV_AVAIL)
    except x509.ExtensionNotFound:
        return False
    return True


class Profile(StrEnum):
    """A certificate profile a signing service may request."""

    QES = "qes"
    """Qualified certificate for qualified electronic signatures (QCP-n-qscd)."""
    ADES = "ades"
    """Non-qualified certificate for advanced electronic signatures (NCP)."""

    @property
    def policy_oid(self) -> str:
        """The ETSI policy OID of the profile."""
        return QCP_N_QSCD if self is Profile.QES else NCP


# --- ASN.1 of EN 319 412-5 / RFC 3739 (definitions only; asn1crypto does the encoding) -------------

class SemanticsInformation(core.Sequence):
    _fields: ClassVar[list] = [("semantics_identifier", core.ObjectIdentifier, {"optional": True})]


class PdsLocation(core.Sequence):
    _fields: ClassVar[list] = [("url", core.IA5String), ("language", core.PrintableString)]


class PdsLocations(core.SequenceOf):
    _child_spec = PdsLocation


class QcTypes(core.SequenceOf):
    _child_spec = core.ObjectIdentifier


class QcStatement(core.Sequence):
    _fields: ClassVar[list] = [("statement_id", core.ObjectIdentifier),
                               ("statement_info", core.Any, {"optional": True})]


class QcStatements(core.SequenceOf):
    _child_spec = QcStatement


def _statement(oid: str, info: core.Asn1Value | None = None) -> QcStatement:
    value: dict[str, object] = {"statement_id": oid}
    if info is not None:
        value["statement_info"] = core.Any.load(info.dump())
    return QcStatement(value)


def qc_statements_der(profile: Profile, pds_url: str) -> bytes:
    """The DER value of the QCStatements extension of ``profile`` (built afresh; issuance uses
    the per-profile cache :func:`_static_extensions`, a test checks both agree)."""
    statements = [_statement(_PKIX_QC_SYNTAX_V2, SemanticsInformation({"semantics_identifier": SEMANTICS_NATURAL_PERSON}))]
    if profile is Profile.QES:
        statements += [
            _statement(_QC_COMPLIANCE),
            _statement(_QC_SSCD),
            _statement(_QC_TYPE, QcTypes([_QCT_ESIGN])),
            _statement(_QC_PDS, PdsLocations([PdsLocation({"url": pds_url, "language": "en"})])),
        ]
    return bytes(QcStatements(statements).dump())


@dataclass(frozen=True)
class SubjectIdentity:
    """The subject fields taken from the verified identity evidence.

    :ivar country: ISO 3166 alpha-2 country (C).
    :ivar given_name: GN.
    :ivar family_name: SN.
    :ivar serial_number: EN 319 412-1 semantics serial number, e.g. ``PNONO-01017012345``.
    """

    country: str
    given_name: str
    family_name: str
    serial_number: str

    @property
    def common_name(self) -> str:
        """CN: the given name(s) and family name."""
        return f"{self.given_name} {self.family_name}"

    def to_name(self) -> x509.Name:
        """The subject distinguished name."""
        return x509.Name([
            x509.NameAttribute(NameOID.COUNTRY_NAME, self.country),
            x509.NameAttribute(NameOID.SURNAME, self.family_name),
            x509.NameAttribute(NameOID.GIVEN_NAME, self.given_name),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, self.serial_number),
            x509.NameAttribute(NameOID.COMMON_NAME, self.common_name),
        ])


@dataclass(frozen=True)
class CertificateUrls:
    """The public URLs written into an end-entity certificate."""

    ca_issuers: str
    ocsp: str
    crl: str


def build_end_entity(
    *,
    issuer: KeyPair,
    public_key: CertificateIssuerPublicKeyTypes,
    subject: SubjectIdentity,
    profile: Profile,
    serial: int,
    not_before: dt.datetime,
    not_after: dt.datetime,
    urls: CertificateUrls,
    pds_url: str,
    revocation: RevocationProfile = RevocationProfile.CRL_OCSP,
) -> x509.Certificate:
    """Build and sign one short-term natural-person signing certificate with ``profile`` and
    ``revocation``."""
    head, tail = _static_extensions(profile, urls, pds_url, issuer.cert, revocation)
    extensions = [*head, x509.Extension(x509.SubjectKeyIdentifier.oid, False,
                                        x509.SubjectKeyIdentifier.from_public_key(public_key)), *tail]
    # The extensions go in at once, in the profile's order (the fields through the builder's own
    # setters, which check them).
    builder = (
        x509.CertificateBuilder(extensions=extensions)
        .subject_name(subject.to_name())
        .issuer_name(issuer.cert.subject)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    return builder.sign(issuer.key, hashes.SHA384())


@functools.lru_cache(maxsize=16)
def _static_extensions(profile: Profile, urls: CertificateUrls, pds_url: str, issuer: x509.Certificate,
                       revocation: RevocationProfile = RevocationProfile.CRL_OCSP,
                       ) -> tuple[tuple[x509.Extension, ...], tuple[x509.Extension, ...]]:
    """The extensions that are the same in every certificate of ``profile`` and ``revocation``
    from ``issuer``: those before the SubjectKeyIdentifier, and those after it.

    Built once per profile, URLs and issuer instead of per issuance (the QCStatements alone were
    ~12 % of the TSP's issuance CPU). cryptography's extension objects are immutable, so sharing
    them between threads is safe.
    """
    def ext(value: x509.ExtensionType, critical: bool = False) -> x509.Extension:
        return x509.Extension(value.oid, critical, value)

    head = (
        ext(x509.BasicConstraints(ca=False, path_length=None), critical=True),
        ext(x509.KeyUsage(
            digital_signature=False, content_commitment=True, key_encipherment=False, data_encipherment=False,
            key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False,
        ), critical=True),
        ext(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.public_key())),  # type: ignore[arg-type]
    )
    ca_issuers = x509.AccessDescription(x509.oid.AuthorityInformationAccessOID.CA_ISSUERS,
                                        x509.UniformResourceIdentifier(urls.ca_issuers))
    common = (
        ext(x509.CertificatePolicies([x509.PolicyInformation(ObjectIdentifier(profile.policy_oid), None)])),
        ext(x509.UnrecognizedExtension(QC_STATEMENTS, qc_statements_der(profile, pds_url))),
    )
    tail: tuple[x509.Extension, ...]
    if revocation is RevocationProfile.SHORT_TERM_NO_REVOCATION:
        tail = (
            *common,
            ext(x509.AuthorityInformationAccess([ca_issuers])),
            ext(x509.UnrecognizedExtension(NO_REV_AVAIL, _ASN1_NULL)),
            ext(x509.UnrecognizedExtension(VALASSURED_ST_CERTS, _ASN1_NULL)),
        )
    else:
        tail = (
            *common,
            ext(x509.AuthorityInformationAccess([
                ca_issuers,
                x509.AccessDescription(x509.oid.AuthorityInformationAccessOID.OCSP,
                                       x509.UniformResourceIdentifier(urls.ocsp)),
            ])),
            ext(x509.CRLDistributionPoints([x509.DistributionPoint(
                full_name=[x509.UniformResourceIdentifier(urls.crl)], relative_name=None, reasons=None,
                crl_issuer=None,
            )])),
        )
    return head, tail
