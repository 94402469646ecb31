"""The SSASP's domain core (no Flask): authorization server, SAM (SAD checks) and signing flows.

Flows (DESIGN §2):

* **Person signing** (default, CSC v2): PAR with RAR ``credential`` + ``documentDigests`` (step 2)
  → ``oauth2/authorize`` → OIDC at the IPSP (3-4) → ID token verified, consent (5) → code → token
  = the SAD, bound to the digests → ``signDoc`` (6-10): one-time key, CSR + identity evidence to
  the TSP, CMS/JWS built here, HSM signature, key destroyed on every path.
* **Certificate first** (CSC v1, pyHanko ``CSCSigner``): ``scope=service`` authorization with eID
  login (3-5) → at the token exchange the one-time key and certificate are made (6-7) and become
  the credential → the portal computes the DTBS/R (2) → ``credentials/authorize`` binds a SAD to
  those hashes → ``signHash`` (8-9) → key destroyed, credential disabled (10).

Every check that refuses something writes an audit entry (``*.refused``) before raising.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from asn1crypto import tsp, x509
from cryptography import x509 as cx509
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from pydantic import SecretStr

from services.signer import csc
from services.signer.errors import (
    DigestNotAuthorized,
    InvalidScope,
    SadExpired,
    SadInvalid,
    SigningFailed,
    TooManySignatures,
    UnsupportedAlgorithm,
)
from services.signer.faults import build_fault_board
from services.signer.hsm import Hsm, HsmError, OneTimeKey, operation_step
from services.signer.settings import SignerSettings
from services.signer.signing import HsmCmsSigner, build_cms, build_csr, build_jades
from services.signer.store import (
    ACTIVE_STATES,
    CredentialRecord,
    Store,
    TokenRecord,
    TransactionRecord,
    secret_hash,
)
from services.signer.upstream import CertificateGateway, IdentityGateway, IssuedCertificate
from shared.audit import AuditLog, pseudonymise
from shared.clock import lab_clock
from shared.errors import (
    AccessDenied,
    Conflict,
    InvalidClient,
    InvalidGrant,
    InvalidRequest,
    InvalidToken,
    NotFound,
    SignLabError,
    UpstreamError,
)
from shared.flow import Role, step
from shared.identity import LOA_HIGH, LOA_SUBSTANTIAL, IdentityEvidenceError
from shared.throttle import FailureThrottle
from shared.tracing import flow_span

__all__ = ["Client", "ConsentView", "RedirectError", "SigningService"]

log = logging.getLogger(__name__)

PAR_URN = "urn:ietf:params:oauth:request_uri:"
REQUIRED_LOA = {"eu_eidas_qes": LOA_HIGH, "eu_eidas_aes": LOA_SUBSTANTIAL}
"""The level of assurance each qualifier needs (step 3 ``acr_values``, step 5 check)."""

PROFILE = {"eu_eidas_qes": "qes", "eu_eidas_aes": "ades"}
"""The TSP certificate profile of each qualifier (step 7)."""
POLICY = {"eu_eidas_qes": "0.4.0.194112.1.2", "eu_eidas_aes": "0.4.0.2042.1.1"}
"""The certificate policy OID each qualifier requires in the issued certificate."""


@dataclass(frozen=True)
class Client:
    """A partner portal registered by configuration."""

    client_id: str
    secret: SecretStr = field(repr=False)
    redirect_uris: tuple[str, ...]
    name: str
    qualifiers: tuple[str, ...]

    def authenticate(self, secret: str | None) -> None:
        """Check the client secret in constant time.

        :raises InvalidClient: missing or wrong secret.
        """
        if not secret or not hmac.compare_digest(secret.encode(), self.secret.get_secret_value().encode()):
            raise InvalidClient("client authentication failed (client_secret_basic or client_secret_post)")


class RedirectError(SignLabError):
    """An authorization error returned to the client by redirect (RFC 6749 §4.1.2.1).

    :param redirect_uri: the client's validated redirect URI.
    :param state: the client's ``state``.
    :param error: the protocol error code.
    """

    status = 302

    def __init__(self, redirect_uri: str, state: str | None, error: str, description: str) -> None:
        super().__init__(description, error=error)
        params = {"error": error, "error_description": description}
        if state is not None:
            params["state"] = state
        self.location = f"{redirect_uri}{'&' if '?' in redirect_uri else '?'}{urlencode(params)}"


@dataclass(frozen=True)
class ConsentView:
    """What the consent page shows (step 5, SCAL2); every value is escaped by the template."""

    transaction_id: str
    csrf_token: str
    partner: str
    qualifier: str
    qualified: bool
    loa: str
    signer_name: str
    eid_name: str
    kind: str
    documents: list[dict[str, str]]
    num_signatures: int


def _now() -> float:
    return lab_clock().time()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class SigningService:
    """The SSASP core; one per app.

    :param settings: the signer's settings.
    :param hsm: the HSM handle.
    :param store: the transaction database.
    :param audit: the hash-chained audit log.
    :param identity: the OIDC client towards the IPSP.
    :param ca: the TSP client.
    :param pseudonym_key: key of the subject pseudonyms in the audit log.
    :param clock: the time source (tests may move it).
    """

    def __init__(self, settings: SignerSettings, hsm: Hsm, store: Store, audit: AuditLog,
                 identity: IdentityGateway, ca: CertificateGateway, pseudonym_key: bytes,
                 clock: Callable[[], float] = _now) -> None:
        self.settings = settings
        self.hsm = hsm
        self.store = store
        self.audit = audit
        self.identity = identity
        self.ca = ca
        self.pseudonym_key = pseudonym_key
        self.clock = clock
        self.clients = {
            settings.portal_client_id: Client(
                settings.portal_client_id, settings.portal_client_secret, tuple(settings.portal_redirect_uris),
                settings.portal_name, tuple(settings.portal_qualifiers)),
        }
        self.client_throttle = FailureThrottle(settings.client_lockout_failures, settings.client_lockout_seconds)
        # One-time keys live in this process; the handle (public key) is kept beside the id.
        self._keys: dict[str, OneTimeKey] = {}
        self._keys_lock = threading.Lock()
        # Lab fault injection (HSM failures at steps 6 and 9): None unless FAULTS_ENABLED.
        self.faults = build_fault_board(settings, audit)
        hsm.faults = self.faults

    # ------------------------------------------------------------------ start-up and sweeping

    def startup(self) -> None:
        """Destroy leftover key objects and end every in-flight transaction as expired (recorded)."""
        leftovers = self.hsm.destroy_all_keys()
        for row in leftovers:
            self.audit.append("hsm.leftover_destroyed", step=9, key_id=row["id"], key_class=row["class"],
                              token_object=row["token_object"])
        for record in self.store.active_transactions():
            self._expire(record, "the signing service restarted while the transaction was in flight")

    def sweep(self) -> int:
        """Expire transactions past their deadline and destroy their keys; return how many."""
        expired = self.store.transactions_to_expire(self.clock())
        for record in expired:
            self._expire(record, "the transaction expired")
        return len(expired)

    def _expire(self, record: TransactionRecord, reason: str) -> None:
        try:
            self.store.advance(record.id, ACTIVE_STATES, "expired", error=reason, id_token=None)
        except Conflict:
            return  # moved on meanwhile
        self._destroy_transaction_keys(record)
        self.store.revoke_transaction_tokens(record.id)
        self.audit.append("transaction.expired", transaction_id=record.id, reason=reason)

    def _destroy_transaction_keys(self, record: TransactionRecord) -> None:
        key_ids = {record.key_id} if record.key_id else set()
        for credential in self.store.credentials_of(record.id):
            key_ids.add(credential.key_id)
            self.store.disable_credential(credential.id)
        for key_id in key_ids:
            self._destroy_key(key_id, record.id)

    def _destroy_key(self, key_id: str, transaction_id: str, *, sync: bool = True) -> None:
        with flow_span(step(9), "C_DestroyObject", response="key destroyed",
                       summary={"key_id": key_id, "transaction_id": transaction_id}) as span:
            destroyed = self.hsm.destroy_key(key_id)
            span.response({"objects_destroyed": destroyed})
        with self._keys_lock:
            self._keys.pop(key_id, None)
        self.audit.append("key.destroyed", step=9, transaction_id=transaction_id, key_id=key_id, objects=destroyed,
                          sync=sync)

    # ------------------------------------------------------------------ clients

    def client(self, client_id: str | None) -> Client:
        """The registered client ``client_id``.

        :raises InvalidClient: unknown client.
        """
        client = self.clients.get(client_id or "")
        if client is None:
            raise InvalidClient(f"unknown client_id {str(client_id)[:64]!r}")
        return client

    def authenticate_client(self, client_id: str | None, secret: str | None, peer: str = "") -> Client:
        """Authenticate a client (Basic or POST credentials); audit and raise on failure.

        Brute force: after ``client_lockout_failures`` failures of one client id from one address
        within ``client_lockout_seconds``, that pair is refused (429) until the window has passed.
        """
        key = f"{str(client_id)[:64]}@{peer}"
        locked = self.client_throttle.locked_for(key) if client_id else 0.0
        if locked:
            self.audit.append("client.locked", client_id=str(client_id)[:64], seconds=round(locked))
            raise InvalidClient(f"client authentication is locked for {locked:.0f} s after "
                                f"{self.client_throttle.limit} failed attempts", status=429)
        try:
            client = self.client(client_id)
            client.authenticate(secret)
        except InvalidClient as exc:
            if client_id:
                self.client_throttle.failed(key)
            self.audit.append("client.refused", client_id=str(client_id)[:64], reason=exc.description)
            raise
        return client

    # ------------------------------------------------------------------ step 2: PAR / authorize request

    def _parse_authorization_request(self, client: Client, params: dict[str, str], *, pushed: bool) -> dict[str, Any]:
        """Validate an authorization request; return the stored request dict."""
        s2 = step(2)
        if params.get("client_id") not in (None, client.client_id):
            raise InvalidRequest("client_id does not match the authenticated client", step=s2)
        redirect_uri = params.get("redirect_uri")
        if redirect_uri is None and len(client.redirect_uris) == 1:
            redirect_uri = client.redirect_uris[0]
        if redirect_uri not in client.redirect_uris:
            raise InvalidRequest("redirect_uri is not registered for this client (exact match required)", step=s2)
        if params.get("response_type") != "code":
            raise InvalidRequest("response_type must be 'code'", step=s2)
        state = params.get("state")
        if state is not None and len(state) > 255:
            raise InvalidRequest("state is longer than 255 characters", step=s2)
        challenge = params.get("code_challenge")
        if not challenge or not 43 <= len(challenge) <= 128:
            raise InvalidRequest("PKCE is required: code_challenge (43-128 characters) with method S256", step=s2)
        if params.get("code_challenge_method") != "S256":
            raise InvalidRequest("PKCE code_challenge_method must be S256", step=s2)
        login_hint = params.get("login_hint")
        if login_hint is not None and len(login_hint) > 512:
            raise InvalidRequest("login_hint is longer than 512 characters", step=s2)
        csc.refuse_documents(params, step=s2)
        scope = (params.get("scope") or "").split()
        request: dict[str, Any] = {"client_id": client.client_id, "redirect_uri": redirect_uri, "state": state,
                                   "code_challenge": challenge, "login_hint": login_hint,
                                   "description": (params.get("description") or "")[:500]}
        if params.get("authorization_details"):
            detail = csc.parse_authorization_details(params["authorization_details"], step=s2,
                                                     max_documents=self.settings.max_documents)[0]
            request["authorization_details"] = [detail.raw]
            request["hash_alg"] = detail.hash_algorithm
            request["documents"] = [{"hash": _b64(d.digest), "label": d.label} for d in detail.documents]
            if detail.credential_id is not None:
                request.update(kind="credential", credential_id=detail.credential_id)
                self._check_credential_request(client, detail.credential_id, len(detail.documents))
                credential = self.store.credential(detail.credential_id)
                assert credential is not None
                request["qualifier"] = credential.qualifier
            else:
                request.update(kind="sign", qualifier=detail.qualifier)
        elif "service" in scope:
            if "credential" in scope:
                raise InvalidScope("the scopes service and credential are never combined", step=s2)
            qualifier = params.get("signatureQualifier") or (client.qualifiers[0] if client.qualifiers else "")
            if qualifier not in REQUIRED_LOA:
                raise InvalidRequest(f"unsupported signatureQualifier {qualifier[:40]!r}", step=s2)
            number = params.get("numSignatures", "1")
            if not number.isdigit() or not 1 <= int(number) <= self.settings.max_documents:
                raise InvalidRequest(f"numSignatures must be 1-{self.settings.max_documents}", step=s2)
            request.update(kind="service", qualifier=qualifier, num_signatures=int(number), documents=[])
        elif "credential" in scope:
            credential_id = params.get("credentialID")
            if not credential_id:
                raise InvalidRequest("scope credential needs credentialID (or authorization_details)", step=s2)
            algorithm = csc.hash_algorithm(csc.first(params, "hashAlgorithmOID", "hashAlgo") or
                                           "2.16.840.1.101.3.4.2.1", step=s2)
            digests = csc.parse_digest_list(csc.first(params, "hashes", "hash"), algorithm, step=s2,
                                            max_count=self.settings.max_documents)
            number = params.get("numSignatures", str(len(digests)))
            if not number.isdigit() or int(number) != len(digests):
                raise InvalidRequest("numSignatures must equal the number of hashes (SCAL 2)", step=s2)
            self._check_credential_request(client, credential_id, len(digests))
            credential = self.store.credential(credential_id)
            assert credential is not None
            request.update(kind="credential", credential_id=credential_id, hash_alg=algorithm,
                           qualifier=credential.qualifier,
                           documents=[{"hash": _b64(d), "label": f"hash {i + 1}"} for i, d in enumerate(digests)])
        else:
            raise InvalidScope("request scope service or credential, or authorization_details of type credential",
                               step=s2)
        if request["qualifier"] not in client.qualifiers:
            raise AccessDenied(f"client {client.client_id!r} may not request {request['qualifier']}", step=s2)
        request["num_signatures"] = request.get("num_signatures") or len(request["documents"])
        return request

    def _check_credential_request(self, client: Client, credential_id: str, count: int) -> None:
        credential = self.store.credential(credential_id)
        if credential is None or credential.client_id != client.client_id or credential.status != "enabled":
            raise InvalidRequest("Invalid parameter credentialID (unknown, disabled or not this client's)", step=step(2))
        if count > credential.remaining:
            raise TooManySignatures(f"{count} signatures requested, the credential allows {credential.remaining}",
                                    step=step(2))

    def push_authorization_request(self, client: Client, params: dict[str, str]) -> dict[str, Any]:
        """RFC 9126 PAR (step 2): validate and store the request; ``{"request_uri", "expires_in"}``."""
        if "request_uri" in params:
            raise InvalidRequest("request_uri is not allowed in a pushed authorization request", step=step(2))
        try:
            request = self._parse_authorization_request(client, params, pushed=True)
        except SignLabError as exc:
            self.audit.append("par.refused", step=2, client_id=client.client_id, error=exc.error, reason=exc.description)
            raise
        handle = secrets.token_urlsafe(32)
        now = self.clock()
        record = TransactionRecord(
            id="tx-" + secrets.token_hex(12), kind=request["kind"], client_id=client.client_id, state="requested",
            created=now, updated=now, expires_at=now + self.settings.login_timeout_seconds, request=request,
            par_hash=secret_hash(handle),
        )
        self.store.create_transaction(record)
        self.store.update_transaction(record.id, code_expires=now + self.settings.par_lifetime_seconds)
        self.audit.append("par.accepted", step=2, transaction_id=record.id, client_id=client.client_id,
                          kind=record.kind, qualifier=request["qualifier"], hash_alg=request.get("hash_alg"),
                          digests=[d["hash"] for d in request["documents"]], count=request["num_signatures"])
        return {"request_uri": PAR_URN + handle, "expires_in": self.settings.par_lifetime_seconds}

    # ------------------------------------------------------------------ step 3: authorize → IdP

    def start_authorization(self, params: dict[str, str]) -> tuple[str, TransactionRecord, str]:
        """``oauth2/authorize``: resolve the (pushed) request, redirect to the IdP (step 3).

        :return: the IdP URL, the transaction, and the browser-binding value for the cookie.
        :raises SignLabError: before a redirect URI is trusted (shown as a page).
        :raises RedirectError: later errors, returned to the client.
        """
        client = self.client(params.get("client_id"))
        now = self.clock()
        if params.get("request_uri"):
            uri = params["request_uri"]
            record = self.store.consume_par(secret_hash(uri.removeprefix(PAR_URN)), now) if uri.startswith(PAR_URN) else None
            if record is None or record.client_id != client.client_id:
                self.audit.append("authorize.refused", step=3, client_id=client.client_id,
                                  reason="unknown or already used request_uri")
                raise InvalidRequest("request_uri is unknown, expired or already used", step=step(3))
            if record.code_expires is not None and record.code_expires < now:
                self._fail(record, "the pushed authorization request expired before use")
                raise InvalidRequest("request_uri expired", step=step(3))
        else:
            # Direct authorization request (CSC v1 style, no PAR): validated here, no client auth.
            try:
                request = self._parse_authorization_request(client, params, pushed=False)
            except SignLabError as exc:
                self.audit.append("authorize.refused", step=2, client_id=client.client_id, error=exc.error,
                                  reason=exc.description)
                raise
            record = TransactionRecord(
                id="tx-" + secrets.token_hex(12), kind=request["kind"], client_id=client.client_id,
                state="requested", created=now, updated=now, expires_at=now + self.settings.login_timeout_seconds,
                request=request)
            self.store.create_transaction(record)
            self.audit.append("authorize.accepted", step=2, transaction_id=record.id, client_id=client.client_id,
                              kind=record.kind, qualifier=request["qualifier"],
                              digests=[d["hash"] for d in request["documents"]])
        request = record.request
        idp_state, nonce, verifier = secrets.token_urlsafe(24), secrets.token_urlsafe(24), secrets.token_urlsafe(48)
        browser = secrets.token_urlsafe(24)
        acr = REQUIRED_LOA[request["qualifier"]]
        try:
            url = self.identity.authentication_request(state=idp_state, nonce=nonce, code_verifier=verifier, acr=acr,
                                                       login_hint=request.get("login_hint"),
                                                       binding_message=_binding_message(request, client))
        except SignLabError as exc:
            self._fail(record, exc.error_description)
            raise RedirectError(request["redirect_uri"], request.get("state"), "temporarily_unavailable",
                                f"step 3: the eID provider cannot be reached: {exc.description}") from None
        self.store.update_transaction(record.id, idp_state=idp_state, idp_nonce=nonce, idp_verifier=verifier,
                                      browser_hash=secret_hash(browser), code_expires=None)
        self.audit.append("idp.redirect", step=3, transaction_id=record.id, acr_values=acr,
                          login_hint_given=bool(request.get("login_hint")))
        return url, record, browser

    # ------------------------------------------------------------------ step 5: IdP callback, consent

    def _browser_check(self, record: TransactionRecord, browser: str | None) -> None:
        if not browser or not record.browser_hash or not hmac.compare_digest(secret_hash(browser), record.browser_hash):
            self.audit.append("browser.refused", step=5, transaction_id=record.id,
                              reason="the browser is not the one that started the transaction")
            raise AccessDenied("this browser did not start the signing transaction (missing or wrong cookie)",
                               step=step(5))

    def idp_callback(self, params: dict[str, str], browser: str | None) -> TransactionRecord:
        """Handle the IdP's redirect (step 5): code exchange and complete ID-token verification.

        :raises RedirectError: the IdP reported an error or the identity is not good enough; the
            original reason is kept in ``error_description``.
        """
        s5 = step(5)
        record = self.store.transaction_by("idp_state", params.get("state") or "\0")
        if record is None:
            self.audit.append("idp.callback_refused", step=5, reason="unknown state")
            raise InvalidRequest("unknown or reused state from the eID provider", step=s5)
        self._browser_check(record, browser)
        request = record.request
        if record.state != "requested":
            raise InvalidRequest(f"the transaction is already {record.state}", step=s5)
        self.store.update_transaction(record.id, idp_state=None)  # single use
        if params.get("error"):
            reason = f"the eID provider answered {params['error']}: {params.get('error_description', '')}".strip()
            self._fail(record, reason)
            self.audit.append("authentication.refused", step=5, transaction_id=record.id, reason=reason)
            raise RedirectError(request["redirect_uri"], request.get("state"),
                                "access_denied" if params["error"] != "temporarily_unavailable" else params["error"],
                                f"step 4 (Signer → IPSP): {reason}")
        try:
            id_token = self.identity.exchange_code(params.get("code") or "", record.idp_verifier or "")
            identity = self.identity.verify(id_token, nonce=record.idp_nonce or "",
                                            min_loa=REQUIRED_LOA[request["qualifier"]])
            if request["qualifier"] == "eu_eidas_qes" and not identity.qes_approved:
                raise AccessDenied(f"the eID means {identity.eid_name!r} is not approved for QES", step=s5)
        except (IdentityEvidenceError, AccessDenied, UpstreamError) as exc:
            self._fail(record, exc.error_description)
            self.audit.append("authentication.refused", step=5, transaction_id=record.id,
                              check=getattr(exc, "check", None), reason=exc.error_description)
            raise RedirectError(request["redirect_uri"], request.get("state"), "access_denied",
                                exc.error_description) from None
        except SignLabError as exc:
            self._fail(record, exc.error_description)
            self.audit.append("authentication.refused", step=5, transaction_id=record.id, reason=exc.error_description)
            raise RedirectError(request["redirect_uri"], request.get("state"), exc.error,
                                exc.error_description) from None
        subject = pseudonymise(self.pseudonym_key, f"{identity.issuer}|{identity.subject}")
        if request["kind"] == "credential":
            credential = self.store.credential(request["credential_id"])
            if credential is None or credential.subject != subject:
                self._fail(record, "the authenticated person is not the credential's owner")
                raise RedirectError(request["redirect_uri"], request.get("state"), "access_denied",
                                    "step 5: the authenticated person does not own this credential")
        shown = {
            "name": " ".join(p for p in (identity.given_name, identity.family_name) if p) or "(no name released)",
            "loa": identity.loa, "acr": identity.acr, "eid_id": identity.eid_id, "eid_name": identity.eid_name,
            "qes_approved": identity.qes_approved, "issuer": identity.issuer,
        }
        record = self.store.advance(record.id, ["requested"], "authenticated", subject=subject, identity=shown,
                                    id_token=id_token)
        self.audit.append("authentication.verified", step=5, transaction_id=record.id, subject=subject,
                          idp=identity.issuer, loa=identity.loa, acr=identity.acr, eid=identity.eid_id,
                          qes_approved=identity.qes_approved)
        return record

    def consent_view(self, transaction_id: str, browser: str | None) -> ConsentView:
        """The consent page's content; a fresh CSRF token is stored (hashed) for the form."""
        record = self._authenticated(transaction_id, browser)
        token = secrets.token_urlsafe(24)
        self.store.update_transaction(record.id, csrf_hash=secret_hash(token))
        request = record.request
        documents = [{"label": d["label"] or f"document {i + 1}",
                      "fingerprint": base64.b64decode(d["hash"]).hex(),
                      "algorithm": request.get("hash_alg", "sha256").upper()}
                     for i, d in enumerate(request["documents"])]
        return ConsentView(
            transaction_id=record.id, csrf_token=token, partner=self.client(record.client_id).name,
            qualifier=request["qualifier"], qualified=request["qualifier"] == "eu_eidas_qes",
            loa=record.identity.get("loa", ""), signer_name=record.identity.get("name", ""),
            eid_name=record.identity.get("eid_name", ""), kind=record.kind, documents=documents,
            num_signatures=int(request["num_signatures"]),
        )

    def _authenticated(self, transaction_id: str, browser: str | None) -> TransactionRecord:
        record = self.store.transaction(transaction_id)
        if record is None:
            # Probing or enumerating transaction ids leaves a trace (the id is shown truncated).
            self.audit.append("consent.refused", step=5, reason="unknown transaction", probed=transaction_id[:40])
            raise NotFound("unknown transaction", step=step(5))
        self._browser_check(record, browser)
        if record.state != "authenticated":
            raise Conflict(f"the transaction is {record.state}; consent is no longer possible", step=step(5))
        if record.expires_at < self.clock():
            self._expire(record, "the signer did not consent in time")
            raise Conflict("the transaction expired before consent", step=step(5))
        return record

    def consent_decision(self, transaction_id: str, browser: str | None, csrf_token: str | None,
                         approve: bool) -> str:
        """Record the signer's decision (step 5); the redirect URL back to the client (code or error)."""
        record = self._authenticated(transaction_id, browser)
        if not csrf_token or not record.csrf_hash or not hmac.compare_digest(secret_hash(csrf_token), record.csrf_hash):
            self.audit.append("consent.refused", step=5, transaction_id=record.id, reason="CSRF token missing or wrong")
            raise AccessDenied("the consent form is stale or forged (CSRF check failed); reload the page",
                               step=step(5))
        request = record.request
        if not approve:
            self._fail(record, "the signer declined")
            self.audit.append("consent.declined", step=5, transaction_id=record.id)
            raise RedirectError(request["redirect_uri"], request.get("state"), "access_denied",
                                "step 5: the signer declined to sign")
        code = secrets.token_urlsafe(32)
        self.store.advance(record.id, ["authenticated"], "consented", csrf_hash=None, code_hash=secret_hash(code),
                           code_expires=self.clock() + self.settings.code_lifetime_seconds)
        self.audit.append("consent.given", step=5, transaction_id=record.id, subject=record.subject,
                          qualifier=request["qualifier"], digests=[d["hash"] for d in request["documents"]],
                          count=request["num_signatures"])
        params = {"code": code}
        if request.get("state") is not None:
            params["state"] = request["state"]
        uri = request["redirect_uri"]
        return f"{uri}{'&' if '?' in uri else '?'}{urlencode(params)}"

    # ------------------------------------------------------------------ token endpoint

    def exchange_code(self, client: Client, params: dict[str, str]) -> dict[str, Any]:
        """``oauth2/token`` with ``authorization_code`` + PKCE; the response body.

        For person signing the access token IS the SAD (bound to the digests, single use, ≤ 5 min).
        For ``scope=service`` the one-time credential is made here (steps 6-7).
        """
        s5 = step(5)
        if params.get("grant_type") != "authorization_code":
            raise InvalidRequest("grant_type must be authorization_code", error="unsupported_grant_type", step=s5)
        record, first_use = self.store.consume_code(secret_hash(params.get("code") or ""))
        if record is None:
            self.audit.append("token.refused", step=5, client_id=client.client_id, reason="unknown code")
            raise InvalidGrant("unknown authorization code", step=s5)
        if not first_use:
            revoked = self.store.revoke_transaction_tokens(record.id)
            self.audit.append("token.refused", step=5, transaction_id=record.id, reason="authorization code replayed",
                              tokens_revoked=revoked)
            raise InvalidGrant("the authorization code was already used (replay); its tokens are revoked", step=s5)
        checks = [
            (record.client_id == client.client_id, "the code was issued to another client"),
            ((record.code_expires or 0) >= self.clock(), "the authorization code expired"),
            (params.get("redirect_uri", record.request["redirect_uri"]) == record.request["redirect_uri"],
             "redirect_uri differs from the authorization request"),
            (bool(params.get("code_verifier")) and hmac.compare_digest(
                create_s256_code_challenge(params.get("code_verifier") or ""), record.request["code_challenge"]),
             "PKCE verification failed (code_verifier does not match code_challenge)"),
            (record.state == "consented", f"the transaction is {record.state}"),
        ]
        for ok, reason in checks:
            if not ok:
                self.audit.append("token.refused", step=5, transaction_id=record.id, reason=reason)
                raise InvalidGrant(reason, step=s5)
        request = record.request
        token = secrets.token_urlsafe(32)
        now = self.clock()
        digests = sorted(base64.b64decode(d["hash"]).hex() for d in request["documents"])
        body: dict[str, Any] = {"access_token": token, "token_type": "Bearer"}
        if record.kind == "service":
            credential = self._create_credential(record)
            expires = min(credential.expires_at, now + self.settings.service_token_lifetime_seconds)
            self.store.add_token(TokenRecord(secret_hash(token), "service", client.client_id, record.id,
                                             credential.id, record.subject, None, [], credential.multisign,
                                             expires, None, 0, None))
            body.update(expires_in=int(expires - now), scope="service", credentialID=credential.id)
        else:
            expires = now + self.settings.sad_lifetime_seconds
            self.store.add_token(TokenRecord(secret_hash(token), record.kind, client.client_id, record.id,
                                             request.get("credential_id"), record.subject, request["hash_alg"],
                                             digests, len(digests), expires, None, 0,
                                             request.get("authorization_details")))
            body.update(expires_in=self.settings.sad_lifetime_seconds)
            if request.get("authorization_details"):
                body["authorization_details"] = request["authorization_details"]
            else:
                body["scope"] = "credential"
            if request.get("credential_id"):
                body["credentialID"] = request["credential_id"]
        self.audit.append("token.issued", step=5, transaction_id=record.id, kind=record.kind,
                          expires_in=body["expires_in"], digests=digests)
        return body

    def revoke(self, client: Client, token: str | None) -> None:
        """RFC 7009: revoke a token of this client (unknown tokens are ignored, as the RFC says)."""
        if not token:
            raise InvalidRequest("token is required")
        record = self.store.token(secret_hash(token))
        if self.store.revoke_token(secret_hash(token), client.client_id):
            self.audit.append("token.revoked", client_id=client.client_id)
            if record is not None and record.kind == "service":
                # Nobody can use the one-time credential any more: destroy its key now, not at expiry.
                transaction = self.store.transaction(record.transaction_id)
                if transaction is not None:
                    self._expire(transaction, "the partner revoked the service token")

    # ------------------------------------------------------------------ bearer tokens

    def bearer(self, token: str | None, kinds: tuple[str, ...]) -> TokenRecord:
        """The valid, unexpired token behind ``Authorization: Bearer``.

        :raises InvalidToken: missing, unknown, revoked, expired or of another kind (401).
        """
        if not token:
            raise InvalidToken("an access token is required (Authorization: Bearer)")
        record = self.store.token(secret_hash(token))
        if record is None or record.revoked:
            self.audit.append("token.refused", reason="unknown or revoked bearer token")
            raise InvalidToken("the access token is unknown or revoked")
        if record.kind not in kinds:
            self.audit.append("token.refused", transaction_id=record.transaction_id,
                              reason=f"{record.kind}-scope token used where {' or '.join(kinds)} is needed")
            raise InvalidToken(f"a {record.kind}-scope token cannot be used here (needs {' or '.join(kinds)})")
        late = self.clock() - record.expires_at
        if late > 0:
            self.audit.append("sad.refused", step=6, transaction_id=record.transaction_id,
                              reason=f"token expired {int(late)} s ago")
            raise InvalidToken(f"the access token expired {int(late) or 1} s ago", error="invalid_token")
        return record

    # ------------------------------------------------------------------ step 6-10: signDoc

    def sign_doc(self, token: str | None, body: dict[str, Any]) -> dict[str, Any]:
        """CSC v2 ``signatures/signDoc`` with a one-time key (steps 6-10)."""
        s6 = step(6)
        record = self.bearer(token, ("sign",))
        transaction = self.store.transaction(record.transaction_id)
        assert transaction is not None
        try:
            if not isinstance(body, dict):
                raise InvalidRequest("the request body must be a JSON object", step=s6)
            csc.refuse_documents(body, step=s6)
            if body.get("credentialID"):
                raise InvalidRequest("the one-time key flow takes no credentialID; use signatureQualifier", step=s6)
            if body.get("SAD") not in (None, ""):
                raise InvalidRequest("signDoc takes the credential access token as SAD; omit SAD", step=s6)
            qualifier = body.get("signatureQualifier")
            if qualifier is not None and qualifier != transaction.request["qualifier"]:
                raise DigestNotAuthorized(f"signatureQualifier {str(qualifier)[:40]!r} is not the authorized "
                                          f"{transaction.request['qualifier']}", step=s6)
            items = body.get("documentDigests")
            if not isinstance(items, list) or not items:
                raise InvalidRequest("documentDigests is required (a non-empty list)", step=s6)
            wanted: list[tuple[bytes, str, str, str]] = []
            for item in items:
                if not isinstance(item, dict):
                    raise InvalidRequest("each documentDigests entry must be an object", step=s6)
                csc.refuse_documents(item, step=s6)
                algorithm = csc.hash_algorithm(csc.first(item, "hashAlgorithmOID", "hashAlgo"), step=s6)
                assert algorithm is not None
                fmt = str(item.get("signature_format", "")).upper()
                if fmt not in csc.SIGNATURE_FORMATS:
                    raise UnsupportedAlgorithm(f"signature_format must be one of C, P, J; got {str(fmt)[:8]!r}",
                                               step=s6)
                level = str(item.get("conformance_level", "AdES-B-B")).lower()
                if level not in csc.CONFORMANCE_LEVELS:
                    raise InvalidRequest(f"unknown conformance_level {level[:20]!r}", step=s6)
                sign_algo = item.get("signAlgo")
                if sign_algo is not None and sign_algo not in csc.key_algorithms(self.settings.key_algorithm.startswith("ec")):
                    raise UnsupportedAlgorithm(f"signAlgo {str(sign_algo)[:40]!r} does not fit the one-time "
                                               f"{self.settings.key_algorithm} key", step=s6)
                for digest in csc.parse_digest_list(csc.first(item, "hashes", "hash"), algorithm, step=s6,
                                                    max_count=self.settings.max_documents):
                    wanted.append((digest, algorithm, fmt, level))
            self._check_digests(record, [(d, a) for d, a, _, _ in wanted], step_=s6)
            if not self.store.use_token(record.token_hash, self.clock()):
                raise SadInvalid("the SAD (credential token) was already used: replay refused", step=s6)
        except SignLabError as exc:
            self.audit.append("sad.refused", step=6, transaction_id=record.transaction_id, error=exc.error,
                              reason=exc.description)
            raise
        # Intermediate signDoc entries are written at once (visible, crash-of-process safe) but
        # fsynced together with transaction.completed, before the signature leaves the service.
        self.audit.append("sad.accepted", step=6, transaction_id=transaction.id, digests=record.digests, sync=False)
        labels = {base64.b64decode(d["hash"]): d["label"] for d in transaction.request["documents"]}
        return self._sign_one_time(transaction, wanted, labels,
                                   with_revocation=bool(body.get("returnValidationInfo", False)))

    def _check_digests(self, record: TokenRecord, wanted: list[tuple[bytes, str]], *, step_: Any,
                       exact: bool = True) -> None:
        """The SAM check: hash algorithm, exact digest set (raw bytes) and count."""
        authorized = set(record.digests)
        for digest, algorithm in wanted:
            if record.hash_alg is not None and algorithm != record.hash_alg:
                raise DigestNotAuthorized(f"hash algorithm {algorithm} is not the authorized {record.hash_alg}",
                                          step=step_)
            if digest.hex() not in authorized:
                raise DigestNotAuthorized(step=step_)
        if len(wanted) > record.num_signatures:
            raise TooManySignatures(f"{len(wanted)} signatures requested, {record.num_signatures} authorized",
                                    step=step_)
        if len({d for d, _ in wanted}) != len(wanted):
            raise InvalidRequest("the same digest is listed twice", step=step_)
        if exact and len(wanted) != record.num_signatures:
            raise InvalidRequest(f"the SAD authorizes exactly {record.num_signatures} digests; "
                                 f"{len(wanted)} were sent", step=step_)

    def _new_key(self, transaction: TransactionRecord, *, durable_later: bool = False) -> OneTimeKey:
        """Step 6: a fresh one-time key in the HSM.

        :param durable_later: the caller writes a synced audit entry before it answers (on every
            path), so ``key.created`` need not be fsynced on its own.
        """
        try:
            with flow_span(step(6), "C_GenerateKeyPair", response="one-time key handle",
                           summary={"algorithm": self.settings.key_algorithm, "transaction_id": transaction.id,
                                    "sensitive": True, "extractable": False, "token_object": False}) as span:
                key = self.hsm.create_one_time_key(self.settings.key_algorithm, label=transaction.id)
                span.response({"key_id": key.key_id, "algorithm": key.algorithm})
        except HsmError as exc:
            self.audit.append("key.refused", step=6, transaction_id=transaction.id, reason=exc.description)
            raise
        with self._keys_lock:
            self._keys[key.key_id] = key
        self.audit.append("key.created", step=6, transaction_id=transaction.id, key_id=key.key_id,
                          algorithm=key.algorithm, sensitive=True, extractable=False, token_object=False,
                          sync=not durable_later)
        return key

    def _certify(self, transaction: TransactionRecord, key: OneTimeKey, *, durable_later: bool = False) -> IssuedCertificate:
        """Steps 7: CSR + identity evidence to the TSP; check the certificate against key and profile.

        :param durable_later: as for :meth:`_new_key` (``csr.sent``, ``certificate.issued``).
        """
        s7 = step(7)
        qualifier = transaction.request["qualifier"]
        with operation_step(7):  # the CSR's proof of possession, not a document signature
            csr_der = build_csr(self.hsm, key, common_name=f"SignLab one-time key {transaction.id}")
        self.audit.append("csr.sent", step=7, transaction_id=transaction.id, key_id=key.key_id,
                          csr_sha256=hashlib.sha256(csr_der).hexdigest(), profile=PROFILE[qualifier],
                          sync=not durable_later)
        try:
            issued = self.ca.issue(csr_der=csr_der, profile=PROFILE[qualifier], id_token=transaction.id_token or "",
                                   transaction_id=transaction.id)
        except UpstreamError as exc:
            # Keep the TSP's reason; a policy refusal stays access_denied for the partner.
            mapped = exc.upstream_error if exc.upstream_error in ("access_denied", "invalid_request") else "server_error"
            raise SignLabError(f"the TSP refused the certificate: {exc.upstream_error}: {exc.upstream_description}",
                               error=mapped, status=403 if mapped == "access_denied" else 502, step=s7) from None
        now = lab_clock().now()
        tbs = issued.certificate["tbs_certificate"]
        problems = []
        try:
            # Extensions and validity read with cryptography: asn1crypto's extension parsing
            # (certificate_policies_value) was the costlier half of this check.
            checked = cx509.load_der_x509_certificate(issued.certificate.dump())
            try:
                policies = checked.extensions.get_extension_for_class(cx509.CertificatePolicies).value
                policy_oids = {p.policy_identifier.dotted_string for p in policies}
            except cx509.ExtensionNotFound:
                policy_oids = set()
            not_before, not_after = checked.not_valid_before_utc, checked.not_valid_after_utc
        except ValueError as exc:
            raise SignLabError(f"the certificate from the TSP is unusable: it cannot be parsed ({exc})",
                               step=s7) from None
        if tbs["subject_public_key_info"].dump() != key.public_key_info.dump():
            problems.append("its public key is not the one-time key")
        if POLICY[qualifier] not in policy_oids:
            problems.append(f"it lacks the {qualifier} policy {POLICY[qualifier]} (has {sorted(policy_oids)})")
        if not not_before <= now <= not_after:
            problems.append("it is not valid now")
        if problems:
            raise SignLabError("the certificate from the TSP is unusable: " + "; ".join(problems), step=s7)
        self.audit.append("certificate.issued", step=7, transaction_id=transaction.id, serial=issued.serial,
                          profile=issued.profile, policy=issued.policy_oid,
                          not_after=not_after.isoformat(), sync=not durable_later)
        return issued

    def _sign_one_time(self, transaction: TransactionRecord, wanted: list[tuple[bytes, str, str, str]],
                       labels: dict[bytes, str], *, with_revocation: bool = False) -> dict[str, Any]:
        """Steps 6-10 for signDoc; the key is destroyed in ``finally`` on every path.

        :param with_revocation: CSC ``returnValidationInfo``: also fetch the certificate's CRL and
            OCSP response for the client (needed for B-LT/B-LTA); the chain is always returned.
        """
        key: OneTimeKey | None = None
        signed = False
        try:
            # Every path below ends with a synced audit entry (transaction.completed after the
            # signatures, signing.failed / key.destroyed on a failure), so the entries on the
            # way are written without their own fsync.
            key = self._new_key(transaction, durable_later=True)
            self.store.move(transaction.id, ["consented"], "key_created", key_id=key.key_id)
            issued = self._certify(transaction, key, durable_later=True)
            self.store.move(transaction.id, ["key_created"], "certificate_issued",
                               certificate_serial=issued.serial)
            objects: list[str] = []
            for digest, algorithm, fmt, level in wanted:
                if fmt == "J":
                    jws = build_jades(self.hsm, key, issued.certificate, issued.chain, digest, algorithm,
                                      labels.get(digest, ""))
                    objects.append(_b64(jws.encode("ascii")))
                    dtbs = hashlib.sha256(jws.split(".")[0].encode("ascii") + b".").hexdigest()
                else:
                    signer = HsmCmsSigner(self.hsm, key, issued.certificate, issued.chain, algorithm)
                    der = build_cms(signer, digest, algorithm, fmt)
                    objects.append(_b64(der))
                    dtbs = _signed_attrs_digest(der, algorithm)
                self.audit.append("dtbsr.built", step=8, transaction_id=transaction.id, document_digest=digest.hex(),
                                  dtbsr_digest=dtbs, format=fmt, sync=False)
                self.audit.append("signature.created", step=9, transaction_id=transaction.id, key_id=key.key_id,
                                  document_digest=digest.hex(), dtbsr_digest=dtbs, format=fmt, level=level,
                                  sync=False)
            self.store.move(transaction.id, ["certificate_issued"], "signed")
            signed = True
        except SignLabError as exc:
            self._fail(transaction, exc.error_description)
            self.audit.append("signing.failed", step=exc.step.number if exc.step else None,
                              transaction_id=transaction.id, error=exc.error, reason=exc.description)
            raise
        except Exception as exc:
            self._fail(transaction, f"internal error {exc.__class__.__name__}")
            self.audit.append("signing.failed", transaction_id=transaction.id, error="server_error",
                              reason=exc.__class__.__name__)
            log.exception("step 8-9: signing failed")
            raise SigningFailed(step=step(9)) from None
        finally:
            if key is not None:
                self._destroy_key(key.key_id, transaction.id, sync=not signed)
        self.store.move(transaction.id, ["signed"], "completed", id_token=None)
        info: dict[str, list[str]] = {"crl": [], "ocsp": []}
        if with_revocation and issued.chain:
            with flow_span(step(10), "validation data (CRL, OCSP)", target=Role.TSP, response="CRL and OCSP response",
                           summary={"certificate_serial": issued.serial}):
                info = self.ca.validation_info(issued.certificate, issued.chain[0])
        certificates = [_b64(c.dump()) for c in (issued.certificate, *issued.chain)]
        self.audit.append("transaction.completed", step=10, transaction_id=transaction.id, signatures=len(objects))
        return {
            "SignatureObject": objects,
            "signatureObject": objects,
            "validationInfo": {"certificates": certificates, "crl": info["crl"], "ocsp": info["ocsp"]},
            "transactionID": transaction.id,
            "signatureQualifier": transaction.request["qualifier"],
            "loa": transaction.identity.get("loa"),
            "certificateSerial": issued.serial,
            "signatureFormats": [fmt for _, _, fmt, _ in wanted],
        }

    def _fail(self, transaction: TransactionRecord, reason: str) -> None:
        try:
            self.store.advance(transaction.id, ACTIVE_STATES, "failed", error=reason[:500], id_token=None)
        except Conflict:
            pass
        self.store.revoke_transaction_tokens(transaction.id) if transaction.kind != "sign" else None

    # ------------------------------------------------------------------ certificate-first credentials

    def _create_credential(self, transaction: TransactionRecord) -> CredentialRecord:
        """Steps 6-7 at the service-scope token exchange: the one-time credential (key + certificate)."""
        key: OneTimeKey | None = None
        try:
            key = self._new_key(transaction)
            self.store.advance(transaction.id, ["consented"], "key_created", key_id=key.key_id)
            issued = self._certify(transaction, key)
            self.store.advance(transaction.id, ["key_created"], "certificate_issued",
                               certificate_serial=issued.serial, id_token=None)
        except Exception as exc:
            if key is not None:
                self._destroy_key(key.key_id, transaction.id)
            reason = exc.error_description if isinstance(exc, SignLabError) else exc.__class__.__name__
            self._fail(transaction, reason)
            self.audit.append("credential.failed", transaction_id=transaction.id, reason=reason)
            if isinstance(exc, SignLabError):
                raise
            log.exception("steps 6-7: credential creation failed")
            raise SigningFailed("the one-time credential could not be created", step=step(7)) from None
        now = self.clock()
        not_after = issued.certificate["tbs_certificate"]["validity"]["not_after"].native.timestamp()
        credential = CredentialRecord(
            id="cred-" + secrets.token_hex(12), transaction_id=transaction.id, client_id=transaction.client_id,
            subject=transaction.subject or "", key_id=key.key_id, algorithm=key.algorithm,
            public_key=_b64(key.public_key_info.dump()), certificate=_b64(issued.certificate.dump()),
            chain=[_b64(c.dump()) for c in issued.chain], qualifier=transaction.request["qualifier"],
            serial=issued.serial, multisign=int(transaction.request["num_signatures"]),
            remaining=int(transaction.request["num_signatures"]), status="enabled",
            expires_at=min(not_after, now + self.settings.service_token_lifetime_seconds), created=now,
        )
        self.store.add_credential(credential)
        # The credential's lifetime bounds the transaction: the sweep destroys the key at expiry.
        self.store.update_transaction(transaction.id, expires_at=credential.expires_at)
        self.audit.append("credential.created", step=7, transaction_id=transaction.id, credential_id=credential.id,
                          key_id=key.key_id, serial=issued.serial, multisign=credential.multisign)
        return credential

    def _owned_credential(self, token: TokenRecord, credential_id: Any) -> CredentialRecord:
        if not isinstance(credential_id, str) or not credential_id:
            raise InvalidRequest("Missing or invalid parameter credentialID")
        credential = self.store.credential(credential_id)
        if credential is None or credential.subject != token.subject or credential.client_id != token.client_id:
            raise InvalidRequest("Invalid parameter credentialID")
        return credential

    def credentials_list(self, token: str | None, body: dict[str, Any], version: int) -> dict[str, Any]:
        """``credentials/list``: the one-time credentials of the token's transaction."""
        record = self.bearer(token, ("service",))
        if body.get("userID") is not None:
            raise InvalidRequest("userID must be absent: the token is user-specific")
        credentials = [c for c in self.store.credentials_of(record.transaction_id)
                       if c.status == "enabled" or not body.get("onlyValid")]
        response: dict[str, Any] = {"credentialIDs": [c.id for c in credentials]}
        if version == 2 and body.get("credentialInfo"):
            response["credentialInfos"] = [
                {"credentialID": c.id, **self._credential_info(c, body, version)} for c in credentials]
            response["onlyValid"] = bool(body.get("onlyValid"))
        return response

    def credentials_info(self, token: str | None, body: dict[str, Any], version: int) -> dict[str, Any]:
        """``credentials/info`` (pyHanko sends ``certificates: chain``, ``certInfo: false``)."""
        record = self.bearer(token, ("service",))
        return self._credential_info(self._owned_credential(record, body.get("credentialID")), body, version)

    def _credential_info(self, credential: CredentialRecord, body: dict[str, Any], version: int) -> dict[str, Any]:
        is_ec = credential.algorithm.startswith("ec")
        leaf = x509.Certificate.load(base64.b64decode(credential.certificate))
        which = body.get("certificates", "single")
        if which not in ("none", "single", "chain"):
            raise InvalidRequest("certificates must be none, single or chain")
        certs = {"none": [], "single": [credential.certificate],
                 "chain": [credential.certificate, *credential.chain]}[which]
        expired = self.clock() > credential.expires_at
        info: dict[str, Any] = {
            "description": f"one-time {credential.qualifier} credential of transaction {credential.transaction_id}",
            "key": {"status": "enabled" if credential.status == "enabled" and not expired else "disabled",
                    "algo": csc.key_algorithms(is_ec), "len": leaf.public_key.bit_size},
            "cert": {"status": "valid" if not expired else "expired", "certificates": certs},
            "SCAL": "2",
            "multisign": credential.multisign,
            "signatureQualifier": credential.qualifier,
            "lang": "en-GB",
        }
        if is_ec:
            info["key"]["curve"] = "1.2.840.10045.3.1.7"
        if body.get("certInfo"):
            validity = leaf["tbs_certificate"]["validity"]
            info["cert"].update(
                issuerDN=leaf.issuer.human_friendly, subjectDN=leaf.subject.human_friendly,
                serialNumber=format(leaf.serial_number, "x"),
                validFrom=validity["not_before"].native.strftime("%Y%m%d%H%M%SZ"),
                validTo=validity["not_after"].native.strftime("%Y%m%d%H%M%SZ"))
        if version == 1:
            info["authMode"] = "implicit"
        else:
            info["auth"] = {"mode": "implicit"}
        return info

    def credentials_authorize(self, token: str | None, body: dict[str, Any]) -> dict[str, Any]:
        """``credentials/authorize``: a SAD bound to the DTBS/R hashes (SCAL 2), count and expiry."""
        s2 = step(2)
        record = self.bearer(token, ("service",))
        try:
            credential = self._owned_credential(record, body.get("credentialID"))
            number = body.get("numSignatures")
            if not isinstance(number, int) or isinstance(number, bool) or number < 1:
                raise InvalidRequest("numSignatures must be a positive integer", step=s2)
            if number > credential.remaining or number > credential.multisign:
                raise TooManySignatures("Numbers of signatures is too high", step=s2)
            if credential.status != "enabled" or self.clock() > credential.expires_at:
                raise InvalidRequest("the credential's key is disabled", step=s2)
            algorithm = csc.hash_algorithm(csc.first(body, "hashAlgorithmOID", "hashAlgo"), required=False, step=s2)
            digests = csc.parse_digest_list(csc.first(body, "hashes", "hash"), algorithm, step=s2,
                                            max_count=credential.multisign)
            if len(digests) != number:
                raise InvalidRequest("SCAL 2: the number of hashes must equal numSignatures", step=s2)
        except SignLabError as exc:
            self.audit.append("sad.refused", step=2, transaction_id=record.transaction_id, error=exc.error,
                              reason=exc.description)
            raise
        sad = secrets.token_urlsafe(32)
        expires = min(self.clock() + self.settings.sad_lifetime_seconds, credential.expires_at)
        hexes = sorted(d.hex() for d in digests)
        self.store.add_token(TokenRecord(secret_hash(sad), "sad", record.client_id, record.transaction_id,
                                         credential.id, record.subject, algorithm, hexes, number, expires, None, 0, None))
        self.audit.append("sad.issued", step=2, transaction_id=record.transaction_id, credential_id=credential.id,
                          digests=hexes, count=number)
        return {"SAD": sad, "expiresIn": int(expires - self.clock())}

    def extend_transaction(self, token: str | None, body: dict[str, Any]) -> dict[str, Any]:
        """``credentials/extendTransaction`` (v1): a fresh SAD for new hashes within the same budget."""
        record = self.bearer(token, ("service",))
        credential = self._owned_credential(record, body.get("credentialID"))
        old = self._sad(body.get("SAD"), credential)
        if not self.store.use_token(old.token_hash, self.clock()):
            raise SadInvalid("the SAD was already used")
        algorithm = old.hash_alg
        digests = csc.parse_digest_list(csc.first(body, "hashes", "hash"), algorithm,
                                        max_count=credential.multisign) if csc.first(body, "hashes", "hash") else []
        hexes = sorted(d.hex() for d in digests) or old.digests
        sad = secrets.token_urlsafe(32)
        expires = min(self.clock() + self.settings.sad_lifetime_seconds, credential.expires_at)
        self.store.add_token(TokenRecord(secret_hash(sad), "sad", record.client_id, record.transaction_id,
                                         credential.id, record.subject, algorithm, hexes, min(len(hexes), credential.remaining),
                                         expires, None, 0, None))
        self.audit.append("sad.extended", step=2, transaction_id=record.transaction_id, credential_id=credential.id,
                          digests=hexes)
        return {"SAD": sad, "expiresIn": int(expires - self.clock())}

    def _sad(self, sad: Any, credential: CredentialRecord) -> TokenRecord:
        if not isinstance(sad, str) or not sad:
            raise SadInvalid("Missing or invalid parameter SAD")
        record = self.store.token(secret_hash(sad))
        if record is None or record.kind not in ("sad", "credential") or record.revoked:
            raise SadInvalid("invalid SAD")
        if record.credential_id != credential.id:
            raise SadInvalid("the SAD belongs to another credential")
        if record.used_at is not None:
            raise SadInvalid("the SAD was already used: replay refused")
        late = self.clock() - record.expires_at
        if late > 0:
            raise SadExpired(f"SAD expired {int(late) or 1} s ago")
        return record

    def sign_hash(self, token: str | None, body: dict[str, Any], version: int) -> dict[str, Any]:
        """``signatures/signHash``: sign exactly the authorized DTBS/R hashes with the one-time key (8-9).

        v1: ``Authorization`` = service token and ``SAD`` in the body. v2 also accepts a
        credential-scope token in the header instead of ``SAD``.
        """
        s9 = step(9)
        header = self.store.token(secret_hash(token)) if token else None
        if header is not None and header.kind == "credential" and not body.get("SAD"):
            service_token = None
            credential_id = body.get("credentialID") or header.credential_id
        else:
            service_token = self.bearer(token, ("service",))
            credential_id = body.get("credentialID")
        transaction_id = header.transaction_id if header else None
        try:
            csc.refuse_documents(body, step=s9)
            if service_token is not None:
                credential = self._owned_credential(service_token, credential_id)
                sad = self._sad(body.get("SAD"), credential)
            else:
                assert header is not None
                credential = self._owned_credential(header, credential_id)
                sad = self._sad(token, credential)
            transaction_id = credential.transaction_id
            sign_algo = body.get("signAlgo")
            if not isinstance(sign_algo, str) or sign_algo not in csc.key_algorithms(credential.algorithm.startswith("ec")):
                raise UnsupportedAlgorithm(f"signAlgo {str(sign_algo)[:40]!r} is not one of the credential's key.algo",
                                           step=s9)
            if body.get("signAlgoParams"):
                raise UnsupportedAlgorithm("signAlgoParams (RSASSA-PSS) is not supported", step=s9)
            implied = csc.SIGN_ALGO_HASH.get(sign_algo)
            given = csc.hash_algorithm(csc.first(body, "hashAlgorithmOID", "hashAlgo"), required=implied is None,
                                       step=s9)
            if implied is not None and given is not None and implied != given:
                raise UnsupportedAlgorithm(f"hashAlgo {given} contradicts signAlgo ({implied})", step=s9)
            algorithm = implied or given
            assert algorithm is not None
            digests = csc.parse_digest_list(csc.first(body, "hashes", "hash"), algorithm, step=s9,
                                            max_count=credential.multisign)
            self._check_digests(sad, [(d, algorithm) for d in digests], step_=s9, exact=False)
            if credential.status != "enabled" or self.clock() > credential.expires_at:
                raise InvalidRequest("the credential's key is disabled or its certificate expired", step=s9)
            if not self.store.use_token(sad.token_hash, self.clock()):
                raise SadInvalid("the SAD was already used: replay refused", step=s9)
            if self.store.spend_credential(credential.id, len(digests)) is None:
                raise TooManySignatures("the credential has no signatures left", step=s9)
        except SignLabError as exc:
            self.audit.append("sad.refused", step=9, transaction_id=transaction_id, error=exc.error,
                              reason=exc.description)
            raise
        with self._keys_lock:
            key = self._keys.get(credential.key_id)
        remaining = (self.store.credential(credential.id) or credential).remaining
        try:
            if key is None:
                raise HsmError("the one-time key is not in this process (destroyed or the service restarted)", step=s9)
            signatures = []
            for digest in digests:
                with flow_span(step(9), "C_Sign", summary={"key_id": key.key_id, "digest": digest.hex(),
                                                           "credential_id": credential.id}):
                    signatures.append(self.hsm.sign_digest(key, digest, algorithm))
            for d in digests:
                self.audit.append("signature.created", step=9, transaction_id=credential.transaction_id,
                                  key_id=credential.key_id, dtbsr_digest=d.hex(), credential_id=credential.id)
        except SignLabError as exc:
            remaining = 0  # a failed HSM operation ends the credential
            self.audit.append("signing.failed", step=9, transaction_id=credential.transaction_id, error=exc.error,
                              reason=exc.description)
            raise
        finally:
            if remaining == 0:
                self._destroy_key(credential.key_id, credential.transaction_id)
                self.store.disable_credential(credential.id)
                self._finish_credential_transaction(credential.transaction_id)
        return {"signatures": [_b64(s) for s in signatures]}

    def _finish_credential_transaction(self, transaction_id: str) -> None:
        try:
            self.store.advance(transaction_id, ["certificate_issued"], "signed")
            self.store.advance(transaction_id, ["signed"], "completed", id_token=None)
            self.audit.append("transaction.completed", step=10, transaction_id=transaction_id)
        except Conflict:
            pass

    # ------------------------------------------------------------------ timestamp proxy

    def timestamp(self, token: str | None, body: dict[str, Any]) -> dict[str, Any]:
        """``signatures/timestamp``: an RFC 3161 token from the TSP's TSA for one hash."""
        if not token or self.store.token(secret_hash(token)) is None:
            raise InvalidToken("an access token of this service is required")
        algorithm = csc.hash_algorithm(csc.first(body, "hashAlgorithmOID", "hashAlgo"), step=step(10))
        assert algorithm is not None
        digest = csc.decode_digest(csc.first(body, "hash", "hashes"), algorithm, step=step(10))
        nonce = body.get("nonce")
        request: dict[str, Any] = {"version": "v1", "message_imprint": {
            "hash_algorithm": {"algorithm": algorithm}, "hashed_message": digest}, "cert_req": True}
        if nonce is not None:
            if not isinstance(nonce, str) or not nonce or len(nonce) > 64 or any(c not in "0123456789abcdefABCDEF" for c in nonce):
                raise InvalidRequest("nonce must be a hex string of at most 64 digits", step=step(10))
            request["nonce"] = int(nonce, 16)
        answer = tsp.TimeStampResp.load(self.ca.timestamp(tsp.TimeStampReq(request).dump()))
        if answer["status"]["status"].native not in ("granted", "granted_with_mods"):
            raise UpstreamError(step(10).target, "tsa_refused", str(answer["status"]["status_string"].native), 200,
                                step=step(10))
        return {"timestamp": _b64(answer["time_stamp_token"].dump())}


def _signed_attrs_digest(cms_der: bytes, algorithm: str) -> str:
    """Hex digest of the DER signed attributes of a CMS (the DTBS/R the HSM signed), for the audit."""
    from asn1crypto import cms

    signer_info = cms.ContentInfo.load(cms_der)["content"]["signer_infos"][0]
    attrs = bytearray(signer_info["signed_attrs"].dump())
    attrs[0] = 0x31  # the signature covers the SET OF encoding, not the [0] IMPLICIT tag (RFC 5652 §5.4)
    return hashlib.new(algorithm, bytes(attrs)).hexdigest()


def _binding_message(request: dict[str, Any], client: Client) -> str:
    """The sign message the eID provider shows at login (step 4): who asks for what."""
    count = int(request.get("num_signatures") or len(request.get("documents") or ()) or 1)
    kind = "QES" if request.get("qualifier") == "eu_eidas_qes" else "AdES"
    noun = "document" if count == 1 else "documents"
    return f"Sign {count} {noun} ({kind}) for {client.name}"
