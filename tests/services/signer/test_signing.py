"""One-time HSM keys, CSR, CMS (PAdES/CAdES) and JAdES built by the signer core, checked independently."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from typing import Any

import pytest
from asn1crypto import cms, csr
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, utils
from pyhanko.sign.validation import async_validate_detached_cms
from pyhanko_certvalidator import ValidationContext

from services.signer.hsm import Hsm, HsmError
from services.signer.signing import HsmCmsSigner, build_cms, build_csr, build_jades

pytestmark = pytest.mark.hsm


def _is_dict(value: object) -> None:
    if not isinstance(value, dict):
        raise ValueError("must be an object")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@pytest.mark.parametrize("algorithm", ["ec-p256", "rsa-3072"])
def test_one_time_key_is_sensitive_session_object_and_destroyed(hsm: Hsm, algorithm: str) -> None:
    from pkcs11 import Attribute, ObjectClass

    before = hsm.count_key_objects()
    key = hsm.create_one_time_key(algorithm, label="tx-test")
    try:
        session = hsm.session()
        [private] = list(session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY,
                                               Attribute.ID: bytes.fromhex(key.key_id)}))
        assert private[Attribute.SENSITIVE] is True
        assert private[Attribute.EXTRACTABLE] is False
        assert private[Attribute.TOKEN] is False
        assert private[Attribute.NEVER_EXTRACTABLE] is True
        assert hsm.count_key_objects() == before + 2
    finally:
        assert hsm.destroy_key(key.key_id) == 2
    assert hsm.count_key_objects() == before
    with pytest.raises(HsmError, match="not in the HSM"):
        hsm.sign_digest(key, bytes(32), "sha256")


@pytest.mark.parametrize("algorithm", ["ec-p256", "rsa-3072"])
def test_csr_is_signed_by_the_hsm_key(hsm: Hsm, algorithm: str) -> None:
    key = hsm.create_one_time_key(algorithm, label="tx-csr")
    try:
        der = build_csr(hsm, key, common_name="transaction tx-csr")
    finally:
        hsm.destroy_key(key.key_id)
    from cryptography import x509

    request = x509.load_der_x509_csr(der)
    assert request.is_signature_valid
    assert request.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) == key.public_key_info.dump()
    assert csr.CertificationRequest.load(der)["certification_request_info"]["subject"].native == {
        "common_name": "transaction tx-csr"}


def test_digest_signed_as_given_never_rehashed(hsm: Hsm) -> None:
    key = hsm.create_one_time_key("ec-p256", label="tx-raw")
    try:
        digest = hashlib.sha256(b"data to be signed").digest()
        signature = hsm.sign_digest(key, digest, "sha256")
        public = serialization.load_der_public_key(key.public_key_info.dump())
        assert isinstance(public, ec.EllipticCurvePublicKey)
        public.verify(signature, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))  # DER, prehashed
        with pytest.raises(HsmError, match="32 bytes, got 31"):
            hsm.sign_digest(key, digest[:31], "sha256")
    finally:
        hsm.destroy_key(key.key_id)


def _validate(cms_der: bytes, digest: bytes, root: Any) -> Any:
    content = cms.ContentInfo.load(cms_der)
    signed = content["content"]
    assert signed["encap_content_info"]["content"].native is None  # detached
    # The detached validator needs the document; we validate against the digest via the signed attrs.
    return signed


@pytest.mark.parametrize(("fmt", "with_time"), [("P", False), ("C", True)])
def test_cms_has_the_right_signed_attributes_and_validates(hsm: Hsm, local_ca: Any, fmt: str, with_time: bool) -> None:
    document = b"%PDF-1.7 pretend byte range" if fmt == "P" else b"a CAdES document"
    digest = hashlib.sha256(document).digest()
    key = hsm.create_one_time_key("ec-p256", label="tx-cms")
    try:
        leaf = local_ca.issue(key)
        der = build_cms(HsmCmsSigner(hsm, key, leaf, [local_ca.asn1], "sha256"), digest, "sha256", fmt)
    finally:
        hsm.destroy_key(key.key_id)
    signed = cms.ContentInfo.load(der)["content"]
    [info] = signed["signer_infos"]
    attrs = {a["type"].native: a["values"][0] for a in info["signed_attrs"]}
    assert attrs["message_digest"].native == digest
    assert "signing_certificate_v2" in attrs
    assert ("signing_time" in attrs) is with_time
    assert info["signature_algorithm"]["algorithm"].native == "sha256_ecdsa"
    # pyHanko validates the detached CMS over the original document against the test root.
    status = asyncio.run(async_validate_detached_cms(
        document, signed, signer_validation_context=ValidationContext(trust_roots=[local_ca.asn1])))
    assert status.intact and status.valid and status.trusted


def test_rsa_cms_validates(hsm: Hsm, local_ca: Any) -> None:
    document = b"rsa document"
    key = hsm.create_one_time_key("rsa-3072", label="tx-rsa")
    try:
        leaf = local_ca.issue(key)
        der = build_cms(HsmCmsSigner(hsm, key, leaf, [local_ca.asn1], "sha256"),
                        hashlib.sha256(document).digest(), "sha256", "C")
    finally:
        hsm.destroy_key(key.key_id)
    status = asyncio.run(async_validate_detached_cms(
        document, cms.ContentInfo.load(der)["content"],
        signer_validation_context=ValidationContext(trust_roots=[local_ca.asn1])))
    assert status.intact and status.valid and status.trusted


@pytest.mark.parametrize("algorithm", ["ec-p256", "rsa-3072"])
def test_jades_detached_header_and_signature(hsm: Hsm, local_ca: Any, algorithm: str) -> None:
    digest = hashlib.sha256(b"{\"json\": true}").digest()
    key = hsm.create_one_time_key(algorithm, label="tx-jades")
    try:
        leaf = local_ca.issue(key)
        jws = build_jades(hsm, key, leaf, [local_ca.asn1], digest, "sha256", "my file.json")
    finally:
        hsm.destroy_key(key.key_id)
    protected, payload, signature = jws.split(".")
    assert payload == ""
    header = json.loads(_b64url_decode(protected))
    assert header["sigD"]["hashV"] == [base64.urlsafe_b64encode(digest).rstrip(b"=").decode()]
    assert header["sigD"]["pars"] == ["my%20file.json"]
    assert header["x5t#S256"] == base64.urlsafe_b64encode(hashlib.sha256(leaf.dump()).digest()).rstrip(b"=").decode()
    assert base64.b64decode(header["x5c"][0]) == leaf.dump()
    assert set(header["crit"]) == {"sigT", "sigD"}
    # Independent check with joserfc over the detached (empty) payload.
    from joserfc import jws as jose_jws
    from joserfc.jwk import ECKey, RSAKey
    from joserfc.registry import HeaderParameter

    # JAdES headers carry x5c chains (larger than joserfc's default cap) and critical sigT/sigD.
    registry = jose_jws.JWSRegistry(
        header_registry={"sigT": HeaderParameter("JAdES signing time", "str"),
                         "sigD": HeaderParameter("JAdES detached data", _is_dict)},
        algorithms=[header["alg"]])
    registry.max_header_length = 16384

    public_pem = serialization.load_der_public_key(key.public_key_info.dump()).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    jwk = (ECKey if algorithm.startswith("ec") else RSAKey).import_key(public_pem)
    result = jose_jws.deserialize_compact(jws, jwk, payload=b"", registry=registry)
    assert result.protected["alg"] == header["alg"]
    # And with cryptography directly.
    public = serialization.load_der_public_key(key.public_key_info.dump())
    raw = _b64url_decode(signature)
    if algorithm.startswith("ec"):
        r, s = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
        public.verify(utils.encode_dss_signature(r, s), f"{protected}.".encode(), ec.ECDSA(hashes.SHA256()))  # type: ignore[union-attr,call-arg]
    else:
        public.verify(raw, f"{protected}.".encode(), padding.PKCS1v15(), hashes.SHA256())  # type: ignore[union-attr,call-arg]
