"""A refused or expired signing, explained in plain words for the person in front of the portal.

The protocol error (``access_denied``, ``temporarily_unavailable`` …) and its description travel
back through up to three roles, each prefixing its own step (``"step 5 (IPSP → SSASP): the
signing service ended the request with access_denied: step 4 (Signer->IPSP): the user cancelled
the login"``). :func:`explain` finds where it happened — the innermost step named, read with
:func:`shared.flow.step_in_text` like the trace model and the scenario runner — and says which role
refused what, why (the innermost reason), and what to do next.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from shared.flow import FlowStep, step, step_in_text

__all__ = ["Explanation", "explain"]

_PREFIX = re.compile(r"^.*\bstep \d{1,2}(?: \([^)]*\))?: ", re.S)

_WHAT: dict[str, str] = {
    "access_denied": "was refused",
    "unmet_authentication_requirements": "was refused: the eID cannot reach the level of assurance this signature needs",
    "temporarily_unavailable": "could not be done: a service was not available",
    "unavailable": "could not be done: a service did not answer",
    "expired_transaction": "came too late: the transaction had expired",
    "invalid_grant": "was refused: the authorization was invalid, expired or already used",
    "invalid_token": "was refused: the signing authorization was invalid or expired",
    "invalid_request": "was refused as malformed",
    "packaging_failed": "could not be finished: the portal could not complete the signed document",
    "invalid_credential": "could not be done: the one-time credential was unusable",
    "server_error": "failed inside a service",
}

_NEXT: dict[str, str] = {
    "access_denied": "If you did not mean to stop, start again and complete the login and consent.",
    "unmet_authentication_requirements": "Start again with an eID means at a higher level (QES needs LoA high), "
                                         "or choose an advanced signature (AdES).",
    "temporarily_unavailable": "Start again in a moment.",
    "unavailable": "Start again when the service is back.",
    "expired_transaction": "Start again and finish the login and consent within the time limit.",
}


@dataclass(frozen=True)
class Explanation:
    """Where and why a signing stopped.

    :ivar step: the flow step it stopped at (with its roles), or None when no step is named.
    :ivar error: the protocol error code.
    :ivar headline: one sentence: which step, which roles, what happened.
    :ivar reason: the innermost reason, as the refusing role wrote it.
    :ivar advice: what to do next.
    """

    step: FlowStep | None
    error: str
    headline: str
    reason: str
    advice: str


def explain(error: str | None, description: str | None) -> Explanation:
    """Explain a refusal from its protocol error and description (as stored with the transaction)."""
    code = (error or "server_error").strip()
    text = (description or "").strip()
    number = step_in_text(text)
    flow_step = step(number) if number else None
    reason = _PREFIX.sub("", text) or "no reason was given"
    # A relayed description names the innermost error too ("answered 503 temporarily_unavailable").
    inner = re.findall(r"\b(?:answered|with) (?:HTTP )?(?:\d{3} )?([a-z_]{6,})\b", text)
    code_shown = inner[-1] if inner and inner[-1] in _WHAT else code
    what = _WHAT.get(code_shown, f"ended with {code_shown}")
    where = f"Step {flow_step.number} — {flow_step.name} ({flow_step.source} → {flow_step.target}) — " \
        if flow_step else "The signing "
    return Explanation(flow_step, code_shown, f"{where}{what}.", reason,
                       _NEXT.get(code_shown, "Start again; if it fails again, the trainer can read the diagram."))
