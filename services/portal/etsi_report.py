"""The ETSI TS 119 102-2 signature validation report (XML) of a validation, schema-checked.

Built with pyHanko's data classes generated from the TS 119 102-2 V1.2.2 schema (namespace
``http://uri.etsi.org/19102/v1.2.1#``) from the facts the validator collected
(:class:`services.portal.validation_detail.SignatureFacts`), for every format (pyHanko's own
report generator reads PDF signatures only, and leaves out what the lab needs). Per signature:

* ``SignatureIdentifier`` (signature value, SHA-256 of the data to be signed), ``ValidationTimeInfo``
  (validation time and best signature time as a PoE), ``SignersDocument`` (its digest);
* ``SignatureAttributes``: claimed signing time, signature time-stamp, archive / document
  time-stamps, each pointing to its validation object;
* ``SignerInformation`` (the signer's certificate and name), ``SignatureQuality`` (QES, AdES-QC,
  AdES at the best signature time, as URNs of the EU DSS), ``SignatureValidationProcess``
  (Basic, LTVM, LTA) and ``SignatureValidationStatus`` with the certificate chain and, for a
  revoked certificate, the revocation status information;
* ``SignatureValidationObjects``: every certificate, CRL, OCSP response and time-stamp, base64,
  with its PoE where a time-stamp proves it, and for time-stamps their own validation status.

Every report is checked against the vendored XSD (:mod:`shared.xml_schemas`) before it is
returned: a report that fails is a bug and raises.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from pyhanko.generated.etsi import ts_11910202, xades
from pyhanko.generated.w3c import xmldsig_core
from pyhanko.sign.validation.report.tools import DIGEST_ALGO_URIS, NAMESPACES
from pyhanko_certvalidator.ltv.poe import ValidationObjectType
from xsdata.formats.dataclass.serializers import XmlSerializer
from xsdata.formats.dataclass.serializers.config import SerializerConfig
from xsdata.models.datatype import XmlDateTime

from services.portal.validation_detail import CertificateFact, SignatureFacts, TimestampFact
from shared.xml_schemas import combined_schema, errors_of

if TYPE_CHECKING:
    from services.portal.validation import ValidationReport

__all__ = ["ETSI_NAMESPACE", "EtsiReportInvalid", "etsi_report_schema", "etsi_validation_report", "schema_problems"]

ETSI_NAMESPACE = NAMESPACES["vr"]
"""``http://uri.etsi.org/19102/v1.2.1#`` (TS 119 102-2 V1.2.2's schema)."""
_SCHEMA_FILE = "TS119102-2-v122.xsd"
_MAIN = {"TOTAL_PASSED": "total-passed", "TOTAL_FAILED": "total-failed", "INDETERMINATE": "indeterminate"}
_QUALITY = {"QES": "QESig", "AdES-QC": "AdESigQC", "AdES": "AdESig"}
_PROOF_VALIDATION = "urn:etsi:019102:poetype:validation"


class EtsiReportInvalid(RuntimeError):
    """The report built is not valid against the TS 119 102-2 schema (a bug: it is never served)."""


def etsi_report_schema():  # noqa: ANN201 - lxml's XMLSchema
    """The TS 119 102-2 V1.2.2 schema (vendored, offline)."""
    return combined_schema((ETSI_NAMESPACE, _SCHEMA_FILE))


def schema_problems(xml: bytes) -> list[str]:
    """The XSD errors of a validation report (empty when valid)."""
    return errors_of(etsi_report_schema(), xml)


def _time(moment: dt.datetime | None) -> XmlDateTime | None:
    return XmlDateTime.from_datetime(moment.astimezone(dt.UTC).replace(microsecond=0)) if moment else None


def _ref(*ids: str) -> ts_11910202.VOReferenceType:
    return ts_11910202.VOReferenceType(voreference=ids)


def _digest(algorithm: str, value: bytes) -> xades.DigestAlgAndValueType:
    return xades.DigestAlgAndValueType(digest_method=xmldsig_core.DigestMethod(DIGEST_ALGO_URIS.get(algorithm, DIGEST_ALGO_URIS["sha256"])),
                                       digest_value=xmldsig_core.DigestValue(value))


