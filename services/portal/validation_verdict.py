"""One signature's verdict: pyHanko's indication, SignLab's checks, proof of existence, qualification.

:func:`verdict_of` reads pyHanko's AdES sub-indication as an EN 319 102-1 main indication;
:func:`finish_signature_report` then applies the two checks of EN 319 102-1 §5.5.4 pyHanko 0.38
skips once a certificate has expired (see :mod:`services.portal.validation`), names the proof of
existence that carried the decision, qualifies the signature from the trusted list at the best
signature time and at the validation time, and builds the :class:`SignatureReport`. The CMS rows
every PAdES and CAdES report shows (integrity, signature value, chain, ESS signing certificate)
are here too.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from asn1crypto import cms, x509
from pyhanko.sign.ades.report import AdESStatus, AdESSubIndic
from pyhanko.sign.validation.qualified.assess import QualificationAssessor
from pyhanko.sign.validation.qualified.q_status import QcPrivateKeyManagementType
from pyhanko.sign.validation.qualified.tsp import QcCertType
from pyhanko_certvalidator.path import ValidationPath

from services.portal.validation_detail import ProofOfExistence, SignatureFacts, iso
from services.portal.validation_report import Check, Indication, SignatureReport, explain
from services.portal.validation_run import TrustSettings, ValidationRun, leaf_first


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
        return "AdES-QC", (f"Advanced electronic signature with a qualified certificate, but the key is not in a QSCD "
                           f"(per '{service}'{when}).")
    return "AdES", (f"Advanced electronic signature: valid and trusted, but the certificate is not qualified according to "
                    f"the trusted list{when} (no granted qualified service for its issuer then).")



def _level_label(rank: int) -> str | None:
    return ["B-B", "B-T", "B-LT", "B-LTA"][rank] if rank >= 0 else None


def has_signing_certificate_attr(signer_info: cms.SignerInfo) -> bool:
    attrs = signer_info["signed_attrs"]
    return any(a["type"].native in ("signing_certificate_v2", "signing_certificate") for a in attrs) if attrs.native else False


def verdict_of(subindic: AdESSubIndic) -> tuple[Indication, str | None]:
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


def finish_signature_report(facts: SignatureFacts, run: ValidationRun, indication: Indication, sub: str | None, path: ValidationPath | None,
            checks: list[Check], rank: int, claimed: str | None) -> SignatureReport:
    """Apply SignLab's checks, qualify, name the PoE and build the simple report of one signature."""
    indication, sub = _adjust(facts, indication, sub)
    facts.indication, facts.sub_indication = indication.value, sub
    facts.validation_time = run.moment
    if path is not None:
        facts.chain = leaf_first(path)
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


def integrity_checks(status: Any, label: str) -> list[Check]:
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

