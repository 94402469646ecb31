"""The throttled secret guard and the trainer access."""

from __future__ import annotations

import pytest
from flask import Flask
from pydantic import SecretStr

from shared.flow import service
from shared.guard import SecretGuard, TooManyAttempts, bearer_token
from shared.settings import ServiceSettings
from shared.trainer_access import install_trainer_access, require_trainer
from shared.web import create_service_app


def test_wrong_secrets_lock_the_address_for_right_and_wrong_ones_alike() -> None:
    now = [0.0]
    guard = SecretGuard(SecretStr("the-secret"), "the test API", limit=3, window=60, clock=lambda: now[0])
    assert guard.matches(None, "a") is False  # nothing presented: not a guess
    assert [guard.matches("wrong", "a") for _ in range(3)] == [False] * 3
    with pytest.raises(TooManyAttempts) as locked:
        guard.matches("the-secret", "a")
    assert locked.value.status == 429 and locked.value.headers == {"Retry-After": "60"}
    assert guard.matches("the-secret", "b") is True  # another address
    now[0] = 61.0
    assert guard.matches("the-secret", "a") is True  # the window passed


def test_bearer_token() -> None:
    assert bearer_token("Bearer abc ") == "abc" and bearer_token("bearer abc") == "abc"
    assert bearer_token("Basic abc") is None and bearer_token(None) is None and bearer_token("Bearer ") is None


@pytest.fixture
def app(tmp_path) -> Flask:  # type: ignore[no-untyped-def]
    settings = ServiceSettings(data_dir=tmp_path)
    frame = create_service_app(__name__, service("portal"), settings)
    install_trainer_access(frame, SecretStr("trainer-secret"), env_name="SIGNLAB_TEST_TRAINER_TOKEN", landing="/view")

    @frame.get("/view")
    def view() -> str:
        require_trainer()
        return "everyone's flows"

    return frame


def test_trainer_views_need_the_bearer_token_or_the_sign_in_cookie(app: Flask) -> None:
    client = app.test_client()
    anonymous = client.get("/view", headers={"Accept": "application/json"})
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"] == 'Bearer realm="signlab-trainer"'
    page = client.get("/view", headers={"Accept": "text/html"})
    assert page.status_code == 401 and 'name="token"' in page.get_data(as_text=True)  # the sign-in form
    assert client.get("/view", headers={"Authorization": "Bearer trainer-secret"}).status_code == 200
    wrong = client.get("/view", headers={"Authorization": "Bearer nope", "Accept": "application/json"})
    assert wrong.status_code == 401 and 'error="invalid_token"' in wrong.headers["WWW-Authenticate"]
    # The sign-in link: a signed HttpOnly cookie, a redirect without the token, no open redirect.
    assert client.get("/trainer/sign-in?token=nope").status_code == 401
    signed_in = client.get("/trainer/sign-in?token=trainer-secret&next=//evil.example/x")
    assert signed_in.status_code == 303 and signed_in.headers["Location"] == "/view"
    assert "HttpOnly" in signed_in.headers["Set-Cookie"] and "trainer-secret" not in signed_in.headers["Set-Cookie"]
    assert client.get("/view").status_code == 200
    client.post("/trainer/sign-out")
    assert client.get("/view", headers={"Accept": "application/json"}).status_code == 401
