"""The portal's signing flow, Flask-free: create a transaction (steps 1-2), complete it (step 10).

:class:`PortalCore` is what the HTTP layer calls:

* :meth:`PortalCore.create` checks the documents (step 1), prepares each one and computes its
  DTBS/R (PAdES: /ByteRange digest of the prepared PDF; CAdES: file digest; JAdES: payload digest),
  stores everything, and pushes ONE authorization request for all digests to the SSASP (step 2,
  PAR with PKCE, ``authorization_details`` type ``credential``). Only digests and labels leave.
* :meth:`PortalCore.complete` handles the redirect back (``code`` + ``state`` or an error),
  exchanges the code for the credential token (the SAD), calls ``signDoc`` with the same digests,
  packages each signature at the chosen level, validates the result and stores it — all-or-nothing.

The SSASP is reached through :class:`SigningService` (``shared.clients.signer.SignerClient``
implements it); the TSP through :class:`~services.portal.trust.TrustStore`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from services.portal import cades, jades, pades
from services.portal.documents import Document, Flow, Level, SignatureFormat, SigningOptions
from services.portal.errors import (
    PackagingFailed,
    SigningRefused,
    TransactionExpired,
    TransactionNotFound,
    TransactionStateError,
    UnsupportedOption,
)
from services.portal.ltv import ValidationMaterial
from services.portal.store import EXPIRED, PENDING, StoredDocument, Transaction, TransactionStore
from services.portal.trust import TrustStore
from services.portal.validation import validate_document
from shared.errors import InvalidRequest, SignLabError, UpstreamError
from shared.flow import step

__all__ = ["SHA256_OID", "PortalCore", "SigningService"]

log = logging.getLogger(__name__)

SHA256_OID = "2.16.840.1.101.3.4.2.1"


class SigningService(Protocol):
    """The SSASP calls the portal makes (implemented by ``shared.clients.signer.SignerClient``)."""

    def push_authorization_request(self, *, redirect_uri: str, state: str, code_challenge: str,
                                   qualifier: str | None = None, documents: Sequence[tuple[bytes, str]] = (),
                                   hash_algorithm: str = "sha256", login_hint: str | None = None) -> Any:
        """Step 2: PAR with RAR ``credential`` for ``documents`` (digest, label); the result has ``authorize_url``."""

    def exchange_code(self, code: str, redirect_uri: str, code_verifier: str) -> Any:
        """Step 5 (portal side): code → credential token; the result has ``access_token``."""

    def sign_doc(self, access_token: str, *, digests: Sequence[bytes], signature_format: str = "P",
                 hash_algorithm: str = "sha256", conformance_level: str = "AdES-B-B", qualifier: str | None = None) -> Any:
        """Steps 6-10: the result has ``signature_objects``, ``certificates`` and ``validation_info``."""


@dataclass(frozen=True)
class Created:
    """What :meth:`PortalCore.create` returns."""

    transaction_id: str
    authorize_url: str


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _output_name(label: str, fmt: SignatureFormat) -> str:
    stem = label.rsplit(".", 1)[0] if "." in label else label
    if fmt is SignatureFormat.PADES:
        return f"{stem}-signed.pdf"
    if fmt is SignatureFormat.CADES:
        return f"{label}.p7s"
    return f"{stem}.jades.json"


def _decode_list(values: Any) -> list[bytes]:
    out = []
    for value in values or []:
        if isinstance(value, bytes):
            out.append(value)
        else:
            try:
                out.append(base64.b64decode(str(value), validate=True))
            except binascii.Error:
                continue
    return out


class PortalCore:
    """The SCASP's signing logic (no Flask).

    :param store: transactions and documents.
    :param trust: trust anchor, trusted list, TSP data and TSA.
    :param signer: the SSASP client.
    :param callback_url: the redirect URI registered at the SSASP.
    :param bytes_reserved: PDF /Contents reservation (hex characters).
    :param ttl_seconds: lifetime of a pending transaction.
    """

    def __init__(self, store: TransactionStore, trust: TrustStore, signer: SigningService | None, *,
                 callback_url: str, bytes_reserved: int, ttl_seconds: int) -> None:
        self.store = store
        self.trust = trust
        self.signer = signer
        self.callback_url = callback_url
        self.bytes_reserved = bytes_reserved
        self.ttl_seconds = ttl_seconds

    # ------------------------------------------------------------------ steps 1-2

    def create(self, documents: Sequence[Document], options: SigningOptions) -> Created:
        """Prepare the documents, store them and push one authorization request for all digests."""
        if not documents:
            raise InvalidRequest("choose at least one document to sign", step=step(1))
        if options.flow is Flow.CERTIFICATE_FIRST:
            raise UnsupportedOption("the certificate-first flow (CSC v1 signHash) is not available in this portal yet")
        if options.format is SignatureFormat.CADES and options.level not in cades.SUPPORTED_LEVELS:
            raise UnsupportedOption(f"CAdES {options.level} is not supported here; choose B-B, B-T or B-LT")
        if options.format is SignatureFormat.JADES and options.level not in jades.SUPPORTED_LEVELS:
            raise UnsupportedOption(f"JAdES {options.level} is not supported here; choose B-B, B-T or B-LT")
        labels = [d.label for d in documents]
        if len(set(labels)) != len(labels):
            raise InvalidRequest("two documents have the same name; rename one", step=step(1))
        if self.signer is None:
            raise SignLabError("the portal has no signing service configured", step=step(2))
        stored = [self._prepare(i, doc, options) for i, doc in enumerate(documents)]
        tx_id = "tx-" + secrets.token_hex(8)
        verifier = secrets.token_urlsafe(48)
        state = secrets.token_urlsafe(24)
        now = time.time()
        tx = Transaction(
            id=tx_id, created_at=now, expires_at=now + self.ttl_seconds, state=PENDING,
            options={"qualifier": options.qualifier.value, "format": options.format.value, "level": options.level.value,
                     "flow": options.flow.value, "visible": options.visible, "signer_name": options.signer_name},
            oauth_state=state, code_verifier=verifier, authorize_url=None, error=None, error_description=None,
            meta={}, documents=stored,
        )
        self.store.create(tx)
        challenge = _b64url(hashlib.sha256(verifier.encode("ascii")).digest())
        try:
            pushed = self.signer.push_authorization_request(
                redirect_uri=self.callback_url, state=state, code_challenge=challenge,
                qualifier=options.qualifier.csc_qualifier, documents=[(d.digest, d.label) for d in stored],
                hash_algorithm="sha256", login_hint=options.login_hint,
            )
        except SignLabError as exc:
            self.store.fail(tx_id, exc.error, exc.error_description)
            raise
        self.store.set_authorization(tx_id, pushed.authorize_url, {"documents": len(stored)})
        log.info("step 2: pushed authorization request for %d digest(s)", len(stored), extra={"step": 2, "transaction_id": tx_id})
        return Created(tx_id, pushed.authorize_url)

    def _prepare(self, idx: int, doc: Document, options: SigningOptions) -> StoredDocument:
        if options.format is SignatureFormat.PADES:
            prepared = asyncio.run(pades.prepare_pdf(
                doc.content, label=doc.label, qualifier=options.qualifier, visible=options.visible,
                signer_name=options.signer_name, bytes_reserved=self.bytes_reserved,
            ))
            return StoredDocument(idx, doc.label, doc.media_type, doc.content, prepared.digest, prepared.prepared,
                                  prepared.reserved_start, prepared.reserved_end, prepared.field_name)
        digest = cades.digest(doc.content) if options.format is SignatureFormat.CADES else jades.digest(doc.content)
        return StoredDocument(idx, doc.label, doc.media_type, doc.content, digest)

    # ------------------------------------------------------------------ step 10

    def get(self, tx_id: str) -> Transaction:
        """A transaction; pending ones past their lifetime are marked expired first."""
        tx = self.store.get(tx_id)
        if tx is None:
            raise TransactionNotFound(tx_id)
        if tx.expired:
            self.store.fail(tx.id, "expired_transaction", f"the signer did not come back within {self.ttl_seconds} s", state=EXPIRED)
            tx = self.store.get(tx_id)
            assert tx is not None
        return tx

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
            self.store.fail(tx.id, "expired_transaction", f"the signer did not come back within {self.ttl_seconds} s", state=EXPIRED)
            raise TransactionExpired(tx.id, self.ttl_seconds)
        if tx.state != PENDING:
            raise TransactionStateError(f"transaction {tx.id} is already {tx.state}; each authorization can be used once",
                                        step=step(10))
        if error:
            description = (error_description or "no reason given")[:300]
            self.store.fail(tx.id, error, description)
            raise SigningRefused(f"the signing service ended the request with {error}: {description} "
                                 f"(transaction {tx.id}; nothing was signed)", step=step(5))
        if not code:
            self.store.fail(tx.id, "invalid_request", "no code in the redirect")
            raise InvalidRequest("the redirect from the signing service carries neither code nor error", step=step(10))
        if not self.store.claim(tx.id):
            raise TransactionStateError(f"transaction {tx.id} is already being completed", step=step(10))
        try:
            return self._sign_and_package(tx, code)
        except SignLabError as exc:
            self.store.fail(tx.id, exc.error, exc.error_description)
            raise
        except Exception as exc:  # keep nothing half-written, then let the frame report a 500
            self.store.fail(tx.id, "server_error", f"packaging failed unexpectedly ({exc.__class__.__name__})")
            raise

    def _sign_and_package(self, tx: Transaction, code: str) -> Transaction:
        assert self.signer is not None and tx.code_verifier is not None
        options = SigningOptions.parse(tx.options)
        token = self.signer.exchange_code(code, self.callback_url, tx.code_verifier)
        try:
            result = self.signer.sign_doc(
                token.access_token, digests=[d.digest for d in tx.documents], hash_algorithm="sha256",
                signature_format=options.format.csc_letter, conformance_level=Level.B_B.csc_conformance_level,
                qualifier=options.qualifier.csc_qualifier,
            )
        except UpstreamError as exc:
            if exc.upstream_status == 403:
                raise SigningRefused(exc.description, step=exc.step or step(7)) from None
            raise
        objects = list(result.signature_objects)
        if len(objects) != len(tx.documents):
            raise PackagingFailed(f"the signing service returned {len(objects)} signatures for {len(tx.documents)} documents")
        material = ValidationMaterial()
        info = getattr(result, "validation_info", None) or {}
        material.certificates.extend(_decode_list(getattr(result, "certificates", None)))
        material.certificates.extend(_decode_list(info.get("certificates")))
        material.crls.extend(_decode_list(info.get("crl") or info.get("crls")))
        material.ocsps.extend(_decode_list(info.get("ocsp") or info.get("ocsps")))
        trust = self.trust.settings()
        material.extend(trust.material)
        timestamper = self.trust.timestamper()
        outputs = []
        for doc, signature in zip(tx.documents, objects, strict=True):
            signed = asyncio.run(self._package(doc, bytes(signature), options, material, timestamper))
            report = asyncio.run(validate_document(
                _output_name(doc.label, options.format), signed, trust,
                original=None if options.format is SignatureFormat.PADES else doc.original,
            ))
            outputs.append((doc.idx, signed, _output_name(doc.label, options.format), report.to_dict()))
        meta = {
            "signer_transaction_id": getattr(result, "transaction_id", None),
            "qualifier": getattr(result, "qualifier", None),
            "loa": getattr(result, "loa", None),
            "certificate_serial": getattr(result, "certificate_serial", None),
            "documents": len(outputs),
        }
        self.store.complete(tx.id, outputs, meta)
        log.info("step 10: packaged %d document(s) at %s", len(outputs), options.level, extra={"step": 10, "transaction_id": tx.id})
        done = self.store.get(tx.id)
        assert done is not None
        return done

    async def _package(self, doc: StoredDocument, signature: bytes, options: SigningOptions,
                       material: ValidationMaterial, timestamper: Any) -> bytes:
        if options.format is SignatureFormat.PADES:
            assert doc.prepared is not None and doc.reserved_start is not None and doc.reserved_end is not None
            prepared = pades.PreparedPdf(doc.prepared, doc.digest, doc.reserved_start, doc.reserved_end, doc.field_name or "Signature1")
            return await pades.augment_pdf(prepared, signature, level=options.level, timestamper=timestamper,
                                           root=self.trust.root(), material=material)
        if options.format is SignatureFormat.CADES:
            return await cades.augment_cades(signature, level=options.level, timestamper=timestamper, material=material)
        return await jades.augment_jades(_jws_bytes(signature), level=options.level, timestamper=timestamper, material=material)


def _jws_bytes(signature: bytes) -> bytes:
    """The JWS from a signDoc object: the compact/JSON text itself, or base64 of it."""
    text = signature.strip()
    if text.startswith(b"{") or text.count(b".") == 2:
        return text
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        return text
