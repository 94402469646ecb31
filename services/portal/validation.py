"""Validation of signed documents at a chosen time, decided by pyHanko's AdES processes.

For every signature in an uploaded PDF, ``.p7s`` + file, or JAdES JSON + payload, and at a
validation time that is "now" on the lab clock or any time the caller names:

* **one verdict** — ``TOTAL_PASSED``, ``INDETERMINATE`` or ``TOTAL_FAILED`` — with the ETSI EN 319
  102-1 sub-indication, decided by the EN 319 102-1 process the signature's level calls for, as
  pyHanko implements it (``pyhanko.sign.validation.ades``): a signature without a signature
  time-stamp (B-B) goes through the validation process for basic signatures (§5.3,
  ``ades_basic_validation``), a time-stamped one (B-T) through the process for signatures with
  time (§5.5, ``ades_with_time_validation``), one with long-term validation data (B-LT, B-LTA)
  through the process for long-term availability (§5.6.3, ``ades_lta_validation``; for CAdES,
  which pyHanko's LTA process does not read, the process with time plus the archive time-stamp
  checks of :mod:`services.portal.archive_timestamps`). JAdES is JSON, which pyHanko does not
  parse: the same steps run over pyhanko-certvalidator (chain at the validation time, then at the
  signature time-stamp's time when the certificate has expired since);
* **proof of existence**: the report names the PoE that carried the decision — the signature
  time-stamp, the document or archive time-stamp that protects the validation data, or none (the
  validation time itself, for a B-B signature);
* **qualification** at the best signature time (the signing time the PoE proves) and at the
  validation time, from the trusted list (pyHanko's ``QualificationAssessor`` reads its service
  history: a CA withdrawn after the signing leaves a time-stamped QES a QES, while an un-stamped
  signature validated after the withdrawal is only AdES);
* the simple report (this module), the detailed report
  (:mod:`services.portal.validation_detail`) and the ETSI TS 119 102-2 XML report
  (:mod:`services.portal.etsi_report`).

**Time.** pyHanko reads the machine's clock in places no argument reaches (past certificate
validation starts from "now"; the proof-of-existence manager dates unknown objects "now").
Validation therefore runs inside :func:`shared.clock.pinned_at` with the validation time, and
pyHanko's modules read that pin (:func:`shared.clock.route_library_clocks`) — per validation and
thread-safe. Validating "at" a time earlier than the lab clock is a point-in-time validation:
revocation data issued later is accepted as a statement about that time (``retroactive_revinfo``).

**Validation data.** The validator trusts exactly the root in :class:`TrustSettings` (never a root
embedded in the document) and fetches nothing itself: it uses the document's own data (DSS, CMS,
JAdES ``rVals``) and what the portal fetched from the TSP for this validation (its current CRLs
and certificates). Revocation data about the signer's certificate issued after that certificate
expired is left out (RFC 5280 §3.3 lets a CA drop expired certificates from its CRLs, so such a
CRL proves nothing about them, and given to pyHanko's past validation it turns a good B-LT or
B-LTA into OUT_OF_BOUNDS_NO_POE); the detailed report lists it as *not used*.

**Checks SignLab adds** (each named in the report when it changes the verdict): pyHanko 0.38's
process with time stops looking at a certificate once it has expired (it checks only the start of
its validity), so a time-stamped signature made *after* its certificate expired, or *after* its
revocation, would pass. EN 319 102-1 §5.5.4 says otherwise, so a PASSED result becomes
INDETERMINATE / OUT_OF_BOUNDS_NO_POE when the best signature time is after the certificate's
notAfter, and INDETERMINATE / REVOKED_NO_POE when any available revocation data states a revocation
at or before the best signature time.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, fields
from enum import StrEnum
from io import BytesIO
from typing import Any

from asn1crypto import cms, ocsp, x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.hazmat.primitives.serialization import load_der_public_key
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.ades.report import AdESStatus, AdESSubIndic
from pyhanko.sign.diff_analysis import DiffResult
from pyhanko.sign.general import extract_certificate_info
from pyhanko.sign.validation import ades, generic_cms
from pyhanko.sign.validation.dss import DocumentSecurityStore
from pyhanko.sign.validation.errors import NoDSSFoundError
from pyhanko.sign.validation.generic_cms import validate_tst_signed_data
from pyhanko.sign.validation.pdf_embedded import EmbeddedPdfSignature, async_validate_pdf_timestamp
from pyhanko.sign.validation.policy_decl import (
    LocalKnowledge,
    PdfSignatureValidationSpec,
    RevinfoOnlineFetchingRule,
    RevocationInfoGatheringSpec,
    SignatureValidationSpec,
)
from pyhanko.sign.validation.qualified.assess import QualificationAssessor
from pyhanko.sign.validation.qualified.eutl_parse import trust_list_to_registry_unsafe
from pyhanko.sign.validation.qualified.q_status import QcPrivateKeyManagementType
from pyhanko.sign.validation.qualified.tsp import QcCertType, QTSTServiceInformation, TSPRegistry
from pyhanko.sign.validation.status import ModificationLevel, PdfSignatureStatus, SignatureCoverageLevel
from pyhanko_certvalidator import CertificateValidator
from pyhanko_certvalidator.authority import AuthorityWithCert
from pyhanko_certvalidator.context import CertValidationPolicySpec
from pyhanko_certvalidator.errors import ExpiredError, InsufficientRevinfoError, PathBuildingError, PathValidationError, RevokedError
from pyhanko_certvalidator.ltv.types import ValidationTimingInfo
from pyhanko_certvalidator.path import ValidationPath
from pyhanko_certvalidator.policy_decl import CertRevTrustPolicy, RevocationCheckingPolicy, RevocationCheckingRule
from pyhanko_certvalidator.registry import SimpleTrustManager
from pyhanko_certvalidator.revinfo.archival import CRLContainer, OCSPContainer

from services.portal import cades_asn1  # noqa: F401 - asn1crypto then parses CAdES archive time-stamp attributes
from services.portal.archive_timestamps import ArchiveCheck, cades_archive_checks, jades_archive_checks
from services.portal.documents import SignatureFormat
from services.portal.jades import b64url_decode, parse_jws
from services.portal.ltv import (
    ValidationMaterial,
    load_certificate,
    read_only_certificate,
    read_only_crl,
    validation_context,
)
from services.portal.validation_detail import (
    ProofOfExistence,
    RevocationFact,
    SignatureFacts,
    TimestampFact,
    iso,
    revocation_fact,
)
from shared.clock import lab_clock, pinned_at

__all__ = [
    "Check",
    "Indication",
    "SignatureReport",
    "TrustSettings",
    "ValidationReport",
    "detect_format",
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
    "OUT_OF_BOUNDS_NO_POE": "The signer's certificate is outside its validity period at the validation time and nothing "
    "proves the signature existed while it was valid. Short-term certificates expire within minutes: a signature "
    "without a time-stamp (B-B) cannot be verified after that; sign at level B-T or higher so that the time-stamp "
    "proves when the signature was made. (Also given when a time-stamp shows the signature was made after the "
    "certificate expired.)",
    "NO_POE": "There is no proof of existence (time-stamp) for the signature, or for its validation data, at a time "
    "when its certificate was valid.",
    "TRY_LATER": "Revocation information for a certificate was not available or not fresh enough; try again when the "
    "CA's CRL/OCSP can be reached.",
    "CHAIN_CONSTRAINTS_FAILURE": "The certificate chain breaks a constraint (key usage, basic constraints, policy).",
    "CERTIFICATE_CHAIN_GENERAL_FAILURE": "The certificate chain could not be validated.",
    "SIG_CONSTRAINTS_FAILURE": "The signature does not meet the validation constraints (e.g. a required attribute is missing).",
    "REVOKED_NO_POE": "The signer's certificate is revoked and nothing proves the signature was made before the "
    "revocation (no time-stamp, or a time-stamp after the revocation). The signature must not be relied on.",
    "REVOKED_CA_NO_POE": "A CA certificate of the chain is revoked and nothing proves the signature was made before.",
    "EXPIRED": "A certificate in the chain had expired at the validation time.",
    "NOT_YET_VALID": "The signer's certificate was not yet valid at the signing time.",
    "TIMESTAMP_ORDER_FAILURE": "The time-stamps of the signature are not in a possible order.",
    "NO_SIGNING_CERTIFICATE_FOUND": "The signer's certificate is not in the signature.",
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
    """The simple report of one signature.

    ``qualification`` is the qualification at the best signature time (the signing time the proof
    of existence establishes, or the validation time without one); ``qualification_at_validation_time``
    the one at the validation time.
    """

    id: str
    format: str
    indication: str
    sub_indication: str | None
    signer: dict[str, str]
    signing_time: str | None
    timestamp: dict[str, Any] | None
    level: str | None
    qualification: str
    qualification_detail: str
    checks: list[Check] = field(default_factory=list)
    explanations: list[str] = field(default_factory=list)
    validation_time: str = ""
    best_signature_time: str | None = None
    proof_of_existence: dict[str, Any] | None = None
    """The PoE that carried the decision: ``{"of", "time", "proof"}``; None when no PoE was needed or found."""
    validation_process: str = ""
    qualification_at_validation_time: str = ""


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
    validation_time: str = ""
    facts: list[SignatureFacts] = field(default_factory=list, repr=False, compare=False)
    """What each signature's validation saw (not part of the simple report)."""

    def to_dict(self) -> dict[str, Any]:
        """The simple report, JSON-ready."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self) if f.name != "facts"}

    def detailed(self) -> dict[str, Any]:
        """The detailed report: the simple verdicts plus every signature's chain, revocation data,
        time-stamps, proof of existence and qualification at both times."""
        return {"document": self.document, "format": self.format, "indication": self.indication,
                "sub_indication": self.sub_indication, "validation_time": self.validation_time,
                "trust_anchor": self.trust_anchor, "trusted_list": self.trusted_list, "generated_at": self.generated_at,
                "signatures": [f.detailed() for f in self.facts]}

    def etsi_xml(self) -> str:
        """The ETSI TS 119 102-2 validation report (XML)."""
        from services.portal.etsi_report import etsi_validation_report

        return etsi_validation_report(self)

    def summary(self) -> str:
        """One line: ``TOTAL_PASSED · 1 signature · QES · B-LTA``."""
        if not self.signatures:
            return f"{self.indication}" + (f" / {self.sub_indication}" if self.sub_indication else "") + " · no signature"
        first = self.signatures[0]
        sub = f" / {self.sub_indication}" if self.sub_indication else ""
        return f"{self.indication}{sub} · {len(self.signatures)} signature(s) · {first.qualification} · {first.level or '-'}"


def _plain(value: Any) -> Any:
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    return value


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


# --------------------------------------------------------------------------- the validation run


@dataclass
class _Run:
    """One validation: trust, the validation time and whether it lies before the lab clock's now."""

    trust: TrustSettings
    moment: dt.datetime
    point_in_time: bool

    def timing(self) -> ValidationTimingInfo:
        return ValidationTimingInfo(validation_time=self.moment, best_signature_time=self.moment,
                                    point_in_time_validation=self.point_in_time)

    def spec(self, knowledge: LocalKnowledge) -> SignatureValidationSpec:
        """Trust the root only; check revocation where a certificate declares it (CRL DP / OCSP
        pointer; a short-term certificate without either relies on its short validity); never fetch."""
        rule = RevocationCheckingRule.CHECK_IF_DECLARED
        policy = CertValidationPolicySpec(
            trust_manager=SimpleTrustManager.build([self.trust.root]),
            revinfo_policy=CertRevTrustPolicy(RevocationCheckingPolicy(ee_certificate_rule=rule, intermediate_ca_cert_rule=rule),
                                              retroactive_revinfo=self.point_in_time),
        )
        return SignatureValidationSpec(cert_validation_policy=policy, local_knowledge=knowledge,
                                       revinfo_gathering_policy=RevocationInfoGatheringSpec(
                                           online_fetching_rule=RevinfoOnlineFetchingRule.LOCAL_ONLY))

    def tsp_facts(self, facts: SignatureFacts) -> None:
        """Record the TSP's current certificates and CRLs for this signature; when the validation
        time is after the signer's certificate expired, those about the signer issued after that
        are left out (see the module docstring)."""
        for der in self.trust.material.certificates:
            facts.know_certificate(read_only_certificate(der), "tsp")
        for kind, items in (("CRL", self.trust.material.crls), ("OCSP", self.trust.material.ocsps)):
            for der in items:
                fact = revocation_fact(kind, der, "tsp")
                if fact is None:
                    continue
                signer = facts.signer
                issued = fact.produced_at or fact.this_update
                if (signer is not None and self.moment > signer.not_valid_after and fact.covers(signer)
                        and issued and issued > signer.not_valid_after):
                    fact.used = False
                    fact.note = (f"issued after the signer's certificate expired ({iso(signer.not_valid_after)}): it says "
                                 "nothing reliable about it, so it is not used")
                facts.revocation.append(fact)

    @staticmethod
    def knowledge(facts: SignatureFacts, *, tsp_only: bool = False) -> LocalKnowledge:
        """pyHanko's local knowledge: every known certificate and the used revocation objects
        (``tsp_only``: only the TSP's, for the LTA process, which reads the PDF's DSS itself)."""
        used = [r for r in facts.revocation if r.used and (r.source == "tsp" or not tsp_only)]
        return LocalKnowledge(known_crls=[CRLContainer(read_only_crl(r.der)) for r in used if r.kind == "CRL"],
                              known_ocsps=[OCSPContainer(ocsp.OCSPResponse.load(r.der)) for r in used if r.kind == "OCSP"],
                              known_certs=[c.certificate for c in facts.certificates.values()])


