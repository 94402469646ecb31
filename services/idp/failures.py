"""Named failure injection: the negative cases QA scenarios ask the IdP to produce.

A failure is attached to one authorization request, either by a ``login_hint`` directive
(``kari-nordmann@no-bankid!wrong-nonce``) or by the guarded admin API (armed for the next N
requests). It then acts at one stage:

* ``authorize`` — at once, when the authentication request arrives (flow step 3);
* ``login`` — when the person authenticates (step 4); the browser returns to the client with an
  OAuth2 error;
* ``token`` — at the token endpoint when the client redeems the code (step 5);
* ``id_token`` — the ID token is issued but wrong in one way; the relying party must detect it at
  step 5 (``shared.identity.verify_id_token`` raises ``IdentityEvidenceError`` with the check named
  in :attr:`FailureSpec.detected_by`).
* ``wallet`` — an EUDI Wallet login (step 4) waits for the wallet; the failure changes that wait.
  (The wallet's own faults, such as a revoked PID, are asked of the wallet: ``services/wallet/faults.py``.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["FAILURES", "Failure", "FailureSpec", "parse_failure"]

Stage = Literal["authorize", "login", "token", "id_token", "wallet"]


@dataclass(frozen=True)
class FailureSpec:
    """The definition of one named failure."""

    name: str
    stage: Stage
    step: int
    """Flow step where the failure shows."""
    error: str
    """The OAuth2/OIDC error the client receives, or (for ``id_token``) ``IdentityEvidenceError``."""
    detected_by: str | None
    """For ``id_token`` failures: the ``IdentityEvidenceError.check`` that catches it."""
    summary: str
    value_unit: str | None = None
    """Unit of the optional ``=value`` (``seconds``); None when the failure takes no value."""
    default_value: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON form (admin API, docs)."""
        return {"name": self.name, "stage": self.stage, "step": self.step, "error": self.error,
                "detected_by": self.detected_by, "summary": self.summary, "value_unit": self.value_unit,
                "default_value": self.default_value}


FAILURES: dict[str, FailureSpec] = {spec.name: spec for spec in (
    FailureSpec("unavailable", "authorize", 3, "temporarily_unavailable", None,
                "The IdP answers the authentication request with temporarily_unavailable (maintenance)."),
    FailureSpec("cancel", "login", 4, "access_denied", None,
                "The user presses Cancel at the IdP."),
    FailureSpec("wrong-password", "login", 4, "access_denied", None,
                "The user enters a wrong password / one-time code three times; authentication fails."),
    FailureSpec("locked", "login", 4, "access_denied", None,
                "The user's account at the eID issuer is locked."),
    FailureSpec("revoked", "login", 4, "access_denied", None,
                "The eID means is revoked at the time of login (as if the issuer had revoked it)."),
    FailureSpec("slow", "token", 5, "(none: a delay)", None,
                "The token endpoint answers only after a delay (default 5 s; capped by "
                "SIGNLAB_IDP_MAX_INJECTED_DELAY_SECONDS), to exercise the client's timeout.",
                value_unit="seconds", default_value=5.0),
    FailureSpec("code-rejected", "token", 5, "invalid_grant", None,
                "The token endpoint rejects the authorization code as invalid or expired."),
    FailureSpec("wrong-nonce", "id_token", 5, "IdentityEvidenceError", "nonce",
                "The ID token carries a nonce other than the one in the request."),
    FailureSpec("wrong-audience", "id_token", 5, "IdentityEvidenceError", "aud",
                "The ID token is addressed to another client (aud)."),
    FailureSpec("wrong-issuer", "id_token", 5, "IdentityEvidenceError", "iss",
                "The ID token names another issuer (iss)."),
    FailureSpec("expired", "id_token", 5, "IdentityEvidenceError", "exp",
                "The ID token expired ten minutes before it was issued to the client."),
    FailureSpec("unknown-key", "id_token", 5, "IdentityEvidenceError", "kid",
                "The ID token is signed by a key that is not in the published JWKS."),
    FailureSpec("acr-lower", "id_token", 5, "IdentityEvidenceError", "acr",
                "The ID token's acr is one level below the level the request required (below low: "
                "a non-eIDAS value), so a relying party that checks acr refuses it."),
    FailureSpec("clock-skew", "id_token", 5, "IdentityEvidenceError", "iat",
                "The IdP's clock runs ahead: iat, auth_time and exp are shifted into the future "
                "(default +300 s, beyond the usual 30 s leeway).",
                value_unit="seconds", default_value=300.0),
    FailureSpec("wallet-wait", "wallet", 4, "access_denied", None,
                "An EUDI Wallet login waits only this long (default 3 s) for the wallet's answer instead of "
                "SIGNLAB_IDP_WALLET_RESPONSE_SECONDS, so that 'the wallet never answers' ends quickly.",
                value_unit="seconds", default_value=3.0),
)}
"""Every failure name, in documentation order."""


@dataclass(frozen=True)
class Failure:
    """One failure attached to one request."""

    name: str
    value: float | None = None

    @property
    def spec(self) -> FailureSpec:
        """Its definition."""
        return FAILURES[self.name]

    def amount(self, cap: float | None = None) -> float:
        """The value, or the default; capped at ``cap`` when given."""
        value = self.value if self.value is not None else (self.spec.default_value or 0.0)
        return min(value, cap) if cap is not None else value

    def as_dict(self) -> dict[str, Any]:
        """JSON form (stored with the request)."""
        return {"name": self.name, "value": self.value}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Failure:
        """Inverse of :meth:`as_dict`."""
        return cls(str(data["name"]), None if data.get("value") is None else float(data["value"]))

    def __str__(self) -> str:
        return self.name if self.value is None else f"{self.name}={self.value:g}"


def parse_failure(text: str) -> Failure:
    """Parse ``name`` or ``name=value``.

    :raises ValueError: unknown name, or a value where none is allowed, or a bad number.
    """
    name, sep, raw = text.strip().partition("=")
    name = name.strip().lower()
    spec = FAILURES.get(name)
    if spec is None:
        raise ValueError(f"unknown failure {name!r}; known: {', '.join(FAILURES)}")
    if not sep:
        return Failure(name)
    if spec.value_unit is None:
        raise ValueError(f"failure {name!r} takes no value")
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"failure {name!r}: {raw!r} is not a number of {spec.value_unit}") from None
    if not 0 <= value <= 86400:
        raise ValueError(f"failure {name!r}: value must be between 0 and 86400 {spec.value_unit}")
    return Failure(name, value)