def _status(indication: str, sub: str | None, data: tuple[ts_11910202.ValidationReportDataType, ...] = ()) -> ts_11910202.ValidationStatusType:
    return ts_11910202.ValidationStatusType(
        main_indication=f"urn:etsi:019102:mainindication:{_MAIN[indication]}",
        sub_indication=(f"urn:etsi:019102:subindication:{sub}",) if sub else (),
        associated_validation_report_data=data)


def _archive_poe(facts: SignatureFacts) -> TimestampFact | None:
    """The oldest valid archive/document time-stamp: it proves the validation data in the signature."""
    archives = [t for t in facts.timestamps if t.kind in ("archive", "document") and t.valid and t.time]
    return min(archives, key=lambda t: t.time) if archives else None  # type: ignore[arg-type,return-value]


def _objects(facts: SignatureFacts) -> list[ts_11910202.ValidationObjectType]:
    archive = _archive_poe(facts)
    embedded = ("signature", "dss", "cms")

    def poe(source: str) -> ts_11910202.POEType | None:
        if archive is None or source not in embedded:
            return None
        return ts_11910202.POEType(poetime=_time(archive.time), type_of_proof=_PROOF_VALIDATION, poeobject=_ref(archive.id))

    objects = []
    certificates: dict[str, CertificateFact] = dict(facts.certificates)
    for chain in [facts.chain, *(t.chain for t in facts.timestamps)]:
        for cert in chain:
            certificates.setdefault(CertificateFact(cert, "").id, CertificateFact(cert, "anchor" if cert.self_signed != "no" else "timestamp"))
    for fact in certificates.values():
        objects.append(ts_11910202.ValidationObjectType(
            id=fact.id, object_type=ValidationObjectType.CERTIFICATE.urn(),
            validation_object_representation=ts_11910202.ValidationObjectRepresentationType(base64=fact.certificate.dump()),
            poe=poe(fact.source)))
    for revocation in facts.revocation:
        kind = ValidationObjectType.CRL if revocation.kind == "CRL" else ValidationObjectType.OCSP_RESPONSE
        objects.append(ts_11910202.ValidationObjectType(
            id=revocation.id, object_type=kind.urn(),
            validation_object_representation=ts_11910202.ValidationObjectRepresentationType(base64=revocation.der),
            poe=poe(revocation.source)))
    for stamp in facts.timestamps:
        if not stamp.token:
            continue
        chain_data = ts_11910202.ValidationReportDataType(certificate_chain=_chain(stamp.chain)) if stamp.chain else None
        objects.append(ts_11910202.ValidationObjectType(
            id=stamp.id, object_type=ValidationObjectType.TIMESTAMP.urn(),
            validation_object_representation=ts_11910202.ValidationObjectRepresentationType(base64=stamp.token),
            poe=ts_11910202.POEType(poetime=_time(stamp.time), type_of_proof=_PROOF_VALIDATION) if stamp.time else None,
            validation_report=ts_11910202.SignatureValidationReportType(
                signature_quality=ts_11910202.SignatureQualityType(("urn:cef:dss:timestampQualification:QTSA",))
                if stamp.qualified else None,
                signature_validation_status=_status("TOTAL_PASSED" if stamp.valid else "INDETERMINATE",
                                                    None if stamp.valid else "CERTIFICATE_CHAIN_GENERAL_FAILURE",
                                                    (chain_data,) if chain_data else ()))))
    return objects


def _chain(chain: list) -> ts_11910202.CertificateChainType:  # type: ignore[type-arg]
    ids = [CertificateFact(c, "").id for c in chain]
    anchor = ids[-1] if len(ids) > 1 and chain[-1].self_signed != "no" else None
    middle = ids[1:-1] if anchor else ids[1:]
    return ts_11910202.CertificateChainType(signing_certificate=_ref(ids[0]), intermediate_certificate=tuple(_ref(i) for i in middle),
                                            trust_anchor=_ref(anchor) if anchor else None)