async def validate_document(label: str, signed: bytes, trust: TrustSettings, *, original: bytes | None = None,
                            at: dt.datetime | None = None) -> ValidationReport:
    """Validate one signed document; ``original`` is the signed file/payload for detached CAdES/JAdES.

    :param at: the validation time; default: now on the lab clock. Earlier than now: a
        point-in-time validation (revocation data issued since is read as a statement about then).
    """
    now = lab_clock().now()
    moment = (at.astimezone(dt.UTC) if at.tzinfo else at.replace(tzinfo=dt.UTC)) if at is not None else now
    run = _Run(trust, moment, point_in_time=moment < now - dt.timedelta(seconds=1))
    fmt = detect_format(signed)
    with pinned_at(moment):
        if fmt is SignatureFormat.PADES:
            report = await _validate_pdf(label, signed, run)
        elif fmt is SignatureFormat.JADES:
            report = await _validate_jades(label, signed, original, run)
        else:
            report = await _validate_cades(label, signed, original, run)
    report.validation_time = iso(moment) or ""
    return report


# --------------------------------------------------------------------------- shared pieces


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
        "not_before": iso(cert.not_valid_before) or "",
        "not_after": iso(cert.not_valid_after) or "",
        "policies": ", ".join(policies),
    }


def _qualification(trust: TrustSettings, path: ValidationPath | None, moment: dt.datetime | None) -> tuple[str, str]:
    """The signature's qualification per the trusted list at ``moment`` (QES, AdES-QC, AdES)."""
    if path is None:
        return "not qualified", "The signature is not valid and trusted, so it cannot be qualified."
    if trust.registry is None:
        return "unknown", "No trusted list is configured, so qualification cannot be decided."
    try:
        result = QualificationAssessor(trust.registry).check_entity_cert_qualified(path, moment)
    except NotImplementedError as exc:
        return "not qualified", f"The certificate's QC statements could not be interpreted ({exc})."
    status = result.status
    service = result.service_definition.base_info.service_name if result.service_definition else "no trusted-list service"
    when = f" at {iso(moment)}" if moment else ""
    if status.qualified and status.qc_type is QcCertType.QC_ESIGN and status.qc_key_security.is_qscd:
        managed = " (QSCD managed on behalf of the signer)" if status.qc_key_security is QcPrivateKeyManagementType.QSCD_DELEGATED else ""
        return "QES", (f"Qualified electronic signature: qualified certificate for e-signatures with the key in a "
                       f"QSCD{managed}, per the trusted-list service '{service}' granted{when}.")
    if status.qualified:
        return "AdES-QC", f"Advanced electronic signature with a qualified certificate, but the key is not in a QSCD (per '{service}'{when})."
    return "AdES", (f"Advanced electronic signature: valid and trusted, but the certificate is not qualified according to "
                    f"the trusted list{when} (no granted qualified service for its issuer then).")


