"""The simple validation report (shaped like the EU DSS simple report) and its building blocks.

:class:`ValidationReport` is what :func:`services.portal.validation.validate_document` returns:
one verdict per document, a :class:`SignatureReport` per signature with its :class:`Check` rows
and plain-language explanations (:data:`EXPLANATIONS`), and — kept aside, not part of the simple
report — what each signature's validation saw (:mod:`services.portal.validation_detail`), from
which :meth:`ValidationReport.detailed` and :meth:`ValidationReport.etsi_xml` build the detailed
and the ETSI TS 119 102-2 reports. The document-level builders at the end are what the format
validators answer with when there is no signature to validate, or one that cannot be read.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from services.portal.documents import SignatureFormat
from services.portal.validation_detail import SignatureFacts, iso
from shared.clock import lab_clock

if TYPE_CHECKING:
    from services.portal.validation_run import ValidationRun


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



def failed_signature(sig_id: str, fmt: str, run: ValidationRun, sub: str, detail: str) -> SignatureReport:
    return SignatureReport(
        id=sig_id, format=fmt, indication=Indication.TOTAL_FAILED.value, sub_indication=sub, signer={},
        signing_time=None, timestamp=None, level=None, qualification="not qualified",
        qualification_detail="The signature could not be validated.", checks=[Check("Format", "failed", detail)],
        explanations=[explain(sub)], validation_time=iso(run.moment) or "",
    )


def document_report(label: str, fmt: SignatureFormat, reports: list[SignatureReport], run: ValidationRun,
                     facts: list[SignatureFacts]) -> ValidationReport:
    worst = max(reports, key=lambda r: Indication(r.indication).rank)
    return ValidationReport(
        document=label, format=fmt.value, indication=worst.indication, sub_indication=worst.sub_indication,
        signatures=reports, trust_anchor=run.trust.root.subject.human_friendly,
        trusted_list=run.trust.trusted_list_source, generated_at=iso(lab_clock().now()) or "",
        explanations=[e for r in reports for e in r.explanations], facts=[f for f in facts if f.signer is not None],
    )


def format_failure(label: str, fmt: SignatureFormat, run: ValidationRun, detail: str) -> ValidationReport:
    return document_report(label, fmt, [failed_signature("document", fmt.display_name, run, "FORMAT_FAILURE", detail)], run, [])


def no_signature(label: str, fmt: SignatureFormat, run: ValidationRun, detail: str, *, sub: str = "FORMAT_FAILURE",
                  indication: Indication = Indication.TOTAL_FAILED) -> ValidationReport:
    return ValidationReport(
        document=label, format=fmt.value, indication=indication.value, sub_indication=sub, signatures=[],
        trust_anchor=run.trust.root.subject.human_friendly, trusted_list=run.trust.trusted_list_source,
        generated_at=iso(lab_clock().now()) or "", explanations=[detail, explain(sub)],
    )

