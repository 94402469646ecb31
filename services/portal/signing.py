"""The portal's signing flow, Flask-free: create a transaction (steps 1-2), complete it (step 10).

:class:`PortalCore` is what the HTTP layer calls:

* :meth:`PortalCore.create` checks the documents (step 1), prepares each one and computes its
  DTBS/R (PAdES: /ByteRange digest of the prepared PDF; CAdES: file digest; JAdES: payload digest)
  and stores everything for the signer's review, owned by the browser session or partner
  application that asked (:meth:`PortalCore.get` answers only the owner).
* :meth:`PortalCore.confirm` — after the signer saw each document and its digest on the review
  page (what you see is what you sign) — pushes ONE authorization request for all digests to the
  SSASP (step 2, PAR with PKCE, ``authorization_details`` type ``credential``). Only digests and
  labels leave.
* :meth:`PortalCore.complete` handles the redirect back (``code`` + ``state`` or an error),
  exchanges the code for the credential token (the SAD), calls ``signDoc`` with the same digests,
  packages each signature at the chosen level, validates the result and stores it — all-or-nothing.

Certificate-first flow (docs/design.md §2, second flow; CSC v1 ``signHash``), two browser round trips
because the hashes exist only once the certificate does (SCAL 2: the person approves them):

1. :meth:`PortalCore.confirm` pushes a *service* authorization (``scope=service``,
   ``signatureQualifier``, ``numSignatures`` = N); eID login and consent (steps 3-5). On return
   the token exchange makes the SSASP create the one-time key and certificate (6-7); the portal
   reads them with ``credentials/info``, computes each document's DTBS/R over the signed
   attributes with the real certificate (2, :mod:`services.portal.certificate_first`), keeps them,
   and pushes a *credential* authorization for exactly these N hashes with the documents' labels;
   the callback sends the browser there (the transaction is ``pending`` again).
2. The person logs in again and approves the listed hashes on the SSASP's consent page. On
   return the token exchange gives the SAD (the credential-scope token, bound to those hashes);
   ``signatures/signHash`` signs them once (8-9; the SSASP destroys the key when the budget is
   spent); the portal assembles the CMS / JWS and packages it like the person-signing flow (10).

The SSASP is reached through :class:`~services.portal.signer_api.SignerApi` (``shared.clients.signer.SignerClient``
implements it); the TSP through :class:`~services.portal.trust.TrustStore`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.portal import cades, certificate_first, jades, pades
from services.portal.documents import Document, Flow, Level, SignatureFormat, SigningOptions
from services.portal.errors import (
    CredentialUnsuitable,
    PackagingFailed,
    TransactionExpired,
    TransactionNotFound,
    TransactionStateError,
    ended_by_signer,
    relayed,
)
from services.portal.ltv import ValidationMaterial
from services.portal.packaging import package_signature, prepared_pdf_of, sign_doc_validation_material, signed_file_name
from services.portal.signer_api import SignerApi
from services.portal.signer_follow_up import SignerFollowUp
from services.portal.store import EXPIRED, FAILED, PENDING, REVIEW, StoredDocument, Transaction, TransactionStore
from services.portal.trust import TrustStore
from services.portal.validation import ValidationReport, validate_document
from shared.clock import lab_clock
from shared.errors import InvalidRequest, SignLabError, UpstreamError, UpstreamUnavailable
from shared.flow import step

__all__ = ["SHA256_OID", "Created", "PortalCore", "review_key"]

log = logging.getLogger(__name__)

SHA256_OID = "2.16.840.1.101.3.4.2.1"


@dataclass(frozen=True)
class Created:
    """What :meth:`PortalCore.create` returns: the transaction and the token of its review link
    (the link the signer opens to see the documents and confirm; kept only as its hash)."""

    transaction_id: str
    review_token: str


def review_key(review_token: str) -> str:
    """How a review link's token is stored and looked up: its SHA-256 (hex)."""
    return hashlib.sha256(review_token.encode()).hexdigest()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class PortalCore:
    """The SCASP's signing logic (no Flask).

    :param store: transactions and documents.
    :param trust: trust anchor, trusted list, TSP data and TSA.
    :param signer: the SSASP client.
    :param callback_url: the redirect URI registered at the SSASP.
    :param bytes_reserved: PDF /Contents reservation for time-stamped levels (hex characters; B-B takes
        half, :func:`services.portal.pades.contents_reservation`).
    :param ttl_seconds: lifetime of a pending transaction.
    """

    def __init__(self, store: TransactionStore, trust: TrustStore, signer: SignerApi | None, *,
                 callback_url: str, bytes_reserved: int, ttl_seconds: int) -> None:
        self.store = store
        self.trust = trust
        self.signer = signer
        self.callback_url = callback_url
        self.bytes_reserved = bytes_reserved
        self.ttl_seconds = ttl_seconds
        self.follow_up = SignerFollowUp(store, signer)

    # ------------------------------------------------------------------ validation

    def validate(self, label: str, signed: bytes, *, original: bytes | None, owner: str,
                 at: datetime | None = None) -> tuple[ValidationReport, str]:
        """Validate an uploaded signed file at ``at`` (default: now on the lab clock) and keep the
        reports for ``owner``; the report and its id."""
        report = asyncio.run(validate_document(label, signed, self.trust.settings(), original=original, at=at))
        return report, self.keep_report(report, owner)

    def keep_report(self, report: ValidationReport, owner: str) -> str:
        """Store the simple, detailed and ETSI reports of a validation for ``owner``; the report id."""
        report_id = secrets.token_hex(16)
        self.store.save_report(report_id, {"simple": report.to_dict(), "detailed": report.detailed(),
                                           "etsi_xml": report.etsi_xml()}, owner)
        return report_id

    # ------------------------------------------------------------------ steps 1-2

    def create(self, documents: Sequence[Document], options: SigningOptions, *, owner: str) -> Created:
        """Step 1: check and prepare the documents, compute each digest to be signed and store them
        for the signer's review. Nothing is sent to the SSASP before the signer confirms
        (:meth:`confirm`).

        :param owner: who may see the transaction (``browser:…`` or ``app:…``, never empty).
        """
        if not owner:
            raise SignLabError("a transaction needs an owner", step=step(1))
        if not documents:
            raise InvalidRequest("choose at least one document to sign", step=step(1))
        labels = [d.label for d in documents]
        if len(set(labels)) != len(labels):
            raise InvalidRequest("two documents have the same name; rename one", step=step(1))
        if self.signer is None:
            raise SignLabError("the portal has no signing service configured", step=step(2))
        certificate_first_flow = options.flow is Flow.CERTIFICATE_FIRST
        stored = [self._prepare(i, doc, options, certificate_first_flow) for i, doc in enumerate(documents)]
        tx_id = "tx-" + secrets.token_hex(8)
        review_token = secrets.token_urlsafe(32)
        now = lab_clock().time()
        tx = Transaction(
            id=tx_id, created_at=now, expires_at=now + self.ttl_seconds, state=REVIEW,
            options={"qualifier": options.qualifier.value, "format": options.format.value, "level": options.level.value,
                     "flow": options.flow.value, "visible": options.visible, "signer_name": options.signer_name,
                     "login_hint": options.login_hint},
            oauth_state=secrets.token_urlsafe(24), code_verifier=secrets.token_urlsafe(48), authorize_url=None,
            error=None, error_description=None, meta={}, documents=stored, owner=owner,
            review_key=review_key(review_token),
        )
        self.store.create(tx)
        log.info("step 1: %d document(s) prepared for the signer's review", len(stored),
                 extra={"step": 1, "transaction_id": tx_id})
        return Created(tx_id, review_token)

    def restart(self, previous: Transaction, *, owner: str) -> Created:
        """Start again after a refusal: a new transaction (new id, new review link) with the same
        documents and options as ``previous``, prepared afresh for the signer's review.

        :raises TransactionStateError: ``previous`` did not end in a refusal or expiry.
        """
        if previous.state not in (FAILED, EXPIRED):
            raise TransactionStateError(f"transaction {previous.id} is {previous.state}: only a refused or expired "
                                        "signing is started again", step=step(1))
        documents = [Document(d.label, d.original, d.media_type) for d in previous.documents]
        created = self.create(documents, SigningOptions.parse(previous.options), owner=owner)
        log.info("step 1: started again from %s", previous.id, extra={"step": 1, "transaction_id": created.transaction_id})
        return created

    def by_review(self, review_token: str) -> Transaction:
        """The transaction of a review link (expired ones marked first).

        :raises TransactionNotFound: no such link.
        """
        tx = self.store.by_review_key(review_key(review_token))
        if tx is None:
            raise TransactionNotFound("(review link)")
        return self._refresh(tx)

    def confirm(self, tx: Transaction) -> str:
        """Step 2, after the signer confirmed what they saw: push one authorization request for all
        digests to the SSASP; return the URL the browser goes to.

        :raises TransactionStateError: already confirmed, completed or failed.
        :raises TransactionExpired: the review waited longer than the lifetime.
        """
        if self.signer is None or tx.oauth_state is None or tx.code_verifier is None:
            raise SignLabError(f"transaction {tx.id} cannot be sent: no signing service, or no PKCE data kept", step=step(2))
        if tx.state == EXPIRED:
            raise self._expired(tx)
        if not self.store.confirm(tx.id):
            raise TransactionStateError(f"transaction {tx.id} was already confirmed ({tx.state})", step=step(2))
        options = SigningOptions.parse(tx.options)
        challenge = _b64url(hashlib.sha256(tx.code_verifier.encode("ascii")).digest())
        try:
            if options.flow is Flow.CERTIFICATE_FIRST:
                # Service authorization: no digests yet (the certificate does not exist), only the
                # qualifier and how many signatures the one-time credential may make.
                pushed = self.signer.push_authorization_request(
                    redirect_uri=self.callback_url, state=tx.oauth_state, code_challenge=challenge,
                    qualifier=options.qualifier.csc_qualifier, scope="service", num_signatures=len(tx.documents),
                    login_hint=options.login_hint,
                )
            else:
                pushed = self.signer.push_authorization_request(
                    redirect_uri=self.callback_url, state=tx.oauth_state, code_challenge=challenge,
                    qualifier=options.qualifier.csc_qualifier, documents=[(d.digest, d.label) for d in tx.documents],
                    hash_algorithm="sha256", login_hint=options.login_hint,
                )
        except UpstreamError as exc:
            refusal = relayed(exc)
            self.store.fail(tx.id, refusal.error, refusal.error_description)
            raise refusal from None
        except SignLabError as exc:
            self.store.fail(tx.id, exc.error, exc.error_description)
            raise
        self.store.set_authorization(tx.id, pushed.authorize_url, {
            "documents": len(tx.documents), "signer_transaction_id": getattr(pushed, "transaction_id", None)})
        what = "service authorization request for %d signature(s)" if options.flow is Flow.CERTIFICATE_FIRST \
            else "authorization request for %d digest(s)"
        log.info("step 2: the signer confirmed; pushed " + what, len(tx.documents),
                 extra={"step": 2, "transaction_id": tx.id})
        return str(pushed.authorize_url)

    def _prepare(self, idx: int, doc: Document, options: SigningOptions, certificate_first_flow: bool) -> StoredDocument:
        if certificate_first_flow:
            # Nothing can be prepared before the certificate exists; the stored digest is the
            # document's SHA-256 (shown to people), the DTBS/R comes at step 10.
            return StoredDocument(idx, doc.label, doc.media_type, doc.content, hashlib.sha256(doc.content).digest())
        if options.format is SignatureFormat.PADES:
            prepared = asyncio.run(pades.prepare_pdf(
                doc.content, label=doc.label, qualifier=options.qualifier, visible=options.visible,
                signer_name=options.signer_name,
                bytes_reserved=pades.contents_reservation(options.level, self.bytes_reserved),
            ))
            return StoredDocument(idx, doc.label, doc.media_type, doc.content, prepared.digest, prepared.prepared,
                                  prepared.reserved_start, prepared.reserved_end, prepared.field_name)
        digest = cades.digest(doc.content) if options.format is SignatureFormat.CADES else jades.digest(doc.content)
        return StoredDocument(idx, doc.label, doc.media_type, doc.content, digest)

    # ------------------------------------------------------------------ step 10

    def get(self, tx_id: str, owner: str) -> Transaction:
        """The transaction ``tx_id`` of ``owner``; waiting ones past their lifetime are marked
        expired first.

        :raises TransactionNotFound: no such transaction, or another owner's (the same answer, so
            the portal is no oracle of other people's transaction ids).
        """
        tx = self.store.get(tx_id)
        if tx is None or not owner or not hmac.compare_digest(tx.owner, owner):
            raise TransactionNotFound(tx_id)
        return self._refresh(tx)

    def _refresh(self, tx: Transaction) -> Transaction:
        """``tx`` as stored, after marking it expired when it outlived its lifetime."""
        tx_id = tx.id
        if tx.expired:
            expired = self._expired(tx)
            self.store.fail(tx.id, expired.error, expired.error_description, state=EXPIRED)
            self.follow_up.release_credential(tx)
            refreshed = self.store.get(tx_id)
            if refreshed is None:
                raise TransactionNotFound(tx_id)
            return refreshed
        return tx

    def cancel(self, tx: Transaction) -> None:
        """The signer declined on the review page: nothing was sent to the SSASP, nothing is signed.

        :raises TransactionStateError: no longer under review.
        """
        if not self.store.cancel_review(tx.id):
            raise TransactionStateError(f"transaction {tx.id} is no longer waiting for review ({tx.state})", step=step(1))
        log.info("step 1: the signer declined at the review", extra={"step": 1, "transaction_id": tx.id})

    def _expired(self, tx: Transaction) -> TransactionExpired:
        # Never confirmed: it ended at the review (step 2 was never taken). The browser comes back
        # after the service authorization (step 5) in the certificate-first flow; in person
        # signing the next thing would be the signature delivery (step 10).
        if tx.state == REVIEW or (tx.state == EXPIRED and tx.authorize_url is None):
            at_step = 2
        else:
            at_step = 5 if tx.options.get("flow") == Flow.CERTIFICATE_FIRST.value else 10
        return TransactionExpired(tx.id, self.ttl_seconds, at_step=at_step)

    def complete(self, *, state: str | None, code: str | None, error: str | None = None,
                 error_description: str | None = None) -> Transaction:
        """Handle the redirect back from the SSASP; return the completed transaction.

        :raises InvalidRequest: no or unknown ``state``.
        :raises TransactionExpired: the transaction outlived its lifetime.
        :raises SigningRefused: the signer cancelled or the SSASP/CA refused (e.g. LoA too low for QES).
        :raises TransactionStateError: the callback was already handled.
        """
        if not state:
            raise InvalidRequest("the redirect from the signing service carries no state", step=step(10))
        tx = self.store.by_oauth_state(state)
        if tx is None:
            raise InvalidRequest("the redirect's state matches no signing transaction here", step=step(10))
        if tx.expired:
            # Refuse before redeeming the code: the SSASP makes no key or certificate for it
            # (certificate first) and no signature exists (person signing).
            expired = self._expired(tx)
            self.store.fail(tx.id, expired.error, expired.error_description, state=EXPIRED)
            self.follow_up.release_credential(tx)
            raise expired
        if tx.state != PENDING:
            raise TransactionStateError(f"transaction {tx.id} is already {tx.state}; each authorization can be used once",
                                        step=step(10))
        if error:
            refusal = ended_by_signer(error, (error_description or "no reason given")[:300], tx.id)
            self.store.fail(tx.id, refusal.error, refusal.error_description)
            self.follow_up.release_credential(tx)
            raise refusal
        if not code:
            self.store.fail(tx.id, "invalid_request", "no code in the redirect")
            raise InvalidRequest("the redirect from the signing service carries neither code nor error", step=step(10))
        if not self.store.claim(tx.id):
            raise TransactionStateError(f"transaction {tx.id} is already being completed", step=step(10))
        try:
            if tx.options.get("flow") == Flow.CERTIFICATE_FIRST.value:
                return self._sign_certificate_first(tx, code)
            return self._sign_and_package(tx, code)
        except UpstreamError as exc:  # the SSASP's (or the TSA's) own error, in its words and status
            refusal = relayed(exc)
            self.store.fail(tx.id, refusal.error, refusal.error_description)
            raise refusal from None
        except SignLabError as exc:
            self.store.fail(tx.id, exc.error, exc.error_description)
            raise
        except Exception as exc:  # keep nothing half-written, then let the frame report a 500
            self.store.fail(tx.id, "server_error", f"packaging failed unexpectedly ({exc.__class__.__name__})")
            raise

    def _sign_and_package(self, tx: Transaction, code: str) -> Transaction:
        if self.signer is None or tx.code_verifier is None:
            raise SignLabError(f"transaction {tx.id} cannot be completed: no signing service, or no PKCE data kept", step=step(10))
        options = SigningOptions.parse(tx.options)
        token = self.signer.exchange_code(code, self.callback_url, tx.code_verifier)
        try:
            result = self.signer.sign_doc(
                token.access_token, digests=[d.digest for d in tx.documents], hash_algorithm="sha256",
                signature_format=options.format.csc_letter, conformance_level=Level.B_B.csc_conformance_level,
                qualifier=options.qualifier.csc_qualifier,
                # Revocation data only where it is embedded (B-LT, B-LTA); validation fetches its own.
                return_validation_info=options.level in (Level.B_LT, Level.B_LTA),
            )
        except UpstreamUnavailable as exc:  # no answer, or one that broke off: the SSASP may have signed
            raise self.follow_up.answer_lost(tx, exc) from None
        objects = list(result.signature_objects)
        if len(objects) != len(tx.documents):
            raise PackagingFailed(f"the signing service returned {len(objects)} signatures for {len(tx.documents)} documents")
        material = sign_doc_validation_material(result)
        prepared = [prepared_pdf_of(doc) if options.format is SignatureFormat.PADES else None for doc in tx.documents]
        meta = {
            "flow": Flow.PERSON_SIGNING.value,
            "signer_transaction_id": getattr(result, "transaction_id", None),
            "qualifier": getattr(result, "qualifier", None),
            "loa": getattr(result, "loa", None),
            "certificate_serial": getattr(result, "certificate_serial", None),
        }
        return self._package_all(tx, options, [bytes(o) for o in objects], prepared, material, meta)

    def _sign_certificate_first(self, tx: Transaction, code: str) -> Transaction:
        """Certificate first: the first callback makes the credential and asks the person to approve
        the hashes; the second signs them."""
        if tx.awaiting_hash_approval:
            return self._sign_approved_hashes(tx, code)
        return self._ask_approval_of_the_hashes(tx, code)

    def _ask_approval_of_the_hashes(self, tx: Transaction, code: str) -> Transaction:
        """Round 1 (CSC v1): service token → credential → DTBS/R → the person's approval asked."""
        if self.signer is None or tx.code_verifier is None:
            raise SignLabError(f"transaction {tx.id} cannot be completed: no signing service, or no PKCE data kept", step=step(10))
        options = SigningOptions.parse(tx.options)
        count = len(tx.documents)
        # Steps 5-7: the token exchange makes the SSASP create the one-time key and certificate.
        token = self.signer.exchange_code(code, self.callback_url, tx.code_verifier)
        if not token.credential_id:
            raise CredentialUnsuitable("the service token names no credentialID")
        with self.follow_up.discarding(token.access_token):
            info = self.signer.credentials_info(token.access_token, token.credential_id)
            credential = certificate_first.OneTimeCredential.from_info(
                token.credential_id, info, needed=count, qualifier=options.qualifier.csc_qualifier)
            log.info("step 7: one-time credential %s, certificate %s", credential.credential_id, credential.serial_hex,
                     extra={"step": 7, "transaction_id": tx.id})
            # Step 2 of this flow: the DTBS/R over the signed attributes with the real certificate.
            reserved = pades.contents_reservation(options.level, self.bytes_reserved)
            try:
                pending = [asyncio.run(certificate_first.compute_dtbsr(doc, options, credential,
                                                                       bytes_reserved=reserved))
                           for doc in tx.documents]
            except SignLabError:
                raise
            except Exception as exc:  # pyHanko/asn1crypto while building the signed attributes
                raise PackagingFailed(f"the DTBS/R could not be computed ({exc.__class__.__name__}: "
                                      f"{str(exc)[:200]})") from None
            certificate_first.check_distinct(pending)
            # The person approves exactly these hashes at the SSASP (SCAL 2): a credential
            # authorization with the documents' labels; its token will be the SAD.
            oauth_state, verifier = secrets.token_urlsafe(24), secrets.token_urlsafe(48)
            pushed = self.signer.push_authorization_request(
                redirect_uri=self.callback_url, state=oauth_state,
                code_challenge=_b64url(hashlib.sha256(verifier.encode("ascii")).digest()),
                documents=[(p.dtbsr, p.doc.label) for p in pending], credential_id=credential.credential_id,
                hash_algorithm="sha256", login_hint=options.login_hint)
            # The approval is a transaction of its own at the SSASP: the one the portal now waits for.
            meta = {**tx.meta, "awaiting": "hash-approval", "credential_id": credential.credential_id,
                    "signer_transaction_id": getattr(pushed, "transaction_id", None)}
            if not self.store.await_hash_approval(
                    tx.id, signer_token=token.access_token, oauth_state=oauth_state, code_verifier=verifier,
                    authorize_url=str(pushed.authorize_url), pending=[p.stored() for p in pending], meta=meta):
                raise TransactionStateError(f"transaction {tx.id} ended while its credential was made", step=step(2))
        log.info("step 2: %d DTBS/R hash(es) sent for the signer's approval", count,
                 extra={"step": 2, "transaction_id": tx.id})
        waiting = self.store.get(tx.id)
        if waiting is None:
            raise TransactionNotFound(tx.id)
        return waiting

    def _sign_approved_hashes(self, tx: Transaction, code: str) -> Transaction:
        """Round 2: the SAD of the person's approval → signHash → assemble → package."""
        if self.signer is None or tx.code_verifier is None or tx.signer_token is None:
            raise SignLabError(f"transaction {tx.id} cannot be completed: no signing service, or its credential "
                               "or PKCE data were not kept", step=step(10))
        options = SigningOptions.parse(tx.options)
        service_token, credential_id = tx.signer_token, str(tx.meta["credential_id"])
        with self.follow_up.discarding(service_token):
            approval = self.signer.exchange_code(code, self.callback_url, tx.code_verifier)
            info = self.signer.credentials_info(service_token, credential_id)
            credential = certificate_first.OneTimeCredential.from_info(
                credential_id, info, needed=len(tx.documents), qualifier=options.qualifier.csc_qualifier)
            pending = [certificate_first.PendingSignature.restore(doc) for doc in tx.documents]
            hashes = [p.dtbsr for p in pending]
            signatures = self.signer.sign_hash(service_token, credential_id, approval.access_token, hashes,
                                               credential.sign_algo)
            log.info("step 9: signHash returned %d signature value(s)", len(signatures),
                     extra={"step": 9, "transaction_id": tx.id})
        if len(signatures) != len(hashes):
            raise PackagingFailed(f"signHash returned {len(signatures)} signature values for {len(hashes)} documents")
        objects = [asyncio.run(certificate_first.assemble(p, credential, s)) for p, s in zip(pending, signatures, strict=True)]
        material = ValidationMaterial(certificates=credential.certificate_der)
        meta = {
            "flow": Flow.CERTIFICATE_FIRST.value,
            "credential_id": credential.credential_id,
            "qualifier": credential.qualifier or options.qualifier.csc_qualifier,
            "certificate_serial": credential.serial_hex,
            "dtbsr_sha256_b64": [base64.b64encode(h).decode("ascii") for h in hashes],
        }
        return self._package_all(tx, options, objects, [p.prepared for p in pending], material, meta)

    def _package_all(self, tx: Transaction, options: SigningOptions, objects: list[bytes],
                     prepared: Sequence[pades.PreparedPdf | None], material: ValidationMaterial,
                     meta: dict[str, Any]) -> Transaction:
        """Step 10 for both flows: raise each B-B object to the level, validate, store all or nothing."""
        trust = self.trust.settings()
        material.extend(trust.material)
        timestamper = self.trust.timestamper()

        async def package_and_validate() -> list[tuple[int, bytes, str, dict[str, Any]]]:
            # One event loop for all documents (pyHanko's API is async; a loop per call costs).
            done = []
            for doc, signature, pdf in zip(tx.documents, objects, prepared, strict=True):
                signed = await package_signature(doc, signature, pdf, options, material, timestamper, self.trust.root())
                report = await validate_document(
                    signed_file_name(doc.label, options.format), signed, trust,
                    original=None if options.format is SignatureFormat.PADES else doc.original,
                )
                simple = dict(report.to_dict(), report_id=self.keep_report(report, tx.owner))
                done.append((doc.idx, signed, signed_file_name(doc.label, options.format), simple))
            return done

        outputs = asyncio.run(package_and_validate())
        meta["documents"] = len(outputs)
        self.store.complete(tx.id, outputs, meta)
        log.info("step 10: packaged %d document(s) at %s", len(outputs), options.level, extra={"step": 10, "transaction_id": tx.id})
        done = self.store.get(tx.id)
        if done is None:
            raise TransactionNotFound(tx.id)
        return done