def _tsa_qualified(trust: TrustSettings, tsa: x509.Certificate | None, moment: dt.datetime | None) -> tuple[bool | None, str]:
    """Whether a time-stamp is qualified: its TSA is a QTST service granted on the trusted list at its time."""
    if tsa is None or moment is None:
        return None, "unknown"
    if trust.registry is None:
        return None, "no trusted list configured"
    services = [s for s in trust.registry.applicable_service_definitions(AuthorityWithCert(tsa), moment)
                if isinstance(s, QTSTServiceInformation)]
    if services:
        return True, f"qualified time-stamp: '{services[0].base_info.service_name}' granted on the trusted list at {iso(moment)}"
    return False, f"not a qualified time-stamp: the TSA is not a granted QTST service on the trusted list at {iso(moment)}"


def _leaf_first(path: ValidationPath) -> list[x509.Certificate]:
    """The certificates of ``path`` from the end entity to the trust anchor (pyHanko iterates from the anchor)."""
    return [c for c in reversed(list(path)) if isinstance(c, x509.Certificate)]


def _level_label(rank: int) -> str | None:
    return ["B-B", "B-T", "B-LT", "B-LTA"][rank] if rank >= 0 else None


def _has_signing_certificate_attr(signer_info: cms.SignerInfo) -> bool:
    attrs = signer_info["signed_attrs"]
    return any(a["type"].native in ("signing_certificate_v2", "signing_certificate") for a in attrs) if attrs.native else False


def _verdict_of(subindic: AdESSubIndic) -> tuple[Indication, str | None]:
    status = subindic.status
    if status is AdESStatus.PASSED:
        return Indication.TOTAL_PASSED, None
    if status is AdESStatus.FAILED:
        return Indication.TOTAL_FAILED, subindic.standard_name
    name = subindic.standard_name
    return Indication.INDETERMINATE, "CERTIFICATE_CHAIN_GENERAL_FAILURE" if name == "GENERIC" else name


