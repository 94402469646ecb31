"""The published trusted list against the official ETSI TS 119 612 XSD (vendored, offline), its
version rules, and pyHanko's trusted-list reader on both list versions."""

from __future__ import annotations

import re
from typing import Any

import pytest
from asn1crypto import x509 as asn1_x509
from lxml import etree
from pyhanko.sign.validation.qualified.eutl_parse import trust_list_to_registry

from services.ca import create_app
from services.ca.tl_schema import schema_errors, version_problems

TSL = "{http://uri.etsi.org/02231/v2#}"
REQUIRED = {  # TS 119 612 §5.3 / §5.4 elements the list once lacked, with where they live
    "SchemeInformation/SchemeOperatorAddress/PostalAddresses/PostalAddress": "§5.3.5",
    "SchemeInformation/SchemeOperatorAddress/ElectronicAddress/URI": "§5.3.5",
    "SchemeInformation/SchemeInformationURI/URI": "§5.3.7",
    "SchemeInformation/StatusDeterminationApproach": "§5.3.8",
    "SchemeInformation/HistoricalInformationPeriod": "§5.3.15",
    "TrustServiceProviderList/TrustServiceProvider/TSPInformation/TSPAddress/PostalAddresses": "§5.4.3",
    "TrustServiceProviderList/TrustServiceProvider/TSPInformation/TSPInformationURI/URI": "§5.4.4",
}


@pytest.fixture(scope="module")
def published(ca_env: Any) -> dict[int, bytes]:
    """The list as the CA serves it with TSL version 6 (default) and 5 (the same CA, setting changed)."""
    v5_app = create_app(ca_env.settings.model_copy(update={"trusted_list_version": 5}))
    v5 = v5_app.test_client().get("/tl/trusted-list.xml")
    assert v5.status_code == 200 and v5.mimetype == "application/vnd.etsi.tsl+xml"
    return {6: ca_env.client.trusted_list(), 5: v5.data}


def _path(element: str) -> str:
    return "/".join(TSL + part for part in element.split("/"))


@pytest.mark.parametrize("version", [6, 5])
def test_published_list_is_valid_against_the_official_xsd(published: dict[int, bytes], version: int) -> None:
    xml = published[version]
    assert schema_errors(xml, version) == []  # type: ignore[arg-type]
    assert version_problems(xml, version) == []  # type: ignore[arg-type]
    root = etree.fromstring(xml)
    assert root.findtext(_path("SchemeInformation/TSLVersionIdentifier")) == str(version)
    for element, clause in REQUIRED.items():
        assert root.find(_path(element)) is not None, (element, clause)
    assert root.findtext(_path("SchemeInformation/StatusDeterminationApproach")) == \
        "http://uri.etsi.org/TrstSvc/TrustedList/StatusDetn/EUappropriate"
    assert root.findtext(_path("SchemeInformation/HistoricalInformationPeriod")) == "65535"


def test_the_xsd_really_applies(published: dict[int, bytes]) -> None:
    """A list missing one required element is refused by the schema, naming what is expected."""
    xml = published[6].decode("utf-8")
    without_address = re.sub(r"<tsl:SchemeOperatorAddress>.*?</tsl:SchemeOperatorAddress>", "", xml, flags=re.S)
    errors = schema_errors(without_address.encode("utf-8"), 6)
    assert errors and "SchemeOperatorAddress" in errors[0]


def test_version_rules_beyond_the_xsd(published: dict[int, bytes]) -> None:
    xml = published[6].decode("utf-8")
    assert version_problems(xml.encode("utf-8"), 5) == ["TSLVersionIdentifier is '6', not 5"]
    v1_signing_certificate = xml.replace("xades:SigningCertificateV2>", "xades:SigningCertificate>")
    assert version_problems(v1_signing_certificate.encode("utf-8"), 6) == [
        "a version 6 list's signature must carry xades:SigningCertificateV2",
        "xades:SigningCertificate is not allowed in a version 6 list's signature (use the V2 form)"]


@pytest.mark.parametrize("version", [6, 5])
def test_pyhanko_reads_both_versions_and_checks_the_signature(ca_env: Any, published: dict[int, bytes],
                                                              version: int) -> None:
    signer = asn1_x509.Certificate.load(ca_env.client.certificate("tl-signer"))
    registry, errors = trust_list_to_registry(published[version].decode("utf-8"), [signer])
    assert errors == []
    issuing = asn1_x509.Certificate.load(ca_env.client.certificate("issuing"))
    assert [a.certificate.dump() for a in registry.known_certificate_authorities] == [issuing.dump()]  # type: ignore[attr-defined]
