"""How the portal reports another role's error: in that role's own words and step, with the status
of what happened (an outage 503, a refusal 403, a failure 502)."""

from __future__ import annotations

import pytest

from services.portal.errors import SigningRefused, ended_by_signer, relayed
from shared.errors import UpstreamError
from shared.flow import Role, step

TSP_DOWN = "step 7 (SSASP → TSP): the TSP is unavailable: cannot connect to http://127.0.0.1:8002/api/v1/certificates"


@pytest.mark.parametrize(("status", "error", "code"), [
    (503, "temporarily_unavailable", 503), (507, "temporarily_unavailable", 503), (502, "server_error", 502),
    (500, "server_error", 502), (400, "invalid_request", 502)])
def test_the_ssasps_error_keeps_its_own_step_and_an_outage_is_503(status: int, error: str, code: int) -> None:
    reported = relayed(UpstreamError(Role.SSASP, error, TSP_DOWN, status, step=step(6)))
    assert reported.status == code and reported.error == ("temporarily_unavailable" if code == 503 else "server_error")
    assert reported.error_description == TSP_DOWN  # not "step 6 (SSASP → HSM): the SSASP answered …"


def test_a_refusal_stays_a_refusal_and_words_without_a_step_get_the_calls() -> None:
    refused = relayed(UpstreamError(Role.SSASP, "access_denied", "step 7 (SSASP → TSP): the TSP refused", 403))
    assert isinstance(refused, SigningRefused) and refused.status == 403
    bare = relayed(UpstreamError(Role.SSASP, "invalid_request", "SAD expired 3 s ago", 400, step=step(6)))
    assert bare.error_description.startswith("step 6") and "SAD expired" in bare.error_description


def test_another_roles_error_names_that_role() -> None:
    tsa = relayed(UpstreamError(Role.TSP, "http_503", "down for maintenance", 503, step=step(10)))
    assert tsa.status == 503 and tsa.error_description.startswith("step 10") and "TSP answered 503" in tsa.description


@pytest.mark.parametrize(("error", "status", "kind"), [
    ("temporarily_unavailable", 503, None), ("server_error", 502, None), ("access_denied", 403, SigningRefused)])
def test_the_ssasps_redirect_error_is_reported_by_what_it_was(error: str, status: int, kind: type | None) -> None:
    said = "step 5 (IPSP → SSASP): the IPSP is unavailable: token endpoint ReadTimeout"
    reported = ended_by_signer(error, said, "tx-1")
    assert reported.status == status and reported.error_description.startswith("step 5 (IPSP → SSASP)")
    assert "nothing was signed" in reported.error_description
    if kind is not None:
        assert isinstance(reported, kind)
