"""RFC 6960 OCSP responder built on cryptography's OCSP builder. No Flask.

* Certificates of the issuing CA (the short-term signing certificates) are answered by the
  delegated responder (EKU OCSPSigning + ocsp-nocheck, certificate included in the response):
  ``good``, ``revoked`` (time + reason) or ``unknown`` for a serial this CA never issued — and
  ``unknown`` for a certificate of the short-term-no-revocation profile: it carries noRevAvail
  (RFC 9608), the CA keeps no revocation status for it, so the responder does not vouch for it.
* Certificates of the root (issuing CA, TSA, trusted-list signer) are answered by the root itself.
* Any other issuer: ``unauthorized``; an unparsable request: ``malformedRequest``.
The request nonce (RFC 8954) is echoed. Status stays available after a certificate expires.
"""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from services.ca.authority import REVOCATION_REASONS, CertificateAuthority
from services.ca.faults import OCSP_UNAVAILABLE, OcspUnavailable
from services.ca.profiles import has_no_rev_avail
from shared.lab_pki import KeyPair

__all__ = ["OcspResponder"]


def _key_hash(cert: x509.Certificate, algorithm: hashes.HashAlgorithm) -> bytes:
    # RFC 6960 issuerKeyHash: hash of the BIT STRING value of subjectPublicKey (no tag/length).
    spki = cert.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    digest = hashes.Hash(algorithm)
    digest.update(spki)
    return digest.finalize()


def _name_hash(cert: x509.Certificate, algorithm: hashes.HashAlgorithm) -> bytes:
    digest = hashes.Hash(algorithm)
    digest.update(cert.subject.public_bytes())
    return digest.finalize()


class OcspResponder:
    """Answers OCSP requests for the certificates of one :class:`CertificateAuthority`."""

    def __init__(self, authority: CertificateAuthority) -> None:
        self.authority = authority

    def respond(self, request_der: bytes, now: dt.datetime | None = None) -> bytes:
        """The DER OCSPResponse for ``request_der`` (always a response, an error one for a bad request).

        :raises OcspUnavailable: only when the lab fault ``ocsp-unavailable`` is armed (HTTP 503).
        """
        faults = self.authority.faults
        if faults is not None and faults.fire(OCSP_UNAVAILABLE):
            raise OcspUnavailable()
        try:
            request = ocsp.load_der_ocsp_request(request_der)
            algorithm = request.hash_algorithm
            issuer_key_hash, issuer_name_hash, serial = (request.issuer_key_hash, request.issuer_name_hash,
                                                         request.serial_number)
        except (ValueError, TypeError):
            return ocsp.OCSPResponseBuilder.build_unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST).public_bytes(
                serialization.Encoding.DER)
        now = (now or self.authority.clock.now()).replace(microsecond=0)
        hierarchy = self.authority.hierarchy
        signer: KeyPair
        revoked_at: dt.datetime | None = None
        reason: x509.ReasonFlags | None = None
        if self._matches(hierarchy.issuing.cert, algorithm, issuer_key_hash, issuer_name_hash):
            signer, include_cert = hierarchy.ocsp, True
            record = self.authority.lookup(serial)
            if (record is None or record.issuer != "issuing"
                    or has_no_rev_avail(x509.load_der_x509_certificate(record.der))):
                status = ocsp.OCSPCertStatus.UNKNOWN
            elif record.revoked_at is not None and record.revoked_at <= now:  # not revoked yet at the lab clock's time
                status, revoked_at = ocsp.OCSPCertStatus.REVOKED, record.revoked_at
                reason = REVOCATION_REASONS.get(record.revocation_reason or "unspecified")
            else:
                status = ocsp.OCSPCertStatus.GOOD
        elif self._matches(hierarchy.root.cert, algorithm, issuer_key_hash, issuer_name_hash):
            signer, include_cert = hierarchy.root, False
            children = {hierarchy.issuing.cert.serial_number, hierarchy.tsa.cert.serial_number,
                        hierarchy.tl_signer.cert.serial_number}
            status = ocsp.OCSPCertStatus.GOOD if serial in children else ocsp.OCSPCertStatus.UNKNOWN
        else:
            return ocsp.OCSPResponseBuilder.build_unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED).public_bytes(
                serialization.Encoding.DER)
        builder = ocsp.OCSPResponseBuilder().add_response_by_hash(
            issuer_name_hash=issuer_name_hash, issuer_key_hash=issuer_key_hash, serial_number=serial,
            algorithm=algorithm, cert_status=status, this_update=now,
            next_update=now + dt.timedelta(minutes=self.authority.settings.ocsp_validity_minutes),
            revocation_time=revoked_at, revocation_reason=reason,
        ).responder_id(ocsp.OCSPResponderEncoding.HASH, signer.cert)
        if include_cert:
            builder = builder.certificates([signer.cert])
        try:
            nonce = request.extensions.get_extension_for_class(x509.OCSPNonce).value
            builder = builder.add_extension(nonce, critical=False)
        except x509.ExtensionNotFound:
            pass
        response = builder.sign(signer.key, hashes.SHA256())
        return response.public_bytes(serialization.Encoding.DER)

    @staticmethod
    def _matches(cert: x509.Certificate, algorithm: hashes.HashAlgorithm, key_hash: bytes, name_hash: bytes) -> bool:
        return _key_hash(cert, algorithm) == key_hash and _name_hash(cert, algorithm) == name_hash
