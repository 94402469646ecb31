"""The signer's lean CMS build (asn1crypto directly) makes the SignedData pyHanko's own
``Signer.async_sign`` makes: byte-identical signed attributes, the same SignerInfo and
certificates; only the (randomised ECDSA) signature value differs. Validated by pyHanko."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime
from typing import Any

import pytest
from asn1crypto import cms, core, csr, tsp, x509
from pyhanko.sign.signers.pdf_cms import PdfCMSSignedAttributes
from pyhanko.sign.validation import async_validate_detached_cms
from pyhanko_certvalidator import ValidationContext

from services.signer.hsm import Hsm
from services.signer.signing import HsmCmsSigner, _signed_attributes, build_cms, build_csr, signature_algorithm

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


def _asn1crypto_cms(signer: HsmCmsSigner, signed_attrs: cms.CMSAttributes, signature: bytes,
                    hash_algorithm: str) -> bytes:
    """The SignedData as the previous implementation assembled it with asn1crypto objects (the
    reference for the DER-pieces assembly of :func:`build_cms`)."""
    certificate = signer.signing_cert
    signer_info = cms.SignerInfo({
        "version": "v1",
        "sid": cms.SignerIdentifier({"issuer_and_serial_number": cms.IssuerAndSerialNumber({
            "issuer": x509.Name.load(certificate.issuer.dump()), "serial_number": certificate.serial_number})}),
        "digest_algorithm": {"algorithm": hash_algorithm},
        "signed_attrs": cms.CMSAttributes(contents=signed_attrs.contents, implicit=0),
        "signature_algorithm": signer.signature_mechanism,
        "signature": signature,
    })
    signed_data = cms.SignedData({
        "version": "v1",
        "digest_algorithms": [{"algorithm": hash_algorithm}],
        "encap_content_info": {"content_type": "data"},
        "certificates": cms.CertificateSet(contents=b"".join(c.dump() for c in (certificate, *signer.chain)),
                                           implicit=0),
        "signer_infos": [signer_info],
    })
    return bytes(cms.ContentInfo({"content_type": "signed_data", "content": signed_data}).dump())


def _asn1crypto_signed_attributes(certificate: x509.Certificate, digest: bytes, moment: datetime | None) -> bytes:
    """The signed attributes built with asn1crypto's generic classes (reference)."""
    essv2 = tsp.SigningCertificateV2({"certs": [{
        "hash_algorithm": {"algorithm": "sha256"},
        "cert_hash": hashlib.sha256(certificate.dump()).digest(),
        "issuer_serial": {"issuer": [x509.GeneralName({"directory_name": x509.Name.load(certificate.issuer.dump())})],
                          "serial_number": certificate.serial_number},
    }]})
    attributes = [{"type": "content_type", "values": ["data"]},
                  {"type": "message_digest", "values": [digest]},
                  {"type": "signing_certificate_v2", "values": [essv2]}]
    if moment is not None:
        attributes.append({"type": "signing_time", "values": [cms.Time({"utc_time": core.UTCTime(moment)})]})
    return bytes(cms.CMSAttributes(attributes).dump(force=True))


@pytest.mark.parametrize("algorithm", ["ec-p256", "rsa-3072"])
@pytest.mark.parametrize("fmt", ["P", "C"])
@pytest.mark.parametrize("hash_algorithm", ["sha256", "sha384"])
def test_der_assembled_cms_equals_asn1crypto_assembly(hsm: Hsm, local_ca: Any, algorithm: str, fmt: str,
                                                      hash_algorithm: str) -> None:
    digest = hashlib.new(hash_algorithm, b"document").digest()
    key = hsm.create_one_time_key(algorithm, label="tx-der")
    try:
        leaf = local_ca.issue(key)
        signer = HsmCmsSigner(hsm, key, leaf, [local_ca.asn1], hash_algorithm)
        ours = build_cms(signer, digest, hash_algorithm, fmt)
    finally:
        hsm.destroy_key(key.key_id)
    parsed = cms.ContentInfo.load(ours)
    info = parsed["content"]["signer_infos"][0]
    attrs = cms.CMSAttributes.load(b"\x31" + info["signed_attrs"].dump()[1:])
    moment = None if fmt == "P" else next(a["values"][0].native for a in attrs if a["type"].native == "signing_time")
    assert attrs.dump() == _asn1crypto_signed_attributes(leaf, digest, moment)
    assert ours == _asn1crypto_cms(signer, attrs, info["signature"].native, hash_algorithm)


@pytest.mark.parametrize("algorithm", ["ec-p256", "rsa-3072"])
@pytest.mark.parametrize("common_name", ["SignLab one-time key tx-1", "Sæbø " + "x" * 57])
def test_der_assembled_csr_equals_asn1crypto_and_verifies(hsm: Hsm, algorithm: str, common_name: str) -> None:
    from cryptography import x509 as cx509

    key = hsm.create_one_time_key(algorithm, label="tx-csr")
    try:
        ours = build_csr(hsm, key, common_name=common_name)
    finally:
        hsm.destroy_key(key.key_id)
    parsed = csr.CertificationRequest.load(ours)
    reference = csr.CertificationRequest({
        "certification_request_info": csr.CertificationRequestInfo({
            "version": "v1", "subject": x509.Name.build({"common_name": common_name}),
            "subject_pk_info": key.public_key_info, "attributes": []}),
        "signature_algorithm": {"algorithm": signature_algorithm(key, "sha256")},
        "signature": parsed["signature"].native,
    })
    assert ours == reference.dump()
    loaded = cx509.load_der_x509_csr(ours)
    assert loaded.is_signature_valid
    assert loaded.subject.rfc4514_string() == f"CN={common_name}"
