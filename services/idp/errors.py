"""Errors of the IPSP, each with its OAuth2/OIDC error code, HTTP status and flow step.

:class:`AuthorizationRefused` and its subclasses are answered the OIDC way: once the client and its
redirect URI are validated, the browser is sent back to the client with ``error``,
``error_description`` and ``state`` (the view does that through authlib). Their descriptions are
plain ASCII (RFC 6749 §4.1.2.1 allows no other characters in ``error_description``).
"""

from __future__ import annotations

from shared.errors import InvalidToken, NotFound, SignLabError
from shared.flow import FlowStep

__all__ = [
    "AdminApiDisabled",
    "AdminUnauthorized",
    "AuthorizationRefused",
    "InvalidAuthorizationRequest",
    "LoginRefused",
    "LoginRequired",
    "LoginRequestUnknown",
    "RequestObjectNotSupported",
    "TemporarilyUnavailable",
    "UnmetAuthenticationRequirements",
]


class AuthorizationRefused(SignLabError):
    """An authentication request ends with an error sent to the client's redirect URI."""

    error = "access_denied"
    status = 400
    default_description = "the authentication request was refused"

    @property
    def error_description(self) -> str:
        """ASCII-only: ``step 4 (Signer->IPSP): …``."""
        text = self.description
        if self.step is not None:
            text = f"step {self.step.number} ({self.step.source}->{self.step.target}): {text}"
        return text.encode("ascii", "replace").decode("ascii").replace('"', "'").replace("\\", "/")


class LoginRefused(AuthorizationRefused):
    """The person could not or did not authenticate (cancel, revoked, deceased …): ``access_denied``."""

    error = "access_denied"


class UnmetAuthenticationRequirements(AuthorizationRefused):
    """The requested level of assurance cannot be met by the person's (chosen) eID means.

    Error code from OpenID Connect Unmet Authentication Requirements 1.0.
    """

    error = "unmet_authentication_requirements"


class InvalidAuthorizationRequest(AuthorizationRefused):
    """A parameter of a validated client's request is wrong (login_hint, acr_values, max_age, PKCE)."""

    error = "invalid_request"


class RequestObjectNotSupported(AuthorizationRefused):
    """The request carries a request object (``request``) or a reference to one (``request_uri``),
    which this IdP does not support (OIDC Core §6.1, §6.2; the discovery document says so)."""

    def __init__(self, parameter: str, *, step: FlowStep | None = None) -> None:
        super().__init__(f"the '{parameter}' parameter (a request object) is not supported here; send the "
                         "authentication request's parameters as plain query parameters", step=step,
                         error="request_not_supported" if parameter == "request" else "request_uri_not_supported")


class TemporarilyUnavailable(AuthorizationRefused):
    """The IdP will not serve this request now (the ``unavailable`` failure)."""

    error = "temporarily_unavailable"


class LoginRequestUnknown(NotFound):
    """A login page was opened for a request that expired, finished or never existed."""

    default_description = ("this login request expired or was already completed; "
                           "go back to the service and start again")


class AdminApiDisabled(NotFound):
    """The admin API is off (``SIGNLAB_IDP_ADMIN_API_ENABLED`` is false)."""

    default_description = "the IdP admin API is disabled; set SIGNLAB_IDP_ADMIN_API_ENABLED=true to use it"


class AdminUnauthorized(InvalidToken):
    """The admin bearer token is missing or wrong."""

    default_description = "the admin API needs 'Authorization: Bearer <SIGNLAB_IDP_ADMIN_TOKEN>'"




class LoginRequired(AuthorizationRefused):
    """``prompt=none`` but the person has no usable session at the IdP (OIDC Core §3.1.2.6)."""

    error = "login_required"
