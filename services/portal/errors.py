"""Errors of the SCASP, each with its protocol error code, HTTP status and flow step.

Descriptions are shown to the person at the portal (page or JSON): they say what happened, at which
step, and what to do next. They never carry document content, tokens or secrets.
"""

from __future__ import annotations

from shared.errors import (
    AccessDenied,
    Conflict,
    InvalidRequest,
    NotFound,
    SignLabError,
    UpstreamAnswerBroken,
    UpstreamError,
    UpstreamUnavailable,
)
from shared.flow import Role, step

__all__ = [
    "AnswerLost",
    "CredentialUnsuitable",
    "DocumentRejected",
    "PackagingFailed",
    "SigningRefused",
    "TimeStampingFailed",
    "TransactionExpired",
    "TransactionNotFound",
    "TransactionStateError",
    "UnsupportedOption",
    "relayed",
]


class DocumentRejected(InvalidRequest):
    """An uploaded document cannot be signed or validated (step 1): wrong type, damaged, encrypted, empty, too large."""

    def __init__(self, label: str, reason: str, *, status: int | None = None) -> None:
        self.label = label
        self.reason = reason
        super().__init__(f"document {label!r} rejected: {reason}", step=step(1), status=status)


class UnsupportedOption(InvalidRequest):
    """A signing option (format, level, qualifier, flow) is unknown or not available for the document."""

    def __init__(self, description: str) -> None:
        super().__init__(description, step=step(1))


class TransactionNotFound(NotFound):
    """No transaction with this id (or it was never created here)."""

    def __init__(self, transaction_id: str) -> None:
        super().__init__(f"no signing transaction {transaction_id!r} at this portal")


class TransactionExpired(SignLabError):
    """The transaction waited longer than its lifetime for the signer's return; nothing was signed."""

    error = "expired_transaction"
    status = 410

    def __init__(self, transaction_id: str, seconds: int, *, at_step: int = 10) -> None:
        super().__init__(
            f"transaction {transaction_id} expired: the signer did not come back within {seconds} s "
            "(SIGNLAB_PORTAL_TRANSACTION_TTL_SECONDS); the authorization was not redeemed, nothing was signed "
            "and nothing is kept as signed — start again",
            step=step(at_step),
        )


class TransactionStateError(Conflict):
    """The transaction is not in a state that allows the operation (e.g. a second callback)."""


class SigningRefused(AccessDenied):
    """The signer or the signing service refused (cancelled login, LoA too low for QES, consent refused)."""


class PackagingFailed(SignLabError):
    """Embedding the signature or adding time-stamps/validation data failed at step 10; nothing was kept as signed.

    Step 10 here is the portal's own work (``step 10 (SCASP)``), not the SSASP's delivery."""

    error = "packaging_failed"
    status = 502
    roles = (Role.SCASP, Role.SCASP)

    def __init__(self, description: str) -> None:
        super().__init__(description, step=step(10).between(*self.roles))


class TimeStampingFailed(PackagingFailed):
    """The TSA did not time-stamp (B-T and above) at step 10: ``step 10 (SCASP → TSP)``."""

    roles = (Role.SCASP, Role.TSP)


class AnswerLost(SignLabError):
    """signDoc's answer never arrived whole (the SSASP may have signed): 502 ``server_error`` when it
    broke off — step 10, the signature delivery —, 503 ``temporarily_unavailable`` when none came
    (the step of the call). The description says what became of the undelivered signature's
    certificate; nothing was kept as signed."""

    def __init__(self, lost: UpstreamUnavailable, outcome: str) -> None:
        broken = isinstance(lost, UpstreamAnswerBroken)
        super().__init__(f"{lost.description}; {outcome}; nothing was kept as signed — start again",
                         error=lost.error, status=lost.status, step=step(10) if broken else lost.step)


class CredentialUnsuitable(SignLabError):
    """Certificate-first flow: the one-time credential ``credentials/info`` describes cannot be used
    (no certificate, key disabled, not SCAL 2, too few signatures, unsupported key algorithm)."""

    error = "invalid_credential"
    status = 502

    def __init__(self, description: str) -> None:
        super().__init__(f"the signing service's one-time credential cannot be used: {description}", step=step(7))


def relayed(exc: UpstreamError) -> SignLabError:
    """Another role's error answer as the portal reports it: the SSASP's own words (they name the
    step and role where it failed, e.g. "step 7 (SSASP → TSP): the TSP is unavailable"), never
    wrapped in the step of the portal's own call; an outage upstream (503, or 507: a full disk) is
    503 ``temporarily_unavailable``, a refusal of the person or the policy (403) a
    :class:`SigningRefused`, anything else 502 ``server_error``."""
    if exc.role is Role.SSASP:
        said = exc.upstream_description or f"{exc.upstream_error} ({exc.upstream_status})"
        at = None if said.startswith("step ") else exc.step
        if exc.upstream_status == 403:
            return SigningRefused(said, step=at)
    else:
        said, at = exc.description, exc.step
    if exc.upstream_status in (503, 507):
        return SignLabError(said, error="temporarily_unavailable", status=503, step=at)
    return SignLabError(said, error="server_error", status=502, step=at)


def ended_by_signer(error: str, description: str, transaction_id: str) -> SignLabError:
    """The SSASP sent the browser back with an error (step 3-5): the person declined, the eID did
    not suffice (403), or an upstream of the SSASP was out (503) or failed (502) — in its words."""
    said = f"{description} (transaction {transaction_id}; nothing was signed)"
    at = None if description.startswith("step ") else step(5)
    if error == "temporarily_unavailable":
        return SignLabError(said, error=error, status=503, step=at)
    if error == "server_error":
        return SignLabError(said, error=error, status=502, step=at)
    return SigningRefused(said, step=at)
