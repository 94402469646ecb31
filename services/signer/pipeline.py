"""The one-time signing pipeline, steps 6-10: key → CSR → certificate → signed attributes →
signature → destroy.

Person signing (``signDoc``, :meth:`SigningPipeline.sign_documents`) runs every step in one
request, after the SAM accepted the credential token:

=====  =========================================  ==================================================
step   what                                       where
=====  =========================================  ==================================================
6      a fresh key pair in the HSM                :meth:`OneTimeKeys.step6_create
                                                  <services.signer.keys.OneTimeKeys.step6_create>`
7      CSR (proof of possession, signed in the    :meth:`SigningPipeline.step7_certify`,
       HSM) + identity evidence to the TSP; the   :func:`check_issued_certificate`
       certificate checked against key, policy
       and time
8      CMS signed attributes / JAdES header       :meth:`SigningPipeline.step8_9_sign_document`
       (:mod:`services.signer.signing`)
9      HSM signature, then the key destroyed      :meth:`SigningPipeline.step8_9_sign_document`,
       (in ``finally``: on every path)            :meth:`OneTimeKeys.step9_destroy
                                                  <services.signer.keys.OneTimeKeys.step9_destroy>`
10     B-T: signature time-stamp from the TSA;    :meth:`SigningPipeline.step10_raise_level`,
       B-LT: CRLs and OCSP in the CMS             :meth:`SigningPipeline.step10_response`
       (:mod:`services.signer.levels`); the
       answer: objects, chain, CRL/OCSP if asked
=====  =========================================  ==================================================

Certificate first runs steps 6-7 at the token exchange
(:meth:`SigningPipeline.step6_7_create_credential_key`) and step 9 per ``signHash``
(:meth:`SigningPipeline.step9_sign_hashes`); the credential's bookkeeping is in
:mod:`services.signer.credentials`.

Every failure ends the transaction (``failed``), is audited (``signing.failed`` /
``credential.failed``) and destroys the key; no signature leaves the service.

**Orphan certificates.** From the key's creation on a transaction is marked: a certificate may
exist for it. The mark is cleared when the transaction completes; a failure (at step 7 after the
TSP answered, or at 8 or 9) or an expiry hands it to :mod:`services.signer.orphans`, which asks
the TSP to revoke what it issued for the transaction (by the sweep, when the TSP itself was what
failed).
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from asn1crypto import cms
from cryptography import x509 as cx509

from services.signer import levels
from services.signer.csc import DocumentToSign
from services.signer.errors import SigningFailed
from services.signer.evidence import IdentityEvidence
from services.signer.hsm import Hsm, HsmError, OneTimeKey, operation_step
from services.signer.keys import OneTimeKeys
from services.signer.lifecycle import TransactionLifecycle
from services.signer.orphans import PENDING
from services.signer.signing import HsmCmsSigner, build_cms, build_csr, build_jades
from services.signer.store import CredentialRecord, Store, TransactionRecord
from services.signer.upstream import CertificateGateway
from shared.audit import AuditLog
from shared.clients.ca import IssuedCertificate
from shared.clock import seconds
from shared.errors import SignLabError, UpstreamError, UpstreamUnavailable
from shared.flow import Role, step
from shared.tracing import flow_span

__all__ = ["POLICY", "PROFILE", "SigningPipeline", "check_issued_certificate"]

log = logging.getLogger(__name__)

PROFILE = {"eu_eidas_qes": "qes", "eu_eidas_aes": "ades"}
"""The TSP certificate profile of each qualifier (step 7)."""
POLICY = {"eu_eidas_qes": "0.4.0.194112.1.2", "eu_eidas_aes": "0.4.0.2042.1.1"}
"""The certificate policy OID each qualifier requires in the issued certificate."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _tsp_refusal(exc: UpstreamError) -> SignLabError:
    """The TSP's error answer at step 7, with its code and words: a policy refusal stays
    ``access_denied`` (403), a bad request ``invalid_request``; a TSP that cannot issue now (its 503,
    or 507: its disk is full) is an outage (503 ``temporarily_unavailable``); anything else 502."""
    if exc.upstream_status in (503, 507):
        return SignLabError(f"the TSP cannot issue certificates now: {exc.upstream_error}: {exc.upstream_description}",
                            error="temporarily_unavailable", status=503, step=step(7))
    kept = exc.upstream_error in ("access_denied", "invalid_request")
    mapped = exc.upstream_error if kept else "server_error"
    return SignLabError(f"the TSP refused the certificate: {exc.upstream_error}: {exc.upstream_description}",
                        error=mapped, status=403 if mapped == "access_denied" else 502, step=step(7))


