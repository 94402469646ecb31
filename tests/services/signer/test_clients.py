"""Partner portals: authentication with the registered secret, and the lock-out against guessing."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.signer.clients import ClientRegistry
from services.signer.settings import SignerSettings
from shared.audit import AuditLog
from shared.errors import InvalidClient


@pytest.fixture
def registry(fresh_settings: SignerSettings, tmp_path: Path) -> ClientRegistry:
    settings = fresh_settings.model_copy(update={"client_lockout_failures": 2})
    return ClientRegistry(settings, AuditLog(tmp_path / "audit.jsonl"))


def test_the_registered_secret_authenticates(registry: ClientRegistry, fresh_settings: SignerSettings) -> None:
    secret = fresh_settings.portal_client_secret.get_secret_value()
    client = registry.authenticate(fresh_settings.portal_client_id, secret, "192.0.2.1")
    assert (client.client_id, client.name, client.redirect_uris) == (
        fresh_settings.portal_client_id, fresh_settings.portal_name, tuple(fresh_settings.portal_redirect_uris))
    assert "secret" not in repr(client) and secret not in repr(client)


@pytest.mark.parametrize(("client_id", "secret", "fragment"), [
    ("signlab-portal", "wrong", "client authentication failed"),
    ("signlab-portal", None, "client authentication failed"),
    ("someone-else", "x", "unknown client_id"),
], ids=["wrong-secret", "no-secret", "unknown-client"])
def test_refusals_are_401_and_audited(registry: ClientRegistry, client_id: str, secret: str | None,
                                      fragment: str) -> None:
    with pytest.raises(InvalidClient, match=fragment) as refused:
        registry.authenticate(client_id, secret, "192.0.2.1")
    assert refused.value.status == 401
    assert [e.event for e in registry.audit.entries()] == ["client.refused"]


def test_guessing_locks_one_client_id_from_one_address(registry: ClientRegistry,
                                                       fresh_settings: SignerSettings) -> None:
    secret = fresh_settings.portal_client_secret.get_secret_value()
    for _ in range(2):
        with pytest.raises(InvalidClient):
            registry.authenticate("signlab-portal", "guess", "192.0.2.7")
    with pytest.raises(InvalidClient, match="locked") as locked:
        registry.authenticate("signlab-portal", secret, "192.0.2.7")  # even the right secret
    assert locked.value.status == 429
    assert registry.authenticate("signlab-portal", secret, "192.0.2.8").client_id == "signlab-portal"
    assert [e.event for e in registry.audit.entries()][-1] == "client.locked"