def _adjust(facts: SignatureFacts, indication: Indication, sub: str | None) -> tuple[Indication, str | None]:
    """The two EN 319 102-1 §5.5.4 checks pyHanko 0.38 skips once the certificate has expired."""
    signer, best = facts.signer, facts.best_signature_time
    if indication is not Indication.TOTAL_PASSED or signer is None or best is None:
        return indication, sub
    if best > signer.not_valid_after:
        facts.adjustment = (f"the best signature time {iso(best)} is after the certificate's notAfter "
                            f"{iso(signer.not_valid_after)}: the signature was made after the certificate expired")
        return Indication.INDETERMINATE, "OUT_OF_BOUNDS_NO_POE"
    revoked = [t for r in facts.revocation if r.covers(signer) and (t := r.revoked_at(signer)) is not None]
    if revoked and min(revoked) <= best:
        facts.adjustment = (f"the certificate was revoked at {iso(min(revoked))}, at or before the best signature time "
                            f"{iso(best)}: nothing proves the signature existed before the revocation")
        return Indication.INDETERMINATE, "REVOKED_NO_POE"
    return indication, sub


def _common_name(cert: x509.Certificate | None) -> str:
    if cert is None:
        return "an unknown TSA"
    return str(cert.subject.native.get("common_name") or cert.subject.human_friendly)


def _poe_needed(facts: SignatureFacts) -> tuple[str, dt.datetime] | None:
    """Why the signature needs a proof of existence earlier than the validation time: ``("expired",
    when)`` or ``("was revoked", when)`` of its certificate by then; None when it needs none."""
    signer, moment = facts.signer, facts.validation_time
    if signer is None or moment is None:
        return None
    if moment > signer.not_valid_after:
        return "expired", signer.not_valid_after
    revoked = [t for r in facts.revocation if r.covers(signer) and (t := r.revoked_at(signer)) is not None and t <= moment]
    return ("was revoked", min(revoked)) if revoked else None


def _decide_poe(facts: SignatureFacts, indication: Indication) -> ProofOfExistence | None:
    """List the proofs of existence, name the one that carried the decision (``facts.decided_by``)
    and return it (None when the validation time itself did)."""
    signature_ts = next((t for t in facts.timestamps if t.kind == "signature" and t.valid), None)
    archives = [t for t in facts.timestamps if t.kind in ("archive", "document") and t.valid]
    deciding = None
    if signature_ts is not None and signature_ts.time is not None:
        deciding = ProofOfExistence("signature", signature_ts.time,
                                    f"signature time-stamp by {_common_name(signature_ts.tsa)}", signature_ts.id)
        facts.poe.append(deciding)
    for archive in archives:
        if archive.time is not None:
            facts.poe.append(ProofOfExistence("signature, signature time-stamp and validation data", archive.time,
                                              f"{archive.kind} time-stamp by {_common_name(archive.tsa)}", archive.id))
    needed = _poe_needed(facts)
    if indication is not Indication.TOTAL_PASSED:
        facts.decided_by = (f"no proof that the signature existed before its certificate {needed[0]} ({iso(needed[1])})"
                            if needed and deciding is None else f"{facts.sub_indication or facts.indication}")
        return None
    if needed is None or deciding is None:
        facts.decided_by = "the validation time: the certificate was valid and not revoked then, no earlier proof was needed"
        return None
    facts.decided_by = (f"the certificate {needed[0]} at {iso(needed[1])}, but the signature time-stamp "
                        f"({iso(deciding.time)}) proves the signature existed before that")
    if archives:
        facts.decided_by += (f"; the {archives[-1].kind} time-stamp ({iso(archives[-1].time)}) proves the validation data "
                             "(certificates, revocation data) existed then too")
    return deciding


def _finish(facts: SignatureFacts, run: _Run, indication: Indication, sub: str | None, path: ValidationPath | None,
            checks: list[Check], rank: int, claimed: str | None) -> SignatureReport:
    """Apply SignLab's checks, qualify, name the PoE and build the simple report of one signature."""
    indication, sub = _adjust(facts, indication, sub)
    facts.indication, facts.sub_indication = indication.value, sub
    facts.validation_time = run.moment
    if path is not None:
        facts.chain = _leaf_first(path)
    deciding = _decide_poe(facts, indication)
    trusted = indication is Indication.TOTAL_PASSED
    at_signing, detail = _qualification(run.trust, path if trusted else None, facts.best_signature_time or run.moment)
    at_validation, detail_now = _qualification(run.trust, path if trusted else None, run.moment)
    facts.qualification_at_signing, facts.qualification_at_validation = at_signing, at_validation
    facts.qualification_detail = detail if at_signing == at_validation else f"{detail} At the validation time: {detail_now}"
    if facts.adjustment:
        checks.append(Check("SignLab check (EN 319 102-1 §5.5.4)", "failed", facts.adjustment))
    checks.append(Check("Proof of existence", "passed" if trusted else "info", facts.decided_by))
    checks.append(Check("Qualification (trusted list)", "passed" if at_signing == "QES" else "info", facts.qualification_detail))
    signature_ts = next((t for t in facts.timestamps if t.kind == "signature"), None)
    timestamp = None if signature_ts is None else {
        "time": iso(signature_ts.time) or "", "tsa": signature_ts.tsa.subject.human_friendly if signature_ts.tsa else "",
        "status": "valid" if signature_ts.valid else "not valid", "qualified": signature_ts.qualified,
        "qualification": signature_ts.qualification_detail}
    return SignatureReport(
        id=facts.id, format=facts.format, indication=indication.value, sub_indication=sub,
        signer=_signer_info(facts.signer), signing_time=claimed, timestamp=timestamp,
        level=_level_label(rank) if trusted else _level_label(min(rank, 0)),
        qualification=at_signing, qualification_detail=facts.qualification_detail, checks=checks,
        explanations=[e for e in [explain(sub)] if e], validation_time=iso(run.moment) or "",
        best_signature_time=iso(facts.best_signature_time), validation_process=facts.process,
        proof_of_existence=deciding.summary() if deciding else None,
        qualification_at_validation_time=at_validation,
    )


