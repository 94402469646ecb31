"""authlib grants of the IdP (no Flask): client model, code grant with OpenID Connect, PKCE S256
only. The Flask authorization server that runs them is :mod:`services.idp.authorization_server`.

* :class:`OidcClient` — a registered client as authlib sees it (code flow, exact redirect URIs).
* :class:`IdpCodeGrant` — ``redirect_uri`` required and compared exactly; codes single-use
  (consumed atomically), bound to client, redirect URI, nonce, PKCE challenge and the login.
* :class:`S256CodeChallenge` — PKCE required for every client, ``S256`` only; a missing, malformed
  or wrong ``code_verifier`` is ``invalid_grant``.
* :class:`IdpOpenIDCode` — nonce required (setting), ID token minted by
  :meth:`services.idp.provider.IdpCore.issue_id_token` (ES256, joserfc).
"""

from __future__ import annotations

import hmac
import time
from typing import Any
from urllib.parse import urlencode

from authlib.oauth2.rfc6749 import (
    AuthorizationCodeMixin,
    ClientMixin,
    InvalidGrantError,
    InvalidRequestError,
    OAuth2Request,
    list_to_scope,
    scope_to_list,
)
from authlib.oauth2.rfc6749.grants import AuthorizationCodeGrant
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7636.challenge import CODE_VERIFIER_PATTERN, create_s256_code_challenge
from authlib.oidc.core.grants import OpenIDCode

from services.idp.authn import LoginOutcome
from services.idp.provider import SUPPORTED_SCOPES, IdpCore, RegisteredClient, mask
from shared.clock import seconds

__all__ = ["AuthCode", "IdpCodeGrant", "IdpOpenIDCode", "OidcClient", "S256CodeChallenge", "stored_request"]


