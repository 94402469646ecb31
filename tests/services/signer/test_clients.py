"""Partner authentication: the portal with private_key_jwt (RFC 7523), further partners with a
client secret and a lock-out that never reaches a client of the other method (review V5)."""

from __future__ import annotations

from pathlib import Path

import pytest
from joserfc.jwk import ECKey, KeySet
from pydantic import SecretStr

from services.signer.clients import ClientCredentials, ClientRegistry
from services.signer.settings import SecretPartner, SignerSettings
from shared.audit import AuditLog
from shared.client_assertion import CLIENT_ASSERTION_TYPE, create_client_assertion
from shared.errors import InvalidClient, InvalidRequest
from shared.guard import TooManyAttempts

PARTNER_SECRET = "partner-secret-0123456789"


def _key() -> ECKey:
    key = ECKey.generate_key("P-256", parameters={"use": "sig", "alg": "ES256"})
    key.ensure_kid()
    return key


@pytest.fixture
def portal_key() -> ECKey:
    return _key()


@pytest.fixture
def registry(fresh_settings: SignerSettings, tmp_path: Path, portal_key: ECKey) -> ClientRegistry:
    settings = fresh_settings.model_copy(update={"client_lockout_failures": 2, "partner_clients": [
        SecretPartner(client_id="other-partner", client_secret=SecretStr(PARTNER_SECRET), name="Other Partner",
                      redirect_uris=["http://127.0.0.1:9/other"])]})
    public = KeySet([ECKey.import_key(portal_key.as_dict(private=False))])
    return ClientRegistry(settings, AuditLog(tmp_path / "audit.jsonl"), portal_keys=lambda _assertion: public)


def _assertion(registry: ClientRegistry, key: ECKey, *, client_id: str = "signlab-portal",
               audience: str | None = None) -> ClientCredentials:
    token = create_client_assertion(key, client_id=client_id, audience=audience or registry.issuer)
    return ClientCredentials(None, None, CLIENT_ASSERTION_TYPE, token)


def test_the_portal_authenticates_with_a_client_assertion(registry: ClientRegistry, portal_key: ECKey,
                                                          fresh_settings: SignerSettings) -> None:
    client = registry.authenticate(_assertion(registry, portal_key), "192.0.2.1")
    assert (client.client_id, client.name, client.redirect_uris, client.auth_method) == (
        fresh_settings.portal_client_id, fresh_settings.portal_name, tuple(fresh_settings.portal_redirect_uris),
        "private_key_jwt")
    # The token endpoint's URL is an accepted audience too (RFC 7523 §3).
    token_url = f"{registry.issuer}/oauth2/token"
    assert registry.authenticate(_assertion(registry, portal_key, audience=token_url)).client_id == "signlab-portal"


@pytest.mark.parametrize("case", ["replayed", "other-key", "other-audience", "wrong-type", "secret-instead"])
def test_bad_client_assertions_are_refused_and_audited(registry: ClientRegistry, portal_key: ECKey,
                                                       case: str) -> None:
    presented = _assertion(registry, portal_key)
    if case == "replayed":
        registry.authenticate(presented)
    elif case == "other-key":
        presented = _assertion(registry, _key())
    elif case == "other-audience":
        presented = _assertion(registry, portal_key, audience="http://127.0.0.1:9/elsewhere")
    elif case == "wrong-type":
        presented = ClientCredentials(None, None, "urn:example:other", presented.assertion)
    else:
        presented = ClientCredentials("signlab-portal", "any secret at all")
    with pytest.raises(InvalidClient) as refused:
        registry.authenticate(presented, "192.0.2.1")
    assert refused.value.status == 401
    assert [e.event for e in registry.audit.entries()][-1] == "client.refused"


def test_a_secret_partner_authenticates_with_its_secret(registry: ClientRegistry) -> None:
    client = registry.authenticate(ClientCredentials("other-partner", PARTNER_SECRET), "192.0.2.1")
    assert (client.client_id, client.auth_method) == ("other-partner", "client_secret_basic")
    with pytest.raises(InvalidClient, match="authenticates with a client secret"):
        registry.authenticate(ClientCredentials("other-partner", None, CLIENT_ASSERTION_TYPE, "x.y.z"))


def test_one_method_per_request(registry: ClientRegistry, portal_key: ECKey) -> None:
    both = _assertion(registry, portal_key)
    with pytest.raises(InvalidRequest, match="one client authentication method"):
        registry.authenticate(ClientCredentials("signlab-portal", "secret", both.assertion_type, both.assertion))


def test_unknown_clients_are_refused(registry: ClientRegistry) -> None:
    with pytest.raises(InvalidClient, match="unknown client_id"):
        registry.authenticate(ClientCredentials("someone-else", "x"))


def test_wrong_secrets_lock_only_that_partner_from_that_address(registry: ClientRegistry,
                                                                 portal_key: ECKey) -> None:
    """V5: wrong secrets for the portal's id are refused but counted against nothing; wrong
    secrets for a secret partner lock that partner from that address (the right secret too)."""
    for _ in range(10):
        with pytest.raises(InvalidClient):
            registry.authenticate(ClientCredentials("signlab-portal", "guess"), "127.0.0.1")
    assert registry.authenticate(_assertion(registry, portal_key), "127.0.0.1").client_id == "signlab-portal"
    for _ in range(2):
        with pytest.raises(InvalidClient):
            registry.authenticate(ClientCredentials("other-partner", "guess"), "127.0.0.1")
    with pytest.raises(TooManyAttempts) as locked:
        registry.authenticate(ClientCredentials("other-partner", PARTNER_SECRET), "127.0.0.1")
    assert locked.value.status == 429
    assert registry.authenticate(ClientCredentials("other-partner", PARTNER_SECRET), "192.0.2.8").client_id
    assert registry.authenticate(_assertion(registry, portal_key), "127.0.0.1").client_id == "signlab-portal"
    assert [e.event for e in registry.audit.entries()].count("client.locked") == 1


def test_metadata_lists_the_methods_of_the_registered_clients(registry: ClientRegistry,
                                                              fresh_settings: SignerSettings,
                                                              tmp_path: Path) -> None:
    assert registry.auth_methods == ["private_key_jwt", "client_secret_basic", "client_secret_post"]
    portal_only = ClientRegistry(fresh_settings, AuditLog(tmp_path / "other.jsonl"), portal_keys=lambda _: KeySet([]))
    assert portal_only.auth_methods == ["private_key_jwt"]
