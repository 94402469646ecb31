"""Signature objects made with a one-time HSM key: CSR (step 7), CMS and JAdES (steps 8-9).

* :func:`build_csr` — a PKCS#10 request assembled in DER and signed in the HSM (cryptography
  cannot sign with a key it does not hold); it is the proof of possession the CA checks.
* :class:`HsmCmsSigner` — a pyHanko :class:`~pyhanko.sign.signers.pdf_cms.Signer` whose raw
  signature comes from the HSM (usable with pyHanko's own signing API too).
* :func:`build_cms` — PAdES (``P``: no signing-time, the PDF's /M carries the time) or CAdES
  detached (``C``: with signing-time), both CAdES-B-B shaped: the signed attributes pyHanko
  makes (content-type, message-digest = the document digest, ESS signing-certificate-v2),
  assembled with asn1crypto directly (a test checks it against pyHanko's own output).
* :func:`build_jades` — a detached JAdES-B-B JWS in compact serialization
  ``<b64url(protected header)>..<b64url(signature)>``: the payload is empty and the documents are
  referenced by digest in ``sigD`` (mechanism ``http://uri.etsi.org/19182/ObjectIdByURIHash``).

Limits: every object is B-B; time-stamps and long-term validation data (B-T, B-LT, B-LTA) are
added by the portal (step 10), which holds the document.
"""

from __future__ import annotations

import functools
import hashlib
from datetime import datetime

from asn1crypto import algos, cms, core, x509
from pyhanko.sign.signers.pdf_cms import Signer
from pyhanko_certvalidator.registry import SimpleCertificateStore

from services.signer.hsm import Hsm, OneTimeKey
from shared import jades
from shared.clock import lab_clock
from shared.errors import SignLabError
from shared.flow import Role, step
from shared.jades import JADES_HASH_METHODS, b64url
from shared.tracing import flow_span

__all__ = [
    "HASH_OIDS",
    "JADES_HASH_METHODS",
    "HsmCmsSigner",
    "b64url",
    "build_cms",
    "build_csr",
    "build_jades",
    "signature_algorithm",
]

HASH_OIDS: dict[str, str] = {
    "2.16.840.1.101.3.4.2.1": "sha256",
    "2.16.840.1.101.3.4.2.2": "sha384",
    "2.16.840.1.101.3.4.2.3": "sha512",
}
"""Accepted hash algorithm OIDs (CSC ``hashAlgo`` / ``hashAlgorithmOID``) and their names."""

def signature_algorithm(key: OneTimeKey, hash_algorithm: str) -> str:
    """The asn1crypto name of the combined signature algorithm (``sha256_ecdsa``, ``sha256_rsa`` …)."""
    return f"{hash_algorithm}_{'ecdsa' if key.is_ec else 'rsa'}"


def build_csr(hsm: Hsm, key: OneTimeKey, *, common_name: str) -> bytes:
    """A DER PKCS#10 request for ``key``, signed in the HSM (step 7 proof of possession).

    The subject only names the transaction: the CA takes the person's name from the identity
    evidence, never from the CSR.
    """
    # Assembled from DER pieces (asn1crypto's generic build re-serialises the nested values);
    # a test compares it with the asn1crypto-built request.
    subject = _tlv(0x30, _tlv(0x31, _tlv(0x30, _CN_OID + _tlv(0x0C, common_name.encode("utf-8")))))
    info = _tlv(0x30, _VERSION_0 + subject + key.public_key_info.dump() + b"\xa0\x00")  # attributes [0]: none
    digest = hashlib.sha256(info).digest()
    with flow_span(step(7), "C_Sign (CSR proof of possession)", target=Role.HSM,
                   summary={"key_id": key.key_id, "digest": digest.hex()}):
        signature = hsm.sign_digest(key, digest, "sha256")
    algorithm = algos.SignedDigestAlgorithm({"algorithm": signature_algorithm(key, "sha256")}).dump()
    return _tlv(0x30, info + algorithm + _tlv(0x03, b"\x00" + signature))


_CN_OID = core.ObjectIdentifier("2.5.4.3").dump()
_VERSION_0 = core.Integer(0).dump()


