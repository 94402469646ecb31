"""A simulated ETSI TS 119 612 trusted list naming SignLab's issuing CA and TSA, XAdES-signed.

The list is built with pyHanko's generated TS 119 612 data classes (xsdata), so its shape is
exactly what pyHanko's qualified-validation parser reads, and signed with signxml's
:class:`~signxml.xades.XAdESSigner` by the trusted-list signer (EKU tslSigning). It lists:

* the issuing CA as ``http://uri.etsi.org/TrstSvc/Svctype/CA/QC``, status granted, with the
  additional information ``ForeSignatures`` and a qualification: certificates under policy
  QCP-n-qscd get ``QCForESig`` and ``QCQSCDManagedOnBehalf`` (remote QSCD run by the SSASP);
* the TSA as a qualified time-stamp service ``http://uri.etsi.org/TrstSvc/Svctype/TSA/QTST``.

A validator using this list finds a QES certificate (QcCompliance + QcSSCD, QCP-n-qscd)
qualified with key management "QSCD managed on behalf", and an AdES certificate (NCP, no
QcCompliance) not qualified — as an EU validator would.

Limits: a simulation with no legal effect; one TSP, no history, no LOTL pointer.
"""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from lxml import etree
from pyhanko.generated.etsi import ts_119612, ts_119612_sie, xades
from pyhanko.sign.validation.qualified.eutl_parse import STATUS_GRANTED
from pyhanko.sign.validation.qualified.tsp import CA_QC_URI, QTST_URI, Qualifier
from signxml import SignatureMethod
from signxml.xades import XAdESSigner
from xsdata.formats.dataclass.serializers import XmlSerializer
from xsdata.formats.dataclass.serializers.config import SerializerConfig
from xsdata.models.datatype import XmlDateTime

from services.ca.pki import Hierarchy
from services.ca.profiles import QCP_N_QSCD

__all__ = ["FOR_E_SIGNATURES", "TL_QUALIFIERS", "build_trusted_list"]

FOR_E_SIGNATURES = "http://uri.etsi.org/TrstSvc/TrustedList/SvcInfoExt/ForeSignatures"
"""Additional service information: the CA/QC issues qualified certificates for e-signatures."""
TL_QUALIFIERS = (Qualifier.FOR_ESIG, Qualifier.QSCD_MANAGED_ON_BEHALF)
"""Qualifiers applied to certificates under QCP-n-qscd."""
_TSL_TYPE = "http://uri.etsi.org/TrstSvc/TrustedList/TSLType/EUgeneric"
_TERRITORY = "NO"


def _names(text: str) -> ts_119612.InternationalNamesType:
    return ts_119612.InternationalNamesType((ts_119612.MultiLangNormStringType(value=text, lang="en"),))


def _identity(cert: x509.Certificate) -> ts_119612.ServiceDigitalIdentity:
    return ts_119612.ServiceDigitalIdentity(
        (ts_119612.DigitalIdentityType(x509_certificate=cert.public_bytes(serialization.Encoding.DER)),))


def _ca_service(cert: x509.Certificate, since: dt.datetime) -> ts_119612.TSPService:
    qualification = ts_119612_sie.Qualifications(qualification_element=(
        ts_119612_sie.QualificationElementType(
            qualifiers=ts_119612_sie.QualifiersType(
                qualifier=tuple(ts_119612_sie.QualifierType(uri=q.uri) for q in TL_QUALIFIERS)),
            criteria_list=ts_119612_sie.CriteriaListType(
                assert_value=ts_119612_sie.CriteriaListTypeassert.AT_LEAST_ONE,
                policy_set=(ts_119612_sie.PoliciesListType(policy_identifier=(
                    xades.ObjectIdentifierType(identifier=xades.IdentifierType(value=QCP_N_QSCD)),)),),
            ),
        ),
    ))
    extensions = ts_119612.ExtensionsListType(extension=(
        ts_119612.Extension(critical=True, content=(qualification,)),
        ts_119612.Extension(critical=False, content=(ts_119612.AdditionalServiceInformation(
            uri=ts_119612.NonEmptyMultiLangURIType(value=FOR_E_SIGNATURES, lang="en")),)),
    ))
    return ts_119612.TSPService(ts_119612.ServiceInformation(
        service_type_identifier=ts_119612.ServiceTypeIdentifier(CA_QC_URI),
        service_name=_names("SignLab Short-Term Signing CA (qualified certificates for e-signatures)"),
        service_digital_identity=_identity(cert),
        service_status=ts_119612.ServiceStatus(STATUS_GRANTED),
        status_starting_time=XmlDateTime.from_datetime(since),
        service_information_extensions=extensions,
    ))


