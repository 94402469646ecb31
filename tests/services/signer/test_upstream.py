"""The signer's OIDC client keeps one OAuth2 session per thread (keep-alive to the IdP's token
endpoint): reused by the thread's next exchange, never shared between threads, no person's token
left in it, and replaced after a transport failure. Real IdP over loopback."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from services.signer.upstream import IdentityGateway
from shared.errors import UpstreamError, UpstreamUnavailable
from shared.testing import free_port


def _gateway(ecosystem: Any, **changes: Any) -> IdentityGateway:
    settings = ecosystem.settings.model_copy(update=changes)
    return IdentityGateway(settings, f"{ecosystem.signer_url}/oauth2/idp-callback")


def test_one_session_per_thread(ecosystem: Any) -> None:
    gateway = _gateway(ecosystem)
    mine = gateway._session()
    assert gateway._session() is mine
    assert mine.trust_env is False  # no proxy / .netrc lookups from the environment
    other: list[Any] = []
    thread = threading.Thread(target=lambda: other.append(gateway._session()))
    thread.start()
    thread.join()
    assert other[0] is not mine


def test_refused_code_keeps_the_session_and_no_token(ecosystem: Any) -> None:
    gateway = _gateway(ecosystem)
    session = gateway._session()
    for _ in range(2):
        with pytest.raises(UpstreamError) as refused:
            gateway.exchange_code("not-a-code", "v" * 43)
        assert refused.value.upstream_error == "invalid_grant"
        assert gateway._session() is session
        assert not session.token


def test_transport_failure_replaces_the_session(ecosystem: Any) -> None:
    gateway = _gateway(ecosystem)
    gateway._metadata()  # discovery from the real IdP, then the token endpoint disappears
    session = gateway._session()
    dead = f"http://127.0.0.1:{free_port()}/token"
    gateway.client._metadata = gateway.client._metadata.__class__(  # type: ignore[union-attr]
        **{**gateway.client._metadata.__dict__, "token_endpoint": dead})  # type: ignore[union-attr]
    with pytest.raises(UpstreamUnavailable):
        gateway.exchange_code("code", "v" * 43)
    assert gateway._session() is not session
