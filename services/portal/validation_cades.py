"""CAdES validation: a detached ``.p7s`` and the file it signs.

pyHanko's process for basic signatures (EN 319 102-1 §5.3) or with time (§5.5) decides; the
validation data in the SignedData (certificates, CRLs, OCSP in ``crls``) makes B-LT, and the
archive-time-stamp-v3 attributes, checked by :mod:`services.portal.archive_timestamps`, B-LTA
(pyHanko's long-term process does not read CAdES).
"""

from __future__ import annotations

import hashlib

from asn1crypto import cms
from pyhanko.sign.general import extract_certificate_info
from pyhanko.sign.validation import ades, generic_cms

from services.portal import cades_asn1  # noqa: F401 - asn1crypto then parses CAdES archive time-stamp attributes
from services.portal.archive_timestamps import cades_archive_checks
from services.portal.documents import SignatureFormat
from services.portal.validation_detail import SignatureFacts, iso, revocation_fact
from services.portal.validation_report import Check, Indication, ValidationReport, document_report, format_failure, no_signature
from services.portal.validation_run import ValidationRun, material_of
from services.portal.validation_timestamps import archive_level, timestamp_fact
from services.portal.validation_verdict import finish_signature_report, has_signing_certificate_attr, integrity_checks, verdict_of


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


async def validate_cades(label: str, signature: bytes, original: bytes | None, run: ValidationRun) -> ValidationReport:
    try:
        content_info = cms.ContentInfo.load(signature)
        signed_data = content_info["content"]
        signer_info = signed_data["signer_infos"][0]
        _ = signer_info["signature"].native
        signer_cert = extract_certificate_info(signed_data).signer_cert
    except Exception:  # any parse failure of an untrusted upload is a format failure
        return format_failure(label, SignatureFormat.CADES, run, "the .p7s is not a CMS SignedData")
    if original is None:
        return no_signature(label, SignatureFormat.CADES, run, "A detached CAdES signature needs the signed file too.",
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
    result: ades.AdESBasicValidationResult
    if has_tst:
        facts.process = "LTVM"
        result = await ades.ades_with_time_validation(signed_data, spec, timing_info=run.timing(), raw_digest=facts.document_digest)
    else:
        facts.process = "Basic"
        result = await ades.ades_basic_validation(signed_data, spec, timing_info=run.timing(), raw_digest=facts.document_digest)
    status = result.api_status
    if status is None:  # pyHanko answers every process with a status; without one there is nothing to report
        return format_failure(label, SignatureFormat.CADES, run, "pyHanko's validation gave no signature status")
    facts.pyhanko_message = result.failure_msg
    facts.best_signature_time = getattr(result, "best_signature_time", None) or run.moment
    indication, sub = verdict_of(result.ades_subindic)
    checks = integrity_checks(status, "SignLab root")
    rank = 0 if status.intact and status.valid and has_signing_certificate_attr(signer_info) else -1
    checks.append(Check("Signing certificate reference (ESS signing-certificate-v2)", "passed" if rank == 0 else "failed", ""))
    material = material_of(facts)
    for token in generic_cms.extract_tst_data_iter(signer_info, signed=False):
        fact = await timestamp_fact("signature", cms.ContentInfo({"content_type": "signed_data", "content": token}),
                                     run, material, generic_cms.message_imprint_checker(signer_info))
        facts.timestamps.append(fact)
        checks.append(Check("Signature time-stamp", "passed" if fact.valid else "failed", fact.detail))
        rank = 1 if fact.valid and rank == 0 else rank
    if not has_tst:
        checks.append(Check("Signature time-stamp", "info", "none (level B-B)"))
    if rank >= 1 and has_revinfo:
        rank = 2
        checks.append(Check("Long-term validation data", "passed", "certificates and CRL/OCSP in SignedData"))
        rank = await archive_level(lambda: cades_archive_checks(signature, original),
                                    "archive-time-stamp-v3, EN 319 122-1", rank, checks, run, facts)
    signing_time = None
    for attr in signer_info["signed_attrs"] if signer_info["signed_attrs"].native else []:
        if attr["type"].native == "signing_time":
            signing_time = iso(attr["values"][0].native)
    report = finish_signature_report(facts, run, indication, sub, status.validation_path if status else None, checks, rank, signing_time)
    return document_report(label, SignatureFormat.CADES, [report], run, [facts])

