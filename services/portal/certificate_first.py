"""The certificate-first flow's packaging side (docs/design.md §2, second flow; CSC API v1 signHash).

In this flow the one-time key and its certificate exist *before* anything is hashed: the service
authorization (eID login + consent, steps 3-5) ends with the SSASP creating them (steps 6-7), and
``credentials/info`` hands the portal the certificate chain. So the portal can build the real
signed data itself and send the SSASP only the **DTBS/R** — the hash of what the one-time key
signs — for ``signatures/signHash`` (steps 8-9):

* PAdES: pyHanko prepares the PDF with an :class:`~pyhanko.sign.signers.ExternalSigner` that
  carries the real certificate (visible stamp with the certificate's name), then
  ``signer.signed_attrs(document_digest, use_pades=True)`` builds content-type, message-digest
  (= the /ByteRange digest) and ESS signing-certificate-v2, no signing-time and no CMS algorithm
  protection (RFC 6211: pyHanko leaves it out of PAdES/CAdES attributes). DTBS/R = SHA-256 of their DER.
* CAdES detached: the same over the file's SHA-256, with signing-time (CAdES requires it).
* JAdES detached: the protected header (``alg``, ``x5t#S256``, ``x5c``, ``sigT``, ``sigD`` over the
  payload digest); DTBS/R = SHA-256 of the JWS signing input ``b64url(header) + "."``.

The SAD for these DTBS/R comes from the person (SCAL 2): the portal asks the SSASP for a credential
authorization naming the credential and the hashes, with the documents' labels; the person logs
in with the eID again and approves exactly these hashes on the SSASP's consent page. Between the
two rounds each :class:`PendingSignature` is kept in the store.

With the signature values back, :func:`assemble` builds the B-B object (pyHanko
``async_sign_prescribed_attributes`` with an ``ExternalSigner`` holding the returned value; for
JAdES the compact JWS with ES256 ``r||s``), after checking that each value verifies under the
credential's certificate. Levels B-T … B-LTA are then added exactly as in the person-signing flow.

Limits: SHA-256 only; EC (ES256 / ecdsa-with-SHA256) and RSA PKCS#1 v1.5 keys (no PSS).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from asn1crypto import algos, cms, x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.x509 import load_der_x509_certificate
from pyhanko.sign import signers
from pyhanko.sign.signers.pdf_cms import PdfCMSSignedAttributes
from pyhanko_certvalidator.registry import SimpleCertificateStore

from services.portal import cades, jades, pades
from services.portal.documents import SignatureFormat, SigningOptions
from services.portal.errors import CredentialUnsuitable, PackagingFailed
from services.portal.store import StoredDocument
from shared import jades as shared_jades
from shared.clock import lab_clock

__all__ = ["OneTimeCredential", "PendingSignature", "assemble", "compute_dtbsr"]

_SIGN_ALGOS = {
    # public key algorithm → (CSC signAlgo OID, asn1crypto mechanism, JWS alg)
    "ec": ("1.2.840.10045.4.3.2", "sha256_ecdsa", "ES256"),
    "rsa": ("1.2.840.113549.1.1.11", "sha256_rsa", "RS256"),
}


@dataclass(frozen=True)
class OneTimeCredential:
    """The SSASP's one-time credential as ``credentials/info`` described it.

    :ivar credential_id: the CSC ``credentialID``.
    :ivar certificate: the one-time signer certificate.
    :ivar chain: issuing CA and root, as returned (``certificates: chain``).
    :ivar sign_algo: CSC ``signAlgo`` OID for SHA-256 with this key.
    :ivar mechanism: the same as an asn1crypto signature mechanism name.
    :ivar jws_alg: the same as a JWS ``alg``.
    :ivar qualifier: the credential's ``signatureQualifier``.
    :ivar multisign: how many signatures it allows.
    """

    credential_id: str
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    sign_algo: str
    mechanism: str
    jws_alg: str
    qualifier: str | None
    multisign: int

    @classmethod
    def from_info(cls, credential_id: str, info: Any, *, needed: int, qualifier: str) -> OneTimeCredential:
        """Check a ``credentials/info`` answer (``shared.clients.signer.CredentialInfo``) and keep what signing needs.

        :raises CredentialUnsuitable: no certificate, key disabled, not SCAL 2, too few signatures,
            another qualifier than requested, or no SHA-256 algorithm for the key.
        """
        try:
            certificates = [x509.Certificate.load(bytes(c)) for c in info.certificates]
            _ = certificates[0].public_key.algorithm
        except (ValueError, TypeError, IndexError):
            raise CredentialUnsuitable("credentials/info returned no usable signer certificate") from None
        leaf = certificates[0]
        algorithm = leaf.public_key.algorithm
        if info.key_status != "enabled":
            raise CredentialUnsuitable(f"the one-time key is {info.key_status!r}, not enabled")
        if str(info.scal) != "2":
            raise CredentialUnsuitable(f"the credential is SCAL {info.scal}; the portal needs SCAL 2 (SAD bound to the hashes)")
        if int(info.multisign) < needed:
            raise CredentialUnsuitable(f"the credential allows {info.multisign} signature(s), {needed} document(s) need one each")
        if info.qualifier not in (None, qualifier):
            raise CredentialUnsuitable(f"the credential is for {info.qualifier}, {qualifier} was requested")
        if algorithm not in _SIGN_ALGOS or _SIGN_ALGOS[algorithm][0] not in info.key_algorithms:
            raise CredentialUnsuitable(f"no SHA-256 signature algorithm the portal supports for a {algorithm} key "
                                       f"(key.algo: {', '.join(info.key_algorithms)[:200]})")
        sign_algo, mechanism, jws_alg = _SIGN_ALGOS[algorithm]
        return cls(credential_id, leaf, tuple(certificates[1:]), sign_algo, mechanism, jws_alg, info.qualifier,
                   int(info.multisign))

    @property
    def certificate_der(self) -> list[bytes]:
        """Leaf first, then the chain, DER."""
        return [c.dump() for c in (self.certificate, *self.chain)]

    @property
    def serial_hex(self) -> str:
        """The certificate serial number, hex."""
        return format(self.certificate.serial_number, "x")

    def external_signer(self, signature_value: bytes | int = 512) -> signers.ExternalSigner:
        """A pyHanko signer with the real certificate and a fixed signature value (placeholder or returned)."""
        return signers.ExternalSigner(
            signing_cert=self.certificate,
            cert_registry=SimpleCertificateStore.from_certs(list(self.chain)),
            signature_value=signature_value,
            signature_mechanism=algos.SignedDigestAlgorithm({"algorithm": self.mechanism}),
        )

    def verify(self, dtbsr: bytes, signature: bytes) -> None:
        """Check a signHash value over ``dtbsr`` (SHA-256 prehashed) with the certificate's key.

        :raises PackagingFailed: it does not verify (nothing is embedded then).
        """
        public = load_der_x509_certificate(self.certificate.dump()).public_key()
        try:
            if isinstance(public, ec.EllipticCurvePublicKey):
                public.verify(signature, dtbsr, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
            elif isinstance(public, rsa.RSAPublicKey):
                public.verify(signature, dtbsr, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
            else:  # pragma: no cover - from_info only admits EC and RSA
                raise InvalidSignature
        except (InvalidSignature, ValueError):
            raise PackagingFailed("the signature value from signHash does not verify with the credential's "
                                  "certificate over the authorized DTBS/R; nothing was embedded") from None


@dataclass
class PendingSignature:
    """One document between DTBS/R computation and assembly, kept in the store while the person
    approves the hashes (:meth:`stored`, :meth:`restore`).

    :ivar doc: the stored document.
    :ivar dtbsr: SHA-256 of what the key signs (signed attributes DER, or JWS signing input).
    :ivar signed_attrs: the CMS signed attributes (PAdES, CAdES).
    :ivar prepared: the prepared PDF (PAdES).
    :ivar protected: the base64url JWS protected header (JAdES).
    """

    doc: StoredDocument
    dtbsr: bytes
    signed_attrs: cms.CMSAttributes | None = None
    prepared: pades.PreparedPdf | None = None
    protected: str | None = None

    def stored(self) -> tuple[StoredDocument, dict[str, str]]:
        """The document with its prepared PDF (PAdES), and the rest as a JSON-able dict (standard base64)."""
        kept = {"dtbsr": base64.b64encode(self.dtbsr).decode("ascii")}
        if self.signed_attrs is not None:
            kept["signed_attrs"] = base64.b64encode(self.signed_attrs.dump()).decode("ascii")
        if self.protected is not None:
            kept["protected"] = self.protected
        doc = self.doc
        if self.prepared is not None:
            kept["byte_range_digest"] = base64.b64encode(self.prepared.digest).decode("ascii")
            doc = replace(doc, prepared=self.prepared.prepared, reserved_start=self.prepared.reserved_start,
                          reserved_end=self.prepared.reserved_end, field_name=self.prepared.field_name)
        return doc, kept

    @classmethod
    def restore(cls, doc: StoredDocument) -> PendingSignature:
        """The pending signature :meth:`stored` kept with ``doc``.

        :raises PackagingFailed: the document has none (it was never prepared, or already finished).
        """
        kept = doc.pending_signature
        if not kept:
            raise PackagingFailed(f"{doc.label!r} has no DTBS/R waiting for the signer's approval")
        prepared = None
        if "byte_range_digest" in kept:
            if doc.prepared is None or doc.reserved_start is None or doc.reserved_end is None:
                raise PackagingFailed(f"document {doc.idx}: the prepared PDF of its approved hash was not kept")
            prepared = pades.PreparedPdf(doc.prepared, base64.b64decode(kept["byte_range_digest"]), doc.reserved_start,
                                         doc.reserved_end, doc.field_name or "Signature1")
        attrs = cms.CMSAttributes.load(base64.b64decode(kept["signed_attrs"])) if "signed_attrs" in kept else None
        return cls(doc, base64.b64decode(kept["dtbsr"]), attrs, prepared, kept.get("protected"))


def jades_protected_header(credential: OneTimeCredential, payload_digest: bytes, label: str,
                           signing_time: datetime) -> dict[str, Any]:
    """The JAdES-B-B protected header for one detached JSON payload (:mod:`shared.jades`, as the SSASP's)."""
    return shared_jades.protected_header(alg=credential.jws_alg, certificates=credential.certificate_der,
                                         document_digest=payload_digest, hash_algorithm="sha256", label=label,
                                         signing_time=signing_time)


async def compute_dtbsr(doc: StoredDocument, options: SigningOptions, credential: OneTimeCredential, *,
                        bytes_reserved: int) -> PendingSignature:
    """The DTBS/R of one document with the real certificate (the portal's part of step 2 in this flow)."""
    if options.format is SignatureFormat.PADES:
        external = credential.external_signer()
        prepared = await pades.prepare_pdf(
            doc.original, label=doc.label, qualifier=options.qualifier, visible=options.visible,
            signer_name=options.signer_name, bytes_reserved=bytes_reserved, external=external,
        )
        attrs = await external.signed_attrs(prepared.digest, "sha256", use_pades=True)
        return PendingSignature(doc, hashlib.sha256(attrs.dump()).digest(), signed_attrs=attrs, prepared=prepared)
    if options.format is SignatureFormat.CADES:
        attrs = await credential.external_signer().signed_attrs(
            cades.digest(doc.original), "sha256", use_pades=True, is_pdf_sig=False,
            attr_settings=PdfCMSSignedAttributes(signing_time=lab_clock().now()),
        )
        return PendingSignature(doc, hashlib.sha256(attrs.dump()).digest(), signed_attrs=attrs)
    header = jades_protected_header(credential, jades.digest(doc.original), doc.label, lab_clock().now())
    protected = shared_jades.signing_input(header).removesuffix(".")
    return PendingSignature(doc, hashlib.sha256(f"{protected}.".encode("ascii")).digest(), protected=protected)


async def assemble(pending: PendingSignature, credential: OneTimeCredential, signature: bytes) -> bytes:
    """The B-B signature object from a signHash value: DER CMS (PAdES/CAdES) or ASCII compact JWS (JAdES).

    :raises PackagingFailed: the value does not verify under the credential's certificate.
    """
    credential.verify(pending.dtbsr, signature)
    if pending.protected is not None:
        if credential.jws_alg == "ES256":  # JWS wants r||s (RFC 7518 §3.4); signHash returns DER
            r, s = utils.decode_dss_signature(signature)
            size = (credential.certificate.public_key.bit_size + 7) // 8
            signature = r.to_bytes(size, "big") + s.to_bytes(size, "big")
        return f"{pending.protected}..{shared_jades.b64url(signature)}".encode("ascii")
    if pending.signed_attrs is None:
        raise PackagingFailed("the pending CMS signature has no signed attributes to assemble")
    content_info = await credential.external_signer(signature).async_sign_prescribed_attributes(
        "sha256", pending.signed_attrs)
    return bytes(content_info.dump())


def check_distinct(pending: Sequence[PendingSignature]) -> None:
    """Two documents with the same DTBS/R cannot share one SAD (the SSASP refuses a repeated hash)."""
    seen: dict[bytes, str] = {}
    for item in pending:
        if item.dtbsr in seen:
            raise PackagingFailed(f"documents {seen[item.dtbsr]!r} and {item.doc.label!r} produced the same DTBS/R "
                                  "(identical content signed in the same second); sign them separately")
        seen[item.dtbsr] = item.doc.label
