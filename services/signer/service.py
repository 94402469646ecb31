"""The SSASP's domain core (no Flask), composed of its parts the way the TSP's core is.

Flows (the ten steps of ``shared.flow``):

* **Person signing** (default, CSC v2): PAR with RAR ``credential`` + ``documentDigests`` (step 2)
  → ``oauth2/authorize`` → OIDC at the IPSP (3-4) → ID token verified, consent (5) → code → token
  = the SAD, bound to the digests → ``signDoc`` (6-10): one-time key, CSR + identity evidence to
  the TSP, CMS/JWS built here, HSM signature, key destroyed on every path.
* **Certificate first** (CSC v1, pyHanko ``CSCSigner``): ``scope=service`` authorization with eID
  login (3-5) → at the token exchange the one-time key and certificate are made (6-7) and become
  the credential → the portal computes the DTBS/R (2) → ``credentials/authorize`` binds a SAD to
  those hashes → ``signHash`` (8-9) → key destroyed, credential disabled (10).

The parts, one responsibility each:

=======================================================  =========================================
part                                                     responsibility
=======================================================  =========================================
:mod:`~services.signer.csc`                              CSC bodies parsed into typed requests (the
                                                         HTTP edge calls it, once)
:class:`~services.signer.clients.ClientRegistry`         partner portals and their authentication
:class:`~services.signer.authorization.AuthorizationServer`  OAuth2: PAR, authorize, IdP callback,
                                                         consent, token, revoke (steps 2-5)
:class:`~services.signer.sam.SignatureActivationModule`  the SAM: every SAD and token check
:class:`~services.signer.pipeline.SigningPipeline`       one-time key → certificate → signature →
                                                         destroy (steps 6-10)
:class:`~services.signer.credentials.Credentials`        certificate-first credentials
:class:`~services.signer.keys.OneTimeKeys`               the one-time key handles of this process
:class:`~services.signer.evidence.IdentityEvidence`      the verified ID tokens until step 7 (memory only)
:class:`~services.signer.lifecycle.TransactionLifecycle` failed / expired transactions, start-up,
                                                         the sweep
:class:`~services.signer.orphans.OrphanCertificates`     revokes the certificates of transactions that
                                                         did not complete (retried by the sweep)
=======================================================  =========================================

:class:`SignerCore` builds them and is what the HTTP layer holds; every part reads the time
through :meth:`SignerCore.now`, so moving ``clock`` moves it everywhere. Every check that
refuses something writes an audit entry (``*.refused``) before raising.
"""

from __future__ import annotations

import base64
import itertools
import logging
from collections.abc import Callable, Mapping
from typing import Any

from services.signer import csc, levels
from services.signer.authorization import AuthorizationServer, ConsentView
from services.signer.clients import Client, ClientCredentials, ClientRegistry
from services.signer.credentials import Credentials
from services.signer.evidence import IdentityEvidence
from services.signer.faults import build_fault_board
from services.signer.hsm import Hsm
from services.signer.keys import OneTimeKeys
from services.signer.lifecycle import TransactionLifecycle
from services.signer.orphans import OrphanCertificates
from services.signer.pipeline import SigningPipeline
from services.signer.sam import SignatureActivationModule
from services.signer.settings import SignerSettings
from services.signer.store import Store, TokenRecord, TransactionRecord
from services.signer.upstream import CertificateGateway, IdentityGateway
from shared.audit import AuditLog
from shared.clock import lab_clock
from shared.errors import InvalidToken
from shared.flow import step

__all__ = ["SignerCore"]

log = logging.getLogger(__name__)