def check_issued_certificate(issued: IssuedCertificate, key: OneTimeKey, qualifier: str, now: datetime) -> datetime:
    """Step 7: the TSP's certificate is for the one-time key, has the qualifier's policy and is
    valid ``now``; its ``notAfter``.

    :raises SignLabError: unusable (every problem named; a validity that does not cover this
        service's time with the offset, e.g. a TSP clock ahead), 502 ``server_error`` at step 7:
        the TSP answered, with something this service cannot use.
    """
    try:
        # Extensions and validity read with cryptography: asn1crypto's extension parsing
        # (certificate_policies_value) was the costlier half of this check.
        checked = cx509.load_der_x509_certificate(issued.leaf.dump())
        try:
            policies = checked.extensions.get_extension_for_class(cx509.CertificatePolicies).value
            policy_oids = {p.policy_identifier.dotted_string for p in policies}
        except cx509.ExtensionNotFound:
            policy_oids = set()
        not_before, not_after = checked.not_valid_before_utc, checked.not_valid_after_utc
    except ValueError as exc:
        raise SignLabError(f"the certificate from the TSP is unusable: it cannot be parsed ({exc})",
                           status=502, step=step(7)) from None
    problems = []
    if issued.leaf["tbs_certificate"]["subject_public_key_info"].dump() != key.public_key_info.dump():
        problems.append("its public key is not the one-time key")
    if POLICY[qualifier] not in policy_oids:
        problems.append(f"it lacks the {qualifier} policy {POLICY[qualifier]} (has {sorted(policy_oids)})")
    if now < not_before:
        problems.append(f"it is not valid now: its notBefore {not_before:%H:%M:%S} is {seconds((not_before - now).total_seconds())} s "
                        "after this service's clock (is the TSP's clock ahead?)")
    elif now > not_after:
        problems.append(f"it is not valid now: it expired at {not_after:%H:%M:%S}, "
                        f"{seconds((now - not_after).total_seconds())} s before this service's clock")
    if problems:
        raise SignLabError("the certificate from the TSP is unusable: " + "; ".join(problems), status=502,
                           step=step(7))
    return not_after


def _tsp_unreachable(exc: BaseException) -> bool:
    """The TSP itself did not answer (an outage or timeout at step 7): asking it to revoke right
    now would only wait again; the sweep retries the revocation."""
    return isinstance(exc, UpstreamUnavailable) and exc.role is Role.TSP


def _signed_attrs_digest(cms_der: bytes, algorithm: str) -> str:
    """Hex digest of the DER signed attributes of a CMS (the DTBS/R the HSM signed), for the audit."""
    signer_info = cms.ContentInfo.load(cms_der)["content"]["signer_infos"][0]
    attrs = bytearray(signer_info["signed_attrs"].dump())
    attrs[0] = 0x31  # the signature covers the SET OF encoding, not the [0] IMPLICIT tag (RFC 5652 §5.4)
    return hashlib.new(algorithm, bytes(attrs)).hexdigest()


