"""RFC 5652 §5.1 / §5.3 version rules, one case per branch, on SignedData values built with asn1crypto."""

from __future__ import annotations

import pytest
from asn1crypto import algos, cms, core, ocsp, tsp  # noqa: F401 - tsp registers id-ct-TSTInfo

from shared.cms_version import signed_data_version, signer_info_version, version_problems


def _signer_info(sid: str = "issuer") -> cms.SignerInfo:
    if sid == "issuer":
        identifier = cms.SignerIdentifier({"issuer_and_serial_number": cms.IssuerAndSerialNumber({
            "issuer": cms.Name.build({"common_name": "Test CA"}), "serial_number": 7})})
    else:
        identifier = cms.SignerIdentifier({"subject_key_identifier": b"\x01" * 20})
    return cms.SignerInfo({
        "version": "v1", "sid": identifier, "digest_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
        "signature_algorithm": algos.SignedDigestAlgorithm({"algorithm": "sha256_ecdsa"}), "signature": b"\x00",
    })


def _signed_data(*, content_type: str = "data", certificates: list | None = None, crls: list | None = None,
                 sid: str = "issuer") -> cms.SignedData:
    value: dict = {
        "version": "v1", "digest_algorithms": [algos.DigestAlgorithm({"algorithm": "sha256"})],
        "encap_content_info": {"content_type": content_type}, "signer_infos": [_signer_info(sid)],
    }
    if certificates is not None:
        value["certificates"] = certificates
    if crls is not None:
        value["crls"] = crls
    return cms.SignedData.load(cms.SignedData(value).dump())


_OCSP = cms.RevocationInfoChoice(name="other", value=cms.OtherRevocationInfoFormat({
    "other_rev_info_format": "ocsp_response",
    "other_rev_info": ocsp.OCSPResponse({"response_status": "try_later"})}))
_OTHER_CERT = cms.CertificateChoices(name="other", value=cms.OtherCertificateFormat({
    "other_cert_format": "1.2.3.4", "other_cert": core.Null()}))


@pytest.mark.parametrize(("case", "expected"), [
    ({}, "v1"),                                                         # id-data, issuerAndSerial, nothing else
    ({"crls": []}, "v1"),                                               # an empty crls SET is not "other"
    ({"sid": "ski"}, "v3"),                                             # a version 3 SignerInfo
    ({"content_type": "tst_info"}, "v3"),                               # eContentType other than id-data
    ({"crls": [_OCSP]}, "v5"),                                          # OCSP as otherRevocationInfoFormat
    ({"crls": [_OCSP], "content_type": "tst_info", "sid": "ski"}, "v5"),  # 5 wins over 3
    ({"certificates": [_OTHER_CERT]}, "v5"),                            # other certificate format
])
def test_signed_data_version_follows_rfc_5652_5_1(case: dict, expected: str) -> None:
    assert signed_data_version(_signed_data(**case)) == expected


def test_signer_info_version_follows_rfc_5652_5_3() -> None:
    assert signer_info_version(_signer_info("issuer")) == "v1"
    assert signer_info_version(_signer_info("ski")) == "v3"


def test_version_problems_names_the_wrong_fields() -> None:
    wrong = cms.ContentInfo({"content_type": "signed_data", "content": _signed_data(crls=[_OCSP], sid="ski")})
    problems = version_problems(wrong)
    assert problems == ["SignedData.version is v1, RFC 5652 §5.1 requires v5",
                        "SignerInfo[0].version is v1, RFC 5652 §5.3 requires v3"]
    right = cms.ContentInfo({"content_type": "signed_data", "content": _signed_data()})
    assert version_problems(right) == []