class HsmCmsSigner(Signer):
    """pyHanko signer whose private key is a one-time key in the HSM (option (b) of the notes).

    :param hsm: the HSM handle.
    :param key: the one-time key.
    :param certificate: its certificate (asn1crypto).
    :param chain: the issuing CA certificates (embedded in the CMS, leaf first is automatic).
    :param hash_algorithm: the digest algorithm of the document digest.
    """

    def __init__(self, hsm: Hsm, key: OneTimeKey, certificate: x509.Certificate,
                 chain: list[x509.Certificate], hash_algorithm: str) -> None:
        self.chain = list(chain)
        self._registry: SimpleCertificateStore | None = None
        super().__init__(
            signing_cert=certificate,
            cert_registry=None,  # built on first use: only pyHanko's own signing path needs it
            signature_mechanism=algos.SignedDigestAlgorithm({"algorithm": signature_algorithm(key, hash_algorithm)}),
        )
        self._hsm = hsm
        self._key = key

    @property
    def cert_registry(self) -> SimpleCertificateStore:
        """The chain as pyHanko's certificate store (pyHanko's ``async_sign`` embeds it)."""
        if self._registry is None:
            self._registry = SimpleCertificateStore.from_certs(self.chain)
        return self._registry

    @cert_registry.setter
    def cert_registry(self, value: SimpleCertificateStore | None) -> None:
        self._registry = value

    def sign_attributes(self, data: bytes, digest_algorithm: str) -> bytes:
        """Hash the DER signed attributes in software and sign the digest in the HSM (step 9)."""
        digest = hashlib.new(digest_algorithm, data).digest()
        with flow_span(step(9), "C_Sign", summary={"key_id": self._key.key_id, "digest": digest.hex(),
                                                   "mechanism": "CKM_ECDSA" if self._key.is_ec else "CKM_RSA_PKCS"}):
            return self._hsm.sign_digest(self._key, digest, digest_algorithm)

    async def async_sign_raw(self, data: bytes, digest_algorithm: str, dry_run: bool = False) -> bytes:
        """pyHanko's hook (its own ``async_sign``): the same HSM signature as :meth:`sign_attributes`."""
        if dry_run:
            return bytes(72 if self._key.is_ec else self._key.key_size // 8)
        return self.sign_attributes(data, digest_algorithm)


def _tlv(tag: int, content: bytes) -> bytes:
    """One DER element: tag, definite length, content."""
    size = len(content)
    if size < 0x80:
        return bytes((tag, size)) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(length))) + length + content


_ATTRIBUTE_OIDS = {name: cms.CMSAttributeType(name).dump()
                   for name in ("content_type", "message_digest", "signing_time", "signing_certificate_v2")}
_DATA_OID = cms.ContentType("data").dump()
_SIGNED_DATA_OID = cms.ContentType("signed_data").dump()
_VERSION_1 = core.Integer(1).dump()
_ENCAP_DATA = _tlv(0x30, _DATA_OID)  # EncapsulatedContentInfo of a detached signature: no eContent


@functools.lru_cache(maxsize=16)
def _digest_algorithm_der(hash_algorithm: str) -> bytes:
    """DER AlgorithmIdentifier of a digest (with the NULL parameters asn1crypto and pyHanko write)."""
    return bytes(algos.DigestAlgorithm({"algorithm": hash_algorithm}).dump())


def _signed_attributes_der(certificate: x509.Certificate, document_digest: bytes,
                           signing_time: datetime | None) -> bytes:
    """The DER SET OF the CAdES-B-B signed attributes, exactly as pyHanko's
    ``CAdESSignedAttributeProviderSpec`` makes them: content-type ``data``, message-digest,
    (signing-time,) ESS signing-certificate-v2 (SHA-256 of the certificate with its issuer and
    serial; the hash algorithm is the DEFAULT sha256, hence omitted).

    Assembled from DER pieces (sorted, as DER requires for a SET OF): asn1crypto's own assembly
    copies and re-serialises nested values several times, which cost milliseconds per signature.
    A test compares it with the asn1crypto-built value.
    """
    issuer_serial = _tlv(0x30, _tlv(0x30, _tlv(0xA4, certificate.issuer.dump()))  # GeneralNames: directoryName [4]
                         + core.Integer(certificate.serial_number).dump())
    cert_id = _tlv(0x30, _tlv(0x04, hashlib.sha256(certificate.dump()).digest()) + issuer_serial)
    values = {"content_type": _DATA_OID, "message_digest": _tlv(0x04, document_digest),
              "signing_certificate_v2": _tlv(0x30, _tlv(0x30, cert_id))}
    if signing_time is not None:
        values["signing_time"] = cms.Time({"utc_time": core.UTCTime(signing_time)}).dump()
    encoded = sorted(_tlv(0x30, _ATTRIBUTE_OIDS[name] + _tlv(0x31, value)) for name, value in values.items())
    return _tlv(0x31, b"".join(encoded))


def _signed_attributes(certificate: x509.Certificate, document_digest: bytes, signing_time: datetime | None) -> cms.CMSAttributes:
    """:func:`_signed_attributes_der` as asn1crypto ``CMSAttributes``."""
    return cms.CMSAttributes.load(_signed_attributes_der(certificate, document_digest, signing_time))


