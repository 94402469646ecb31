"""Errors of the SSASP, with their CSC / OAuth2 error codes and HTTP statuses.

CSC v1.0.4.0 §10.1: bad, missing or expired parameters (including an expired SAD) are
``400 invalid_request``; a bad or expired bearer token is ``401 invalid_token``; the authorization
server uses ``invalid_client`` (401), ``invalid_grant`` (400), ``access_denied``, ``invalid_scope``.
"""

from __future__ import annotations

from shared.errors import AccessDenied, InvalidGrant, InvalidRequest, InvalidToken, SignLabError

__all__ = [
    "DigestNotAuthorized",
    "InvalidScope",
    "SadExpired",
    "SadInvalid",
    "SigningFailed",
    "TooManySignatures",
    "UnsupportedAlgorithm",
    "WholeDocumentRefused",
]


class InvalidScope(SignLabError):
    """The requested scope or authorization details are not allowed for this client."""

    error = "invalid_scope"
    status = 400
    default_description = "the requested scope is not allowed"


class SadInvalid(InvalidRequest):
    """The SAD (or credential token) is unknown, revoked, for another credential, or already used."""

    default_description = "invalid SAD"


class SadExpired(InvalidRequest):
    """The SAD has expired (CSC: ``400 invalid_request "SAD expired"``)."""

    default_description = "SAD expired"


class DigestNotAuthorized(InvalidRequest):
    """A digest in the request is not one of the digests the SAD authorizes."""

    default_description = "Hash is not authorized by the SAD"


class TooManySignatures(InvalidRequest):
    """More signatures requested than the SAD or credential authorizes."""

    default_description = "more signatures requested than authorized"


class UnsupportedAlgorithm(InvalidRequest):
    """The hash or signature algorithm is not supported (or not one of the credential's ``key.algo``)."""

    default_description = "unsupported algorithm"


class WholeDocumentRefused(InvalidRequest):
    """The request carries whole documents; this service accepts digests only (privacy)."""

    default_description = (
        "whole documents are refused: this signing service accepts document digests only (documentDigests)"
    )


class SigningFailed(SignLabError):
    """Signing failed inside the service (HSM, CMS assembly); no signature was returned."""

    error = "server_error"
    status = 500
    default_description = "signing failed; no signature was produced"


# Re-exported for views that only need the shared classes.
_ = (AccessDenied, InvalidGrant, InvalidToken)
