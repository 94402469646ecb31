"""Certificate-first one-time credentials (CSC v1 and v2 ``credentials/*``, ``signHash``).

The second flow (pyHanko's ``CSCSigner`` works against it unchanged): at the service-scope token
exchange the one-time key and its certificate are made at once (steps 6-7) and become a
credential of that transaction, with ``multisign`` = the number of documents. The partner reads
it (``credentials/list``, ``credentials/info``), computes the DTBS/R of each document itself,
gets a SAD for exactly those hashes, and ``signatures/signHash`` signs them (8-9). When its last
signature is made, when the HSM fails, or when its transaction ends, the key is destroyed and the
credential disabled (10).

Where the SAD comes from depends on the credential's SCAL, fixed by the service authorization:

* **SCAL 2** (the default; ``credentials/info``: ``SCAL: "2"``, ``authMode: "oauth2code"``): the
  person approves the exact hashes. The partner sends them in a credential authorization
  (``oauth2/authorize`` or PAR with ``scope=credential``, ``credentialID``, ``numSignatures`` and
  ``hash``, or ``authorization_details`` with ``credentialID`` and ``documentDigests``); after the
  eID login the consent page lists each hash with its label and fingerprint; the token endpoint's
  credential-scope token is the SAD. ``credentials/authorize`` and ``extendTransaction`` issue
  nothing for such a credential (they would bind hashes the person never saw).
* **SCAL 1** (only when the service authorization asked ``SCAL=1``; the consent page and
  ``credentials/info`` say so): count only — ``credentials/authorize`` binds a SAD to the hashes the
  partner names, within the count the person approved; ``extendTransaction`` rebinds it.

Every decision about a SAD or a token is the SAM's (:mod:`services.signer.sam`); this module
issues SADs, describes credentials and keeps their bookkeeping.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable
from typing import Any

from asn1crypto import x509
from cryptography import x509 as cx509

from services.signer import csc
from services.signer.keys import OneTimeKeys
from services.signer.lifecycle import TransactionLifecycle
from services.signer.pipeline import SigningPipeline
from services.signer.sam import SignatureActivationModule
from services.signer.store import CredentialRecord, Store, TokenRecord, TransactionRecord, secret_hash
from shared.audit import AuditLog
from shared.errors import SignLabError

__all__ = ["Credentials"]

EC_P256_CURVE = "1.2.840.10045.3.1.7"
"""``key.curve`` of a P-256 one-time key."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _certificate_details(leaf: x509.Certificate) -> dict[str, str]:
    """CSC ``certInfo``: issuer, subject (RFC 4514 strings, as CSC asks), serial and validity of the
    credential's certificate."""
    validity = leaf["tbs_certificate"]["validity"]
    names = cx509.load_der_x509_certificate(leaf.dump())
    return {"issuerDN": names.issuer.rfc4514_string(), "subjectDN": names.subject.rfc4514_string(),
            "serialNumber": format(leaf.serial_number, "x"),
            "validFrom": validity["not_before"].native.strftime("%Y%m%d%H%M%SZ"),
            "validTo": validity["not_after"].native.strftime("%Y%m%d%H%M%SZ")}


