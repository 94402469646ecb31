"""RFC 3161 time-stamping authority (asn1crypto ``tsp`` + cryptography ECDSA). No Flask.

Answers a ``TimeStampReq`` with a ``TimeStampResp``: status granted and a token (CMS SignedData
over a TSTInfo with the TSA policy OID, the request's message imprint and nonce, a random serial,
genTime, accuracy 1 s), signed by the TSA key with ESS signing-certificate-v2 in the signed
attributes. The trusted list names this TSA as a qualified time-stamping service, so every token
says so itself as ETSI EN 319 422 §9.1 wants: the TSTInfo ``extensions`` field holds a
non-critical qcStatements extension (RFC 3739 syntax) with the statement
``esi4-qtstStatement-1`` (``id-etsi-tsts-EuQCompliance``, 0.4.0.19422.1.1, no statement info). A bad
request gets a ``rejection`` with the RFC 3161 failure bit (badAlg,
badRequest, badDataFormat, unacceptedPolicy, unacceptedExtension) — as RFC 3161 wants, the
failure is inside a well-formed response, not an HTTP error.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from typing import ClassVar

from asn1crypto import algos, cms, core, tsp
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from services.ca.faults import TSA_UNAVAILABLE, TsaUnavailable
from services.ca.profiles import QC_STATEMENTS, QcStatement, QcStatements
from shared.clock import LabClock, lab_clock
from shared.faults import FaultBoard
from shared.lab_pki import KeyPair

__all__ = ["ACCEPTED_DIGESTS", "ESI4_QTST_STATEMENT_1", "QUALIFIED_TST_EXTENSIONS", "TimeStampAuthority"]

ACCEPTED_DIGESTS = {"sha256": 32, "sha384": 48, "sha512": 64}
"""Message-imprint algorithms the TSA accepts, with their digest length."""
ESI4_QTST_STATEMENT_1 = "0.4.0.19422.1.1"
"""ETSI EN 319 422 Annex B id-etsi-tsts-EuQCompliance: "issued as a qualified electronic time-stamp"."""
QUALIFIED_TST_EXTENSIONS = tsp.Extensions([tsp.Extension({
    "extn_id": str(QC_STATEMENTS.dotted_string), "critical": False,
    "extn_value": QcStatements([QcStatement({"statement_id": ESI4_QTST_STATEMENT_1})]).dump(),
})])
"""The TSTInfo extensions of every token: qcStatements with esi4-qtstStatement-1 (EN 319 422 §9.1)."""


class _StatusOnlyResp(core.Sequence):
    # asn1crypto declares TimeStampResp.timeStampToken mandatory; RFC 3161 §2.4.2 makes it OPTIONAL
    # (absent on rejection). Same first field, so the DER is a valid TimeStampResp.
    _fields: ClassVar[list] = [("status", tsp.PKIStatusInfo)]


class TimeStampAuthority:
    """Issues RFC 3161 time-stamp tokens with one TSA certificate and policy."""

    def __init__(self, tsa: KeyPair, policy_oid: str, faults: FaultBoard | None = None,
                 clock: LabClock | None = None) -> None:
        self.tsa = tsa
        self.clock = clock or lab_clock()  # genTime is the lab clock's
        self.policy_oid = policy_oid
        self.faults = faults  # lab fault injection (tsa-unavailable); None unless enabled
        self._cert = asn1_x509.Certificate.load(tsa.der)

    @staticmethod
    def _rejection(failure: str, text: str) -> bytes:
        status = tsp.PKIStatusInfo({"status": "rejection", "status_string": [text], "fail_info": tsp.PKIFailureInfo({failure})})
        return bytes(_StatusOnlyResp({"status": status}).dump())

    def respond(self, query_der: bytes, now: dt.datetime | None = None) -> bytes:
        """The DER ``TimeStampResp`` for the DER ``TimeStampReq`` ``query_der``.

        :raises TsaUnavailable: only when the lab fault ``tsa-unavailable`` is armed (HTTP 503).
        """
        if self.faults is not None and self.faults.fire(TSA_UNAVAILABLE):
            raise TsaUnavailable()
        try:
            request = tsp.TimeStampReq.load(query_der, strict=True)  # strict: no trailing bytes
            _ = request.native  # parse everything now: asn1crypto is lazy
        except (ValueError, TypeError, KeyError):
            return self._rejection("bad_data_format", "the body is not a DER TimeStampReq (RFC 3161)")
        if request["version"].native != "v1":
            return self._rejection("bad_request", "only TimeStampReq version 1 is supported")
        imprint = request["message_imprint"]
        algorithm = imprint["hash_algorithm"]["algorithm"].native
        if algorithm not in ACCEPTED_DIGESTS:
            return self._rejection("bad_alg", f"message imprint algorithm {algorithm} not accepted; use "
                                   + ", ".join(ACCEPTED_DIGESTS))
        if len(imprint["hashed_message"].native) != ACCEPTED_DIGESTS[algorithm]:
            return self._rejection("bad_data_format", f"hashed message length does not match {algorithm}")
        requested_policy = request["req_policy"].native
        if requested_policy is not None and requested_policy != self.policy_oid:
            return self._rejection("unaccepted_policy", f"this TSA only issues under policy {self.policy_oid}")
        if request["extensions"].native:
            return self._rejection("unaccepted_extension", "request extensions are not supported")

        moment = now or self.clock.now()
        tst_info = tsp.TSTInfo({
            "version": "v1",
            "policy": self.policy_oid,
            "message_imprint": imprint,
            "serial_number": secrets.randbits(63) | 1,
            "gen_time": moment,
            "accuracy": tsp.Accuracy({"seconds": 1}),
            "ordering": False,
            "nonce": request["nonce"].native,
            "tsa": asn1_x509.GeneralName(name="directory_name", value=self._cert.subject),
            "extensions": QUALIFIED_TST_EXTENSIONS,
        })
        tst_der = tst_info.dump()
        signed_attrs = cms.CMSAttributes([
            cms.CMSAttribute({"type": "content_type", "values": ["tst_info"]}),
            cms.CMSAttribute({"type": "signing_time", "values": [cms.Time({"utc_time": core.UTCTime(moment)})]}),
            cms.CMSAttribute({"type": "message_digest", "values": [hashlib.sha256(tst_der).digest()]}),
            cms.CMSAttribute({"type": "signing_certificate_v2", "values": [tsp.SigningCertificateV2({
                "certs": [tsp.ESSCertIDv2({
                    "hash_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
                    "cert_hash": hashlib.sha256(self.tsa.der).digest(),
                    "issuer_serial": tsp.IssuerSerial({
                        "issuer": [asn1_x509.GeneralName(name="directory_name", value=self._cert.issuer)],
                        "serial_number": self._cert.serial_number,
                    }),
                })],
            })]}),
        ])
        signature = self.tsa.key.sign(signed_attrs.dump(), ec.ECDSA(hashes.SHA256()))
        signer_info = cms.SignerInfo({
            "version": "v1",
            "sid": cms.SignerIdentifier({"issuer_and_serial_number": cms.IssuerAndSerialNumber({
                "issuer": self._cert.issuer, "serial_number": self._cert.serial_number})}),
            "digest_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
            "signed_attrs": signed_attrs,
            "signature_algorithm": algos.SignedDigestAlgorithm({"algorithm": "sha256_ecdsa"}),
            "signature": signature,
        })
        signed_data = {
            "version": "v3",
            "digest_algorithms": [algos.DigestAlgorithm({"algorithm": "sha256"})],
            "encap_content_info": cms.EncapsulatedContentInfo({
                "content_type": "tst_info", "content": cms.ParsableOctetString(tst_der)}),
            "signer_infos": [signer_info],
        }
        if request["cert_req"].native:
            signed_data["certificates"] = [self._cert]
        token = cms.ContentInfo({"content_type": "signed_data", "content": cms.SignedData(signed_data)})
        response = tsp.TimeStampResp({"status": tsp.PKIStatusInfo({"status": "granted"}), "time_stamp_token": token})
        return bytes(response.dump())
