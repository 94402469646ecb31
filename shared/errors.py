"""The one error root of SignLab and the protocol error codes.

Every error a service reports to a caller is a :class:`SignLabError` (or a subclass). It carries the
protocol error code (OAuth2 / OIDC / CSC vocabulary), the HTTP status, a human description and,
where known, the flow step it happened at. :func:`shared.web.register_error_handlers` renders it as
``{"error", "error_description"}`` in one place; views never build error bodies by hand.

Descriptions are shown to callers: never put secrets, PINs, keys or full tokens in them.
"""

from __future__ import annotations

from typing import Any, ClassVar

from shared.flow import FlowStep, Role

__all__ = [
    "AccessDenied",
    "ConfigurationError",
    "Conflict",
    "InvalidClient",
    "InvalidGrant",
    "InvalidRequest",
    "InsufficientStorage",
    "InvalidToken",
    "NotFound",
    "SignLabError",
    "UpstreamAnswerBroken",
    "UpstreamError",
    "UpstreamUnavailable",
]


class SignLabError(Exception):
    """Root of all SignLab errors that reach a caller.

    :param description: what went wrong, in words a user can act on.
    :param error: override the class's protocol error code.
    :param status: override the class's HTTP status.
    :param step: the flow step where it happened; it is named in the description.
    """

    error: ClassVar[str] = "server_error"
    status: ClassVar[int] = 500
    default_description: ClassVar[str] = "the service failed; see its log for details"
    headers: dict[str, str] = {}
    """Extra response headers (``WWW-Authenticate`` of a 401, ``Retry-After`` of a 429)."""

    def __init__(
        self,
        description: str | None = None,
        *,
        error: str | None = None,
        status: int | None = None,
        step: FlowStep | None = None,
    ) -> None:
        self.description = description or self.default_description
        self.step = step
        # Instance overrides shadow the class defaults without changing them.
        if error is not None:
            self.error = error  # type: ignore[misc]
        if status is not None:
            self.status = status  # type: ignore[misc]
        super().__init__(self.error_description)

    @property
    def error_description(self) -> str:
        """The description, prefixed with the flow step when one is known."""
        if self.step is None:
            return self.description
        return f"{self.step.label}: {self.description}"

    def to_body(self) -> dict[str, Any]:
        """The JSON body of the error response."""
        return {"error": self.error, "error_description": self.error_description}


class InvalidRequest(SignLabError):
    """A request is malformed, misses a parameter or carries a value that is not allowed."""

    error = "invalid_request"
    status = 400
    default_description = "the request is malformed"


class InvalidClient(SignLabError):
    """The calling client is unknown or failed to authenticate."""

    error = "invalid_client"
    status = 401
    default_description = "client authentication failed"


class InvalidGrant(SignLabError):
    """An authorization code, PKCE verifier or refresh token is invalid, expired or replayed."""

    error = "invalid_grant"
    status = 400
    default_description = "the grant is invalid, expired or was already used"


class InvalidToken(SignLabError):
    """A bearer token is missing, malformed, expired or not valid for this request."""

    error = "invalid_token"
    status = 401
    default_description = "the access token is missing, invalid or expired"


class AccessDenied(SignLabError):
    """The user or policy refused the operation."""

    error = "access_denied"
    status = 403
    default_description = "access denied"


class NotFound(SignLabError):
    """The addressed object does not exist (or is not visible to the caller)."""

    error = "not_found"
    status = 404
    default_description = "not found"


class Conflict(SignLabError):
    """The object is in a state that does not allow the operation."""

    error = "invalid_request"
    status = 409
    default_description = "the object is in a state that does not allow this operation"


class InsufficientStorage(SignLabError):
    """The service cannot write its state: its disk is (nearly) full, or a write failed.

    507 Insufficient Storage (RFC 4918) for a full disk; a service passes ``status=503`` for other
    write failures (an I/O error, a read-only filesystem). The operation was not performed, so the
    caller may try again later; the service recovers by itself when it can write again.
    """

    error = "temporarily_unavailable"
    status = 507
    default_description = "the service cannot store anything right now (its disk is full); try again later"


class UpstreamError(SignLabError):
    """Another role answered a call with an error.

    The upstream error code and description are kept, so that a caller sees the original reason.

    :param role: the role that was called.
    :param upstream_error: the error code the other role returned.
    :param upstream_description: its description.
    :param upstream_status: its HTTP status.
    """

    error = "server_error"
    status = 502
    default_description = "another service answered with an error"

    def __init__(
        self,
        role: Role,
        upstream_error: str,
        upstream_description: str,
        upstream_status: int,
        *,
        step: FlowStep | None = None,
        error: str | None = None,
        status: int | None = None,
    ) -> None:
        self.role = role
        self.upstream_error = upstream_error
        self.upstream_description = upstream_description
        self.upstream_status = upstream_status
        super().__init__(
            f"the {role} answered {upstream_status} {upstream_error}: {upstream_description}",
            step=step,
            error=error,
            status=status,
        )


class UpstreamUnavailable(SignLabError):
    """Another role could not be reached or did not answer within the timeout.

    :param role: the role that was called.
    :param detail: what happened (connection refused, timed out after N s).
    """

    error = "temporarily_unavailable"
    status = 503
    default_description = "another service is unavailable"

    def __init__(self, role: Role, detail: str, *, step: FlowStep | None = None) -> None:
        self.role = role
        super().__init__(f"the {role} is unavailable: {detail}", step=step)


class UpstreamAnswerBroken(UpstreamUnavailable):
    """Another role's answer broke off or could not be read (the connection closed mid-body, a body
    that is not what the status promised): 502, since the other role did answer something.

    A subclass of :class:`UpstreamUnavailable`, so callers that handle an outage handle it too.
    """

    error = "server_error"
    status = 502
    default_description = "another service's answer broke off"

    def __init__(self, role: Role, detail: str, *, step: FlowStep | None = None) -> None:
        self.role = role
        SignLabError.__init__(self, f"the answer of the {role} broke off or is unreadable: {detail}", step=step)


class ConfigurationError(Exception):
    """Settings are missing or invalid; raised at start-up and names the environment variable."""