def _tsa_service(cert: x509.Certificate, since: dt.datetime) -> ts_119612.TSPService:
    return ts_119612.TSPService(ts_119612.ServiceInformation(
        service_type_identifier=ts_119612.ServiceTypeIdentifier(QTST_URI),
        service_name=_names("SignLab Time-Stamping Authority (qualified time stamps)"),
        service_digital_identity=_identity(cert),
        service_status=ts_119612.ServiceStatus(STATUS_GRANTED),
        status_starting_time=XmlDateTime.from_datetime(since),
    ))


def build_trusted_list(hierarchy: Hierarchy, *, sequence_number: int, distribution_url: str,
                       now: dt.datetime | None = None, validity: dt.timedelta = dt.timedelta(days=1)) -> bytes:
    """The XAdES-signed trusted list XML (UTF-8 bytes).

    :param sequence_number: TSLSequenceNumber (raise it whenever the content changes).
    :param distribution_url: where the list is published (the public base + ``/tl/trusted-list.xml``).
    """
    now = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0)
    ca_since = hierarchy.issuing.cert.not_valid_before_utc
    tsa_since = hierarchy.tsa.cert.not_valid_before_utc
    tsl = ts_119612.TrustServiceStatusList(
        tsltag="http://uri.etsi.org/19612/TSLTag",
        id="signlab-trusted-list",
        scheme_information=ts_119612.SchemeInformation(
            tslversion_identifier=5,
            tslsequence_number=sequence_number,
            tsltype=ts_119612.TSLType(_TSL_TYPE),
            scheme_operator_name=ts_119612.SchemeOperatorName(
                name=(ts_119612.MultiLangNormStringType(value="SignLab (simulated supervisory body)", lang="en"),)),
            scheme_name=ts_119612.SchemeName(name=(ts_119612.MultiLangNormStringType(
                value="NO:SignLab simulated trusted list — no legal effect", lang="en"),)),
            scheme_territory=ts_119612.SchemeTerritory(_TERRITORY),
            list_issue_date_time=XmlDateTime.from_datetime(now),
            next_update=ts_119612.NextUpdate(date_time=XmlDateTime.from_datetime(now + validity)),
            distribution_points=ts_119612.DistributionPoints(
                uri=(ts_119612.NonEmptyMultiLangURIType(value=distribution_url, lang="en"),)),
        ),
        trust_service_provider_list=ts_119612.TrustServiceProviderList(trust_service_provider=(
            ts_119612.TrustServiceProvider(
                tspinformation=ts_119612.TSPInformation(tspname=_names("SignLab Trust Services (simulation)")),
                tspservices=ts_119612.TSPServices((_ca_service(hierarchy.issuing.cert, ca_since),
                                                  _tsa_service(hierarchy.tsa.cert, tsa_since))),
            ),
        )),
    )
    rendered = XmlSerializer(config=SerializerConfig(indent="  ")).render(tsl)
    root = etree.fromstring(rendered.encode("utf-8"))
    signed = XAdESSigner(signature_algorithm=SignatureMethod.ECDSA_SHA256).sign(
        root, key=hierarchy.tl_signer.key,
        cert=[hierarchy.tl_signer.cert.public_bytes(serialization.Encoding.PEM).decode("ascii")],
    )
    return bytes(etree.tostring(signed, xml_declaration=True, encoding="UTF-8"))