def _integrity_checks(status: Any, label: str) -> list[Check]:
    checks = [
        Check("Signature intact (digest matches)", "passed" if status.intact else "failed",
              "the signed bytes are unchanged" if status.intact else "the signed bytes were changed after signing"),
        Check("Signature value", "passed" if status.valid else "failed",
              f"{status.pkcs7_signature_mechanism} over {status.md_algorithm}"),
    ]
    path = status.validation_path
    checks.append(Check(f"Certificate chain to the {label}", "passed" if path is not None else "failed",
                        " → ".join(c.subject.human_friendly for c in path) if path is not None else
                        (status.trust_problem_indic.name if status.trust_problem_indic else "no path")))
    if status.revoked and status.revocation_details is not None:
        details = status.revocation_details
        checks.append(Check("Revocation status", "failed", f"revoked at {iso(details.revocation_date)} "
                                                           f"({details.revocation_reason.native})"))
    return checks


async def _timestamp_fact(kind: str, token: cms.ContentInfo, run: _Run, knowledge: ValidationMaterial,
                          expected_imprint: Callable[[str], bytes]) -> TimestampFact:
    """Validate one time-stamp token to the root (at the validation time) and qualify it."""
    try:
        status = await validate_tst_signed_data(token["content"], validation_context(
            run.trust.root, knowledge, revocation_mode="soft-fail", retroactive_revinfo=run.point_in_time), expected_imprint)
        path = status.get("validation_path")
        ok = bool(status["intact"] and status["valid"] and status.get("trust_problem_indic") is None and path is not None)
        tsa = status["signing_cert"]
        moment = status["timestamp"]
        qualified, text = _tsa_qualified(run.trust, tsa, moment)
        detail = f"{iso(moment)} by {tsa.subject.human_friendly}" + ("" if ok else " — does not validate to the SignLab root")
        return TimestampFact(kind, moment, tsa, _leaf_first(path) if path is not None else [tsa], ok, detail, token.dump(),
                             qualified, text)
    except Exception as exc:  # a broken token inside an untrusted upload is a failed time-stamp, not a 500
        return TimestampFact(kind, None, None, [], False, f"could not be validated ({exc.__class__.__name__})", token.dump())


# --------------------------------------------------------------------------- PDF


def _dss_facts(reader: PdfFileReader, facts: SignatureFacts) -> bool:
    try:
        dss = DocumentSecurityStore.read_dss(reader)
    except NoDSSFoundError:
        return False
    for cert in dss.load_certs():
        facts.know_certificate(cert, "dss")
    found = False
    for kind, refs in (("CRL", dss.crls), ("OCSP", dss.ocsps)):
        for ref in refs:
            fact = revocation_fact(kind, ref.get_object().data, "dss")
            if fact is not None:
                fact.note = "read by pyHanko's long-term validation from the document"
                facts.revocation.append(fact)
                found = True
    return found


async def _validate_pdf(label: str, content: bytes, run: _Run) -> ValidationReport:
    try:
        reader = PdfFileReader(BytesIO(content), strict=False)
        signatures = reader.embedded_regular_signatures
        doc_timestamps = reader.embedded_timestamp_signatures
    except Exception:  # any parse failure of an untrusted upload is a format failure, never a 500
        return _format_failure(label, SignatureFormat.PADES, run, "the file could not be read as a PDF")
    if not signatures:
        return _no_signature(label, SignatureFormat.PADES, run, "The PDF contains no signature.")
    reports, all_facts = [], []
    for sig in signatures:
        facts = SignatureFacts(id=str(sig.field_name), format="PAdES")
        try:
            report = await _validate_pdf_signature(sig, reader, doc_timestamps, run, facts)
        except Exception as exc:  # malformed CMS inside an untrusted PDF
            report = _failed_signature(str(sig.field_name), "PAdES", run, "FORMAT_FAILURE",
                                       f"the signature could not be parsed ({exc.__class__.__name__})")
        reports.append(report)
        all_facts.append(facts)
    return _document_report(label, SignatureFormat.PADES, reports, run, all_facts)