def _signature_report(facts: SignatureFacts) -> ts_11910202.SignatureValidationReportType:
    data = []
    if facts.chain:
        data.append(ts_11910202.ValidationReportDataType(certificate_chain=_chain(facts.chain)))
    signer = facts.signer
    if signer is not None:
        revoked = [(t, r) for r in facts.revocation if r.covers(signer) and (t := r.revoked_at(signer)) is not None]
        if revoked:
            when, source = min(revoked, key=lambda pair: pair[0])
            data.append(ts_11910202.ValidationReportDataType(revocation_status_information=ts_11910202.RevocationStatusInformationType(
                validation_object_id=_ref(CertificateFact(signer, "").id), revocation_time=_time(when),
                revocation_object=_ref(source.id))))
    by_kind = {kind: [t for t in facts.timestamps if t.kind == kind and t.time] for kind in ("signature", "archive", "document")}

    def stamps(kind: str) -> tuple[ts_11910202.SATimestampType, ...]:
        return tuple(ts_11910202.SATimestampType(signed=False, time_stamp_value=_time(t.time), attribute_object=(_ref(t.id),))
                     for t in by_kind[kind])

    attributes = ts_11910202.SignatureAttributesType(
        signing_time=(ts_11910202.SASigningTimeType(signed=True, time=_time(facts.claimed_signing_time)),)
        if facts.claimed_signing_time else (),
        signature_time_stamp=stamps("signature"), archive_time_stamp=stamps("archive"), doc_time_stamp=stamps("document"))
    quality = _QUALITY.get(facts.qualification_at_signing)
    return ts_11910202.SignatureValidationReportType(
        signature_identifier=ts_11910202.SignatureIdentifierType(
            digest_alg_and_value=_digest("sha256", facts.dtbsr_digest),
            signature_value=xmldsig_core.SignatureValue(facts.signature_value), hash_only=False, doc_hash_only=False,
            id=f"sig-{facts.id}"),
        validation_time_info=ts_11910202.ValidationTimeInfoType(
            validation_time=_time(facts.validation_time),
            best_signature_time=ts_11910202.POEType(poetime=_time(facts.best_signature_time), type_of_proof=_PROOF_VALIDATION,
                                                    poeobject=_ref(facts.poe[0].timestamp_id) if facts.poe and facts.poe[0].timestamp_id else None)
            if facts.best_signature_time else None),
        signers_document=ts_11910202.SignersDocumentType(digest_alg_and_value=_digest(facts.document_digest_algorithm, facts.document_digest)),
        signature_attributes=attributes,
        signer_information=ts_11910202.SignerInformationType(
            signer_certificate=_ref(CertificateFact(signer, "").id), signer=signer.subject.human_friendly) if signer else None,
        signature_quality=ts_11910202.SignatureQualityType((f"urn:cef:dss:signatureQualification:{quality}",)) if quality else None,
        signature_validation_process=ts_11910202.SignatureValidationProcessType(
            signature_validation_process_id=f"urn:etsi:019102:validationprocess:{facts.process}"),
        signature_validation_status=_status(facts.indication, facts.sub_indication, tuple(data)),
    )


def etsi_validation_report(report: ValidationReport) -> str:
    """The TS 119 102-2 XML of ``report`` (one ``SignatureValidationReport`` per signature that
    could be read; a document without any gets one with only its status).

    :raises EtsiReportInvalid: the XML does not validate against the schema.
    """
    reports = [_signature_report(f) for f in report.facts] or [ts_11910202.SignatureValidationReportType(
        signature_validation_status=_status(report.indication, report.sub_indication))]
    objects = [o for f in report.facts for o in _objects(f)]
    unique = list({o.id: o for o in objects}.values())
    document = ts_11910202.ValidationReport(
        signature_validation_report=tuple(reports),
        signature_validation_objects=ts_11910202.ValidationObjectListType(tuple(unique)) if unique else None)
    xml = XmlSerializer(config=SerializerConfig(indent="  ")).render(document, ns_map=NAMESPACES)
    problems = schema_problems(xml.encode("utf-8"))
    if problems:
        raise EtsiReportInvalid("the ETSI validation report is not valid against TS 119 102-2: " + "; ".join(problems[:5]))
    return xml