class SignerCore:
    """The SSASP core; one per app.

    :param settings: the signer's settings.
    :param hsm: the HSM handle.
    :param store: the transaction database.
    :param audit: the hash-chained audit log.
    :param identity: the OIDC client towards the IPSP.
    :param ca: the TSP client.
    :param pseudonym_key: key of the subject pseudonyms in the audit log.
    :param clock: the time source (tests may move it); default: the lab clock (:mod:`shared.clock`).
    """

    def __init__(self, settings: SignerSettings, hsm: Hsm, store: Store, audit: AuditLog,
                 identity: IdentityGateway, ca: CertificateGateway, pseudonym_key: bytes,
                 clock: Callable[[], float] | None = None) -> None:
        self.settings = settings
        self.hsm = hsm
        self.store = store
        self.audit = audit
        self.ca = ca
        self.clock = clock or lab_clock().time
        self.clients = ClientRegistry(settings, audit)
        self.sam = SignatureActivationModule(store, audit, self.now)
        self.keys = OneTimeKeys(hsm, audit, settings.key_algorithm)
        self.evidence = IdentityEvidence()
        self.orphans = OrphanCertificates(ca, store, audit)
        self.lifecycle = TransactionLifecycle(store, audit, self.keys, self.evidence, self.orphans, self.now)
        self.pipeline = SigningPipeline(hsm, ca, store, audit, self.keys, self.evidence, self.lifecycle, self.now)
        self.credentials = Credentials(store, audit, self.sam, self.pipeline, self.keys, self.lifecycle,
                                       token_lifetime=settings.service_token_lifetime_seconds,
                                       sad_lifetime=settings.sad_lifetime_seconds, clock=self.now)
        self.authorization = AuthorizationServer(settings, store, audit, self.clients, identity, self.sam,
                                                 self.credentials, self.lifecycle, self.evidence, pseudonym_key,
                                                 self.now)
        # Lab fault injection (HSM failures at steps 6 and 9): None unless FAULTS_ENABLED.
        self.faults = build_fault_board(settings, audit)
        hsm.faults = self.faults

    def now(self) -> float:
        """The current time of this service (``clock``), in seconds since the epoch."""
        return self.clock()

    # -- start-up and sweeping ----------------------------------------------------------------------

    def startup(self) -> None:
        """Repair the end of the audit log (an interrupted write is cut and recorded as
        ``audit.recovered``), destroy leftover key objects and end every in-flight transaction as
        expired (recorded).

        :raises shared.audit.AuditLogDamaged: the log ends in a line that is not an entry (tampering).
        """
        if self.audit.recover() is not None:
            log.warning("the audit log ended in an interrupted write: cut and recorded (audit.recovered)")
        self.lifecycle.startup()

    def sweep(self) -> int:
        """Expire transactions past their deadline and destroy their keys, retry pending certificate
        revocations; return how many transactions expired."""
        return self.lifecycle.sweep()

    # -- OAuth2 authorization server (steps 2-5) ----------------------------------------------------

    def authenticate_client(self, presented: ClientCredentials, peer: str = "", *, endpoint: str = "") -> Client:
        """Client authentication at PAR, token and revocation (:meth:`ClientRegistry.authenticate`)."""
        return self.clients.authenticate(presented, peer, endpoint=endpoint)

    def push_authorization_request(self, client: Client, params: Mapping[str, str]) -> dict[str, Any]:
        """RFC 9126 PAR, step 2 (:meth:`AuthorizationServer.push_authorization_request`)."""
        return self.authorization.push_authorization_request(client, params)

    def start_authorization(self, params: Mapping[str, str]) -> tuple[str, TransactionRecord, str]:
        """``oauth2/authorize``, step 3 (:meth:`AuthorizationServer.start_authorization`)."""
        return self.authorization.start_authorization(params)

    def idp_callback(self, params: Mapping[str, str], browser: str | None) -> TransactionRecord:
        """The IdP's redirect back, step 5 (:meth:`AuthorizationServer.idp_callback`)."""
        return self.authorization.idp_callback(params, browser)

    def consent_view(self, transaction_id: str, browser: str | None) -> ConsentView:
        """The consent page, step 5 (:meth:`AuthorizationServer.consent_view`)."""
        return self.authorization.consent_view(transaction_id, browser)

    def consent_decision(self, transaction_id: str, browser: str | None, csrf_token: str | None,
                         approve: bool) -> str:
        """The signer's decision, step 5 (:meth:`AuthorizationServer.consent_decision`)."""
        return self.authorization.consent_decision(transaction_id, browser, csrf_token, approve)

    def exchange_code(self, client: Client, params: Mapping[str, str]) -> dict[str, Any]:
        """``oauth2/token``, step 5 (:meth:`AuthorizationServer.exchange_code`)."""
        return self.authorization.exchange_code(client, params)

    def revoke(self, client: Client, token: str | None) -> None:
        """``oauth2/revoke``, RFC 7009 (:meth:`AuthorizationServer.revoke`)."""
        self.authorization.revoke(client, token)

    def transaction_status(self, client: Client, transaction_id: str | None, *, answer_lost: bool = False) -> dict[str, Any]:
        """``oauth2/transaction-status`` (:meth:`AuthorizationServer.transaction_status`)."""
        return self.authorization.transaction_status(client, transaction_id, answer_lost=answer_lost)

    # -- person signing (steps 6-10) ----------------------------------------------------------------

    def sign_doc(self, access: TokenRecord, request: csc.SignDocRequest) -> dict[str, Any]:
        """CSC v2 ``signatures/signDoc`` with a one-time key (steps 6-10): the SAM spends the
        credential token, then the pipeline runs.

        :param access: the ``sign``-kind token, from :meth:`SignatureActivationModule.access_token`.
        """
        transaction = self.store.transaction(access.transaction_id)
        if transaction is None:
            raise InvalidToken(f"the transaction of this token ({access.transaction_id}) is gone", step=step(6))
        self.sam.activate_sign_doc(access, transaction, request, self.settings.key_algorithm)
        labels = {base64.b64decode(d["hash"]): d["label"] for d in transaction.request["documents"]}
        return self.pipeline.sign_documents(transaction, request.documents, labels,
                                            with_revocation=request.return_validation_info)

    # -- certificate first --------------------------------------------------------------------------

    def credentials_list(self, access: TokenRecord, request: csc.CredentialsListRequest,
                         version: int) -> dict[str, Any]:
        """CSC ``credentials/list`` (:meth:`Credentials.list_credentials`)."""
        return self.credentials.list_credentials(access, request, version)

    def credentials_info(self, access: TokenRecord, request: csc.CredentialInfoRequest, version: int) -> dict[str, Any]:
        """CSC ``credentials/info`` (:meth:`Credentials.info`)."""
        return self.credentials.info(access, request, version)

    def credentials_authorize(self, access: TokenRecord, request: csc.CredentialsAuthorizeRequest) -> dict[str, Any]:
        """CSC ``credentials/authorize`` (:meth:`Credentials.authorize`)."""
        return self.credentials.authorize(access, request)

    def extend_transaction(self, access: TokenRecord, request: csc.ExtendTransactionRequest) -> dict[str, Any]:
        """CSC v1 ``credentials/extendTransaction`` (:meth:`Credentials.extend_transaction`)."""
        return self.credentials.extend_transaction(access, request)

    def sign_hash(self, holder: TokenRecord, request: csc.SignHashRequest) -> dict[str, Any]:
        """CSC ``signatures/signHash`` (:meth:`Credentials.sign_hash`)."""
        return self.credentials.sign_hash(holder, request)

    # -- timestamp proxy (step 10) ------------------------------------------------------------------

    def timestamp(self, request: csc.TimestampRequest) -> dict[str, Any]:
        """``signatures/timestamp``: an RFC 3161 token from the TSP's TSA for one hash (the caller
        holds a live token of this service: :meth:`SignatureActivationModule.timestamp_token`)."""
        query = levels.time_stamp_query(request.digest, request.hash_algorithm, request.nonce)
        token = levels.time_stamp_token(self.ca.timestamp(query), step=step(10))
        return {"timestamp": base64.b64encode(token.dump()).decode("ascii")}

    # -- the trainer's read-only view of the audit log ----------------------------------------------

    def audit_page(self, page: int, per_page: int) -> dict[str, Any]:
        """One page of the audit log, newest first, with the chain's status (``AuditLog.verify``).

        Read-only: the log is only read (under its shared lock). Subjects in it are pseudonyms;
        digests, key ids and serials are no personal data.

        :param page: 1 = the newest ``per_page`` entries (a log that was tampered with is shown up
            to the entry before the damage, which the chain status names).
        """
        chain = self.audit.verify()
        readable = chain.entries if chain.ok else (chain.first_broken or 1) - 1  # up to the damage
        pages = max(1, -(-readable // per_page))
        page = min(max(1, page), pages)
        stop = max(0, readable - (page - 1) * per_page)
        start = max(0, stop - per_page)
        entries = [{"seq": e.seq, "time": e.time, "event": e.event, "step": e.step, "data": e.data, "hash": e.hash}
                   for e in itertools.islice(self.audit.entries(), start, stop)]
        return {
            "chain": {"ok": chain.ok, "summary": chain.summary(), "entries": chain.entries, "head": chain.head,
                      "first_broken": chain.first_broken, "recoveries": [r.seq for r in chain.recoveries],
                      "torn_bytes": chain.torn_bytes},
            "page": page, "pages": pages, "per_page": per_page, "entries": entries[::-1],
        }
