"""The signer's lean CMS build (asn1crypto directly) makes the SignedData pyHanko's own
``Signer.async_sign`` makes: byte-identical signed attributes, the same SignerInfo and
certificates; only the (randomised ECDSA) signature value differs. Validated by pyHanko."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime
from typing import Any

import pytest
from asn1crypto import cms
from pyhanko.sign.signers.pdf_cms import PdfCMSSignedAttributes
from pyhanko.sign.validation import async_validate_detached_cms
from pyhanko_certvalidator import ValidationContext

from services.signer.hsm import Hsm
from services.signer.signing import HsmCmsSigner, _signed_attributes, build_cms

pytestmark = pytest.mark.hsm


@pytest.mark.parametrize("algorithm", ["ec-p256", "rsa-3072"])
@pytest.mark.parametrize("fmt", ["P", "C"])
def test_lean_cms_equals_pyhankos_signed_data(hsm: Hsm, local_ca: Any, algorithm: str, fmt: str) -> None:
    document = f"document for {fmt} {algorithm}".encode()
    digest = hashlib.sha256(document).digest()
    key = hsm.create_one_time_key(algorithm, label="tx-lean")
    try:
        leaf = local_ca.issue(key)
        signer = HsmCmsSigner(hsm, key, leaf, [local_ca.asn1], "sha256")
        lean = cms.ContentInfo.load(build_cms(signer, digest, "sha256", fmt))
        moment = datetime.now(UTC).replace(microsecond=0)
        settings = None if fmt == "P" else PdfCMSSignedAttributes(signing_time=moment)
        reference = asyncio.run(signer.async_sign(digest, "sha256", use_pades=True, is_pdf_sig=fmt == "P",
                                                  signed_attr_settings=settings))
    finally:
        hsm.destroy_key(key.key_id)
    ours, theirs = lean["content"], reference["content"]
    info, their_info = ours["signer_infos"][0], theirs["signer_infos"][0]
    if fmt == "P":
        assert info["signed_attrs"].dump() == their_info["signed_attrs"].dump()
    else:  # same attributes; the signing time is the moment of each build
        assert _signed_attributes(leaf, digest, moment).contents == their_info["signed_attrs"].contents
        assert [a["type"].native for a in info["signed_attrs"]] == [a["type"].native for a in their_info["signed_attrs"]]
    for name in ("version", "sid", "digest_algorithm", "signature_algorithm"):
        assert info[name].dump() == their_info[name].dump(), name
    for name in ("version", "digest_algorithms", "encap_content_info"):
        assert ours[name].dump() == theirs[name].dump(), name
    assert sorted(c.dump() for c in ours["certificates"]) == sorted(c.dump() for c in theirs["certificates"])
    assert {a["type"].native for a in info["signed_attrs"]} == (
        {"content_type", "message_digest", "signing_certificate_v2"} if fmt == "P" else
        {"content_type", "message_digest", "signing_time", "signing_certificate_v2"})
    status = asyncio.run(async_validate_detached_cms(
        document, ours, signer_validation_context=ValidationContext(trust_roots=[local_ca.asn1])))
    assert status.intact and status.valid and status.trusted