def build_cms(signer: HsmCmsSigner, document_digest: bytes, hash_algorithm: str, signature_format: str) -> bytes:
    """A detached CMS SignedData over ``document_digest`` (steps 8-9), DER.

    The same SignedData pyHanko's ``Signer.async_sign`` makes (same signed attributes, SignerInfo
    v1 by issuer and serial, the leaf and chain embedded), assembled from DER pieces: pyHanko's
    generic path re-serialises the certificates and attributes several times (11-21 ms per
    signature, measured), and even asn1crypto's own assembly of
    the SignerInfo and SignedData cost ~1 ms. Tests compare it with pyHanko's and asn1crypto's output.

    :param signature_format: ``P`` (PAdES: no signing-time) or ``C`` (CAdES: signing-time now).
    """
    certificate = signer.signing_cert
    if certificate is None:
        raise SignLabError("the one-time key has no certificate to sign with", step=step(8))
    signing_time = None if signature_format == "P" else lab_clock().now().replace(microsecond=0)
    with flow_span(step(8), "CMS signed attributes", response="signed attributes (DTBS/R)", summary={
            "message_digest": document_digest.hex(), "format": "PAdES" if signature_format == "P" else "CAdES",
            "certificate_serial": format(certificate.serial_number, "x"), "signing_certificate_v2": True}):
        signed_attrs = _signed_attributes_der(certificate, document_digest, signing_time)
    # Step 9 (its own span, after step 8 ended: a failing HSM fails step 9, not step 8). The
    # signature covers the DER SET OF encoding of the attributes (RFC 5652 §5.4).
    signature = signer.sign_attributes(signed_attrs, hash_algorithm)
    mechanism = signer.signature_mechanism
    if mechanism is None:
        raise SignLabError("the one-time key has no signature mechanism", step=step(9))
    digest_algorithm = _digest_algorithm_der(hash_algorithm)
    signer_info = _tlv(0x30, b"".join((
        _VERSION_1,
        _tlv(0x30, certificate.issuer.dump() + core.Integer(certificate.serial_number).dump()),  # sid
        digest_algorithm,
        b"\xa0" + signed_attrs[1:],  # [0] IMPLICIT: the SET OF's tag replaced, same length and content
        mechanism.dump(),
        _tlv(0x04, signature),
    )))
    signed_data = _tlv(0x30, b"".join((
        _VERSION_1,
        _tlv(0x31, digest_algorithm),
        _ENCAP_DATA,
        _tlv(0xA0, b"".join(c.dump() for c in (certificate, *signer.chain))),  # certificates [0] IMPLICIT
        _tlv(0x31, signer_info),
    )))
    return _tlv(0x30, _SIGNED_DATA_OID + _tlv(0xA0, signed_data))  # content [0] EXPLICIT


def jades_header(key: OneTimeKey, certificate: x509.Certificate, chain: list[x509.Certificate],
                 document_digest: bytes, hash_algorithm: str, label: str, signing_time: datetime) -> dict[str, object]:
    """The JAdES-B-B protected header for one detached document (:mod:`shared.jades`)."""
    return jades.protected_header(alg="ES256" if key.is_ec else "RS256",
                                  certificates=[c.dump() for c in (certificate, *chain)],
                                  document_digest=document_digest, hash_algorithm=hash_algorithm, label=label,
                                  signing_time=signing_time)


def build_jades(hsm: Hsm, key: OneTimeKey, certificate: x509.Certificate, chain: list[x509.Certificate],
                document_digest: bytes, hash_algorithm: str, label: str) -> str:
    """A detached JAdES-B-B JWS, compact serialization with an empty payload (steps 8-9).

    The JWS signing input is ``b64url(header) + "."``; the signature is ES256 (raw r||s, as JWS
    wants it) or RS256.
    """
    with flow_span(step(8), "JAdES protected header", response="JWS signing input",
                   summary={"hashV": document_digest.hex(), "sigD": "ObjectIdByURIHash", "x5t#S256": True}):
        header = jades_header(key, certificate, chain, document_digest, hash_algorithm, label, lab_clock().now())
        signing_input = jades.signing_input(header)
        digest = hashlib.sha256(signing_input.encode("ascii")).digest()
    with flow_span(step(9), "C_Sign", summary={"key_id": key.key_id, "digest": digest.hex()}):  # after step 8 ended
        if key.is_ec:
            raw = hsm.sign_raw(key, digest)  # JWS ES256 uses the raw r||s form (RFC 7518 §3.4)
        else:
            raw = hsm.sign_digest(key, digest, "sha256")
    return f"{signing_input}.{b64url(raw)}"
