"""Typed client of the SSASP (CSC signing service) for partner portals and tests.

One method per endpoint; results are frozen dataclasses. Client authentication at the
authorization server is ``private_key_jwt`` (RFC 7523: a fresh client assertion signed by
``assertion_key`` for each call, ``aud`` = the server's issuer identifier from its RFC 8414
metadata) — the partner portal's method — or, for partners registered with a secret,
``client_secret_basic``. Binary values in results are raw bytes (the wire uses standard base64).

Typical person-signing use (design §2, steps 2, 5, 10)::

    signer = SignerClient(url, client_id="signlab-portal", assertion_key=portal_key)
    par = signer.push_authorization_request(redirect_uri=..., state=..., code_challenge=...,
                                            qualifier="eu_eidas_qes", documents=[(digest, "contract.pdf")])
    # the browser opens par.authorize_url … and comes back to redirect_uri with code and state
    token = signer.exchange_code(code, redirect_uri, code_verifier)
    result = signer.sign_doc(token.access_token, digests=[digest], signature_format="P")
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import requests
from joserfc.jwk import ECKey

from shared.client_assertion import CLIENT_ASSERTION_TYPE, create_client_assertion
from shared.flow import FlowStep, Role, step
from shared.http_client import ServiceClient

__all__ = [
    "HASH_OIDS",
    "CredentialInfo",
    "CredentialToken",
    "PushedAuthorization",
    "SignDocResult",
    "SignerClient",
    "TransactionStatus",
]

HASH_OIDS = {"sha256": "2.16.840.1.101.3.4.2.1", "sha384": "2.16.840.1.101.3.4.2.2", "sha512": "2.16.840.1.101.3.4.2.3"}
"""Hash algorithm OIDs by name."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclass(frozen=True)
class PushedAuthorization:
    """Answer of ``oauth2/par`` (step 2)."""

    request_uri: str
    expires_in: int
    authorize_url: str
    """The URL the signer's browser opens (``/oauth2/authorize?client_id=…&request_uri=…``)."""
    transaction_id: str | None = None
    """The signer's transaction of this request (for :meth:`SignerClient.transaction_status`)."""


@dataclass(frozen=True)
class TransactionStatus:
    """Answer of ``oauth2/transaction-status``: where the signer's transaction is."""

    transaction_id: str
    state: str
    ended: bool
    """``completed``, ``failed`` or ``expired``: nothing more will happen to it."""
    error: str | None
    """Why it failed or expired."""
    certificate_revocation: str | None = None
    """After a report of a lost answer: ``revoked``, or ``pending`` (retried by the signer)."""


@dataclass(frozen=True)
class CredentialToken:
    """Answer of ``oauth2/token``: for person signing the access token is the SAD (single use, ≤ 5 min)."""

    access_token: str
    expires_in: int
    authorization_details: list[dict[str, Any]] | None
    token_type: str = "Bearer"  # noqa: S105 - the OAuth 2.0 token type, not a secret
    scope: str | None = None
    credential_id: str | None = None
    """Set for ``scope=service`` (the certificate-first one-time credential) and credential scope."""


@dataclass(frozen=True)
class SignDocResult:
    """Answer of ``signatures/signDoc`` (step 10)."""

    signature_objects: list[bytes]
    """One per digest, in request order: DER CMS for ``P``/``C``; ASCII compact JWS for ``J``."""
    certificates: list[bytes]
    """DER, signer's certificate first, then the issuing CA and the root."""
    validation_info: dict[str, list[bytes]]
    """``certificates``, ``crl``, ``ocsp`` (DER)."""
    transaction_id: str
    qualifier: str
    loa: str | None
    certificate_serial: str


@dataclass(frozen=True)
class CredentialInfo:
    """Answer of ``credentials/info`` (certificate-first one-time credential)."""

    key_status: str
    key_algorithms: list[str]
    key_length: int
    certificates: list[bytes]
    scal: str
    multisign: int
    qualifier: str | None
    raw: dict[str, Any]


