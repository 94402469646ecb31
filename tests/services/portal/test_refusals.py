"""The refusal page's explanation: the step and the reason where the refusal happened, not where it
was passed on (the same reading as the trace model's and the scenario runner's)."""

from __future__ import annotations

from services.portal.refusals import explain


def test_a_relayed_cancel_is_explained_at_step_4_with_the_innermost_reason() -> None:
    why = explain("access_denied", "step 5 (IPSP → SSASP): the signing service ended the request with access_denied: "
                                   "step 4 (Signer → IPSP): the eID provider answered access_denied: step 4 "
                                   "(Signer->IPSP): the user cancelled the login (transaction tx-1; nothing was signed)")
    assert why.step is not None and why.step.number == 4
    assert why.headline == "Step 4 — eID login (Signer → IPSP) — was refused."
    assert why.reason == "the user cancelled the login (transaction tx-1; nothing was signed)"


def test_the_innermost_error_code_names_what_happened() -> None:
    why = explain("server_error", "step 6 (SCASP → SSASP): the SSASP answered 503 temporarily_unavailable: step 7 "
                                  "(SSASP → TSP): the TSP is unavailable: connection refused")
    assert why.step is not None and why.step.number == 7 and why.error == "temporarily_unavailable"
    assert why.headline.startswith("Step 7 — certificate issuance (SSASP → TSP) — could not be done")
    assert why.advice == "Start again in a moment."


def test_without_a_step_the_signing_as_a_whole_is_named() -> None:
    why = explain(None, None)
    assert why.step is None and why.error == "server_error" and why.headline.startswith("The signing ")