class Credentials:
    """The one-time credentials of certificate-first transactions.

    :param store: the transaction database.
    :param audit: the hash-chained audit log.
    :param sam: checks every token and SAD.
    :param pipeline: makes the key and certificate (6-7) and the signatures (9).
    :param keys: the one-time keys of this process.
    :param lifecycle: ends the transaction when the credential is spent.
    :param token_lifetime: seconds a service token and its credential live.
    :param sad_lifetime: seconds a SAD lives (at most).
    :param clock: the time source (seconds since the epoch).
    """

    def __init__(self, store: Store, audit: AuditLog, sam: SignatureActivationModule, pipeline: SigningPipeline,
                 keys: OneTimeKeys, lifecycle: TransactionLifecycle, *, token_lifetime: int, sad_lifetime: int,
                 clock: Callable[[], float]) -> None:
        self.store = store
        self.audit = audit
        self.sam = sam
        self.pipeline = pipeline
        self.keys = keys
        self.lifecycle = lifecycle
        self.token_lifetime = token_lifetime
        self.sad_lifetime = sad_lifetime
        self.clock = clock

    def create(self, transaction: TransactionRecord) -> CredentialRecord:
        """Steps 6-7 at the service-scope token exchange: the one-time credential (key + certificate)."""
        key, issued = self.pipeline.step6_7_create_credential_key(transaction)
        now = self.clock()
        not_after = issued.leaf["tbs_certificate"]["validity"]["not_after"].native.timestamp()
        signatures = int(transaction.request["num_signatures"])
        credential = CredentialRecord(
            id="cred-" + secrets.token_hex(12), transaction_id=transaction.id, client_id=transaction.client_id,
            subject=transaction.subject or "", key_id=key.key_id, algorithm=key.algorithm,
            public_key=_b64(key.public_key_info.dump()), certificate=_b64(issued.leaf.dump()),
            chain=[_b64(c.dump()) for c in issued.issuers], qualifier=transaction.request["qualifier"],
            serial=issued.serial, multisign=signatures, remaining=signatures, status="enabled",
            expires_at=min(not_after, now + self.token_lifetime), created=now,
            scal=str(transaction.request.get("scal", "2")),
        )
        self.store.add_credential(credential)
        # The credential's lifetime bounds the transaction: the sweep destroys the key at expiry.
        self.store.update_transaction(transaction.id, expires_at=credential.expires_at)
        self.audit.append("credential.created", step=7, transaction_id=transaction.id, credential_id=credential.id,
                          key_id=key.key_id, serial=issued.serial, multisign=credential.multisign, scal=credential.scal)
        return credential

    # -- CSC credentials/list and credentials/info (step 7 of this flow) ----------------------------

    def list_credentials(self, access: TokenRecord, request: csc.CredentialsListRequest,
                         version: int) -> dict[str, Any]:
        """``credentials/list``: the one-time credentials of the (service) token's transaction."""
        credentials = [c for c in self.store.credentials_of(access.transaction_id)
                       if c.status == "enabled" or not request.only_valid]
        response: dict[str, Any] = {"credentialIDs": [c.id for c in credentials]}
        if version == 2 and request.with_info:
            response["credentialInfos"] = [{"credentialID": c.id, **self.describe(c, request.info, version)}
                                           for c in credentials]
            response["onlyValid"] = request.only_valid
        return response

    def info(self, access: TokenRecord, request: csc.CredentialInfoRequest, version: int) -> dict[str, Any]:
        """``credentials/info`` (pyHanko sends ``certificates: chain``, ``certInfo: false``)."""
        return self.describe(self.sam.owned_credential(access, request.credential_id), request, version)

    def describe(self, credential: CredentialRecord, request: csc.CredentialInfoRequest,
                 version: int) -> dict[str, Any]:
        """The CSC credential info: key, certificates, ``SCAL``, ``multisign``, qualifier, auth mode
        (``oauth2code`` for SCAL 2: the SAD comes from the person's credential authorization;
        ``implicit`` for SCAL 1: ``credentials/authorize`` issues it)."""
        is_ec = credential.algorithm.startswith("ec")
        leaf = x509.Certificate.load(base64.b64decode(credential.certificate))
        certificates = {"none": [], "single": [credential.certificate],
                        "chain": [credential.certificate, *credential.chain]}[request.certificates]
        usable = self.clock() <= credential.expires_at
        key: dict[str, Any] = {"status": "enabled" if credential.status == "enabled" and usable else "disabled",
                               "algo": csc.key_algorithms(is_ec), "len": leaf.public_key.bit_size}
        if is_ec:
            key["curve"] = EC_P256_CURVE
        cert: dict[str, Any] = {"status": "valid" if usable else "expired", "certificates": certificates}
        if request.cert_info:
            cert.update(_certificate_details(leaf))
        mode = "oauth2code" if credential.scal == "2" else "implicit"
        binding = ("SCAL 2: each SAD comes from the person's approval of the exact hashes (oauth2/authorize, "
                   "scope=credential)" if credential.scal == "2" else
                   "SCAL 1 (count only): the partner chooses the hashes, within the approved number of signatures")
        return {
            "description": f"one-time {credential.qualifier} credential of transaction {credential.transaction_id}; "
                           f"{binding}",
            "key": key, "cert": cert, "SCAL": credential.scal, "multisign": credential.multisign,
            "signatureQualifier": credential.qualifier, "lang": "en-GB",
            **({"authMode": mode} if version == 1 else {"auth": {"mode": mode}}),
        }

    # -- CSC credentials/authorize and extendTransaction (step 2 of this flow) ----------------------

    def authorize(self, access: TokenRecord, request: csc.CredentialsAuthorizeRequest) -> dict[str, Any]:
        """``credentials/authorize`` (SCAL 1 credentials only): a SAD bound to the DTBS/R hashes, their
        hash algorithm (named, or known by the digests' length), the count and an expiry."""
        credential, algorithm = self.sam.authorize_sad_issuance(access, request)
        hexes = sorted(d.hex() for d in request.digests)
        answer = self._issue_sad(access, credential, algorithm, hexes, request.num_signatures)
        self.audit.append("sad.issued", step=2, transaction_id=access.transaction_id, credential_id=credential.id,
                          digests=hexes, count=request.num_signatures, hash_alg=algorithm, scal=credential.scal)
        return answer

    def extend_transaction(self, access: TokenRecord, request: csc.ExtendTransactionRequest) -> dict[str, Any]:
        """``credentials/extendTransaction`` (v1, SCAL 1 credentials only): a fresh SAD for new hashes
        within the signatures left (never more than the person approved)."""
        credential, old = self.sam.redeem_sad_for_extension(access, request)
        hexes = sorted(d.hex() for d in request.digests) or old.digests
        answer = self._issue_sad(access, credential, old.hash_alg, hexes, len(hexes))
        self.audit.append("sad.extended", step=2, transaction_id=access.transaction_id, credential_id=credential.id,
                          digests=hexes, scal=credential.scal)
        return answer

    def _issue_sad(self, access: TokenRecord, credential: CredentialRecord, hash_algorithm: str | None,
                   hexes: list[str], count: int) -> dict[str, Any]:
        """Store a new SAD (by hash) bound to ``hexes``; it never outlives the credential."""
        sad = secrets.token_urlsafe(32)
        expires = min(self.clock() + self.sad_lifetime, credential.expires_at)
        self.store.add_token(TokenRecord(secret_hash(sad), "sad", access.client_id, access.transaction_id,
                                         credential.id, access.subject, hash_algorithm, hexes, count, expires,
                                         None, 0, None))
        return {"SAD": sad, "expiresIn": int(expires - self.clock())}

    # -- CSC signatures/signHash (steps 8-9), the end of a credential (10) --------------------------

    def sign_hash(self, holder: TokenRecord, request: csc.SignHashRequest) -> dict[str, Any]:
        """``signatures/signHash``: sign exactly the authorized DTBS/R hashes with the one-time key.

        :param holder: the token from :meth:`SignatureActivationModule.sign_hash_token`.
        """
        credential = self.sam.activate_sign_hash(holder, request)  # as it was before this call's budget
        remaining = (self.store.credential(credential.id) or credential).remaining
        signed_before = credential.multisign - credential.remaining
        failure: str | None = None
        try:
            signatures = self.pipeline.step9_sign_hashes(credential, request.digests, request.hash_algorithm)
        except SignLabError as exc:
            remaining, failure = 0, exc.error_description  # a failed HSM operation ends the credential
            raise
        finally:
            if remaining == 0:
                self.keys.step9_destroy(credential.key_id, credential.transaction_id)
                self.store.disable_credential(credential.id)
                # A certificate that never signed anything is revoked; one that did stays valid.
                self.lifecycle.complete_certificate_first(
                    credential.transaction_id, unused_because=failure if failure and not signed_before else None)
        return {"signatures": [_b64(s) for s in signatures]}
