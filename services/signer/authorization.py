"""The SSASP's OAuth2 authorization server: PAR, authorize, the IdP callback, consent, token, revoke.

Steps 2-5 of both flows (the HTTP views are in :mod:`services.signer.http`):

=====  ==============================================  ============================================
step   endpoint                                        method
=====  ==============================================  ============================================
2      ``POST /oauth2/par`` (RFC 9126, client auth)    :meth:`AuthorizationServer.push_authorization_request`
3      ``GET /oauth2/authorize`` → the IdP (OIDC,      :meth:`AuthorizationServer.start_authorization`
       ``acr_values`` from the qualifier, PKCE)
5      ``GET /oauth2/idp-callback``: code exchange,    :meth:`AuthorizationServer.idp_callback`
       complete ID-token verification
5      consent page (SCAL 2: partner, documents,       :meth:`AuthorizationServer.consent_view`,
       fingerprints), CSRF-protected decision          :meth:`AuthorizationServer.consent_decision`
5      ``POST /oauth2/token`` (code + PKCE): the       :meth:`AuthorizationServer.exchange_code`
       credential token (= the SAD), or a service
       token and its one-time credential (steps 6-7)
–      ``POST /oauth2/revoke`` (RFC 7009)              :meth:`AuthorizationServer.revoke`
–      ``POST /oauth2/transaction-status`` (client     :meth:`AuthorizationServer.transaction_status`
       auth): where a partner's transaction is, and
       the partner's report of a lost answer
=====  ==============================================  ============================================

The request itself is checked in :mod:`services.signer.authorization_request`; clients and their
authentication are in :mod:`services.signer.clients` (where another client-authentication method
would go). Errors before the redirect URI is trusted are shown as pages; later ones go back to
the client by redirect (:class:`RedirectError`). Every refusal is audited before it is raised.
"""

from __future__ import annotations

import base64
import hmac
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from authlib.oauth2.rfc7636 import create_s256_code_challenge

from services.signer.authorization_request import REQUIRED_LOA, binding_message, parse_authorization_request
from services.signer.clients import Client, ClientRegistry
from services.signer.credentials import Credentials
from services.signer.evidence import IdentityEvidence
from services.signer.lifecycle import TransactionLifecycle
from services.signer.orphans import PENDING
from services.signer.sam import SignatureActivationModule
from services.signer.settings import SignerSettings
from services.signer.store import FINAL_STATES, Store, TokenRecord, TransactionRecord, secret_hash
from services.signer.upstream import IdentityGateway
from shared.audit import AuditLog, pseudonymise
from shared.digests import digest_fingerprint
from shared.errors import AccessDenied, Conflict, InvalidGrant, InvalidRequest, NotFound, SignLabError, UpstreamError
from shared.flow import step
from shared.identity import IdentityEvidenceError, VerifiedIdentity

__all__ = ["PAR_URN", "AuthorizationServer", "ConsentView", "RedirectError"]

PAR_URN = "urn:ietf:params:oauth:request_uri:"
"""The prefix of a pushed request's ``request_uri`` (RFC 9126)."""


def _named_credential(request: Mapping[str, Any]) -> dict[str, Any]:
    """``{"credential_id": …}`` for a credential authorization's audit entries (the person's approval
    of hashes is found next to the credential's own entries), else nothing."""
    return {"credential_id": request["credential_id"]} if request.get("credential_id") else {}


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

    @classmethod
    def to_client(cls, request: Mapping[str, Any], error: str, description: str) -> RedirectError:
        """The error for the client of a stored authorization ``request``."""
        return cls(request["redirect_uri"], request.get("state"), error, description)


@dataclass(frozen=True)
class ConsentView:
    """What the consent page shows (step 5); every value is escaped by the template.

    :ivar documents: ``[{"label", "fingerprint"}]``: each digest with the label the partner sent
        and its fingerprint in the one format of :func:`shared.digests.digest_fingerprint`
        (``SHA-256 9F86D081 …``), as the portal's review page shows them.
    """

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
    scal: str | None = None
    """The SCAL of the one-time credential a service authorization makes (``"2"`` or ``"1"``)."""