async def _validate_pdf_signature(sig: EmbeddedPdfSignature, reader: PdfFileReader, doc_timestamps: list[Any],
                                  run: _Run, facts: SignatureFacts) -> SignatureReport:
    signer_info = sig.signer_info
    facts.signer = sig.signer_cert
    facts.signature_value = signer_info["signature"].native
    facts.dtbsr_digest = hashlib.sha256(signer_info["signed_attrs"].dump()).digest()
    facts.document_digest_algorithm = signer_info["digest_algorithm"]["algorithm"].native
    facts.document_digest = sig.compute_digest()
    for cert in sig.signed_data["certificates"] or []:
        facts.know_certificate(cert.chosen, "signature")
    run.tsp_facts(facts)
    has_dss_revinfo = _dss_facts(reader, facts)
    sig.compute_integrity_info()  # coverage and later changes (pyHanko's difference analysis)
    has_tst = next(generic_cms.extract_tst_data_iter(signer_info, signed=False), None) is not None
    knowledge = run.knowledge(facts, tsp_only=has_dss_revinfo)
    spec = run.spec(knowledge)
    integrity = sig.summarise_integrity_info()
    if not has_tst:
        facts.process = "Basic"
        # (pyHanko 0.38's basic process always answers a plain CMS status: the PDF's coverage and
        # later changes are read from ``integrity`` below)
        result = await ades.ades_basic_validation(sig.signed_data, spec, timing_info=run.timing(),
                                                  raw_digest=facts.document_digest)
    elif not has_dss_revinfo:
        facts.process = "LTVM"
        result = await ades.ades_with_time_validation(sig.signed_data, spec, timing_info=run.timing(),
                                                      raw_digest=facts.document_digest, extra_status_kwargs=integrity,
                                                      status_cls=PdfSignatureStatus)
    else:
        facts.process = "LTA"
        result = await ades.ades_lta_validation(sig, PdfSignatureValidationSpec(spec), timing_info=run.timing())
    status = result.api_status
    facts.pyhanko_message = result.failure_msg
    # the basic process has no proof of existence: the best signature time is the validation time
    facts.best_signature_time = getattr(result, "best_signature_time", None) or run.moment
    indication, sub = _verdict_of(result.ades_subindic)
    checks = _integrity_checks(status, "SignLab root")
    coverage, modification = integrity.get("coverage"), _modification_level(integrity)
    coverage_ok = coverage in (SignatureCoverageLevel.ENTIRE_FILE, SignatureCoverageLevel.ENTIRE_REVISION)
    modification_ok = modification in (ModificationLevel.NONE, ModificationLevel.LTA_UPDATES, ModificationLevel.FORM_FILLING)
    checks.append(Check("Coverage", "passed" if coverage_ok else "failed", coverage.name if coverage else "unknown"))
    checks.append(Check("Later changes", "passed" if modification_ok else "failed",
                        modification.name if modification else "unknown"))
    if indication is Indication.TOTAL_PASSED and not (coverage_ok and modification_ok):
        indication, sub = Indication.TOTAL_FAILED, "DISALLOWED_MODIFICATIONS"
    rank = -1
    if status.intact and status.valid and _has_signing_certificate_attr(signer_info):
        rank = 0
        checks.append(Check("Signing certificate reference (ESS signing-certificate-v2)", "passed", "present in the signed attributes"))
    else:
        checks.append(Check("Signing certificate reference (ESS signing-certificate-v2)", "failed", "missing: not a baseline signature"))
    for token in generic_cms.extract_tst_data_iter(signer_info, signed=False):
        fact = await _timestamp_fact("signature", cms.ContentInfo({"content_type": "signed_data", "content": token}),
                                     run, _material_of(facts), generic_cms.message_imprint_checker(signer_info))
        facts.timestamps.append(fact)
        checks.append(Check("Signature time-stamp", "passed" if fact.valid else "failed", fact.detail))
        if fact.valid and rank == 0:
            rank = 1
    if not has_tst:
        checks.append(Check("Signature time-stamp", "info", "none (level B-B)"))
    if rank >= 1 and has_dss_revinfo:
        rank = 2
        checks.append(Check("Long-term validation data (DSS)", "passed", "certificates and CRL/OCSP embedded in the document security store"))
    else:
        checks.append(Check("Long-term validation data (DSS)", "info", "none"))
    for doc_ts in doc_timestamps:
        ts_status = await async_validate_pdf_timestamp(doc_ts, validation_context=validation_context(
            run.trust.root, _material_of(facts), revocation_mode="soft-fail", retroactive_revinfo=run.point_in_time))
        ok = bool(ts_status.intact and ts_status.valid and ts_status.trusted)
        qualified, text = _tsa_qualified(run.trust, ts_status.signing_cert, ts_status.timestamp)
        path = ts_status.validation_path
        facts.timestamps.append(TimestampFact("document", ts_status.timestamp, ts_status.signing_cert,
                                              _leaf_first(path) if path is not None else [ts_status.signing_cert], ok,
                                              f"{iso(ts_status.timestamp)} by {ts_status.signing_cert.subject.human_friendly}",
                                              doc_ts.signed_data.dump(), qualified, text))
        checks.append(Check("Archive (document) time-stamp", "passed" if ok else "failed", iso(ts_status.timestamp) or ""))
        if ok and rank == 2:
            rank = 3
    return _finish(facts, run, indication, sub, status.validation_path if status else None, checks, rank,
                   iso(sig.self_reported_timestamp))


def _modification_level(integrity: dict[str, Any]) -> ModificationLevel | None:
    """The later-changes level from pyHanko's integrity summary (read as ``PdfSignatureStatus`` does)."""
    coverage, diff = integrity.get("coverage"), integrity.get("diff_result")
    if diff is None:
        if coverage is SignatureCoverageLevel.ENTIRE_REVISION:
            return None
        return ModificationLevel.NONE if coverage is SignatureCoverageLevel.ENTIRE_FILE else ModificationLevel.OTHER
    return diff.modification_level if isinstance(diff, DiffResult) else ModificationLevel.OTHER


def _material_of(facts: SignatureFacts) -> ValidationMaterial:
    """The known certificates and used revocation data, for time-stamp validation."""
    return ValidationMaterial(certificates=[c.certificate.dump() for c in facts.certificates.values()],
                              crls=[r.der for r in facts.revocation if r.used and r.kind == "CRL"],
                              ocsps=[r.der for r in facts.revocation if r.used and r.kind == "OCSP"])


# --------------------------------------------------------------------------- CAdES


def _cms_facts(signed_data: cms.SignedData, facts: SignatureFacts) -> bool:
    for cert in signed_data["certificates"] if signed_data["certificates"].native else []:
        if cert.name == "certificate":
            facts.know_certificate(cert.chosen, "signature")
    found = False
    if signed_data["crls"].native:
        for choice in signed_data["crls"]:
            fact = None
            if choice.name == "crl":
                fact = revocation_fact("CRL", choice.chosen.dump(), "cms")
            elif choice.name == "other" and choice.chosen["other_rev_info_format"].native == "ocsp_response":
                fact = revocation_fact("OCSP", choice.chosen["other_rev_info"].dump(), "cms")
            if fact is not None:
                facts.revocation.append(fact)
                found = True
    return found


