"""Signature objects made with a one-time HSM key: CSR (step 7), CMS and JAdES (steps 8-9).

* :func:`build_csr` — a PKCS#10 request built with asn1crypto and signed in the HSM (cryptography
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

import hashlib
from datetime import UTC, datetime

from asn1crypto import algos, cms, core, csr, tsp, x509
from pyhanko.sign.signers.pdf_cms import Signer
from pyhanko_certvalidator.registry import SimpleCertificateStore

from services.signer.hsm import Hsm, OneTimeKey
from shared import jades
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
    info = csr.CertificationRequestInfo({
        "version": "v1",
        "subject": x509.Name.build({"common_name": common_name}),
        "subject_pk_info": key.public_key_info,
        "attributes": [],
    })
    digest = hashlib.sha256(info.dump()).digest()
    with flow_span(step(7), "C_Sign (CSR proof of possession)", target=Role.HSM,
                   summary={"key_id": key.key_id, "digest": digest.hex()}):
        signature = hsm.sign_digest(key, digest, "sha256")
    request = csr.CertificationRequest({
        "certification_request_info": info,
        "signature_algorithm": {"algorithm": signature_algorithm(key, "sha256")},
        "signature": signature,
    })
    return bytes(request.dump())


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

    @property  # type: ignore[override]
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


def _signed_attributes(certificate: x509.Certificate, document_digest: bytes, signing_time: datetime | None) -> cms.CMSAttributes:
    """The CAdES-B-B signed attributes, exactly as pyHanko's ``CAdESSignedAttributeProviderSpec``
    makes them: content-type ``data``, message-digest, (signing-time,) ESS signing-certificate-v2
    (SHA-256 of the certificate with its issuer and serial).

    Each attribute is encoded once and the DER SET OF is assembled from the encodings (sorted, as
    DER requires): asn1crypto's own assembly copies and re-serialises nested values several
    times, which cost milliseconds per signature.
    """
    essv2 = tsp.SigningCertificateV2({"certs": [{
        "hash_algorithm": {"algorithm": "sha256"},
        "cert_hash": hashlib.sha256(certificate.dump()).digest(),
        "issuer_serial": {"issuer": [x509.GeneralName({"directory_name": x509.Name.load(certificate.issuer.dump())})],
                          "serial_number": certificate.serial_number},
    }]})
    values = {"content_type": _DATA_OID, "message_digest": core.OctetString(document_digest).dump(),
              "signing_certificate_v2": essv2.dump()}
    if signing_time is not None:
        values["signing_time"] = cms.Time({"utc_time": core.UTCTime(signing_time)}).dump()
    encoded = sorted(_tlv(0x30, _ATTRIBUTE_OIDS[name] + _tlv(0x31, value)) for name, value in values.items())
    return cms.CMSAttributes.load(_tlv(0x31, b"".join(encoded)))


def build_cms(signer: HsmCmsSigner, document_digest: bytes, hash_algorithm: str, signature_format: str) -> bytes:
    """A detached CMS SignedData over ``document_digest`` (steps 8-9), DER.

    Built with asn1crypto directly: the same SignedData pyHanko's ``Signer.async_sign`` makes
    (same signed attributes, SignerInfo v1 by issuer and serial, the leaf and chain embedded) at
    a fraction of the cost, because pyHanko's generic path re-serialises the certificates and
    attributes several times (11-21 ms per signature, ``reference/person-signing-verified.md`` §5).

    :param signature_format: ``P`` (PAdES: no signing-time) or ``C`` (CAdES: signing-time now).
    """
    certificate = signer.signing_cert
    assert certificate is not None
    signing_time = None if signature_format == "P" else datetime.now(UTC).replace(microsecond=0)
    with flow_span(step(8), "CMS signed attributes", response="DTBS/R signed", summary={
            "message_digest": document_digest.hex(), "format": "PAdES" if signature_format == "P" else "CAdES",
            "certificate_serial": format(certificate.serial_number, "x"), "signing_certificate_v2": True}):
        signed_attrs = _signed_attributes(certificate, document_digest, signing_time)
        # The signature covers the DER SET OF encoding of the attributes (RFC 5652 §5.4).
        signature = signer.sign_attributes(signed_attrs.dump(), hash_algorithm)
        signer_info = cms.SignerInfo({
            "version": "v1",
            "sid": cms.SignerIdentifier({"issuer_and_serial_number": cms.IssuerAndSerialNumber({
                "issuer": x509.Name.load(certificate.issuer.dump()), "serial_number": certificate.serial_number})}),
            "digest_algorithm": {"algorithm": hash_algorithm},
            # Tagged values made from DER contents: asn1crypto would otherwise copy and
            # re-serialise the whole value to retag it ([0] IMPLICIT).
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
        header = jades_header(key, certificate, chain, document_digest, hash_algorithm, label, datetime.now(UTC))
        signing_input = jades.signing_input(header)
        digest = hashlib.sha256(signing_input.encode("ascii")).digest()
        with flow_span(step(9), "C_Sign", summary={"key_id": key.key_id, "digest": digest.hex()}):
            if key.is_ec:
                raw = hsm.sign_raw(key, digest)  # JWS ES256 uses the raw r||s form (RFC 7518 §3.4)
            else:
                raw = hsm.sign_digest(key, digest, "sha256")
    return f"{signing_input}.{b64url(raw)}"
