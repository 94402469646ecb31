"""Validation reports shaped like the EU DSS *simple report*, decided with pyHanko.

For every signature in an uploaded PDF, ``.p7s`` + file, or JAdES JSON + payload:

* one verdict — ``TOTAL_PASSED``, ``INDETERMINATE`` or ``TOTAL_FAILED`` — with the ETSI EN 319
  102-1 sub-indication (``HASH_FAILURE``, ``NO_CERTIFICATE_CHAIN_FOUND``, ``OUT_OF_BOUNDS_NO_POE`` …);
* signer identity, claimed signing time, signature time-stamp, level reached (B-B … B-LTA);
* **qualification** — QES, AdES with a qualified certificate (AdES-QC), AdES, or not qualified —
  decided by pyHanko's qualified-validation module (``QualificationAssessor``) over the trusted
  list of the SignLab TSP;
* a table of checks and a plain-language explanation of each failure with what to do.

Trust is configuration: the validator trusts exactly the root in :class:`TrustSettings` (never a
root embedded in the document) and never fetches anything from the network itself; revocation
data comes from the document (DSS, CMS, JAdES ``rVals``) and from what the caller supplies (the
portal fetches the TSP's current CRLs). A signature whose short-term certificate has expired is
re-validated at the time of its signature time-stamp (proof of existence), as an AdES validator
does; without a time-stamp it is INDETERMINATE / OUT_OF_BOUNDS_NO_POE.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from io import BytesIO
from typing import Any

from asn1crypto import cms, x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.hazmat.primitives.serialization import load_der_public_key
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import async_validate_detached_cms, async_validate_pdf_signature
from pyhanko.sign.validation.dss import DocumentSecurityStore
from pyhanko.sign.validation.errors import NoDSSFoundError
from pyhanko.sign.validation.generic_cms import validate_tst_signed_data
from pyhanko.sign.validation.pdf_embedded import async_validate_pdf_timestamp
from pyhanko.sign.validation.qualified.assess import QualificationAssessor
from pyhanko.sign.validation.qualified.eutl_parse import trust_list_to_registry_unsafe
from pyhanko.sign.validation.qualified.q_status import QcPrivateKeyManagementType
from pyhanko.sign.validation.qualified.tsp import QcCertType, TSPRegistry
from pyhanko.sign.validation.status import ModificationLevel, SignatureCoverageLevel
from pyhanko_certvalidator import CertificateValidator
from pyhanko_certvalidator.errors import PathBuildingError, PathValidationError, RevokedError
from pyhanko_certvalidator.path import ValidationPath

from services.portal import cades_asn1  # noqa: F401 - asn1crypto then parses CAdES archive time-stamp attributes
from services.portal.archive_timestamps import ArchiveCheck, cades_archive_checks, jades_archive_checks
from services.portal.documents import SignatureFormat
from services.portal.jades import b64url_decode, parse_jws
from services.portal.ltv import ValidationMaterial, load_certificate, validation_context

__all__ = [
    "Check",
    "Indication",
    "SignatureReport",
    "TrustSettings",
    "ValidationReport",
    "load_registry",
    "validate_document",
]


class Indication(StrEnum):
    """ETSI EN 319 102-1 main indications (as in the DSS simple report)."""

    TOTAL_PASSED = "TOTAL_PASSED"
    INDETERMINATE = "INDETERMINATE"
    TOTAL_FAILED = "TOTAL_FAILED"

    @property
    def rank(self) -> int:
        """Higher is worse."""
        return ["TOTAL_PASSED", "INDETERMINATE", "TOTAL_FAILED"].index(self.value)


EXPLANATIONS: dict[str, str] = {
    "HASH_FAILURE": "The document was changed after it was signed: the bytes covered by the signature "
    "no longer match the digest inside it. Do not trust this copy; ask the sender for the original.",
    "SIG_CRYPTO_FAILURE": "The signature value does not verify with the signer's public key: the signature "
    "or its signed attributes were altered. Do not trust this copy.",
    "FORMAT_FAILURE": "The file is not a well-formed signature of the expected kind, so it could not be checked. "
    "Upload the signed file as the portal produced it (PDF, .p7s with its original file, or JAdES JSON with its payload).",
    "REVOKED": "The signer's certificate was revoked before the signature was made. The signature must not be relied on.",
    "NO_CERTIFICATE_CHAIN_FOUND": "The signer's certificate does not chain to the trust anchor this validator is "
    "configured with (the SignLab root). It was issued by another CA, or its chain is missing. If you expected a "
    "SignLab signature, the document was signed elsewhere.",
    "OUT_OF_BOUNDS_NO_POE": "The signer's certificate is outside its validity period now and the signature has no "
    "time-stamp proving it existed while the certificate was valid. Short-term certificates expire within minutes; "
    "sign at level B-T or higher so that the signature stays verifiable.",
    "NO_POE": "There is no proof of existence (time-stamp) for the signature at a time when its certificate was valid.",
    "TRY_LATER": "Revocation information for a certificate was not available; try again when the CA's CRL/OCSP can be reached.",
    "CHAIN_CONSTRAINTS_FAILURE": "The certificate chain breaks a constraint (key usage, basic constraints, policy).",
    "CERTIFICATE_CHAIN_GENERAL_FAILURE": "The certificate chain could not be validated.",
    "SIG_CONSTRAINTS_FAILURE": "The signature does not meet the validation constraints (e.g. a required attribute is missing).",
    "REVOKED_NO_POE": "The signer's certificate is revoked and nothing proves the signature was made before the revocation.",
    "EXPIRED": "A certificate in the chain had expired at the validation time.",
    "NOT_YET_VALID": "The signer's certificate was not yet valid at the signing time.",
    "DISALLOWED_MODIFICATIONS": "The PDF was modified after signing in a way a signature does not allow "
    "(content changed in a later revision). The signed revision may be intact, but the document you see is not what was signed.",
    "SIGNED_DATA_NOT_FOUND": "The file or payload the signature covers was not supplied, or it is not the one that was signed.",
}


def explain(sub_indication: str | None) -> str:
    """Plain-language explanation of a sub-indication (empty for none)."""
    if not sub_indication:
        return ""
    return EXPLANATIONS.get(sub_indication, f"The validation ended with {sub_indication}.")


@dataclass(frozen=True)
class Check:
    """One row of the checks table: ``outcome`` is ``passed``, ``failed``, ``warning`` or ``info``."""

    name: str
    outcome: str
    detail: str


@dataclass
class SignatureReport:
    """The simple report of one signature."""

    id: str
    format: str
    indication: str
    sub_indication: str | None
    signer: dict[str, str]
    signing_time: str | None
    timestamp: dict[str, str] | None
    level: str | None
    qualification: str
    qualification_detail: str
    checks: list[Check] = field(default_factory=list)
    explanations: list[str] = field(default_factory=list)
    validation_time: str = ""


@dataclass
class ValidationReport:
    """The report for one uploaded document (one or more signatures)."""

    document: str
    format: str
    indication: str
    sub_indication: str | None
    signatures: list[SignatureReport]
    trust_anchor: str
    trusted_list: str
    generated_at: str
    explanations: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)

    def summary(self) -> str:
        """One line: ``TOTAL_PASSED · 1 signature · QES · B-LTA``."""
        if not self.signatures:
            return f"{self.indication}" + (f" / {self.sub_indication}" if self.sub_indication else "") + " · no signature"
        first = self.signatures[0]
        sub = f" / {self.sub_indication}" if self.sub_indication else ""
        return f"{self.indication}{sub} · {len(self.signatures)} signature(s) · {first.qualification} · {first.level or '-'}"


@dataclass(frozen=True)
class TrustSettings:
    """What the validator trusts (configuration only).

    :ivar root: the one trust anchor.
    :ivar registry: the trusted list parsed by pyHanko, for qualification (``None``: qualification
        cannot be decided and is reported as such).
    :ivar material: extra certificates/CRLs/OCSP the portal fetched from the TSP.
    :ivar trusted_list_source: where the list came from (shown in the report).
    """

    root: x509.Certificate
    registry: TSPRegistry | None
    material: ValidationMaterial
    trusted_list_source: str = "not configured"


def load_registry(tl_xml: str) -> TSPRegistry:
    """Parse an ETSI TS 119 612 trusted list into pyHanko's registry.

    The list's XML signature is not checked (the portal reads it from its own TSP over a channel
    it is configured with); a real validator must check it.
    """
    registry, _errors = trust_list_to_registry_unsafe(tl_xml)
    return registry


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


def _signer_info(cert: x509.Certificate | None) -> dict[str, str]:
    if cert is None:
        return {}
    subject = cert.subject.native
    policies = []
    for ext in cert["tbs_certificate"]["extensions"]:
        if ext["extn_id"].native == "certificate_policies":
            policies = [p["policy_identifier"].dotted for p in ext["extn_value"].parsed]
    return {
        "common_name": str(subject.get("common_name", "")),
        "serial_number": str(subject.get("serial_number", "")),
        "country": str(subject.get("country_name", "")),
        "subject": cert.subject.human_friendly,
        "issuer": cert.issuer.human_friendly,
        "certificate_serial": format(cert.serial_number, "x"),
        "not_before": _iso(cert.not_valid_before) or "",
        "not_after": _iso(cert.not_valid_after) or "",
        "policies": ", ".join(policies),
    }


def _qualification(trust: TrustSettings, path: ValidationPath | None, moment: datetime | None, trusted: bool) -> tuple[str, str]:
    if not trusted or path is None:
        return "not qualified", "The signature is not valid and trusted, so it cannot be qualified."
    if trust.registry is None:
        return "unknown", "No trusted list is configured, so qualification cannot be decided."
    try:
        result = QualificationAssessor(trust.registry).check_entity_cert_qualified(path, moment)
    except NotImplementedError as exc:
        return "not qualified", f"The certificate's QC statements could not be interpreted ({exc})."
    status = result.status
    service = result.service_definition.base_info.service_name if result.service_definition else "no trusted-list service"
    if status.qualified and status.qc_type is QcCertType.QC_ESIGN and status.qc_key_security.is_qscd:
        managed = " (QSCD managed on behalf of the signer)" if status.qc_key_security is QcPrivateKeyManagementType.QSCD_DELEGATED else ""
        return "QES", f"Qualified electronic signature: qualified certificate for e-signatures with the key in a QSCD{managed}, per the trusted-list service '{service}'."
    if status.qualified:
        return "AdES-QC", f"Advanced electronic signature with a qualified certificate, but the key is not in a QSCD (per '{service}')."
    return "AdES", "Advanced electronic signature: valid and trusted, but the certificate is not qualified according to the trusted list."


def _level_label(rank: int) -> str | None:
    return ["B-B", "B-T", "B-LT", "B-LTA"][rank] if rank >= 0 else None


def _has_signing_certificate_attr(signer_info: cms.SignerInfo) -> bool:
    attrs = signer_info["signed_attrs"]
    return any(a["type"].native in ("signing_certificate_v2", "signing_certificate") for a in attrs) if attrs.native else False


def _tst_time(signer_info: cms.SignerInfo) -> datetime | None:
    unsigned = signer_info["unsigned_attrs"]
    if not unsigned.native:
        return None
    for attr in unsigned:
        if attr["type"].native == "signature_time_stamp_token":
            token = attr["values"][0]
            return token["content"]["encap_content_info"]["content"].parsed["gen_time"].native
    return None


def _trust_checks(status: Any, label: str) -> list[Check]:
    checks = [
        Check("Signature intact (digest matches)", "passed" if status.intact else "failed",
              "the signed bytes are unchanged" if status.intact else "the signed bytes were changed after signing"),
        Check("Signature value", "passed" if status.valid else "failed",
              f"{status.pkcs7_signature_mechanism} over {status.md_algorithm}"),
        Check(f"Certificate chain to the {label}", "passed" if status.trusted else ("failed" if status.revoked else "failed"),
              " → ".join(c.subject.human_friendly for c in status.validation_path) if status.validation_path else
              (str(status.trust_problem_indic.name) if status.trust_problem_indic else "no path")),
    ]
    if status.revoked:
        checks.append(Check("Revocation status", "failed", f"revoked ({status.revocation_details.revocation_reason.native})"))
    return checks


def _timestamp_check(status: Any, rank: int, checks: list[Check]) -> tuple[dict[str, str] | None, int]:
    """The signature time-stamp's check (appended to ``checks``), its summary, and the level rank
    reached: a valid time-stamp lifts B-B (0) to B-T (1)."""
    if status.timestamp_validity is None:
        checks.append(Check("Signature time-stamp", "info", "none (level B-B)"))
        return None, rank
    ts = status.timestamp_validity
    ok = ts.intact and ts.valid and ts.trusted
    timestamp = {"time": _iso(ts.timestamp) or "", "tsa": ts.signing_cert.subject.human_friendly,
                 "status": "valid" if ok else "not valid"}
    checks.append(Check("Signature time-stamp", "passed" if ok else "failed", f"{timestamp['time']} by {timestamp['tsa']}"))
    return timestamp, 1 if ok and rank == 0 else rank


def _verdict(intact: bool, valid: bool, status: Any) -> tuple[Indication, str | None]:
    if not intact:
        return Indication.TOTAL_FAILED, "HASH_FAILURE"
    if not valid:
        return Indication.TOTAL_FAILED, "SIG_CRYPTO_FAILURE"
    if status.revoked:
        return Indication.TOTAL_FAILED, "REVOKED"
    if not status.trusted:
        indic = status.trust_problem_indic
        name = indic.name if indic is not None else "NO_CERTIFICATE_CHAIN_FOUND"
        if name == "GENERIC":
            name = "CERTIFICATE_CHAIN_GENERAL_FAILURE"
        return Indication.INDETERMINATE, name
    return Indication.TOTAL_PASSED, None


def _context_for(trust: TrustSettings, material: ValidationMaterial, moment: datetime | None = None):
    return validation_context(trust.root, material, moment=moment, revocation_mode="soft-fail", retroactive_revinfo=moment is not None)


def _expired(cert: x509.Certificate, at: datetime) -> bool:
    return not (cert.not_valid_before <= at <= cert.not_valid_after)


# --------------------------------------------------------------------------- PDF


def _dss_material(reader: PdfFileReader) -> tuple[ValidationMaterial, bool]:
    try:
        dss = DocumentSecurityStore.read_dss(reader)
    except NoDSSFoundError:
        return ValidationMaterial(), False
    material = ValidationMaterial(
        certificates=[c.dump() for c in dss.load_certs()],
        crls=[ref.get_object().data for ref in dss.crls],
        ocsps=[ref.get_object().data for ref in dss.ocsps],
    )
    return material, bool(material.crls or material.ocsps)


async def _validate_pdf(label: str, content: bytes, trust: TrustSettings) -> ValidationReport:
    try:
        reader = PdfFileReader(BytesIO(content), strict=False)
        signatures = reader.embedded_regular_signatures
        doc_timestamps = reader.embedded_timestamp_signatures
    except Exception:  # any parse failure of an untrusted upload is a format failure, never a 500
        return _format_failure(label, SignatureFormat.PADES, trust, "the file could not be read as a PDF")
    if not signatures:
        return _no_signature(label, SignatureFormat.PADES, trust, "The PDF contains no signature.")
    dss_material, has_dss_revinfo = _dss_material(reader)
    material = ValidationMaterial()
    material.extend(trust.material)
    material.extend(dss_material)
    reports = []
    for sig in signatures:
        reports.append(await _validate_pdf_signature(sig, doc_timestamps, has_dss_revinfo, material, trust))
    return _document_report(label, SignatureFormat.PADES, reports, trust)


async def _validate_pdf_signature(sig: Any, doc_timestamps: list[Any], has_dss_revinfo: bool,
                                  material: ValidationMaterial, trust: TrustSettings) -> SignatureReport:
    now = datetime.now(UTC)
    try:
        status = await async_validate_pdf_signature(sig, _context_for(trust, material), ts_validation_context=_context_for(trust, material))
    except Exception as exc:  # malformed CMS inside the PDF
        return _failed_signature(str(sig.field_name), "PAdES", "FORMAT_FAILURE", f"the signature could not be parsed ({exc.__class__.__name__})")
    validation_time = now
    tst_time = status.timestamp_validity.timestamp if status.timestamp_validity is not None else None
    poe_note = ""
    if status.intact and status.valid and not status.trusted and _expired(status.signing_cert, now):
        if tst_time is not None and status.timestamp_validity.trusted:
            # Short-term certificate expired: re-validate at the signature time-stamp (proof of existence).
            status = await async_validate_pdf_signature(
                sig, _context_for(trust, material, moment=tst_time), ts_validation_context=_context_for(trust, material)
            )
            validation_time = tst_time
            poe_note = "validated at the time of the signature time-stamp (the certificate has expired since)"
    indication, sub = _verdict(status.intact, status.valid, status)
    if indication is Indication.INDETERMINATE and sub in ("EXPIRED", "CERTIFICATE_CHAIN_GENERAL_FAILURE") and _expired(status.signing_cert, now):
        sub = "OUT_OF_BOUNDS_NO_POE"
    checks = _trust_checks(status, "SignLab root")
    coverage_ok = status.coverage in (SignatureCoverageLevel.ENTIRE_FILE, SignatureCoverageLevel.ENTIRE_REVISION)
    modification_ok = status.modification_level in (
        ModificationLevel.NONE, ModificationLevel.LTA_UPDATES, ModificationLevel.FORM_FILLING
    )
    checks.append(Check("Coverage", "passed" if coverage_ok else "failed", status.coverage.name if status.coverage else "unknown"))
    checks.append(Check("Later changes", "passed" if modification_ok else "failed",
                        status.modification_level.name if status.modification_level else "unknown"))
    if indication is Indication.TOTAL_PASSED and not (coverage_ok and modification_ok):
        indication, sub = Indication.TOTAL_FAILED, "DISALLOWED_MODIFICATIONS"
    signer_info = sig.signer_info
    rank = -1
    if status.intact and status.valid and _has_signing_certificate_attr(signer_info):
        rank = 0
        checks.append(Check("Signing certificate reference (ESS signing-certificate-v2)", "passed", "present in the signed attributes"))
    else:
        checks.append(Check("Signing certificate reference (ESS signing-certificate-v2)", "failed", "missing: not a baseline signature"))
    timestamp, rank = _timestamp_check(status, rank, checks)
    if rank >= 1 and has_dss_revinfo:
        rank = 2
        checks.append(Check("Long-term validation data (DSS)", "passed", "certificates and CRL/OCSP embedded in the document security store"))
    else:
        checks.append(Check("Long-term validation data (DSS)", "info", "none"))
    if rank >= 2 and doc_timestamps:
        ts_status = await async_validate_pdf_timestamp(doc_timestamps[-1], validation_context=_context_for(trust, material))
        ok = ts_status.intact and ts_status.valid and ts_status.trusted
        checks.append(Check("Archive (document) time-stamp", "passed" if ok else "failed", _iso(ts_status.timestamp) or ""))
        if ok:
            rank = 3
    if poe_note:
        checks.append(Check("Proof of existence", "info", poe_note))
    qualification, detail = _qualification(trust, status.validation_path, validation_time, indication is Indication.TOTAL_PASSED)
    checks.append(Check("Qualification (trusted list)", "passed" if qualification == "QES" else "info", detail))
    return SignatureReport(
        id=str(sig.field_name), format="PAdES", indication=indication.value, sub_indication=sub,
        signer=_signer_info(status.signing_cert), signing_time=_iso(status.signer_reported_dt),
        timestamp=timestamp, level=_level_label(rank) if indication is Indication.TOTAL_PASSED else _level_label(min(rank, 0)),
        qualification=qualification, qualification_detail=detail, checks=checks,
        explanations=[e for e in [explain(sub)] if e], validation_time=_iso(validation_time) or "",
    )


# --------------------------------------------------------------------------- CAdES


def _cms_material(signed_data: cms.SignedData) -> tuple[ValidationMaterial, bool]:
    material = ValidationMaterial(certificates=[c.chosen.dump() for c in signed_data["certificates"]] if signed_data["certificates"].native else [])
    if signed_data["crls"].native:
        for choice in signed_data["crls"]:
            if choice.name == "crl":
                material.crls.append(choice.chosen.dump())
            elif choice.name == "other" and choice.chosen["other_rev_info_format"].native == "ocsp_response":
                material.ocsps.append(choice.chosen["other_rev_info"].dump())
    return material, bool(material.crls or material.ocsps)


async def _validate_cades(label: str, signature: bytes, original: bytes | None, trust: TrustSettings) -> ValidationReport:
    try:
        content_info = cms.ContentInfo.load(signature)
        signed_data = content_info["content"]
        signer_info = signed_data["signer_infos"][0]
        _ = signer_info["signature"].native
    except Exception:  # any parse failure of an untrusted upload is a format failure
        return _format_failure(label, SignatureFormat.CADES, trust, "the .p7s is not a CMS SignedData")
    if original is None:
        return _no_signature(label, SignatureFormat.CADES, trust, "A detached CAdES signature needs the signed file too.",
                             sub="SIGNED_DATA_NOT_FOUND", indication=Indication.INDETERMINATE)
    cms_material, has_revinfo = _cms_material(signed_data)
    material = ValidationMaterial()
    material.extend(trust.material)
    material.extend(cms_material)
    now = datetime.now(UTC)
    status = await async_validate_detached_cms(original, signed_data, _context_for(trust, material), _context_for(trust, material))
    validation_time = now
    tst_time = _tst_time(signer_info)
    poe_note = ""
    if status.intact and status.valid and not status.trusted and _expired(status.signing_cert, now) and tst_time is not None:
        if status.timestamp_validity is not None and status.timestamp_validity.trusted:
            status = await async_validate_detached_cms(original, signed_data, _context_for(trust, material, moment=tst_time), _context_for(trust, material))
            validation_time = tst_time
            poe_note = "validated at the time of the signature time-stamp (the certificate has expired since)"
    indication, sub = _verdict(status.intact, status.valid, status)
    if indication is Indication.INDETERMINATE and _expired(status.signing_cert, now) and sub in ("EXPIRED", "CERTIFICATE_CHAIN_GENERAL_FAILURE"):
        sub = "OUT_OF_BOUNDS_NO_POE"
    checks = _trust_checks(status, "SignLab root")
    rank = 0 if status.intact and status.valid and _has_signing_certificate_attr(signer_info) else -1
    checks.append(Check("Signing certificate reference (ESS signing-certificate-v2)", "passed" if rank == 0 else "failed", ""))
    timestamp, rank = _timestamp_check(status, rank, checks)
    if rank >= 1 and has_revinfo:
        rank = 2
        checks.append(Check("Long-term validation data", "passed", "certificates and CRL/OCSP in SignedData"))
        rank = await _archive_level(lambda: cades_archive_checks(signature, original),
                                    "archive-time-stamp-v3, EN 319 122-1", rank, checks, trust, material)
    if poe_note:
        checks.append(Check("Proof of existence", "info", poe_note))
    qualification, detail = _qualification(trust, status.validation_path, validation_time, indication is Indication.TOTAL_PASSED)
    checks.append(Check("Qualification (trusted list)", "passed" if qualification == "QES" else "info", detail))
    signing_time = None
    for attr in signer_info["signed_attrs"] if signer_info["signed_attrs"].native else []:
        if attr["type"].native == "signing_time":
            signing_time = _iso(attr["values"][0].native)
    report = SignatureReport(
        id="signature-1", format="CAdES", indication=indication.value, sub_indication=sub,
        signer=_signer_info(status.signing_cert), signing_time=signing_time, timestamp=timestamp,
        level=_level_label(rank) if indication is Indication.TOTAL_PASSED else _level_label(min(rank, 0)),
        qualification=qualification, qualification_detail=detail, checks=checks,
        explanations=[e for e in [explain(sub)] if e], validation_time=_iso(validation_time) or "",
    )
    return _document_report(label, SignatureFormat.CADES, [report], trust)


# --------------------------------------------------------------------------- JAdES


async def _validate_jades(label: str, signature: bytes, payload: bytes | None, trust: TrustSettings) -> ValidationReport:
    try:
        jws = parse_jws(signature)
        header = jws.protected_header
        chain = [load_certificate(base64.b64decode(c)) for c in header.get("x5c", [])]
        if not chain:
            raise ValueError("no x5c")
        leaf = chain[0]
        sig_d = header["sigD"]
        signature_value = b64url_decode(jws.signature)
    except Exception:  # any parse failure of an untrusted upload is a format failure
        return _format_failure(label, SignatureFormat.JADES, trust, "the file is not a detached JAdES signature with sigD and x5c")
    if payload is None:
        return _no_signature(label, SignatureFormat.JADES, trust, "A detached JAdES signature needs the signed payload too.",
                             sub="SIGNED_DATA_NOT_FOUND", indication=Indication.INDETERMINATE)
    checks: list[Check] = []
    expected = [b64url_decode(v) for v in sig_d.get("hashV", [])]
    intact = hashlib.sha256(payload).digest() in expected and sig_d.get("hashM") == "S256"
    checks.append(Check("Payload digest (sigD)", "passed" if intact else "failed",
                        "the payload matches the signed digest" if intact else "the payload does not match the signed digest"))
    valid = False
    if header.get("alg") == "ES256" and len(signature_value) == 64:
        key = load_der_public_key(leaf.public_key.dump())
        signing_input = f"{jws.protected}.".encode("ascii")
        der_sig = utils.encode_dss_signature(int.from_bytes(signature_value[:32], "big"), int.from_bytes(signature_value[32:], "big"))
        if isinstance(key, ec.EllipticCurvePublicKey):
            try:
                key.verify(der_sig, signing_input, ec.ECDSA(hashes.SHA256()))
                valid = True
            except InvalidSignature:
                valid = False
    checks.append(Check("Signature value", "passed" if valid else "failed", f"{header.get('alg')} over the protected header"))
    etsi_u = jws.etsi_u()
    material = ValidationMaterial()
    material.extend(trust.material)
    material.certificates.extend(c.dump() for c in chain)
    has_revinfo = False
    tst_token = None
    for item in etsi_u:
        if "xVals" in item:
            material.certificates.extend(base64.b64decode(x["x509Cert"]) for x in item["xVals"])
        if "rVals" in item:
            material.crls.extend(base64.b64decode(c) for c in item["rVals"].get("crlVals", []))
            material.ocsps.extend(base64.b64decode(o) for o in item["rVals"].get("ocspVals", []))
            has_revinfo = True
        if "sigTst" in item:
            tst_token = cms.ContentInfo.load(base64.b64decode(item["sigTst"]["tstTokens"][0]["val"]))
    now = datetime.now(UTC)
    timestamp = None
    tst_ok = False
    tst_time = None
    if tst_token is not None:
        imprint = hashlib.sha256(jws.signature.encode("ascii")).digest()
        try:
            ts_status = await validate_tst_signed_data(tst_token["content"], _context_for(trust, material), lambda _md: imprint)
            tst_ok = bool(ts_status["intact"] and ts_status["valid"] and ts_status.get("trust_problem_indic") is None and ts_status.get("validation_path") is not None)
            tst_time = ts_status["timestamp"]
            tsa_cert = ts_status["signing_cert"]
            timestamp = {"time": _iso(tst_time) or "", "tsa": tsa_cert.subject.human_friendly, "status": "valid" if tst_ok else "not valid"}
        except Exception as exc:  # broken token
            timestamp = {"time": "", "tsa": "", "status": f"not valid ({exc.__class__.__name__})"}
        checks.append(Check("Signature time-stamp", "passed" if tst_ok else "failed", f"{timestamp['time']} by {timestamp['tsa']}"))
    else:
        checks.append(Check("Signature time-stamp", "info", "none (level B-B)"))
    path, trust_sub, revoked, validation_time = await _validate_chain(leaf, material, trust, now, tst_time if tst_ok else None)
    trusted = path is not None
    checks.append(Check("Certificate chain to the SignLab root", "passed" if trusted else "failed",
                        " → ".join(c.subject.human_friendly for c in path) if path else (trust_sub or "")))
    if not intact:
        indication, sub = Indication.TOTAL_FAILED, "HASH_FAILURE"
    elif not valid:
        indication, sub = Indication.TOTAL_FAILED, "SIG_CRYPTO_FAILURE"
    elif revoked:
        indication, sub = Indication.TOTAL_FAILED, "REVOKED"
    elif not trusted:
        indication, sub = Indication.INDETERMINATE, trust_sub or "NO_CERTIFICATE_CHAIN_FOUND"
    else:
        indication, sub = Indication.TOTAL_PASSED, None
    rank = 0 if intact and valid and ("x5t#S256" in header or "x5c" in header) else -1
    if rank == 0 and tst_ok:
        rank = 1
    if rank == 1 and has_revinfo:
        rank = 2
        rank = await _archive_level(lambda: jades_archive_checks(signature, payload),
                                    "arcTst, TS 119 182-1", rank, checks, trust, material)
    qualification, detail = _qualification(trust, path, validation_time, indication is Indication.TOTAL_PASSED)
    checks.append(Check("Qualification (trusted list)", "passed" if qualification == "QES" else "info", detail))
    report = SignatureReport(
        id="signature-1", format="JAdES", indication=indication.value, sub_indication=sub, signer=_signer_info(leaf),
        signing_time=str(header.get("sigT")) if header.get("sigT") else None, timestamp=timestamp,
        level=_level_label(rank) if indication is Indication.TOTAL_PASSED else _level_label(min(rank, 0)),
        qualification=qualification, qualification_detail=detail, checks=checks,
        explanations=[e for e in [explain(sub)] if e], validation_time=_iso(validation_time) or "",
    )
    return _document_report(label, SignatureFormat.JADES, [report], trust)


async def _archive_level(find: Callable[[], list[ArchiveCheck]], name: str, rank: int, checks: list[Check],
                         trust: TrustSettings, material: ValidationMaterial) -> int:
    """Check the archive time-stamps ``find`` returns (:mod:`services.portal.archive_timestamps`,
    independent of the packaging code): each imprint recomputed from the signature, each token
    validated to the SignLab root. All good lifts B-LT (2) to B-LTA (3)."""
    title = f"Archive time-stamp ({name})"
    try:
        found = find()
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:  # an untrusted upload
        checks.append(Check(title, "failed", f"could not be read ({exc.__class__.__name__}: {exc})"))
        return rank
    if not found:
        return rank
    passed = True
    for archive in found:
        detail = "; ".join(archive.problems) or "message imprint recomputed from the signature: it matches"
        ok = archive.imprint_matches
        if ok:
            try:
                status = await validate_tst_signed_data(cms.ContentInfo.load(archive.token)["content"],
                                                        _context_for(trust, material),
                                                        lambda _algorithm: archive.expected_imprint)
                ok = bool(status["intact"] and status["valid"] and status.get("trust_problem_indic") is None
                          and status.get("validation_path") is not None)
                detail = (f"{_iso(status['timestamp'])} by {status['signing_cert'].subject.human_friendly}; {detail}"
                          if ok else f"the time-stamp token does not validate to the SignLab root; {detail}")
            except Exception as exc:  # a broken token inside an untrusted upload
                ok, detail = False, f"the time-stamp token could not be validated ({exc.__class__.__name__})"
        checks.append(Check(title, "passed" if ok else "failed", detail))
        passed = passed and ok
    return 3 if passed and rank == 2 else rank


async def _validate_chain(leaf: x509.Certificate, material: ValidationMaterial, trust: TrustSettings, now: datetime,
                          poe: datetime | None) -> tuple[ValidationPath | None, str | None, bool, datetime]:
    moment = poe if (poe is not None and _expired(leaf, now)) else None
    validator = CertificateValidator(leaf, validation_context=_context_for(trust, material, moment=moment))
    try:
        path = await validator.async_validate_usage({"non_repudiation"})
        return path, None, False, moment or now
    except RevokedError:
        return None, "REVOKED", True, moment or now
    except PathBuildingError:
        return None, "NO_CERTIFICATE_CHAIN_FOUND", False, now
    except PathValidationError as exc:
        if _expired(leaf, now):
            return None, "OUT_OF_BOUNDS_NO_POE", False, now
        return None, f"CERTIFICATE_CHAIN_GENERAL_FAILURE ({exc})", False, now


# --------------------------------------------------------------------------- reports


def _failed_signature(sig_id: str, fmt: str, sub: str, detail: str) -> SignatureReport:
    return SignatureReport(
        id=sig_id, format=fmt, indication=Indication.TOTAL_FAILED.value, sub_indication=sub, signer={},
        signing_time=None, timestamp=None, level=None, qualification="not qualified",
        qualification_detail="The signature could not be validated.", checks=[Check("Format", "failed", detail)],
        explanations=[explain(sub)], validation_time=_now(),
    )


def _trust_anchor(trust: TrustSettings) -> str:
    return trust.root.subject.human_friendly


def _document_report(label: str, fmt: SignatureFormat, reports: list[SignatureReport], trust: TrustSettings) -> ValidationReport:
    worst = max(reports, key=lambda r: Indication(r.indication).rank)
    return ValidationReport(
        document=label, format=fmt.value, indication=worst.indication, sub_indication=worst.sub_indication,
        signatures=reports, trust_anchor=_trust_anchor(trust), trusted_list=trust.trusted_list_source,
        generated_at=_now(), explanations=[e for r in reports for e in r.explanations],
    )


def _format_failure(label: str, fmt: SignatureFormat, trust: TrustSettings, detail: str) -> ValidationReport:
    return _document_report(label, fmt, [_failed_signature("document", fmt.title, "FORMAT_FAILURE", detail)], trust)


def _no_signature(label: str, fmt: SignatureFormat, trust: TrustSettings, detail: str, *, sub: str = "FORMAT_FAILURE",
                  indication: Indication = Indication.TOTAL_FAILED) -> ValidationReport:
    return ValidationReport(
        document=label, format=fmt.value, indication=indication.value, sub_indication=sub, signatures=[],
        trust_anchor=_trust_anchor(trust), trusted_list=trust.trusted_list_source, generated_at=_now(),
        explanations=[detail, explain(sub)],
    )


def detect_format(content: bytes) -> SignatureFormat:
    """Guess the signature format of an uploaded signed file."""
    head = content.lstrip()[:5]
    if head == b"%PDF-":
        return SignatureFormat.PADES
    if head[:1] == b"{" or content.count(b".") == 2 and b"{" not in content[:10]:
        try:
            parse_jws(content)
            return SignatureFormat.JADES
        except Exception:  # not JWS: fall through
            pass
    try:
        json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return SignatureFormat.CADES
    return SignatureFormat.JADES


async def validate_document(label: str, signed: bytes, trust: TrustSettings, *, original: bytes | None = None) -> ValidationReport:
    """Validate one signed document; ``original`` is the signed file/payload for detached CAdES/JAdES."""
    fmt = detect_format(signed)
    if fmt is SignatureFormat.PADES:
        return await _validate_pdf(label, signed, trust)
    if fmt is SignatureFormat.JADES:
        return await _validate_jades(label, signed, original, trust)
    return await _validate_cades(label, signed, original, trust)