async def _validate_cades(label: str, signature: bytes, original: bytes | None, run: _Run) -> ValidationReport:
    try:
        content_info = cms.ContentInfo.load(signature)
        signed_data = content_info["content"]
        signer_info = signed_data["signer_infos"][0]
        _ = signer_info["signature"].native
        signer_cert = extract_certificate_info(signed_data).signer_cert
    except Exception:  # any parse failure of an untrusted upload is a format failure
        return _format_failure(label, SignatureFormat.CADES, run, "the .p7s is not a CMS SignedData")
    if original is None:
        return _no_signature(label, SignatureFormat.CADES, run, "A detached CAdES signature needs the signed file too.",
                             sub="SIGNED_DATA_NOT_FOUND", indication=Indication.INDETERMINATE)
    facts = SignatureFacts(id="signature-1", format="CAdES", signer=signer_cert,
                           signature_value=signer_info["signature"].native,
                           dtbsr_digest=hashlib.sha256(signer_info["signed_attrs"].dump()).digest())
    algorithm = signer_info["digest_algorithm"]["algorithm"].native
    facts.document_digest_algorithm = algorithm
    facts.document_digest = hashlib.new(algorithm, original).digest()
    has_revinfo = _cms_facts(signed_data, facts)
    run.tsp_facts(facts)
    has_tst = next(generic_cms.extract_tst_data_iter(signer_info, signed=False), None) is not None
    spec = run.spec(run.knowledge(facts))
    if has_tst:
        facts.process = "LTVM"
        result = await ades.ades_with_time_validation(signed_data, spec, timing_info=run.timing(), raw_digest=facts.document_digest)
    else:
        facts.process = "Basic"
        result = await ades.ades_basic_validation(signed_data, spec, timing_info=run.timing(), raw_digest=facts.document_digest)
    status = result.api_status
    facts.pyhanko_message = result.failure_msg
    facts.best_signature_time = getattr(result, "best_signature_time", None) or run.moment
    indication, sub = _verdict_of(result.ades_subindic)
    checks = _integrity_checks(status, "SignLab root")
    rank = 0 if status.intact and status.valid and _has_signing_certificate_attr(signer_info) else -1
    checks.append(Check("Signing certificate reference (ESS signing-certificate-v2)", "passed" if rank == 0 else "failed", ""))
    material = _material_of(facts)
    for token in generic_cms.extract_tst_data_iter(signer_info, signed=False):
        fact = await _timestamp_fact("signature", cms.ContentInfo({"content_type": "signed_data", "content": token}),
                                     run, material, generic_cms.message_imprint_checker(signer_info))
        facts.timestamps.append(fact)
        checks.append(Check("Signature time-stamp", "passed" if fact.valid else "failed", fact.detail))
        rank = 1 if fact.valid and rank == 0 else rank
    if not has_tst:
        checks.append(Check("Signature time-stamp", "info", "none (level B-B)"))
    if rank >= 1 and has_revinfo:
        rank = 2
        checks.append(Check("Long-term validation data", "passed", "certificates and CRL/OCSP in SignedData"))
        rank = await _archive_level(lambda: cades_archive_checks(signature, original),
                                    "archive-time-stamp-v3, EN 319 122-1", rank, checks, run, facts)
    signing_time = None
    for attr in signer_info["signed_attrs"] if signer_info["signed_attrs"].native else []:
        if attr["type"].native == "signing_time":
            signing_time = iso(attr["values"][0].native)
    report = _finish(facts, run, indication, sub, status.validation_path if status else None, checks, rank, signing_time)
    return _document_report(label, SignatureFormat.CADES, [report], run, [facts])


# --------------------------------------------------------------------------- JAdES


async def _validate_jades(label: str, signature: bytes, payload: bytes | None, run: _Run) -> ValidationReport:
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
        return _format_failure(label, SignatureFormat.JADES, run, "the file is not a detached JAdES signature with sigD and x5c")
    if payload is None:
        return _no_signature(label, SignatureFormat.JADES, run, "A detached JAdES signature needs the signed payload too.",
                             sub="SIGNED_DATA_NOT_FOUND", indication=Indication.INDETERMINATE)
    signing_input = f"{jws.protected}.".encode("ascii")
    facts = SignatureFacts(id="signature-1", format="JAdES", signer=leaf, signature_value=signature_value,
                           dtbsr_digest=hashlib.sha256(signing_input).digest(), document_digest=hashlib.sha256(payload).digest(),
                           process="Basic")
    for cert in chain:
        facts.know_certificate(cert, "signature")
    checks: list[Check] = []
    expected = [b64url_decode(v) for v in sig_d.get("hashV", [])]
    intact = facts.document_digest in expected and sig_d.get("hashM") == "S256"
    checks.append(Check("Payload digest (sigD)", "passed" if intact else "failed",
                        "the payload matches the signed digest" if intact else "the payload does not match the signed digest"))
    valid = _jws_signature_valid(header, leaf, signing_input, signature_value)
    checks.append(Check("Signature value", "passed" if valid else "failed", f"{header.get('alg')} over the protected header"))
    has_revinfo, tst_token = False, None
    for item in jws.etsi_u():
        if "xVals" in item:
            for x in item["xVals"]:
                facts.know_certificate(load_certificate(base64.b64decode(x["x509Cert"])), "signature")
        if "rVals" in item:
            for kind, key in (("CRL", "crlVals"), ("OCSP", "ocspVals")):
                for value in item["rVals"].get(key, []):
                    fact = revocation_fact(kind, base64.b64decode(value), "cms")
                    if fact is not None:
                        facts.revocation.append(fact)
            has_revinfo = True
        if "sigTst" in item:
            tst_token = cms.ContentInfo.load(base64.b64decode(item["sigTst"]["tstTokens"][0]["val"]))
    run.tsp_facts(facts)
    imprint = hashlib.sha256(jws.signature.encode("ascii")).digest()
    signature_ts = None
    if tst_token is not None:
        signature_ts = await _timestamp_fact("signature", tst_token, run, _material_of(facts), lambda _md: imprint)
        facts.timestamps.append(signature_ts)
        checks.append(Check("Signature time-stamp", "passed" if signature_ts.valid else "failed", signature_ts.detail))
        facts.process = "LTVM"
    else:
        checks.append(Check("Signature time-stamp", "info", "none (level B-B)"))
    path, chain_sub = await _validate_jws_chain(leaf, facts, run, signature_ts)
    checks.append(Check("Certificate chain to the SignLab root", "passed" if path is not None else "failed",
                        " → ".join(c.subject.human_friendly for c in path) if path is not None else (chain_sub or "")))
    if not intact:
        indication, sub = Indication.TOTAL_FAILED, "HASH_FAILURE"
    elif not valid:
        indication, sub = Indication.TOTAL_FAILED, "SIG_CRYPTO_FAILURE"
    elif path is None:
        indication, sub = Indication.INDETERMINATE, chain_sub or "NO_CERTIFICATE_CHAIN_FOUND"
    else:
        indication, sub = Indication.TOTAL_PASSED, None
    rank = 0 if intact and valid and ("x5t#S256" in header or "x5c" in header) else -1
    if rank == 0 and signature_ts is not None and signature_ts.valid:
        rank = 1
    if rank == 1 and has_revinfo:
        rank = 2
        rank = await _archive_level(lambda: jades_archive_checks(signature, payload), "arcTst, TS 119 182-1",
                                    rank, checks, run, facts)
    report = _finish(facts, run, indication, sub, path, checks, rank, str(header.get("sigT")) if header.get("sigT") else None)
    return _document_report(label, SignatureFormat.JADES, [report], run, [facts])