class SignerClient(ServiceClient):
    """Calls the SSASP.

    :param base_url: the signer's base URL (``SIGNLAB_PORTAL_SIGNER_URL``).
    :param client_id: the partner's client id at the signer.
    :param assertion_key: the key of its ``private_key_jwt`` client assertions (the portal's).
    :param client_secret: or its client secret (a partner registered with one); exactly one of the two.
    """

    role = Role.SSASP

    def __init__(self, base_url: str, *, client_id: str, assertion_key: ECKey | None = None,
                 client_secret: str | None = None, timeout: float = 30.0, session: requests.Session | None = None,
                 browser_url: str | None = None) -> None:
        if (assertion_key is None) == (client_secret is None):
            raise ValueError("give the client exactly one of assertion_key (private_key_jwt) and client_secret")
        super().__init__(base_url, timeout=timeout, session=session)
        self.client_id = client_id
        # Browsers may reach the signer under another name than the back channel (docker compose).
        self.browser_url = (browser_url or base_url).rstrip("/")
        self._assertion_key = assertion_key
        self._secret = client_secret
        self._issuer: str | None = None
        self._issuer_lock = threading.Lock()

    def issuer(self, at: FlowStep | None = None) -> str:
        """The authorization server's issuer identifier (RFC 8414 metadata, read once): the ``aud``
        of the client assertions (the back-channel URL may differ from it, e.g. in docker compose).

        :param at: the flow step of the call that needs it (named in errors).
        """
        with self._issuer_lock:
            if self._issuer is None:
                metadata = self.request_json("GET", "/.well-known/oauth-authorization-server", step=at)
                self._issuer = str(metadata["issuer"])
            return self._issuer

    def _authenticated(self, path: str, form: dict[str, str], *, at: FlowStep | None,
                       expected: tuple[int, ...] = (200,)) -> requests.Response:
        """POST ``form`` to an endpoint that authenticates the client (PAR, token, revocation)."""
        if self._assertion_key is None:
            return self.request("POST", path, step=at, data=form, auth=(self.client_id, self._secret or ""),
                                expected=expected)
        assertion = create_client_assertion(self._assertion_key, client_id=self.client_id, audience=self.issuer(at))
        return self.request("POST", path, step=at, expected=expected, data={
            **form, "client_id": self.client_id, "client_assertion_type": CLIENT_ASSERTION_TYPE,
            "client_assertion": assertion})

    # -- OAuth2 ------------------------------------------------------------------------------

    def push_authorization_request(
        self, *, redirect_uri: str, state: str, code_challenge: str, qualifier: str | None = None,
        documents: Sequence[tuple[bytes, str]] = (), hash_algorithm: str = "sha256", login_hint: str | None = None,
        scope: str | None = None, num_signatures: int | None = None, credential_id: str | None = None,
        extra: dict[str, str] | None = None,
    ) -> PushedAuthorization:
        """RFC 9126 PAR (step 2). With ``documents`` (digest, label): RAR ``credential`` for signDoc —
        or, with ``credential_id``, the person's approval of exactly these hashes (DTBS/R) for that
        certificate-first credential (SCAL 2; the token is the SAD for ``signHash``); with
        ``scope="service"``: the certificate-first service authorization (``num_signatures``).
        """
        form: dict[str, str] = {"response_type": "code", "client_id": self.client_id, "redirect_uri": redirect_uri,
                                "state": state, "code_challenge": code_challenge, "code_challenge_method": "S256"}
        if documents:
            detail: dict[str, Any] = {"type": "credential", "signatureQualifier": qualifier}
            if credential_id:
                detail = {"type": "credential", "credentialID": credential_id}
            form["authorization_details"] = json.dumps([{
                **detail, "documentDigests": [{"hash": _b64(d), "label": label} for d, label in documents],
                "hashAlgorithmOID": HASH_OIDS[hash_algorithm],
            }])
        if scope:
            form["scope"] = scope
        if scope == "service":
            if qualifier:
                form["signatureQualifier"] = qualifier
            form["numSignatures"] = str(num_signatures or 1)
        if login_hint:
            form["login_hint"] = login_hint
        form.update(extra or {})
        answer = self._authenticated("/oauth2/par", form, at=step(2), expected=(201,)).json()
        url = f"{self.browser_url}/oauth2/authorize?{urlencode({'client_id': self.client_id, 'request_uri': answer['request_uri']})}"
        return PushedAuthorization(answer["request_uri"], int(answer["expires_in"]), url, answer.get("transaction_id"))

    def exchange_code(self, code: str, redirect_uri: str, code_verifier: str) -> CredentialToken:
        """Token endpoint: authorization code + PKCE verifier (step 5)."""
        answer = self._authenticated("/oauth2/token", {
            "grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
            "code_verifier": code_verifier}, at=step(5)).json()
        return CredentialToken(answer["access_token"], int(answer["expires_in"]), answer.get("authorization_details"),
                               answer.get("token_type", "Bearer"), answer.get("scope"), answer.get("credentialID"))

    def revoke(self, token: str) -> None:
        """RFC 7009 revocation."""
        self._authenticated("/oauth2/revoke", {"token": token}, at=None)

    def transaction_status(self, transaction_id: str, *, answer_lost: bool = False) -> TransactionStatus:
        """Where the signer's transaction ``transaction_id`` (of this client) is.

        :param answer_lost: report that the signed answer of the (completed) transaction never
            arrived: the signer records it and revokes that signature's certificate.
        """
        answer = self._authenticated("/oauth2/transaction-status", {
            "transaction_id": transaction_id, "answer_lost": "true" if answer_lost else "false"}, at=None).json()
        return TransactionStatus(str(answer["transaction_id"]), str(answer["state"]), bool(answer["ended"]),
                                 answer.get("error"), answer.get("certificate_revocation"))

    # -- CSC v2 ------------------------------------------------------------------------------

    def info(self, version: int = 2) -> dict[str, Any]:
        """``info``."""
        return dict(self.request("POST", f"/csc/v{version}/info", json={}).json())

    def sign_doc(self, access_token: str, *, digests: Sequence[bytes], signature_format: str = "P",
                 hash_algorithm: str = "sha256", conformance_level: str = "AdES-B-B",
                 qualifier: str | None = None, formats: Sequence[str] | None = None,
                 return_validation_info: bool = False) -> SignDocResult:
        """``signatures/signDoc`` (steps 6-10). ``formats`` gives one format per digest (default: all the same).

        :param return_validation_info: CSC ``returnValidationInfo``: ask for the CRL and OCSP
            response of the one-time certificate too (B-LT/B-LTA need them); the chain always comes.
        """
        entries = []
        for index, digest in enumerate(digests):
            entries.append({"hashes": [_b64(digest)], "hashAlgorithmOID": HASH_OIDS[hash_algorithm],
                            "signature_format": formats[index] if formats else signature_format,
                            "conformance_level": conformance_level})
        body: dict[str, Any] = {"documentDigests": entries}
        if qualifier:
            body["signatureQualifier"] = qualifier
        if return_validation_info:
            body["returnValidationInfo"] = True
        answer = self.request_json("POST", "/csc/v2/signatures/signDoc", step=step(6), json=body,
                                   headers={"Authorization": f"Bearer {access_token}"})
        info = answer.get("validationInfo") or {}
        decoded = {k: [base64.b64decode(v) for v in info.get(k, [])] for k in ("certificates", "crl", "ocsp")}
        return SignDocResult(
            signature_objects=[base64.b64decode(o) for o in answer["SignatureObject"]],
            certificates=decoded["certificates"], validation_info=decoded,
            transaction_id=answer["transactionID"], qualifier=answer["signatureQualifier"], loa=answer.get("loa"),
            certificate_serial=answer["certificateSerial"],
        )

    def timestamp(self, access_token: str, digest: bytes, hash_algorithm: str = "sha256",
                  nonce: str | None = None) -> bytes:
        """``signatures/timestamp``: a DER TimeStampToken from the TSA, through the signer."""
        body: dict[str, Any] = {"hash": _b64(digest), "hashAlgorithmOID": HASH_OIDS[hash_algorithm]}
        if nonce:
            body["nonce"] = nonce
        answer = self.request("POST", "/csc/v2/signatures/timestamp", json=body,
                              headers={"Authorization": f"Bearer {access_token}"}).json()
        return base64.b64decode(answer["timestamp"])

    # -- CSC v1/v2 certificate-first -------------------------------------------------------------

    def credentials_list(self, access_token: str, version: int = 1) -> list[str]:
        """``credentials/list``: the one-time credential ids of the service token."""
        answer = self.request("POST", f"/csc/v{version}/credentials/list", json={},
                              headers={"Authorization": f"Bearer {access_token}"}).json()
        return list(answer["credentialIDs"])

    def credentials_info(self, access_token: str, credential_id: str, version: int = 1) -> CredentialInfo:
        """``credentials/info`` with the chain."""
        answer = self.request("POST", f"/csc/v{version}/credentials/info",
                              json={"credentialID": credential_id, "certificates": "chain", "certInfo": True},
                              headers={"Authorization": f"Bearer {access_token}"}).json()
        return CredentialInfo(answer["key"]["status"], list(answer["key"]["algo"]), int(answer["key"]["len"]),
                              [base64.b64decode(c) for c in answer["cert"]["certificates"]], str(answer["SCAL"]),
                              int(answer["multisign"]), answer.get("signatureQualifier"), answer)

    def credentials_authorize(self, access_token: str, credential_id: str, hashes: Sequence[bytes],
                              version: int = 1) -> tuple[str, int]:
        """``credentials/authorize`` (a SCAL 1 credential): a SAD for exactly ``hashes`` without the
        person; ``(SAD, expiresIn)``. A SCAL 2 credential's SAD comes from
        :meth:`push_authorization_request` with ``credential_id`` instead."""
        name = "hash" if version == 1 else "hashes"
        answer = self.request("POST", f"/csc/v{version}/credentials/authorize", step=step(2), json={
            "credentialID": credential_id, "numSignatures": len(hashes), name: [_b64(h) for h in hashes]},
            headers={"Authorization": f"Bearer {access_token}"}).json()
        return answer["SAD"], int(answer.get("expiresIn", 3600))

    def sign_hash(self, access_token: str, credential_id: str, sad: str, hashes: Sequence[bytes],
                  sign_algo: str, hash_algorithm: str = "sha256", version: int = 1) -> list[bytes]:
        """``signatures/signHash``: signatures in the order of ``hashes``."""
        names = ("hash", "hashAlgo") if version == 1 else ("hashes", "hashAlgorithmOID")
        answer = self.request("POST", f"/csc/v{version}/signatures/signHash", step=step(9), json={
            "credentialID": credential_id, "SAD": sad, names[0]: [_b64(h) for h in hashes],
            names[1]: HASH_OIDS[hash_algorithm], "signAlgo": sign_algo},
            headers={"Authorization": f"Bearer {access_token}"}).json()
        return [base64.b64decode(s) for s in answer["signatures"]]