class OidcClient(ClientMixin):
    """authlib's view of a :class:`RegisteredClient`."""

    def __init__(self, registered: RegisteredClient) -> None:
        self.registered = registered
        self.client_id = registered.client_id

    def get_client_id(self) -> str:
        """The client id."""
        return self.registered.client_id

    def get_default_redirect_uri(self) -> None:
        """None: OpenID Connect requires an explicit ``redirect_uri``."""
        return None

    def get_allowed_scope(self, scope: str | None) -> str:
        """The requested scopes this IdP knows (others are dropped, as RFC 6749 §3.3 allows)."""
        return list_to_scope([s for s in scope_to_list(scope or "") or [] if s in SUPPORTED_SCOPES])

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        """Exact string comparison with a registered URI."""
        return redirect_uri in self.registered.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        """Constant-time secret check."""
        return self.registered.secret_matches(client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        """client_secret_basic or client_secret_post at the token endpoint."""
        return endpoint != "token" or method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        """Only the code flow."""
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        """Only authorization_code."""
        return grant_type == "authorization_code"

    @property
    def client_metadata(self) -> dict[str, Any]:
        """Metadata authlib's end-session endpoint reads."""
        return {"post_logout_redirect_uris": list(self.registered.post_logout_redirect_uris)}


class AuthCode(AuthorizationCodeMixin):
    """A redeemed code, as authlib's token grant sees it."""

    def __init__(self, code: str, data: dict[str, Any]) -> None:
        self.code = code
        self.data = data
        self.outcome = LoginOutcome.from_dict(data["outcome"])
        self.code_challenge = data.get("code_challenge")
        self.code_challenge_method = data.get("code_challenge_method")

    def get_redirect_uri(self) -> str:
        """The redirect URI of the authorization request."""
        return str(self.data["redirect_uri"])

    def get_scope(self) -> str:
        """The granted scope."""
        return str(self.data["scope"])

    def get_nonce(self) -> str | None:
        """The request's nonce."""
        return self.data.get("nonce")

    def get_auth_time(self) -> int:
        """When the person authenticated."""
        return self.outcome.auth.auth_time

    def get_acr(self) -> str:
        """The level the eID means gave."""
        return self.outcome.auth.acr

    def get_amr(self) -> list[str]:
        """The authentication methods."""
        return list(self.outcome.auth.amr)


class _StoredPayload(BasicOAuth2Payload):
    pass


class _StoredRequest(OAuth2Request):
    """An authorization request kept while the person logs in (the login pages are other URLs)."""

    def __init__(self, uri: str, params: dict[str, str]) -> None:
        super().__init__("GET", uri)
        self.payload = _StoredPayload(params)
        self._params = params

    @property
    def args(self) -> dict[str, str]:
        """The query parameters of the original request."""
        return self._params

    @property
    def form(self) -> dict[str, str]:
        """No form: the authorization request was a GET."""
        return {}


def stored_request(issuer: str, params: dict[str, str]) -> OAuth2Request:
    """Rebuild the authorization request ``params`` for authlib."""
    return _StoredRequest(f"{issuer}/authorize?{urlencode(params)}", params)


class S256CodeChallenge(CodeChallenge):
    """PKCE for every client, S256 only; verifier problems are ``invalid_grant`` (RFC 7636 §4.6)."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

    def validate_code_challenge(self, grant: AuthorizationCodeGrant, redirect_uri: str) -> None:
        """Require ``code_challenge`` and ``code_challenge_method=S256`` in the authorization request."""
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("step 3: PKCE is required: send code_challenge with code_challenge_method=S256")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("step 3: code_challenge_method must be S256 (plain and a missing method are refused)")
        super().validate_code_challenge(grant, redirect_uri)

    def validate_code_verifier(self, grant: AuthorizationCodeGrant, result: Any) -> None:
        """Check ``code_verifier`` against the code's challenge."""
        verifier = grant.request.form.get("code_verifier")
        challenge = grant.request.authorization_code.code_challenge
        if not verifier:
            raise InvalidGrantError("step 5: PKCE code_verifier is missing")
        if not CODE_VERIFIER_PATTERN.match(verifier):
            raise InvalidGrantError("step 5: PKCE code_verifier is malformed (43-128 characters of A-Z a-z 0-9 - . _ ~)")
        if not challenge or not hmac.compare_digest(create_s256_code_challenge(verifier), challenge):
            raise InvalidGrantError("step 5: PKCE code_verifier does not match the code_challenge")


class IdpCodeGrant(AuthorizationCodeGrant):
    """The authorization code grant backed by the provider's store."""

    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]
    provider: IdpCore  # set on a subclass by services.idp.authorization_server.build_server

    @staticmethod
    def validate_authorization_redirect_uri(request: OAuth2Request, client: ClientMixin) -> str:
        """``redirect_uri`` is required (OIDC Core §3.1.2.1) and must match exactly."""
        if not request.payload.redirect_uri:
            raise InvalidRequestError("step 3: redirect_uri is required", state=request.payload.state)
        return AuthorizationCodeGrant.validate_authorization_redirect_uri(request, client)

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        """Store the code with everything the token request must match."""
        outcome: LoginOutcome = request.user
        data = request.payload.data
        client_id = request.client.get_client_id()
        self.provider.store.put_code(code, client_id, self.provider.clock.time() + self.provider.settings.code_lifetime_seconds, {
            "redirect_uri": request.payload.redirect_uri, "scope": request.scope, "nonce": data.get("nonce"),
            "code_challenge": data.get("code_challenge"), "code_challenge_method": data.get("code_challenge_method"),
            "outcome": outcome.as_dict(),
        })
        self.provider.record("code", {"client_id": client_id, "code": mask(code), "txn": outcome.auth.txn,
                                      "person": outcome.auth.person_id, "means": outcome.auth.means_id,
                                      "acr": outcome.auth.acr, "failures": [str(f) for f in outcome.failures]})

    def query_authorization_code(self, code: str, client: ClientMixin) -> AuthCode | None:
        """Consume the code (single use) and apply the ``token``-stage failures."""
        stored = self.provider.store.take_code(code)
        if stored is None or stored.client_id != client.get_client_id():
            return None
        late = self.provider.clock.time() - stored.expires
        if late > 0:
            raise InvalidGrantError(f"step 5: the authorization code expired {seconds(late)} s ago")
        found = AuthCode(code, stored.data)
        for failure in found.outcome.failures:
            if failure.name == "slow":
                time.sleep(failure.amount(self.provider.settings.max_injected_delay_seconds))
            elif failure.name == "code-rejected":
                raise InvalidGrantError("step 5: the authorization code is invalid or expired (injected failure 'code-rejected')")
        return found

    def delete_authorization_code(self, authorization_code: AuthCode) -> None:
        """Nothing to do: :meth:`query_authorization_code` already consumed it."""

    def authenticate_user(self, authorization_code: AuthCode) -> LoginOutcome:
        """The login the code stands for."""
        return authorization_code.outcome


class IdpOpenIDCode(OpenIDCode):
    """OpenID Connect for the code grant; the provider mints the ID token."""

    provider: IdpCore  # set on a subclass by services.idp.authorization_server.build_server

    def exists_nonce(self, nonce: str, request: OAuth2Request) -> bool:
        """A nonce may not be reused while a code carrying it is outstanding."""
        return self.provider.store.nonce_in_use(request.payload.client_id, nonce)

    def encode_id_token(self, token: dict[str, Any], request: OAuth2Request) -> str:
        """The signed ID token for the redeemed code."""
        code: AuthCode = request.authorization_code
        return self.provider.issue_id_token(code.outcome, request.client.get_client_id(), nonce=code.get_nonce(),
                                            access_token=token.get("access_token")).token

    def generate_user_info(self, user: Any, scope: str) -> dict[str, Any]:
        """Unused: :meth:`encode_id_token` builds all claims."""
        return {}
