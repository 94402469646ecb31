"""The error root: codes, statuses, step labels."""

from shared.errors import InvalidGrant, InvalidRequest, SignLabError, UpstreamError, UpstreamUnavailable
from shared.flow import Role, step


def test_body_has_code_and_description() -> None:
    assert InvalidRequest("hash is not base64").to_body() == {
        "error": "invalid_request", "error_description": "hash is not base64"}
    assert InvalidRequest().status == 400 and InvalidGrant().error == "invalid_grant"


def test_step_is_named_in_the_description() -> None:
    error = InvalidRequest("digest not authorized", step=step(6))
    assert error.error_description == "step 6 (SSASP → HSM): digest not authorized"
    assert str(error) == error.error_description


def test_instance_overrides_do_not_change_the_class() -> None:
    error = SignLabError("slow down", error="temporarily_unavailable", status=429)
    assert (error.error, error.status) == ("temporarily_unavailable", 429)
    assert (SignLabError.error, SignLabError.status) == ("server_error", 500)


def test_upstream_errors_keep_the_original_reason() -> None:
    error = UpstreamError(Role.TSP, "access_denied", "LoA substantial is too low for QES", 403, step=step(7))
    assert error.upstream_error == "access_denied"
    assert "the TSP answered 403 access_denied: LoA substantial is too low for QES" in error.error_description
    unavailable = UpstreamUnavailable(Role.IPSP, "connection refused", step=step(3))
    assert unavailable.to_body()["error"] == "temporarily_unavailable" and unavailable.status == 503
