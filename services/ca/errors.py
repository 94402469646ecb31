"""Errors of the TSP; each carries a machine-readable ``reason`` besides the protocol error code.

The protocol ``error`` (``invalid_request``, ``invalid_client``, ``access_denied`` …) says what
class of failure it is; ``reason`` (``csr_signature_invalid``, ``loa_too_low`` …) says exactly which
check failed. The description starts with the reason, so it survives the shared
``{"error", "error_description"}`` rendering, and the issuance log records it.
"""

from __future__ import annotations

from shared.errors import AccessDenied, Conflict, InvalidClient, InvalidRequest, InvalidToken, NotFound, SignLabError
from shared.flow import FlowStep, step

__all__ = [
    "AdminAuthFailed",
    "BodyTooLarge",
    "CaError",
    "CallerRejected",
    "CertificateNotFound",
    "CsrRejected",
    "EvidenceRejected",
    "PolicyRefused",
    "RequestConflict",
    "RequestRejected",
    "RevocationNotAvailable",
]

STEP_7 = step(7)


class CaError(SignLabError):
    """Mixin root of the TSP's errors: a ``reason`` code leads the description."""

    reason: str = "error"

    def __init__(self, reason: str, description: str, *, step: FlowStep | None = STEP_7) -> None:
        self.reason = reason
        super().__init__(f"{reason}: {description}", step=step)


class RequestRejected(CaError, InvalidRequest):
    """A request is malformed or misses a field (400 ``invalid_request``)."""


class RequestConflict(CaError, Conflict):
    """A request id that was already used for another request (409)."""


class CsrRejected(CaError, InvalidRequest):
    """The CSR is malformed, its signature (proof of possession) fails, or its key is weak (400)."""


class BodyTooLarge(CaError, InvalidRequest):
    """The body is larger than the endpoint accepts (413 ``invalid_request``)."""

    status = 413


class CallerRejected(CaError, InvalidClient):
    """The caller is not a registered signing service or its client assertion fails (401)."""


class EvidenceRejected(CaError, AccessDenied):
    """The identity evidence (the IdP's ID token) is forged, expired or otherwise invalid (403)."""


class PolicyRefused(CaError, AccessDenied):
    """The verified identity does not qualify for the requested profile (403): never downgraded."""


class AdminAuthFailed(CaError, InvalidToken):
    """The admin bearer token of the revoke API is missing or wrong (401)."""


class CertificateNotFound(CaError, NotFound):
    """No certificate with this serial was issued here (404)."""


class RevocationNotAvailable(CaError, InvalidRequest):
    """A certificate of the short-term-no-revocation profile (noRevAvail) cannot be revoked (400)."""