def _jws_signature_valid(header: dict[str, Any], leaf: x509.Certificate, signing_input: bytes, value: bytes) -> bool:
    if header.get("alg") != "ES256" or len(value) != 64:
        return False
    key = load_der_public_key(leaf.public_key.dump())
    der_sig = utils.encode_dss_signature(int.from_bytes(value[:32], "big"), int.from_bytes(value[32:], "big"))
    if not isinstance(key, ec.EllipticCurvePublicKey):
        return False
    try:
        key.verify(der_sig, signing_input, ec.ECDSA(hashes.SHA256()))
        return True
    except InvalidSignature:
        return False


async def _validate_jws_chain(leaf: x509.Certificate, facts: SignatureFacts, run: _Run,
                              signature_ts: TimestampFact | None) -> tuple[ValidationPath | None, str | None]:
    """EN 319 102-1 §5.3 then §5.5 for a JWS over pyhanko-certvalidator: the chain at the validation
    time; when the certificate has expired since and a valid signature time-stamp proves an earlier
    time inside its validity, the chain at that time."""

    async def at(moment: dt.datetime | None) -> ValidationPath:
        context = validation_context(run.trust.root, _material_of(facts), moment=moment, revocation_mode="soft-fail",
                                     retroactive_revinfo=moment is not None or run.point_in_time)
        return await CertificateValidator(leaf, validation_context=context).async_validate_usage({"non_repudiation"})

    facts.best_signature_time = run.moment
    poe = signature_ts.time if signature_ts is not None and signature_ts.valid else None
    if poe is not None:
        facts.best_signature_time = poe
    try:
        return await at(None), None
    except RevokedError as exc:
        revoked = _revocation_time(exc)
        if poe is not None and revoked is not None and poe < revoked:
            return await _retry(at, poe)
        return None, "REVOKED_NO_POE"
    except ExpiredError:
        if poe is None:
            facts.best_signature_time = run.moment
            return None, "OUT_OF_BOUNDS_NO_POE"
        return await _retry(at, poe)
    except PathBuildingError:
        return None, "NO_CERTIFICATE_CHAIN_FOUND"
    except InsufficientRevinfoError:
        return None, "TRY_LATER"
    except PathValidationError:
        return None, "CERTIFICATE_CHAIN_GENERAL_FAILURE"


async def _retry(at: Callable[[dt.datetime], Awaitable[ValidationPath]], poe: dt.datetime) -> tuple[ValidationPath | None, str | None]:
    try:
        return await at(poe), None
    except RevokedError:
        return None, "REVOKED_NO_POE"
    except ExpiredError:
        return None, "OUT_OF_BOUNDS_NO_POE"
    except (PathBuildingError, PathValidationError):
        return None, "CERTIFICATE_CHAIN_GENERAL_FAILURE"


def _revocation_time(exc: RevokedError) -> dt.datetime | None:
    return getattr(exc, "revocation_dt", None) or getattr(exc, "revocation_date", None)


async def _archive_level(find: Callable[[], list[ArchiveCheck]], name: str, rank: int, checks: list[Check],
                         run: _Run, facts: SignatureFacts) -> int:
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
        problems = "; ".join(archive.problems) or "message imprint recomputed from the signature: it matches"
        fact = await _timestamp_fact("archive", cms.ContentInfo.load(archive.token), run, _material_of(facts),
                                     lambda _algorithm, imprint=archive.expected_imprint: imprint)
        fact.valid = fact.valid and archive.imprint_matches
        facts.timestamps.append(fact)
        checks.append(Check(title, "passed" if fact.valid else "failed", f"{fact.detail}; {problems}"))
        passed = passed and fact.valid
    return 3 if passed and rank == 2 else rank


# --------------------------------------------------------------------------- reports


def _failed_signature(sig_id: str, fmt: str, run: _Run, sub: str, detail: str) -> SignatureReport:
    return SignatureReport(
        id=sig_id, format=fmt, indication=Indication.TOTAL_FAILED.value, sub_indication=sub, signer={},
        signing_time=None, timestamp=None, level=None, qualification="not qualified",
        qualification_detail="The signature could not be validated.", checks=[Check("Format", "failed", detail)],
        explanations=[explain(sub)], validation_time=iso(run.moment) or "",
    )


def _document_report(label: str, fmt: SignatureFormat, reports: list[SignatureReport], run: _Run,
                     facts: list[SignatureFacts]) -> ValidationReport:
    worst = max(reports, key=lambda r: Indication(r.indication).rank)
    return ValidationReport(
        document=label, format=fmt.value, indication=worst.indication, sub_indication=worst.sub_indication,
        signatures=reports, trust_anchor=run.trust.root.subject.human_friendly,
        trusted_list=run.trust.trusted_list_source, generated_at=iso(lab_clock().now()) or "",
        explanations=[e for r in reports for e in r.explanations], facts=[f for f in facts if f.signer is not None],
    )


def _format_failure(label: str, fmt: SignatureFormat, run: _Run, detail: str) -> ValidationReport:
    return _document_report(label, fmt, [_failed_signature("document", fmt.title, run, "FORMAT_FAILURE", detail)], run, [])


def _no_signature(label: str, fmt: SignatureFormat, run: _Run, detail: str, *, sub: str = "FORMAT_FAILURE",
                  indication: Indication = Indication.TOTAL_FAILED) -> ValidationReport:
    return ValidationReport(
        document=label, format=fmt.value, indication=indication.value, sub_indication=sub, signatures=[],
        trust_anchor=run.trust.root.subject.human_friendly, trusted_list=run.trust.trusted_list_source,
        generated_at=iso(lab_clock().now()) or "", explanations=[detail, explain(sub)],
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

