"""PAdES validation: every signature of a PDF, through pyHanko's AdES processes.

The process follows the signature's level (EN 319 102-1 as pyHanko implements it): basic (§5.3)
without a signature time-stamp, with time (§5.5) with one, long-term availability (§5.6.3) when
the PDF's DSS carries validation data. pyHanko's difference analysis decides the coverage and the
later changes; document time-stamps lift B-LT to B-LTA.
"""

from __future__ import annotations

import hashlib
from io import BytesIO
from typing import Any

from asn1crypto import cms
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.diff_analysis import DiffResult
from pyhanko.sign.validation import ades, generic_cms
from pyhanko.sign.validation.dss import DocumentSecurityStore
from pyhanko.sign.validation.errors import NoDSSFoundError
from pyhanko.sign.validation.pdf_embedded import EmbeddedPdfSignature, async_validate_pdf_timestamp
from pyhanko.sign.validation.policy_decl import PdfSignatureValidationSpec
from pyhanko.sign.validation.status import ModificationLevel, PdfSignatureStatus, SignatureCoverageLevel

from services.portal.documents import SignatureFormat
from services.portal.ltv import validation_context
from services.portal.validation_detail import SignatureFacts, TimestampFact, iso, revocation_fact
from services.portal.validation_report import (
    Check,
    Indication,
    SignatureReport,
    ValidationReport,
    document_report,
    failed_signature,
    format_failure,
    no_signature,
)
from services.portal.validation_run import ValidationRun, leaf_first, material_of
from services.portal.validation_timestamps import timestamp_fact, tsa_qualified
from services.portal.validation_verdict import finish_signature_report, has_signing_certificate_attr, integrity_checks, verdict_of


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


async def validate_pades(label: str, content: bytes, run: ValidationRun) -> ValidationReport:
    try:
        reader = PdfFileReader(BytesIO(content), strict=False)
        signatures = reader.embedded_regular_signatures
        doc_timestamps = reader.embedded_timestamp_signatures
    except Exception:  # any parse failure of an untrusted upload is a format failure, never a 500
        return format_failure(label, SignatureFormat.PADES, run, "the file could not be read as a PDF")
    if not signatures:
        return no_signature(label, SignatureFormat.PADES, run, "The PDF contains no signature.")
    reports, all_facts = [], []
    for sig in signatures:
        facts = SignatureFacts(id=str(sig.field_name), format="PAdES")
        try:
            report = await _validate_pdf_signature(sig, reader, doc_timestamps, run, facts)
        except Exception as exc:  # malformed CMS inside an untrusted PDF
            report = failed_signature(str(sig.field_name), "PAdES", run, "FORMAT_FAILURE",
                                       f"the signature could not be parsed ({exc.__class__.__name__})")
        reports.append(report)
        all_facts.append(facts)
    return document_report(label, SignatureFormat.PADES, reports, run, all_facts)


async def _validate_pdf_signature(sig: EmbeddedPdfSignature, reader: PdfFileReader, doc_timestamps: list[Any],
                                  run: ValidationRun, facts: SignatureFacts) -> SignatureReport:
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
    if status is None:  # pyHanko answers every process with a status; without one there is nothing to report
        raise ValueError("pyHanko's validation gave no signature status")
    facts.pyhanko_message = result.failure_msg
    # the basic process has no proof of existence: the best signature time is the validation time
    facts.best_signature_time = getattr(result, "best_signature_time", None) or run.moment
    indication, sub = verdict_of(result.ades_subindic)
    checks = integrity_checks(status, "SignLab root")
    coverage, modification = integrity.get("coverage"), _modification_level(integrity)
    coverage_ok = coverage in (SignatureCoverageLevel.ENTIRE_FILE, SignatureCoverageLevel.ENTIRE_REVISION)
    modification_ok = modification in (ModificationLevel.NONE, ModificationLevel.LTA_UPDATES, ModificationLevel.FORM_FILLING)
    checks.append(Check("Coverage", "passed" if coverage_ok else "failed", coverage.name if coverage else "unknown"))
    checks.append(Check("Later changes", "passed" if modification_ok else "failed",
                        modification.name if modification else "unknown"))
    if indication is Indication.TOTAL_PASSED and not (coverage_ok and modification_ok):
        indication, sub = Indication.TOTAL_FAILED, "DISALLOWED_MODIFICATIONS"
    rank = -1
    if status.intact and status.valid and has_signing_certificate_attr(signer_info):
        rank = 0
        checks.append(Check("Signing certificate reference (ESS signing-certificate-v2)", "passed", "present in the signed attributes"))
    else:
        checks.append(Check("Signing certificate reference (ESS signing-certificate-v2)", "failed", "missing: not a baseline signature"))
    for token in generic_cms.extract_tst_data_iter(signer_info, signed=False):
        fact = await timestamp_fact("signature", cms.ContentInfo({"content_type": "signed_data", "content": token}),
                                     run, material_of(facts), generic_cms.message_imprint_checker(signer_info))
        facts.timestamps.append(fact)
        checks.append(Check("Signature time-stamp", "passed" if fact.valid else "failed", fact.detail))
        if fact.valid and rank == 0:
            rank = 1
    if not has_tst:
        checks.append(Check("Signature time-stamp", "info", "none (level B-B)"))
    if rank >= 1 and has_dss_revinfo:
        rank = 2
        checks.append(Check("Long-term validation data (DSS)", "passed",
                            "certificates and CRL/OCSP embedded in the document security store"))
    else:
        checks.append(Check("Long-term validation data (DSS)", "info", "none"))
    for doc_ts in doc_timestamps:
        ts_status = await async_validate_pdf_timestamp(doc_ts, validation_context=validation_context(
            run.trust.root, material_of(facts), revocation_mode="soft-fail", retroactive_revinfo=run.point_in_time))
        ok = bool(ts_status.intact and ts_status.valid and ts_status.trusted)
        qualified, text = tsa_qualified(run.trust, ts_status.signing_cert, ts_status.timestamp)
        path = ts_status.validation_path
        facts.timestamps.append(TimestampFact("document", ts_status.timestamp, ts_status.signing_cert,
                                              leaf_first(path) if path is not None else [ts_status.signing_cert], ok,
                                              f"{iso(ts_status.timestamp)} by {ts_status.signing_cert.subject.human_friendly}",
                                              doc_ts.signed_data.dump(), qualified, text))
        checks.append(Check("Archive (document) time-stamp", "passed" if ok else "failed", iso(ts_status.timestamp) or ""))
        if ok and rank == 2:
            rank = 3
    return finish_signature_report(facts, run, indication, sub, status.validation_path if status else None, checks, rank,
                   iso(sig.self_reported_timestamp))


def _modification_level(integrity: dict[str, Any]) -> ModificationLevel | None:
    """The later-changes level from pyHanko's integrity summary (read as ``PdfSignatureStatus`` does)."""
    coverage, diff = integrity.get("coverage"), integrity.get("diff_result")
    if diff is None:
        if coverage is SignatureCoverageLevel.ENTIRE_REVISION:
            return None
        return ModificationLevel.NONE if coverage is SignatureCoverageLevel.ENTIRE_FILE else ModificationLevel.OTHER
    return diff.modification_level if isinstance(diff, DiffResult) else ModificationLevel.OTHER

