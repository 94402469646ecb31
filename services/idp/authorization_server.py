"""authlib's Flask authorization server for the IdP, with its grants (:mod:`services.idp.oauth2`)
and RP-initiated logout.

* :class:`IdpAuthorizationServer` — authlib's Flask ``AuthorizationServer``; protocol errors that
  cannot go back to a validated redirect URI become :class:`~shared.errors.SignLabError` (so the
  frame renders them as JSON or as an HTML page), redirectable ones are sent to the client.
* :class:`IdpEndSession` — logout: the ``id_token_hint`` verifies against the JWKS; the single
  sign-on session in the Flask session cookie ends.
* :func:`build_server` — the server for one app and provider.
"""

from __future__ import annotations

from typing import Any

from authlib.common.urls import add_params_to_uri
from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import OAuth2Error, OAuth2Request
from authlib.oidc.rpinitiated import EndSessionEndpoint
from flask import Flask, Response, request, session

from services.idp.errors import AuthorizationRefused
from services.idp.oauth2 import IdpCodeGrant, IdpOpenIDCode, OidcClient, S256CodeChallenge
from services.idp.provider import IdpCore, mask
from shared.errors import SignLabError
from shared.flow import step

__all__ = ["IdpAuthorizationServer", "IdpEndSession", "build_server"]


class IdpEndSession(EndSessionEndpoint):
    """RP-initiated logout: the ``id_token_hint`` must verify against our JWKS."""

    provider: IdpCore  # set by build_server on a subclass

    def get_server_jwks(self) -> Any:
        """The published keys."""
        return self.provider.keys.public_keyset()

    def get_algorithms(self) -> list[str]:
        """ES256 only."""
        return ["ES256"]

    def end_session(self, end_session_request: Any) -> None:
        """Forget the single sign-on session."""
        session.pop("sso", None)
        claims = end_session_request.id_token_claims or {}
        self.provider.record("logout", {"client_id": getattr(end_session_request.client, "client_id", None),
                                        "sub": claims.get("sub"), "redirect": end_session_request.redirect_uri})


class IdpAuthorizationServer(AuthorizationServer):
    """authlib's Flask server with SignLab error handling."""

    provider: IdpCore

    def create_oauth2_request(self, req: Any) -> OAuth2Request:
        """Use a stored request as is (login completion); otherwise the current Flask request."""
        if isinstance(req, OAuth2Request):
            return req
        return super().create_oauth2_request(req)

    def handle_error_response(self, req: Any, error: OAuth2Error) -> Response:
        """Redirect to the client when authlib validated its redirect URI; otherwise raise, so the
        frame renders ``{"error","error_description"}`` (or an HTML page for a browser)."""
        if error.redirect_uri:
            return super().handle_error_response(req, error)
        at_token = request.path.rstrip("/").endswith("/token")
        description = error.description or error.error or "invalid request"
        flow_step = step(5) if at_token else step(3)
        if description.startswith(f"step {flow_step.number}: "):
            description = description.split(": ", 1)[1]
        raise SignLabError(description, error=error.error, status=error.status_code or 400, step=flow_step)

    def redirect_refusal(self, req: OAuth2Request, redirect_uri: str, refusal: AuthorizationRefused) -> Response:
        """Send an authorization error (refused login, unmet LoA …) to the client's redirect URI."""
        params = [("error", refusal.error), ("error_description", refusal.error_description)]
        if req.payload.state:
            params.append(("state", req.payload.state))
        self.provider.record("authorization_error", {"client_id": req.payload.client_id, "error": refusal.error,
                                                     "error_description": refusal.error_description})
        return Response("", status=302, headers={"Location": add_params_to_uri(redirect_uri, params)})


def build_server(app: Flask, provider: IdpCore) -> IdpAuthorizationServer:
    """Create the authorization server for ``app`` with the grants, PKCE, OIDC and logout."""

    def query_client(client_id: str) -> OidcClient | None:
        registered = provider.client(client_id)
        return OidcClient(registered) if registered else None

    def save_token(token: dict[str, Any], req: OAuth2Request) -> None:
        provider.save_access_token(token, req.client.get_client_id(), req.user)
        provider.record("token", {"client_id": req.client.get_client_id(), "access_token": mask(token.get("access_token")),
                                  "expires_in": token.get("expires_in"), "scope": token.get("scope")})

    app.config["OAUTH2_TOKEN_EXPIRES_IN"] = {"authorization_code": provider.settings.access_token_lifetime_seconds}
    server = IdpAuthorizationServer(app, query_client=query_client, save_token=save_token)
    server.provider = provider
    grant = type("BoundIdpCodeGrant", (IdpCodeGrant,), {"provider": provider})
    oidc = type("BoundIdpOpenIDCode", (IdpOpenIDCode,), {"provider": provider})
    logout = type("BoundIdpEndSession", (IdpEndSession,), {"provider": provider})
    server.register_grant(grant, [S256CodeChallenge(required=True), oidc(require_nonce=provider.settings.require_nonce)])
    server.register_endpoint(logout)
    return server

