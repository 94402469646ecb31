"""Human-readable views of certificates for the trainer pages and the JSON lookup. No Flask."""

from __future__ import annotations

import datetime as dt
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from services.ca.profiles import (
    NCP,
    NO_REV_AVAIL,
    QC_STATEMENTS,
    QCP_N_QSCD,
    VALASSURED_ST_CERTS,
    PdsLocations,
    QcStatements,
    QcTypes,
    SemanticsInformation,
)
from services.ca.store import CertificateRecord
from shared.clock import lab_clock

__all__ = ["OID_NAMES", "describe_certificate", "status_of"]

OID_NAMES = {
    QCP_N_QSCD: "QCP-n-qscd (EN 319 411-2): qualified, natural person, key in a QSCD",
    NCP: "NCP (EN 319 411-1): normalized certificate policy",
    "2.5.29.32.0": "anyPolicy",
    "0.4.0.1862.1.1": "QcCompliance: EU qualified certificate",
    "0.4.0.1862.1.4": "QcSSCD: private key in a (remote) QSCD",
    "0.4.0.1862.1.5": "QcPDS: PKI disclosure statement",
    "0.4.0.1862.1.6": "QcType",
    "0.4.0.1862.1.6.1": "esign",
    "1.3.6.1.5.5.7.11.2": "pkixQCSyntax-v2 (semantics identifier)",
    "1.3.6.1.5.5.7.1.3": "qcStatements",
    "0.4.0.194121.1.1": "natural person (PNO/IDC/PAS/TIN)",
    NO_REV_AVAIL.dotted_string: "noRevAvail (RFC 9608)",
    VALASSURED_ST_CERTS.dotted_string: "ext-etsi-valassured-ST-certs (EN 319 412-1)",
}


def _name(oid: str) -> str:
    return OID_NAMES.get(oid, oid)


def status_of(record: CertificateRecord, now: dt.datetime | None = None) -> str:
    """``revoked``, ``expired``, ``not yet valid`` or ``valid`` at ``now`` (default: the lab clock)."""
    now = now or lab_clock().now()
    if record.revoked_at is not None and record.revoked_at <= now:
        return "revoked"
    if now > record.not_after:
        return "expired"
    if now < record.not_before:
        return "not yet valid"
    return "valid"


def describe_certificate(der: bytes) -> dict[str, Any]:
    """Decoded fields of a certificate: subject, validity, policies, QC statements, extensions."""
    cert = x509.load_der_x509_certificate(der)
    policies: list[str] = []
    qc: list[str] = []
    try:
        policies = [p.policy_identifier.dotted_string
                    for p in cert.extensions.get_extension_for_class(x509.CertificatePolicies).value]
    except x509.ExtensionNotFound:
        pass
    try:
        raw = cert.extensions.get_extension_for_oid(QC_STATEMENTS).value
        statements = QcStatements.load(raw.value) if isinstance(raw, x509.UnrecognizedExtension) else []
    except x509.ExtensionNotFound:
        statements = []
    for statement in statements:
        sid = statement["statement_id"].dotted
        text = _name(sid)
        info = statement["statement_info"]
        if sid == "0.4.0.1862.1.6":
            text += ": " + ", ".join(_name(t.dotted) for t in QcTypes.load(info.dump()))
        elif sid == "1.3.6.1.5.5.7.11.2":
            semantics = SemanticsInformation.load(info.dump())["semantics_identifier"].dotted
            text += ": " + _name(semantics)
        elif sid == "0.4.0.1862.1.5":
            text += ": " + ", ".join(f"{loc['url'].native} ({loc['language'].native})"
                                     for loc in PdsLocations.load(info.dump()))
        qc.append(text)
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        key_usage = [name for name in ("digital_signature", "content_commitment", "key_cert_sign", "crl_sign")
                     if getattr(ku, name)]
    except x509.ExtensionNotFound:
        key_usage = []
    return {
        "subject": cert.subject.rfc4514_string(),
        "subject_fields": [(attr.oid._name, attr.value) for attr in cert.subject],
        "issuer": cert.issuer.rfc4514_string(),
        "serial": format(cert.serial_number, "x"),
        "not_before": cert.not_valid_before_utc,
        "not_after": cert.not_valid_after_utc,
        "policies": [(oid, _name(oid)) for oid in policies],
        "qc_statements": qc,
        "key_usage": ["nonRepudiation" if k == "content_commitment" else k for k in key_usage],
        "extensions": [(e.oid.dotted_string, getattr(e.oid, "_name", "") if getattr(e.oid, "_name", "Unknown OID")
                        != "Unknown OID" else _name(e.oid.dotted_string), e.critical) for e in cert.extensions],
        "sha256": cert.fingerprint(hashes.SHA256()).hex(":").upper(),
        "pem": cert.public_bytes(serialization.Encoding.PEM).decode("ascii"),
    }
