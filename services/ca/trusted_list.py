"""A simulated ETSI TS 119 612 trusted list naming SignLab's issuing CA and TSA, XAdES-signed.

The list is built with pyHanko's generated TS 119 612 data classes (xsdata), so its shape is
exactly what pyHanko's qualified-validation parser reads, and signed with signxml's
:class:`~signxml.xades.XAdESSigner` by the trusted-list signer (EKU tslSigning). It lists:

* the issuing CA as ``http://uri.etsi.org/TrstSvc/Svctype/CA/QC``, status granted, with the
  additional information ``ForeSignatures`` and a qualification: certificates under policy
  QCP-n-qscd get ``QCForESig`` and ``QCQSCDManagedOnBehalf`` (remote QSCD run by the SSASP);
* the TSA as a qualified time-stamp service ``http://uri.etsi.org/TrstSvc/Svctype/TSA/QTST``.

The list follows the format version EU member states publish (``TSLVersionIdentifier`` 6, TS 119
612 V2.3.1 and later; version 5 selectable with ``SIGNLAB_CA_TRUSTED_LIST_VERSION=5``) with every
element the schema requires: scheme operator address (postal and electronic), scheme information
URI, status determination approach, scheme type/community rules, policy/legal notice, historical
information period, and per TSP its trade name (the organisation identifier), address and
information URI. Each list is checked against the official XSD (:mod:`services.ca.tl_schema`)
before it is signed and again after: the CA never publishes a list that is not schema-valid.

A validator using this list finds a QES certificate (QcCompliance + QcSSCD, QCP-n-qscd)
qualified with key management "QSCD managed on behalf", and an AdES certificate (NCP, no
QcCompliance) not qualified — as an EU validator would.

Limits: a simulation with no legal effect; one TSP, no history, no LOTL pointer; the address
is made up.
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
from signxml.xades import XAdESDataObjectFormat, XAdESSigner
from xsdata.formats.dataclass.serializers import XmlSerializer
from xsdata.formats.dataclass.serializers.config import SerializerConfig
from xsdata.models.datatype import XmlDateTime

from services.ca.pki import ORGANIZATION, ORGANIZATION_ID, Hierarchy
from services.ca.profiles import QCP_N_QSCD
from services.ca.tl_schema import TlVersion, schema_errors, version_problems

__all__ = ["FOR_E_SIGNATURES", "TL_QUALIFIERS", "TrustedListInvalid", "build_trusted_list"]

FOR_E_SIGNATURES = "http://uri.etsi.org/TrstSvc/TrustedList/SvcInfoExt/ForeSignatures"
"""Additional service information: the CA/QC issues qualified certificates for e-signatures."""
TL_QUALIFIERS = (Qualifier.FOR_ESIG, Qualifier.QSCD_MANAGED_ON_BEHALF)
"""Qualifiers applied to certificates under QCP-n-qscd."""
_TSL_TYPE = "http://uri.etsi.org/TrstSvc/TrustedList/TSLType/EUgeneric"
_TERRITORY = "NO"
_STATUS_DETERMINATION = "http://uri.etsi.org/TrstSvc/TrustedList/StatusDetn/EUappropriate"
_COMMUNITY_RULES = ("http://uri.etsi.org/TrstSvc/TrustedList/schemerules/EUcommon",
                    f"http://uri.etsi.org/TrstSvc/TrustedList/schemerules/{_TERRITORY}")
_HISTORICAL_PERIOD_DAYS = 65535
"""TS 119 612 §5.3.15: an EU list keeps history "forever" (the value 65535)."""
_DATA_OBJECT_FORMAT = XAdESDataObjectFormat(Description="ETSI TS 119 612 trusted list", MimeType="text/xml")
_NAMESPACES = {"tsl": "http://uri.etsi.org/02231/v2#", "ds": "http://www.w3.org/2000/09/xmldsig#",
               "tslx": "http://uri.etsi.org/TrstSvc/SvcInfoExt/eSigDir-1999-93-EC-TrustedList/#",
               "xades": "http://uri.etsi.org/01903/v1.3.2#"}


class TrustedListInvalid(RuntimeError):
    """The list built here is not schema-valid or not of its version (a bug: it is never published)."""


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


def _address(public_base: str) -> ts_119612.AddressType:
    return ts_119612.AddressType(
        postal_addresses=ts_119612.PostalAddresses((ts_119612.PostalAddress(
            street_address="Simulated Street 1", locality="Oslo", postal_code="0150", country_name=_TERRITORY,
            lang="en"),)),
        electronic_address=ts_119612.ElectronicAddress((
            ts_119612.NonEmptyMultiLangURIType(value=f"{public_base}/", lang="en"),)),
    )


def _uris(url: str) -> ts_119612.NonEmptyMultiLangURIListType:
    return ts_119612.NonEmptyMultiLangURIListType((ts_119612.NonEmptyMultiLangURIType(value=url, lang="en"),))


def build_trusted_list(hierarchy: Hierarchy, *, sequence_number: int, public_base: str, version: TlVersion = 6,
                       now: dt.datetime | None = None, validity: dt.timedelta = dt.timedelta(days=1)) -> bytes:
    """The XAdES-signed trusted list XML (UTF-8 bytes), schema-checked before and after signing.

    :param sequence_number: TSLSequenceNumber (raise it whenever the content changes).
    :param public_base: the CA's public base URL: the list is published at ``/tl/trusted-list.xml``
        under it, explained at ``/trusted-list`` (scheme information URI), the TSP at ``/``.
    :param version: TSLVersionIdentifier, 6 (current) or 5.
    :raises TrustedListInvalid: the list fails its schema or version rules (nothing is returned).
    """
    now = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0)
    ca_since = hierarchy.issuing.cert.not_valid_before_utc
    tsa_since = hierarchy.tsa.cert.not_valid_before_utc
    tsl = ts_119612.TrustServiceStatusList(
        tsltag="http://uri.etsi.org/19612/TSLTag",
        id="signlab-trusted-list",
        scheme_information=ts_119612.SchemeInformation(
            tslversion_identifier=version,
            tslsequence_number=sequence_number,
            tsltype=ts_119612.TSLType(_TSL_TYPE),
            scheme_operator_name=ts_119612.SchemeOperatorName(
                name=(ts_119612.MultiLangNormStringType(value="SignLab (simulated supervisory body)", lang="en"),)),
            scheme_operator_address=_address(public_base),
            scheme_name=ts_119612.SchemeName(name=(ts_119612.MultiLangNormStringType(
                value=f"{_TERRITORY}:SignLab simulated trusted list — no legal effect", lang="en"),)),
            scheme_information_uri=ts_119612.SchemeInformationURI(_uris(f"{public_base}/trusted-list").uri),
            status_determination_approach=_STATUS_DETERMINATION,
            scheme_type_community_rules=ts_119612.SchemeTypeCommunityRules(tuple(
                ts_119612.NonEmptyMultiLangURIType(value=rule, lang="en") for rule in _COMMUNITY_RULES)),
            scheme_territory=ts_119612.SchemeTerritory(_TERRITORY),
            policy_or_legal_notice=ts_119612.PolicyOrLegalNotice(tsllegal_notice=(ts_119612.MultiLangStringType(
                value="A simulation for training and testing: no certificate, time-stamp or signature listed or "
                      "made here has any legal effect.", lang="en"),)),
            historical_information_period=_HISTORICAL_PERIOD_DAYS,
            list_issue_date_time=XmlDateTime.from_datetime(now),
            next_update=ts_119612.NextUpdate(date_time=XmlDateTime.from_datetime(now + validity)),
            distribution_points=ts_119612.DistributionPoints(uri=(f"{public_base}/tl/trusted-list.xml",)),
        ),
        trust_service_provider_list=ts_119612.TrustServiceProviderList(trust_service_provider=(
            ts_119612.TrustServiceProvider(
                tspinformation=ts_119612.TSPInformation(
                    tspname=_names(ORGANIZATION),
                    tsptrade_name=_names(ORGANIZATION_ID),
                    tspaddress=_address(public_base),
                    tspinformation_uri=_uris(f"{public_base}/"),
                ),
                tspservices=ts_119612.TSPServices((_ca_service(hierarchy.issuing.cert, ca_since),
                                                  _tsa_service(hierarchy.tsa.cert, tsa_since))),
            ),
        )),
    )
    rendered = XmlSerializer(config=SerializerConfig(indent="  ")).render(tsl, ns_map=_NAMESPACES)
    _check(rendered.encode("utf-8"), version, signed=False)
    root = etree.fromstring(rendered.encode("utf-8"))
    signed = XAdESSigner(signature_algorithm=SignatureMethod.ECDSA_SHA256, data_object_format=_DATA_OBJECT_FORMAT).sign(
        root, key=hierarchy.tl_signer.key,
        cert=[hierarchy.tl_signer.cert.public_bytes(serialization.Encoding.PEM).decode("ascii")],
    )
    xml = bytes(etree.tostring(signed, xml_declaration=True, encoding="UTF-8"))
    _check(xml, version, signed=True)
    return xml


def _check(xml: bytes, version: TlVersion, *, signed: bool) -> None:
    problems = schema_errors(xml, version) + (version_problems(xml, version) if signed else [])
    if problems:
        raise TrustedListInvalid(f"the version {version} trusted list {'as signed ' if signed else ''}is not valid: "
                                 + "; ".join(problems[:5]))