class SigningPipeline:
    """Steps 6-10 with a one-time key.

    :param hsm: the HSM handle.
    :param ca: the TSP client (certificate issuance, validation data).
    :param store: the transaction database.
    :param audit: the hash-chained audit log.
    :param keys: the one-time keys of this process.
    :param evidence: the verified ID tokens of the transactions in flight (step 7 sends one).
    :param lifecycle: ends a transaction that fails.
    :param clock: the time source (seconds since the epoch).
    """

    def __init__(self, hsm: Hsm, ca: CertificateGateway, store: Store, audit: AuditLog, keys: OneTimeKeys,
                 evidence: IdentityEvidence, lifecycle: TransactionLifecycle, clock: Callable[[], float]) -> None:
        self.hsm = hsm
        self.ca = ca
        self.store = store
        self.audit = audit
        self.keys = keys
        self.evidence = evidence
        self.lifecycle = lifecycle
        self.clock = clock

    # -- the steps ----------------------------------------------------------------------------------

    def step7_certify(self, transaction: TransactionRecord, key: OneTimeKey, *,
                      durable_later: bool = False) -> IssuedCertificate:
        """Step 7: CSR + identity evidence to the TSP; the certificate checked against key and profile.
        The evidence (the ID token) is dropped once the TSP has answered: nothing needs it later.

        :param durable_later: as for :meth:`OneTimeKeys.step6_create` (``csr.sent``, ``certificate.issued``).
        :raises SignLabError: the TSP refused (its reason kept; a policy refusal stays
            ``access_denied``) or the certificate is unusable.
        """
        qualifier = transaction.request["qualifier"]
        id_token = self.evidence.of(transaction.id)
        if id_token is None:
            raise SigningFailed("the identity evidence of this transaction is not in this process (the service "
                                "restarted after the eID login)", step=step(7))
        with operation_step(7):  # the CSR's proof of possession, not a document signature
            csr_der = build_csr(self.hsm, key, common_name=f"SignLab one-time key {transaction.id}")
        self.audit.append("csr.sent", step=7, transaction_id=transaction.id, key_id=key.key_id,
                          csr_sha256=hashlib.sha256(csr_der).hexdigest(), profile=PROFILE[qualifier],
                          sync=not durable_later)
        try:
            issued = self.ca.issue(csr_der=csr_der, profile=PROFILE[qualifier], id_token=id_token,
                                   transaction_id=transaction.id)
        except UpstreamError as exc:
            raise _tsp_refusal(exc) from None
        finally:
            self.evidence.drop(transaction.id)
        not_after = check_issued_certificate(issued, key, qualifier, datetime.fromtimestamp(self.clock(), UTC))
        self.audit.append("certificate.issued", step=7, transaction_id=transaction.id, serial=issued.serial,
                          profile=issued.profile, policy=issued.policy_oid,
                          not_after=not_after.isoformat(), sync=not durable_later)
        return issued

    def step8_9_sign_document(self, transaction: TransactionRecord, key: OneTimeKey, issued: IssuedCertificate,
                              document: DocumentToSign, label: str) -> bytes:
        """Steps 8-9 for one digest: signed attributes (CMS) or protected header (JAdES), signed in
        the HSM; the B-B signature object (DER CMS, or the ASCII compact JWS)."""
        if document.signature_format == "J":
            jws = build_jades(self.hsm, key, issued.leaf, issued.issuers, document.digest,
                              document.hash_algorithm, label)
            signature_object = jws.encode("ascii")
            dtbsr = hashlib.sha256(jws.split(".")[0].encode("ascii") + b".").hexdigest()
        else:
            signer = HsmCmsSigner(self.hsm, key, issued.leaf, issued.issuers, document.hash_algorithm)
            signature_object = build_cms(signer, document.digest, document.hash_algorithm, document.signature_format)
            dtbsr = _signed_attrs_digest(signature_object, document.hash_algorithm)
        self.audit.append("dtbsr.built", step=8, transaction_id=transaction.id, document_digest=document.digest.hex(),
                          dtbsr_digest=dtbsr, format=document.signature_format, sync=False)
        self.audit.append("signature.created", step=9, transaction_id=transaction.id, key_id=key.key_id,
                          document_digest=document.digest.hex(), dtbsr_digest=dtbsr, format=document.signature_format,
                          level=document.conformance_level, sync=False)
        return signature_object

    def step10_raise_level(self, transaction: TransactionRecord, signature_object: bytes, document: DocumentToSign,
                           material: Mapping[str, list[str]] | None, chain: Sequence[Any]) -> bytes:
        """Step 10: a CMS raised to the level asked (:mod:`services.signer.levels`): B-T, a signature
        time-stamp from the TSA over the signature value; B-LT, also ``material`` and ``chain`` in
        the SignedData. A B-B object is returned as it is.

        :raises UpstreamError: the TSA refused the time-stamp (nothing is downgraded: the transaction fails).
        :raises UpstreamUnavailable: the TSA did not answer.
        """
        if not document.time_stamped:
            return signature_object
        imprint = levels.signature_value_digest(signature_object)
        with flow_span(step(10), "signature time-stamp", target=Role.TSP, response="RFC 3161 time-stamp token",
                       summary={"imprint": imprint.hex(), "level": levels.LEVEL_NAMES[document.conformance_level]}):
            token = levels.time_stamp_token(self.ca.timestamp(levels.time_stamp_query(imprint, "sha256")),
                                            step=step(10))
        raised = levels.with_signature_timestamp(signature_object, token)
        if document.long_term and material is not None:  # sign_documents fetched it for any B-LT document
            raised = levels.with_validation_data(raised, list(chain), [base64.b64decode(c) for c in material["crl"]],
                                                 [base64.b64decode(o) for o in material["ocsp"]])
        self.audit.append("signature.level_raised", step=10, transaction_id=transaction.id,
                          document_digest=document.digest.hex(), level=document.conformance_level,
                          time_stamp_imprint=imprint.hex(), sync=False)
        return raised

    def step10_validation_data(self, issued: IssuedCertificate, *, required: bool) -> dict[str, list[str]]:
        """Step 10: the CRLs and the OCSP response that validate the certificate (``required``: for
        a B-LT signature, so a failure fails the transaction; otherwise best effort)."""
        with flow_span(step(10), "validation data (CRL, OCSP)", target=Role.TSP, response="CRL and OCSP response",
                       summary={"certificate_serial": issued.serial}):
            return self.ca.validation_info(issued.leaf, issued.issuers[0], required=required)

    def step10_response(self, transaction: TransactionRecord, issued: IssuedCertificate, objects: list[bytes],
                        documents: Sequence[DocumentToSign], *, with_revocation: bool,
                        material: dict[str, list[str]] | None = None) -> dict[str, Any]:
        """Step 10: the ``signDoc`` answer; the chain always, the CRLs and OCSP response when asked
        (``material``: those already fetched for a B-LT signature)."""
        info: dict[str, list[str]] = {"crl": [], "ocsp": []}
        if with_revocation and issued.issuers:
            info = material or self.step10_validation_data(issued, required=False)
        certificates = [_b64(c.dump()) for c in (issued.leaf, *issued.issuers)]
        self.audit.append("transaction.completed", step=10, transaction_id=transaction.id, signatures=len(objects))
        return {
            "SignatureObject": [_b64(o) for o in objects],
            "validationInfo": {"certificates": certificates, "crl": info["crl"], "ocsp": info["ocsp"]},
            "transactionID": transaction.id,
            "signatureQualifier": transaction.request["qualifier"],
            "loa": transaction.identity.get("loa"),
            "certificateSerial": issued.serial,
            "signatureFormats": [d.signature_format for d in documents],
        }

    # -- person signing: steps 6-10 in one request -------------------------------------------------

    def sign_documents(self, transaction: TransactionRecord, documents: Sequence[DocumentToSign],
                       labels: Mapping[bytes, str], *, with_revocation: bool = False) -> dict[str, Any]:
        """Steps 6-10 for ``signDoc``; the key is destroyed in ``finally`` on every path.

        :param labels: the document label of each authorized digest (the JAdES ``sigD`` name).
        :param with_revocation: CSC ``returnValidationInfo``: also fetch the certificate's CRL and
            OCSP response for the client (needed for B-LT/B-LTA); the chain is always returned.
        :raises SignLabError: the step that failed, named; the transaction is ``failed``.
        """
        key: OneTimeKey | None = None
        signed = False
        revoke_for: str | None = None  # the failure, when a certificate made for it must be revoked
        try:
            # Every path below ends with a synced audit entry (transaction.completed after the
            # signatures, signing.failed / key.destroyed on a failure), so the entries on the
            # way are written without their own fsync.
            key = self.keys.step6_create(transaction.id, durable_later=True)
            # From here a certificate may exist for it: revoked unless the transaction completes.
            self.store.move(transaction.id, ["consented"], "key_created", key_id=key.key_id,
                            certificate_revocation=PENDING)
            issued = self.step7_certify(transaction, key, durable_later=True)
            self.store.move(transaction.id, ["key_created"], "certificate_issued", certificate_serial=issued.serial)
            # B-LT validation data first: the certificate exists now, and a TSP that cannot answer
            # fails the transaction before anything is signed.
            material = self.step10_validation_data(issued, required=True) if any(d.long_term for d in documents) \
                else None
            objects = [self.step8_9_sign_document(transaction, key, issued, d, labels.get(d.digest, ""))
                       for d in documents]
            chain = [issued.leaf, *issued.issuers]
            objects = [self.step10_raise_level(transaction, o, d, material, chain) for o, d in zip(objects, documents, strict=True)]
            self.store.move(transaction.id, ["certificate_issued"], "signed")
            signed = True
        except SignLabError as exc:
            self._failed(transaction, exc.error_description, step=exc.step.number if exc.step else None,
                         error=exc.error, reason=exc.description)
            revoke_for = None if _tsp_unreachable(exc) else exc.error_description  # else: by the sweep
            raise
        except Exception as exc:
            self._failed(transaction, f"internal error {exc.__class__.__name__}", error="server_error",
                         reason=exc.__class__.__name__)
            revoke_for = f"internal error {exc.__class__.__name__}"
            log.exception("step 8-9: signing failed")
            raise SigningFailed(step=step(9)) from None
        finally:
            if key is not None:
                self.keys.step9_destroy(key.key_id, transaction.id, sync=not signed)
            if revoke_for is not None:  # after the key is gone: the TSP may take its time
                self.lifecycle.revoke_certificate(transaction.id, revoke_for)
        self.store.move(transaction.id, ["signed"], "completed", certificate_revocation=None)
        return self.step10_response(transaction, issued, objects, documents, with_revocation=with_revocation,
                                    material=material)

    def _failed(self, transaction: TransactionRecord, why: str, **audit: Any) -> None:
        """End the transaction as failed (audited); its certificate's revocation is the caller's."""
        self.audit.append("signing.failed", transaction_id=transaction.id, **audit)
        self.lifecycle.fail(transaction, why, revoke_now=False)

    # -- certificate first: steps 6-7 at the token exchange, 9 per signHash ------------------------

    def step6_7_create_credential_key(self, transaction: TransactionRecord) -> tuple[OneTimeKey, IssuedCertificate]:
        """Steps 6-7 of certificate first: the key and certificate of a one-time credential.

        :raises SignLabError: as :meth:`sign_documents`; the key is destroyed, the transaction
            ``failed`` (audited as ``credential.failed``).
        """
        key: OneTimeKey | None = None
        try:
            key = self.keys.step6_create(transaction.id)
            self.store.advance(transaction.id, ["consented"], "key_created", key_id=key.key_id,
                               certificate_revocation=PENDING)
            issued = self.step7_certify(transaction, key)
            self.store.advance(transaction.id, ["key_created"], "certificate_issued",
                               certificate_serial=issued.serial)
        except Exception as exc:
            if key is not None:
                self.keys.step9_destroy(key.key_id, transaction.id)
            reason = exc.error_description if isinstance(exc, SignLabError) else exc.__class__.__name__
            self.audit.append("credential.failed", transaction_id=transaction.id, reason=reason)
            self.lifecycle.fail(transaction, reason, revoke_now=not _tsp_unreachable(exc))
            if isinstance(exc, SignLabError):
                raise
            log.exception("steps 6-7: credential creation failed")
            raise SigningFailed("the one-time credential could not be created", step=step(7)) from None
        return key, issued

    def step9_sign_hashes(self, credential: CredentialRecord, digests: Sequence[bytes], algorithm: str) -> list[bytes]:
        """Step 9 of certificate first: sign DTBS/R hashes (already authorized by the SAM) as given.

        :raises HsmError: the key is gone (destroyed, or the service restarted) or the HSM failed
            (audited as ``signing.failed``).
        """
        try:
            key = self.keys.get(credential.key_id)
            if key is None:
                raise HsmError("the one-time key is not in this process (destroyed or the service restarted)",
                               step=step(9))
            signatures = []
            for digest in digests:
                with flow_span(step(9), "C_Sign", summary={"key_id": key.key_id, "digest": digest.hex(),
                                                           "credential_id": credential.id}):
                    signatures.append(self.hsm.sign_digest(key, digest, algorithm))
        except SignLabError as exc:
            self.audit.append("signing.failed", step=9, transaction_id=credential.transaction_id, error=exc.error,
                              reason=exc.description)
            raise
        for digest in digests:
            self.audit.append("signature.created", step=9, transaction_id=credential.transaction_id,
                              key_id=credential.key_id, dtbsr_digest=digest.hex(), credential_id=credential.id)
        return signatures