class AuthorizationServer:
    """OAuth2 / OIDC steps 2-5 of the SSASP.

    :param settings: the signer's settings (lifetimes, limits).
    :param store: the transaction database.
    :param audit: the hash-chained audit log.
    :param clients: the registered partner portals.
    :param identity: the OIDC client towards the IPSP.
    :param sam: checks credentials named in a request.
    :param credentials: makes the one-time credential at a service-scope token exchange.
    :param lifecycle: ends transactions that fail or expire.
    :param evidence: where the verified ID token waits for step 7 (memory only).
    :param pseudonym_key: key of the subject pseudonyms in the audit log.
    :param clock: the time source (seconds since the epoch).
    """

    def __init__(self, settings: SignerSettings, store: Store, audit: AuditLog, clients: ClientRegistry,
                 identity: IdentityGateway, sam: SignatureActivationModule, credentials: Credentials,
                 lifecycle: TransactionLifecycle, evidence: IdentityEvidence, pseudonym_key: bytes,
                 clock: Callable[[], float]) -> None:
        self.settings = settings
        self.store = store
        self.audit = audit
        self.clients = clients
        self.identity = identity
        self.sam = sam
        self.credentials = credentials
        self.lifecycle = lifecycle
        self.evidence = evidence
        self.pseudonym_key = pseudonym_key
        self.clock = clock

    def _parse(self, client: Client, params: Mapping[str, str], *, refused: str) -> dict[str, Any]:
        """The checked request (step 2); a refusal is audited as ``refused`` (``par.refused`` …)."""
        try:
            return parse_authorization_request(client, params, max_documents=self.settings.max_documents,
                                               credential_for=self.sam.credential_for_authorization_request)
        except SignLabError as exc:
            self.audit.append(refused, step=2, client_id=client.client_id, error=exc.error, reason=exc.description)
            raise

    def _new_transaction(self, client: Client, request: dict[str, Any], **fields: Any) -> TransactionRecord:
        now = self.clock()
        record = TransactionRecord(
            id="tx-" + secrets.token_hex(12), kind=request["kind"], client_id=client.client_id, state="requested",
            created=now, updated=now, expires_at=now + self.settings.login_timeout_seconds, request=request, **fields)
        self.store.create_transaction(record)
        return record

    # -- step 2: PAR --------------------------------------------------------------------------------

    def push_authorization_request(self, client: Client, params: Mapping[str, str]) -> dict[str, Any]:
        """RFC 9126 PAR (step 2): validate and store the request; ``{"request_uri", "expires_in",
        "transaction_id"}`` (the last one for :meth:`transaction_status`)."""
        if "request_uri" in params:
            raise InvalidRequest("request_uri is not allowed in a pushed authorization request", step=step(2))
        request = self._parse(client, params, refused="par.refused")
        handle = secrets.token_urlsafe(32)
        record = self._new_transaction(client, request, par_hash=secret_hash(handle))
        self.store.update_transaction(record.id, code_expires=record.created + self.settings.par_lifetime_seconds)
        self.audit.append("par.accepted", step=2, transaction_id=record.id, client_id=client.client_id,
                          kind=record.kind, qualifier=request["qualifier"], hash_alg=request.get("hash_alg"),
                          digests=[d["hash"] for d in request["documents"]], count=request["num_signatures"],
                          **_named_credential(request))
        # transaction_id (an extension member): the partner asks for it at oauth2/transaction-status.
        return {"request_uri": PAR_URN + handle, "expires_in": self.settings.par_lifetime_seconds,
                "transaction_id": record.id}

    # -- step 3: authorize → IdP --------------------------------------------------------------------

    def _pushed_request(self, client: Client, uri: str) -> TransactionRecord:
        """The transaction of a pushed ``request_uri``: single use, of this client, not expired."""
        now = self.clock()
        pushed = uri.startswith(PAR_URN)
        record = self.store.consume_par(secret_hash(uri.removeprefix(PAR_URN)), now) if pushed else None
        if record is None or record.client_id != client.client_id:
            self.audit.append("authorize.refused", step=3, client_id=client.client_id,
                              reason="unknown or already used request_uri")
            raise InvalidRequest("request_uri is unknown, expired or already used", step=step(3))
        if record.code_expires is not None and record.code_expires < now:
            self.lifecycle.fail(record, "the pushed authorization request expired before use")
            raise InvalidRequest("request_uri expired", step=step(3))
        return record

    def _direct_request(self, client: Client, params: Mapping[str, str]) -> TransactionRecord:
        """A direct authorization request (CSC v1 style, no PAR): validated here, no client auth."""
        request = self._parse(client, params, refused="authorize.refused")
        record = self._new_transaction(client, request)
        self.audit.append("authorize.accepted", step=2, transaction_id=record.id, client_id=client.client_id,
                          kind=record.kind, qualifier=request["qualifier"],
                          digests=[d["hash"] for d in request["documents"]], **_named_credential(request))
        return record

    def start_authorization(self, params: Mapping[str, str]) -> tuple[str, TransactionRecord, str]:
        """``oauth2/authorize``: resolve the (pushed) request, redirect to the IdP (step 3).

        :return: the IdP URL, the transaction, and the browser-binding value for the cookie.
        :raises SignLabError: before a redirect URI is trusted (shown as a page).
        :raises RedirectError: later errors, returned to the client.
        """
        client = self.clients.client(params.get("client_id"))
        uri = params.get("request_uri")
        record = self._pushed_request(client, uri) if uri else self._direct_request(client, params)
        request = record.request
        idp_state, nonce, verifier = secrets.token_urlsafe(24), secrets.token_urlsafe(24), secrets.token_urlsafe(48)
        browser = secrets.token_urlsafe(24)
        acr = REQUIRED_LOA[request["qualifier"]]
        try:
            url = self.identity.authentication_request(state=idp_state, nonce=nonce, code_verifier=verifier, acr=acr,
                                                       login_hint=request.get("login_hint"),
                                                       binding_message=binding_message(request, client))
        except SignLabError as exc:
            self.lifecycle.fail(record, exc.error_description)
            raise RedirectError.to_client(request, "temporarily_unavailable",
                                          f"step 3: the eID provider cannot be reached: {exc.description}") from None
        self.store.update_transaction(record.id, idp_state=idp_state, idp_nonce=nonce, idp_verifier=verifier,
                                      browser_hash=secret_hash(browser), code_expires=None)
        self.audit.append("idp.redirect", step=3, transaction_id=record.id, acr_values=acr,
                          login_hint_given=bool(request.get("login_hint")))
        return url, record, browser

    # -- step 5: IdP callback, consent --------------------------------------------------------------

    def _browser_check(self, record: TransactionRecord, browser: str | None) -> None:
        if not browser or not record.browser_hash or not hmac.compare_digest(secret_hash(browser), record.browser_hash):
            self.audit.append("browser.refused", step=5, transaction_id=record.id,
                              reason="the browser is not the one that started the transaction")
            raise AccessDenied("this browser did not start the signing transaction (missing or wrong cookie)",
                               step=step(5))

    def _callback_transaction(self, params: Mapping[str, str], browser: str | None) -> TransactionRecord:
        """The transaction the IdP's ``state`` names, for this browser, waiting for it (single use)."""
        record = self.store.transaction_by("idp_state", params.get("state") or "\0")
        if record is None:
            self.audit.append("idp.callback_refused", step=5, reason="unknown state")
            raise InvalidRequest("unknown or reused state from the eID provider", step=step(5))
        self._browser_check(record, browser)
        if record.state != "requested":
            raise InvalidRequest(f"the transaction is already {record.state}", step=step(5))
        self.store.update_transaction(record.id, idp_state=None)  # single use
        return record

    def _refuse_authentication(self, record: TransactionRecord, error: str, reason: str,
                               **audit: Any) -> RedirectError:
        """End the transaction (audited); the error for the client."""
        self.lifecycle.fail(record, reason)
        self.audit.append("authentication.refused", step=5, transaction_id=record.id, **audit, reason=reason)
        return RedirectError.to_client(record.request, error, reason)

    def _verified_identity(self, record: TransactionRecord, params: Mapping[str, str]) -> tuple[str, VerifiedIdentity]:
        """The IdP's answer: its ID token, verified completely, good enough for the qualifier."""
        request = record.request
        if params.get("error"):
            reason = f"the eID provider answered {params['error']}: {params.get('error_description', '')}".strip()
            error = "access_denied" if params["error"] != "temporarily_unavailable" else params["error"]
            self.lifecycle.fail(record, reason)
            self.audit.append("authentication.refused", step=5, transaction_id=record.id, reason=reason)
            raise RedirectError.to_client(request, error, f"step 4 (Signer → IPSP): {reason}")
        try:
            id_token = self.identity.exchange_code(params.get("code") or "", record.idp_verifier or "")
            identity = self.identity.verify(id_token, nonce=record.idp_nonce or "",
                                            min_loa=REQUIRED_LOA[request["qualifier"]])
            if request["qualifier"] == "eu_eidas_qes" and not identity.qes_approved:
                raise AccessDenied(f"the eID means {identity.eid_name!r} is not approved for QES", step=step(5))
        except (IdentityEvidenceError, AccessDenied) as exc:
            raise self._refuse_authentication(record, "access_denied", exc.error_description,
                                              check=getattr(exc, "check", None)) from None
        except UpstreamError as exc:
            # The IdP refused (the code, the client): access denied; the IdP failing (5xx: its
            # token, discovery or JWKS endpoint) is an outage, named as such.
            error = "temporarily_unavailable" if exc.upstream_status >= 500 else "access_denied"
            raise self._refuse_authentication(record, error, exc.error_description) from None
        except SignLabError as exc:  # UpstreamUnavailable (no answer, a timeout): temporarily_unavailable
            raise self._refuse_authentication(record, exc.error, exc.error_description) from None
        return id_token, identity

    def idp_callback(self, params: Mapping[str, str], browser: str | None) -> TransactionRecord:
        """Handle the IdP's redirect (step 5): code exchange and complete ID-token verification.

        :raises RedirectError: the IdP reported an error or the identity is not good enough; the
            original reason is kept in ``error_description``.
        """
        record = self._callback_transaction(params, browser)
        id_token, identity = self._verified_identity(record, params)
        subject = pseudonymise(self.pseudonym_key, f"{identity.issuer}|{identity.subject}")
        if record.kind == "credential":
            credential = self.store.credential(record.request["credential_id"])
            if credential is None or credential.subject != subject:
                self.lifecycle.fail(record, "the authenticated person is not the credential's owner")
                raise RedirectError.to_client(record.request, "access_denied",
                                              "step 5: the authenticated person does not own this credential")
        shown = {
            "name": " ".join(p for p in (identity.given_name, identity.family_name) if p) or "(no name released)",
            "loa": identity.loa, "acr": identity.acr, "eid_id": identity.eid_id, "eid_name": identity.eid_name,
            "qes_approved": identity.qes_approved, "issuer": identity.issuer,
        }
        record = self.store.advance(record.id, ["requested"], "authenticated", subject=subject, identity=shown)
        self.evidence.keep(record.id, id_token)  # memory only, until step 7 (services.signer.evidence)
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
        # The portal's review page shows the same labels and the same fingerprints (shared.digests).
        documents = [{"label": d["label"] or f"document {i + 1}",
                      "fingerprint": digest_fingerprint(base64.b64decode(d["hash"]), request.get("hash_alg", "sha256"))}
                     for i, d in enumerate(request["documents"])]
        return ConsentView(
            transaction_id=record.id, csrf_token=token, partner=self.clients.client(record.client_id).name,
            qualifier=request["qualifier"], qualified=request["qualifier"] == "eu_eidas_qes",
            loa=record.identity.get("loa", ""), signer_name=record.identity.get("name", ""),
            eid_name=record.identity.get("eid_name", ""), kind=record.kind, documents=documents,
            num_signatures=int(request["num_signatures"]), scal=request.get("scal"),
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
            raise RedirectError.to_client(request, "access_denied", "step 5: the signer declined to sign")
        code = secrets.token_urlsafe(32)
        self.store.advance(record.id, ["authenticated"], "consented", csrf_hash=None, code_hash=secret_hash(code),
                           code_expires=self.clock() + self.settings.code_lifetime_seconds)
        self.audit.append("consent.given", step=5, transaction_id=record.id, subject=record.subject,
                          qualifier=request["qualifier"], digests=[d["hash"] for d in request["documents"]],
                          count=request["num_signatures"], **({"scal": request["scal"]} if "scal" in request else {}),
                          **_named_credential(request))
        params = {"code": code}
        if request.get("state") is not None:
            params["state"] = request["state"]
        uri = request["redirect_uri"]
        return f"{uri}{'&' if '?' in uri else '?'}{urlencode(params)}"

    # -- step 5: token endpoint, revocation ---------------------------------------------------------

    def _redeem_code(self, client: Client, params: Mapping[str, str]) -> TransactionRecord:
        """The consented transaction of an authorization code: single use (a replay revokes its
        tokens), this client's, unexpired, the same redirect URI (required when the authorization
        request named one), PKCE verified."""
        if params.get("grant_type") != "authorization_code":
            raise InvalidRequest("grant_type must be authorization_code", error="unsupported_grant_type", step=step(5))
        record, first_use = self.store.consume_code(secret_hash(params.get("code") or ""))
        if record is None:
            self.audit.append("token.refused", step=5, client_id=client.client_id, reason="unknown code")
            raise InvalidGrant("unknown authorization code", step=step(5))
        if not first_use:
            revoked = self.store.revoke_transaction_tokens(record.id)
            self.audit.append("token.refused", step=5, transaction_id=record.id, reason="authorization code replayed",
                              tokens_revoked=revoked)
            raise InvalidGrant("the authorization code was already used (replay); its tokens are revoked",
                               step=step(5))
        stored = record.request
        verifier = params.get("code_verifier") or ""
        checks = [
            (record.client_id == client.client_id, "the code was issued to another client"),
            ((record.code_expires or 0) >= self.clock(), "the authorization code expired"),
            (params.get("redirect_uri") is not None or not stored.get("redirect_uri_given", True),
             "redirect_uri is required: the authorization request had one (RFC 6749 §4.1.3)"),
            (params.get("redirect_uri", stored["redirect_uri"]) == stored["redirect_uri"],
             "redirect_uri differs from the authorization request"),
            (bool(verifier) and hmac.compare_digest(create_s256_code_challenge(verifier), stored["code_challenge"]),
             "PKCE verification failed (code_verifier does not match code_challenge)"),
            (record.state == "consented", f"the transaction is {record.state}"),
        ]
        for ok, reason in checks:
            if not ok:
                self.audit.append("token.refused", step=5, transaction_id=record.id, reason=reason)
                raise InvalidGrant(reason, step=step(5))
        return record

    def exchange_code(self, client: Client, params: Mapping[str, str]) -> dict[str, Any]:
        """``oauth2/token`` with ``authorization_code`` + PKCE; the response body.

        For person signing the access token IS the SAD (bound to the digests, single use, ≤ 5 min).
        For ``scope=service`` the one-time credential is made here (steps 6-7).
        """
        record = self._redeem_code(client, params)
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
            self.store.add_token(TokenRecord(secret_hash(token), record.kind, client.client_id, record.id,
                                             request.get("credential_id"), record.subject, request["hash_alg"],
                                             digests, len(digests), now + self.settings.sad_lifetime_seconds, None, 0,
                                             request.get("authorization_details")))
            body.update(expires_in=self.settings.sad_lifetime_seconds)
            if request.get("authorization_details"):
                body["authorization_details"] = request["authorization_details"]
            else:
                body["scope"] = "credential"
            if request.get("credential_id"):
                body["credentialID"] = request["credential_id"]
        self.audit.append("token.issued", step=5, transaction_id=record.id, kind=record.kind,
                          expires_in=body["expires_in"], digests=digests, **_named_credential(request))
        return body

    def transaction_status(self, client: Client, transaction_id: str | None, *,
                           answer_lost: bool = False) -> dict[str, Any]:
        """Where a transaction of ``client`` is: ``{"transaction_id", "state", "ended", "error"}``
        (``error``: why it failed or expired). A partner learns this way, without waiting for the
        browser, that the service ended it (a restart, an expiry, a refusal).

        :param answer_lost: the partner reports that the answer of the completed transaction never
            reached it (it broke off): the audit records ``transaction.answer_lost`` and the
            certificate of that undelivered signature is revoked, so no copy of it stays valid.
        :raises NotFound: no such transaction of this client (another client's is not found either).
        """
        record = self.store.transaction(transaction_id) if transaction_id else None
        if record is None or record.client_id != client.client_id:
            raise NotFound(f"no transaction {str(transaction_id)[:40]!r} of client {client.client_id!r}")
        answer: dict[str, Any] = {"transaction_id": record.id, "state": record.state,
                                  "ended": record.state in FINAL_STATES, "error": record.error}
        if not answer_lost:
            return answer
        revocation = record.certificate_revocation
        if record.state == "completed" and revocation is None:  # reported once; a repeat changes nothing
            self.audit.append("transaction.answer_lost", step=10, transaction_id=record.id, client_id=client.client_id,
                              reason="the partner reports that the signed answer never reached it")
            self.store.update_transaction(record.id, certificate_revocation=PENDING)
            revocation = self.lifecycle.orphans.revoke(
                record.id, "step 10: the signed answer never reached the partner (it broke off)")
        answer["certificate_revocation"] = revocation
        return answer

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
