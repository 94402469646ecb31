"""RFC 5652 §5.1 / §5.3 version numbers of every CMS SignedData the running ecosystem builds.

The builders: the SSASP's signature CMS (assembled from DER pieces in ``services/signer``; PAdES
and CAdES), the TSA's time-stamp tokens (``services/ca/tsa.py``: signature, document and archive
time-stamps), the portal's CAdES levels (``services/portal/cades.py``: B-LT puts OCSP responses in
``crls`` as ``otherRevocationInfoFormat``, so version 5) and the portal's certificate-first CMS
(pyHanko). Each output is parsed with asn1crypto and held against ``shared.cms_version`` — whose
rules are tested case by case in ``tests/shared/test_cms_version.py``.
"""

from __future__ import annotations

from io import BytesIO
from typing import Any

import pytest
import requests
from asn1crypto import cms, tsp
from pyhanko.pdf_utils.reader import PdfFileReader

from services.portal import cades_asn1  # noqa: F401 - asn1crypto parses the archive time-stamp attributes
from shared.cms_version import version_problems

pytestmark = pytest.mark.hsm


def _signed(ecosystem: Any, document: str, **options: Any) -> bytes:
    tx = ecosystem.portal_sign([{"sample": document}], **options)
    assert tx["state"] == "completed", tx
    return requests.get(tx["documents"][0]["download_url"], auth=ecosystem.partner, timeout=30).content


def _tokens(content_info: cms.ContentInfo) -> list[cms.ContentInfo]:
    """The time-stamp tokens in the unsigned attributes of every SignerInfo (recursively)."""
    found = []
    for signer_info in content_info["content"]["signer_infos"]:
        for attribute in signer_info["unsigned_attrs"] if signer_info["unsigned_attrs"].native else []:
            if attribute["type"].native in ("signature_time_stamp_token", "archive_time_stamp_v3"):
                for token in attribute["values"]:
                    found += [token, *_tokens(token)]
    return found


def _check(content_info: cms.ContentInfo, expected: str) -> None:
    assert version_problems(content_info) == []
    assert content_info["content"]["version"].native == expected


def test_cades_b_lta_from_signer_tsa_and_portal(ecosystem: Any) -> None:
    p7s = cms.ContentInfo.load(_signed(ecosystem, "meeting-minutes.txt", qualifier="qes", format="cades",
                                       level="B-LTA", login_hint="kari-nordmann@no-bankid"))
    others = [c for c in p7s["content"]["crls"] if c.name == "other"]
    assert others and all(c.chosen["other_rev_info_format"].native == "ocsp_response" for c in others)
    _check(p7s, "v5")  # RFC 5652 §5.1: otherRevocationInfoFormat in crls
    tokens = _tokens(p7s)
    assert len(tokens) == 2  # signature time-stamp, archive-time-stamp-v3
    for token in tokens:
        _check(token, "v3")  # id-ct-TSTInfo is not id-data


def test_pades_b_lta_signature_and_document_time_stamp(ecosystem: Any) -> None:
    pdf = _signed(ecosystem, "employment-contract.pdf", qualifier="qes", format="pades", level="B-LTA",
                  login_hint="kari-nordmann@no-bankid")
    reader = PdfFileReader(BytesIO(pdf))
    [signature] = reader.embedded_regular_signatures
    signature_cms = cms.ContentInfo.load(signature.pkcs7_content)
    _check(signature_cms, "v1")  # the SSASP's CMS: id-data, signer by issuer and serial, no "other" choices
    [token] = _tokens(signature_cms)
    _check(token, "v3")
    [document_timestamp] = reader.embedded_timestamp_signatures
    _check(cms.ContentInfo.load(document_timestamp.pkcs7_content), "v3")


def test_cades_b_b_from_the_signer_and_certificate_first(ecosystem: Any) -> None:
    person_signing = cms.ContentInfo.load(_signed(ecosystem, "meeting-minutes.txt", qualifier="ades",
                                                  format="cades", level="B-B", login_hint="kari-nordmann@no-minid"))
    _check(person_signing, "v1")
    certificate_first = cms.ContentInfo.load(_signed(ecosystem, "meeting-minutes.txt", qualifier="qes",
                                                     format="cades", level="B-B", flow="certificate-first",
                                                     login_hint="kari-nordmann@no-bankid"))
    _check(certificate_first, "v1")


def test_tsa_token_with_and_without_certificates(ecosystem: Any) -> None:
    for cert_req in (True, False):
        query = tsp.TimeStampReq({"version": "v1", "message_imprint": {
            "hash_algorithm": {"algorithm": "sha256"}, "hashed_message": bytes(32)}, "cert_req": cert_req})
        answer = requests.post(f"{ecosystem.ca_url}/tsa", data=query.dump(), timeout=10,
                               headers={"Content-Type": "application/timestamp-query"})
        _check(tsp.TimeStampResp.load(answer.content)["time_stamp_token"], "v3")
