"""The SSASP's calls to the other roles: the IPSP (OIDC, steps 3 and 5) and the TSP (steps 7 and 10).

* :class:`IdentityGateway` — the signer as OpenID Connect client (authlib ``OAuth2Session``):
  builds the authentication request (``acr_values`` from the qualifier, ``nonce``, PKCE S256,
  ``prompt=login``, ``login_hint`` passed through unchanged), exchanges the code with
  ``client_secret_basic`` and verifies the ID token completely with
  :func:`shared.identity.verify_id_token` against the IdP's JWKS.
* :class:`CertificateGateway` — certificate issuance and the revocation of orphans with an RFC 7523
  client assertion, the TSA proxy, and best-effort validation data (CRL, OCSP) for the signDoc
  response.

Both are thin: protocol checks live in the shared modules and the typed clients.
"""

from __future__ import annotations

import base64
import logging
import threading
from typing import Any

import requests
from asn1crypto import ocsp, x509
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.requests_client import OAuth2Session
from joserfc.jwk import ECKey

from services.signer.settings import SignerSettings
from shared.client_assertion import create_client_assertion
from shared.clients.ca import CaClient, IssuedCertificate
from shared.clients.idp import IdpClient
from shared.errors import UpstreamError, UpstreamUnavailable
from shared.flow import Role, step
from shared.identity import IdentityEvidenceError, VerifiedIdentity

__all__ = ["CertificateGateway", "IdentityGateway"]

log = logging.getLogger(__name__)


class IdentityGateway:
    """OIDC relying party towards the IPSP.

    :param settings: the signer's settings (IdP URL, client id and secret, leeway, timeout).
    :param callback_url: the signer's registered redirect URI at the IdP.
    """

    def __init__(self, settings: SignerSettings, callback_url: str) -> None:
        self.settings = settings
        self.callback_url = callback_url
        self.client = IdpClient(settings.idp_url, timeout=settings.http_timeout_seconds)
        self._local = threading.local()

    def _metadata(self) -> Any:
        return self.client.discovery()

    def _session(self) -> OAuth2Session:
        """This thread's OAuth2 session with the IdP, kept between calls.

        A session per call cost a new TCP connection to the token endpoint and authlib's session
        set-up every time (6-10 % of the signer's CPU in a flow). One per thread keeps the
        keep-alive connection and never shares a session between concurrent requests; nothing
        of one exchange is carried into the next (the token is dropped after each exchange).
        """
        session: OAuth2Session | None = getattr(self._local, "session", None)
        if session is None:
            session = OAuth2Session(
                client_id=self.settings.idp_client_id,
                client_secret=self.settings.idp_client_secret.get_secret_value(),
                redirect_uri=self.callback_url,
                scope=self.settings.idp_scope,
                code_challenge_method="S256",
                token_endpoint_auth_method="client_secret_basic",  # noqa: S106 - a method name, not a secret
            )
            # The IdP is a configured URL: no proxy or .netrc lookup from the environment
            # (requests does both on every request otherwise), as in shared.http_client.
            session.trust_env = False
            self._local.session = session
        return session

    def authentication_request(self, *, state: str, nonce: str, code_verifier: str, acr: str,
                               login_hint: str | None, binding_message: str | None = None) -> str:
        """The URL of the OIDC authentication request (step 3).

        :param binding_message: what the signer is asked to do, shown by the eID provider at login
            (step 4), e.g. "Sign 3 documents (QES) for SignLab Demo Partner".
        """
        extra: dict[str, str] = {"nonce": nonce, "acr_values": acr, "prompt": "login"}
        if binding_message:
            extra["binding_message"] = binding_message
        if login_hint:
            extra["login_hint"] = login_hint
        url, _ = self._session().create_authorization_url(
            self._metadata().authorization_endpoint, state=state, code_verifier=code_verifier, **extra)
        return str(url)

    def exchange_code(self, code: str, code_verifier: str) -> str:
        """Exchange the IdP's code for the ID token (step 5); the token is returned unverified.

        :raises UpstreamError: the IdP refused (its error and description are kept).
        :raises UpstreamUnavailable: the IdP did not answer in time, or failed (5xx).
        """
        endpoint = self._metadata().token_endpoint
        session = self._session()
        try:
            token = session.fetch_token(endpoint, code=code, code_verifier=code_verifier,
                                        timeout=self.settings.http_timeout_seconds)
        except AuthlibBaseError as exc:
            raise UpstreamError(Role.IPSP, exc.error or "invalid_grant", exc.description or "",
                                400, step=step(5), error="access_denied", status=403) from None
        except requests.RequestException as exc:
            # A broken connection must not be reused by this thread's next exchange.
            self._local.session = None
            session.close()
            answered = getattr(exc.response, "status_code", None)  # authlib raises the HTTPError of a 5xx
            detail = f"answered {answered}" if answered else exc.__class__.__name__
            raise UpstreamUnavailable(Role.IPSP, f"token endpoint {detail}", step=step(5)) from None
        finally:
            session.token_auth.token = None  # keep no person's tokens in the long-lived session
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise UpstreamError(Role.IPSP, "invalid_response", "the token response has no id_token", 200,
                                step=step(5), error="access_denied", status=403)
        return id_token

    def verify(self, id_token: str, *, nonce: str, min_loa: str) -> VerifiedIdentity:
        """Verify the ID token completely (step 5): signature (JWKS, refetched once on an unknown
        ``kid``), ``iss`` = the configured IdP, ``aud``, ``exp``/``iat``/``auth_time`` with the
        configured leeway, ``nonce``, ``acr`` ≥ ``min_loa``.
        """
        issuer = self._metadata().issuer
        if issuer.rstrip("/") != self.settings.idp_url.rstrip("/"):
            raise IdentityEvidenceError("iss", f"the IdP at {self.settings.idp_url} calls itself {issuer!r}",
                                        step=step(5))
        return self.client.verify_id_token(
            id_token, audience=self.settings.idp_client_id, nonce=nonce, leeway=self.settings.clock_leeway_seconds,
            max_age=self.settings.login_timeout_seconds, min_loa=min_loa,
        )


