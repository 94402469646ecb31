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

**Service history.** A lab trainer (or a scenario) changes a service's status with a date —
the issuing CA *withdrawn* since 14:05, the TSA *withdrawn* — through the CA's admin API; each
change is kept (:class:`StatusChange`) and the list shows the current status with its starting
time and the earlier ones as ``ServiceHistory`` instances (TS 119 612 §5.6), newest first, as EU
lists do. A validator reading it (pyHanko's parser keeps every *granted* period with its end)
finds a certificate qualified at a time inside a granted period and not after the withdrawal:
a QES signed before the withdrawal stays QES when its signing time is proven (time-stamp), and
qualifies as AdES only when validated later without such proof. Changes dated after the lab
clock are not shown yet (the clock was moved back since).

Limits: a simulation with no legal effect; one TSP, no LOTL pointer; the address is made up.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

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
from shared.clock import lab_clock

__all__ = ["FOR_E_SIGNATURES", "SERVICE_STATUSES", "TL_QUALIFIERS", "TL_SERVICES", "StatusChange", "TrustedListInvalid",
           "build_trusted_list", "service_timeline"]

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


SERVICE_STATUSES = {"granted": STATUS_GRANTED, "withdrawn": "http://uri.etsi.org/TrstSvc/TrustedList/Svcstatus/withdrawn"}
"""The service statuses the lab sets (TS 119 612 §5.5.4, EU statuses), by short name."""
TL_SERVICES = ("ca", "tsa")
"""The listed services: the issuing CA (CA/QC) and the TSA (TSA/QTST)."""


@dataclass(frozen=True)
class StatusChange:
    """One change of a listed service's status, from ``since`` on.

    :ivar service: ``ca`` or ``tsa``.
    :ivar status: a key of :data:`SERVICE_STATUSES`.
    :ivar since: the status starting time.
    :ivar note: why (shown on the trusted-list page).
    """

    service: str
    status: str
    since: dt.datetime
    note: str = ""


def service_timeline(service: str, first_granted: dt.datetime, changes: Sequence[StatusChange],
                     now: dt.datetime) -> list[tuple[str, dt.datetime]]:
    """The ``(status, since)`` periods of ``service`` as of ``now``, oldest first: granted from
    ``first_granted`` (its certificate's start), then each change dated at or before ``now``
    (a change dated before the first grant starts with it)."""
    periods = [("granted", first_granted)]
    for change in sorted((c for c in changes if c.service == service and c.since <= now), key=lambda c: c.since):
        since = max(change.since.replace(microsecond=0), periods[-1][1])
        if change.status == periods[-1][0]:
            continue
        if since == periods[-1][1]:
            periods[-1] = (change.status, since)
        else:
            periods.append((change.status, since))
    return periods


class TrustedListInvalid(RuntimeError):
    """The list built here is not schema-valid or not of its version (a bug: it is never published)."""


def _names(text: str) -> ts_119612.InternationalNamesType:
    return ts_119612.InternationalNamesType((ts_119612.MultiLangNormStringType(value=text, lang="en"),))


def _identity(cert: x509.Certificate) -> ts_119612.ServiceDigitalIdentity:
    return ts_119612.ServiceDigitalIdentity(
        (ts_119612.DigitalIdentityType(x509_certificate=cert.public_bytes(serialization.Encoding.DER)),))


def _ca_extensions() -> ts_119612.ExtensionsListType:
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
    return ts_119612.ExtensionsListType(extension=(
        ts_119612.Extension(critical=True, content=(qualification,)),
        ts_119612.Extension(critical=False, content=(ts_119612.AdditionalServiceInformation(
            uri=ts_119612.NonEmptyMultiLangURIType(value=FOR_E_SIGNATURES, lang="en")),)),
    ))


def _service(kind: str, cert: x509.Certificate, periods: list[tuple[str, dt.datetime]]) -> ts_119612.TSPService:
    """The service entry: the last period as the current status, the earlier ones as history."""
    fields = {
        "service_type_identifier": ts_119612.ServiceTypeIdentifier(CA_QC_URI if kind == "ca" else QTST_URI),
        "service_name": _names("SignLab Short-Term Signing CA (qualified certificates for e-signatures)" if kind == "ca"
                               else "SignLab Time-Stamping Authority (qualified time stamps)"),
        "service_digital_identity": _identity(cert),
        "service_information_extensions": _ca_extensions() if kind == "ca" else None,
    }

    def status(name: str, since: dt.datetime) -> dict[str, object]:
        return {"service_status": ts_119612.ServiceStatus(SERVICE_STATUSES[name]),
                "status_starting_time": XmlDateTime.from_datetime(since)}

    current, history = periods[-1], periods[-2::-1]
    return ts_119612.TSPService(
        ts_119612.ServiceInformation(**fields, **status(*current)),  # type: ignore[arg-type]
        ts_119612.ServiceHistory(tuple(ts_119612.ServiceHistoryInstance(**fields, **status(*period))  # type: ignore[arg-type]
                                       for period in history)) if history else None,
    )


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
                       now: dt.datetime | None = None, validity: dt.timedelta = dt.timedelta(days=1),
                       changes: Sequence[StatusChange] = ()) -> bytes:
    """The XAdES-signed trusted list XML (UTF-8 bytes), schema-checked before and after signing.

    :param sequence_number: TSLSequenceNumber (raise it whenever the content changes).
    :param public_base: the CA's public base URL: the list is published at ``/tl/trusted-list.xml``
        under it, explained at ``/trusted-list`` (scheme information URI), the TSP at ``/``.
    :param version: TSLVersionIdentifier, 6 (current) or 5.
    :param now: the list's issue time (the lab clock's time by default).
    :param changes: status changes of the services (see the module docstring).
    :raises TrustedListInvalid: the list fails its schema or version rules (nothing is returned).
    """
    now = (now or lab_clock().now()).replace(microsecond=0)
    ca_periods = service_timeline("ca", hierarchy.issuing.cert.not_valid_before_utc, changes, now)
    tsa_periods = service_timeline("tsa", hierarchy.tsa.cert.not_valid_before_utc, changes, now)
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
                tspservices=ts_119612.TSPServices((_service("ca", hierarchy.issuing.cert, ca_periods),
                                                  _service("tsa", hierarchy.tsa.cert, tsa_periods))),
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
