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
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from asn1crypto import tsp
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from pydantic import SecretStr

from services.signer import csc
from services.signer.credentials import Credentials
from services.signer.errors import InvalidScope
from services.signer.faults import build_fault_board
from services.signer.hsm import Hsm
from services.signer.keys import OneTimeKeys
from services.signer.lifecycle import TransactionLifecycle
from services.signer.pipeline import SigningPipeline
from services.signer.sam import SignatureActivationModule
from services.signer.settings import SignerSettings
from services.signer.store import (
    Store,
    TokenRecord,
    TransactionRecord,
    secret_hash,
)
from services.signer.upstream import CertificateGateway, IdentityGateway
from shared.audit import AuditLog, pseudonymise
from shared.errors import (
    AccessDenied,
    Conflict,
    InvalidClient,
    InvalidGrant,
    InvalidRequest,
    NotFound,
    SignLabError,
    UpstreamError,
)
from shared.flow import step
from shared.identity import LOA_HIGH, LOA_SUBSTANTIAL, IdentityEvidenceError
from shared.throttle import FailureThrottle

__all__ = ["Client", "ConsentView", "RedirectError", "SigningService"]

log = logging.getLogger(__name__)

PAR_URN = "urn:ietf:params:oauth:request_uri:"
REQUIRED_LOA = {"eu_eidas_qes": LOA_HIGH, "eu_eidas_aes": LOA_SUBSTANTIAL}
"""The level of assurance each qualifier needs (step 3 ``acr_values``, step 5 check)."""



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
    return time.time()


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
        # The parts read the time through :meth:`now`, so moving ``clock`` moves it everywhere.
        self.sam = SignatureActivationModule(store, audit, self.now)
        self.keys = OneTimeKeys(hsm, audit, settings.key_algorithm)
        self.lifecycle = TransactionLifecycle(store, audit, self.keys, self.now)
        self.pipeline = SigningPipeline(hsm, ca, store, audit, self.keys, self.lifecycle, self.now)
        self.credentials = Credentials(store, audit, self.sam, self.pipeline, self.keys, self.lifecycle,
                                       token_lifetime=settings.service_token_lifetime_seconds,
                                       sad_lifetime=settings.sad_lifetime_seconds, clock=self.now)
        # Lab fault injection (HSM failures at steps 6 and 9): None unless FAULTS_ENABLED.
        self.faults = build_fault_board(settings, audit)
        hsm.faults = self.faults

    def now(self) -> float:
        """The current time of this service (``clock``), in seconds since the epoch."""
        return self.clock()

    # ------------------------------------------------------------------ start-up and sweeping

    def startup(self) -> None:
        """Destroy leftover key objects and end every in-flight transaction as expired (recorded)."""
        self.lifecycle.startup()

    def sweep(self) -> int:
        """Expire transactions past their deadline and destroy their keys; return how many."""
        return self.lifecycle.sweep()

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
                credential = self.sam.credential_for_authorization_request(client.client_id, detail.credential_id,
                                                                            len(detail.documents))
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
            credential = self.sam.credential_for_authorization_request(client.client_id, credential_id, len(digests))
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
                self.lifecycle.fail(record, "the pushed authorization request expired before use")
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
            self.lifecycle.fail(record, exc.error_description)
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
            self.lifecycle.fail(record, reason)
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
            self.lifecycle.fail(record, exc.error_description)
            self.audit.append("authentication.refused", step=5, transaction_id=record.id,
                              check=getattr(exc, "check", None), reason=exc.error_description)
            raise RedirectError(request["redirect_uri"], request.get("state"), "access_denied",
                                exc.error_description) from None
        except SignLabError as exc:
            self.lifecycle.fail(record, exc.error_description)
            self.audit.append("authentication.refused", step=5, transaction_id=record.id, reason=exc.error_description)
            raise RedirectError(request["redirect_uri"], request.get("state"), exc.error,
                                exc.error_description) from None
        subject = pseudonymise(self.pseudonym_key, f"{identity.issuer}|{identity.subject}")
        if request["kind"] == "credential":
            credential = self.store.credential(request["credential_id"])
            if credential is None or credential.subject != subject:
                self.lifecycle.fail(record, "the authenticated person is not the credential's owner")
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
            self.lifecycle.expire(record, "the signer did not consent in time")
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
            self.lifecycle.fail(record, "the signer declined")
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
            credential = self.credentials.create(record)
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
                    self.lifecycle.expire(transaction, "the partner revoked the service token")

    # ------------------------------------------------------------------ step 6-10: signDoc

    def sign_doc(self, access: TokenRecord, request: csc.SignDocRequest) -> dict[str, Any]:
        """CSC v2 ``signatures/signDoc`` with a one-time key (steps 6-10).

        :param access: the ``sign``-kind token, from :meth:`SignatureActivationModule.access_token`.
        """
        transaction = self.store.transaction(access.transaction_id)
        assert transaction is not None
        self.sam.activate_sign_doc(access, transaction, request, self.settings.key_algorithm)
        labels = {base64.b64decode(d["hash"]): d["label"] for d in transaction.request["documents"]}
        return self.pipeline.sign_documents(transaction, request.documents, labels,
                                            with_revocation=request.return_validation_info)

    # ------------------------------------------------------------------ certificate-first credentials

    def credentials_list(self, access: TokenRecord, request: csc.CredentialsListRequest,
                         version: int) -> dict[str, Any]:
        """CSC ``credentials/list`` (:meth:`Credentials.list`)."""
        return self.credentials.list(access, request, version)

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

    # ------------------------------------------------------------------ timestamp proxy

    def timestamp(self, request: csc.TimestampRequest) -> dict[str, Any]:
        """``signatures/timestamp``: an RFC 3161 token from the TSP's TSA for one hash (the caller
        holds a token of this service: :meth:`SignatureActivationModule.any_access_token`)."""
        query: dict[str, Any] = {"version": "v1", "message_imprint": {
            "hash_algorithm": {"algorithm": request.hash_algorithm}, "hashed_message": request.digest}, "cert_req": True}
        if request.nonce is not None:
            query["nonce"] = request.nonce
        answer = tsp.TimeStampResp.load(self.ca.timestamp(tsp.TimeStampReq(query).dump()))
        if answer["status"]["status"].native not in ("granted", "granted_with_mods"):
            raise UpstreamError(step(10).target, "tsa_refused", str(answer["status"]["status_string"].native), 200,
                                step=step(10))
        return {"timestamp": _b64(answer["time_stamp_token"].dump())}


def _binding_message(request: dict[str, Any], client: Client) -> str:
    """The sign message the eID provider shows at login (step 4): who asks for what."""
    count = int(request.get("num_signatures") or len(request.get("documents") or ()) or 1)
    kind = "QES" if request.get("qualifier") == "eu_eidas_qes" else "AdES"
    noun = "document" if count == 1 else "documents"
    return f"Sign {count} {noun} ({kind}) for {client.name}"