class CertificateGateway:
    """Client of the TSP for the SSASP.

    :param settings: the signer's settings (CA URL, client id, timeout).
    :param assertion_key: the key that signs RFC 7523 client assertions (JWKS at
        ``/.well-known/jwks.json``).
    """

    def __init__(self, settings: SignerSettings, assertion_key: ECKey) -> None:
        self.settings = settings
        self.assertion_key = assertion_key
        self.client = CaClient(settings.ca_url, timeout=settings.http_timeout_seconds)

    def issue(self, *, csr_der: bytes, profile: str, id_token: str, transaction_id: str) -> IssuedCertificate:
        """Ask the TSP for a short-term certificate (step 7) with identity evidence and a client assertion."""
        assertion = create_client_assertion(self.assertion_key, client_id=self.settings.ca_client_id,
                                            audience=self.client.issuance_url)
        return self.client.issue_certificate(csr_der=csr_der, profile=profile, id_token=id_token,
                                             client_assertion=assertion, transaction_id=transaction_id)

    def revoke_for_transaction(self, transaction_id: str, *, note: str) -> list[str]:
        """Ask the TSP to revoke every certificate it issued to this service for ``transaction_id``
        (``cessationOfOperation``, with a client assertion); the serials revoked.

        :raises UpstreamError: the TSP refused; 404 ``not_found`` when it issued nothing for it.
        :raises UpstreamUnavailable: the TSP did not answer.
        """
        assertion = create_client_assertion(self.assertion_key, client_id=self.settings.ca_client_id,
                                            audience=self.client.revocation_url)
        revoked = self.client.revoke_issued(client_assertion=assertion, transaction_id=transaction_id, note=note)
        return [status.serial for status in revoked]

    def timestamp(self, query_der: bytes) -> bytes:
        """Forward an RFC 3161 TimeStampReq to the TSA; the DER TimeStampResp."""
        return bytes(self.client.timestamp(query_der))

    def validation_info(self, certificate: x509.Certificate, issuer: x509.Certificate, *,
                        required: bool = False) -> dict[str, list[str]]:
        """The CRLs of the issuing and the root CA and an OCSP response for ``certificate``
        (standard base64): what validates the signer's certificate, the issuing CA's and the TSA's
        (both issued by the root).

        :param required: the data goes into a B-LT signature: a failure is raised (nothing is
            downgraded). Otherwise it is a convenience for the client's own packaging and a failure
            must not lose a signature that already exists: it is logged and the list stays short.
        :raises UpstreamError: (``required``) the TSP refused one of them.
        :raises UpstreamUnavailable: (``required``) the TSP did not answer.
        """
        info: dict[str, list[str]] = {"crl": [], "ocsp": []}
        request = ocsp.OCSPRequest({"tbs_request": {"request_list": [{"req_cert": {
            "hash_algorithm": {"algorithm": "sha256"},
            "issuer_name_hash": certificate.issuer.sha256,
            "issuer_key_hash": issuer.public_key.sha256,
            "serial_number": certificate.serial_number,
        }}]}})
        fetches = (("crl", "a CRL", lambda: self.client.crl("issuing")), ("crl", "a CRL", lambda: self.client.crl("root")),
                   ("ocsp", "an OCSP response", lambda: self.client.ocsp(request.dump())))
        for kind, what, fetch in fetches:
            try:
                info[kind].append(base64.b64encode(fetch()).decode("ascii"))
            except (UpstreamError, UpstreamUnavailable) as exc:
                if required:
                    raise
                log.warning("step 10: no %s for validationInfo: %s", what, exc)
        return info
