"""Named faults of the wallet path: what the wallet (or its PID) does wrong, on purpose, for QA.

A fault is asked for per presentation: a field of the headless API (``POST
/api/v1/presentations``), a choice on the wallet's consent page (lab faults), or a ``wallet:``
fault in a scenario. Each one makes the eID login fail at step 4; the IPSP (the verifier) must
notice the faults that break the presentation and name the failed check.

=========================  =====================================================================
``pid-expired``            the wallet presents a PID whose ``exp`` lies in the past
``pid-revoked``            the PID's entry in the provider's Token Status List says INVALID
``untrusted-provider``     the PID is signed by a provider that is on no trusted list
``wrong-nonce``            the key-binding JWT carries another nonce than the request
``wrong-audience``         the key-binding JWT is addressed to another verifier (``aud``)
``kb-signature-invalid``   the key-binding JWT is signed by a key other than the PID's ``cnf`` key
``missing-claim``          the wallet leaves out a claim the request requires
``decline``                the person presses Decline in the wallet
``timeout``                the wallet fetches the request and never answers
=========================  =====================================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["WALLET_FAULTS", "WalletFault", "parse_faults"]


@dataclass(frozen=True)
class WalletFault:
    """One named fault and how it shows."""

    name: str
    detected_by: str
    """Who notices: ``verifier`` (the IPSP refuses the presentation) or ``person`` (the wallet
    itself ends the exchange: decline, no answer)."""
    error: str
    """The OAuth2 error the signing service and the partner see."""
    check: str
    """The IPSP's check that fails (or what happens instead)."""
    summary: str

    def as_dict(self) -> dict[str, Any]:
        """JSON form (API, docs)."""
        return {"name": self.name, "step": 4, "detected_by": self.detected_by, "error": self.error,
                "check": self.check, "summary": self.summary}


WALLET_FAULTS: dict[str, WalletFault] = {fault.name: fault for fault in (
    WalletFault("pid-expired", "verifier", "access_denied", "exp",
                "The wallet presents a PID whose validity (exp) ended yesterday."),
    WalletFault("pid-revoked", "verifier", "access_denied", "status",
                "The PID's entry in the PID provider's Token Status List says INVALID (revoked)."),
    WalletFault("untrusted-provider", "verifier", "access_denied", "trust chain",
                "The PID is signed by a provider whose certificate chains to no anchor on the list of trusted "
                "PID providers."),
    WalletFault("wrong-nonce", "verifier", "access_denied", "nonce",
                "The key-binding JWT carries a nonce other than the one of the request (a replayed presentation)."),
    WalletFault("wrong-audience", "verifier", "access_denied", "aud",
                "The key-binding JWT is addressed to another verifier (aud is not the IPSP's client_id)."),
    WalletFault("kb-signature-invalid", "verifier", "access_denied", "key binding",
                "The key-binding JWT is signed by a key other than the device key the PID is bound to (cnf)."),
    WalletFault("missing-claim", "verifier", "access_denied", "claims",
                "The wallet leaves out the personal administrative number the request requires."),
    WalletFault("decline", "person", "access_denied", "(the person declines)",
                "The person presses Decline in the wallet: the wallet answers access_denied."),
    WalletFault("timeout", "person", "access_denied", "(no answer)",
                "The wallet fetches the request and never answers; the IPSP gives up after its wait time."),
)}
"""Every wallet fault, in documentation order."""


def parse_faults(names: Any) -> tuple[str, ...]:
    """Validate a list of fault names.

    :raises ValueError: not a list of known names.
    """
    if names is None:
        return ()
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError("faults must be a list of fault names")
    unknown = [n for n in names if n not in WALLET_FAULTS]
    if unknown:
        raise ValueError(f"unknown wallet fault {unknown[0]!r}; known: {', '.join(WALLET_FAULTS)}")
    return tuple(dict.fromkeys(names))
