"""RFC 7523 client assertions: every check refuses with a reason."""

import time
from pathlib import Path

import pytest
from joserfc.jwk import KeySet

from shared.client_assertion import ReplayCache, create_client_assertion, verify_client_assertion
from shared.errors import InvalidClient
from shared.jose_keys import load_or_create_ec_key, public_jwks

AUD = "http://ca.test/api/v1/certificates"


@pytest.fixture
def keys(tmp_path: Path):  # type: ignore[no-untyped-def]
    key = load_or_create_ec_key(tmp_path / "k.pem")
    return key, KeySet.import_key_set(public_jwks(key))


def _verify(assertion: str, keyset: KeySet, cache: ReplayCache | None = None, **kw):  # type: ignore[no-untyped-def]
    return verify_client_assertion(assertion, keyset, client_id="signer", audience=AUD, replay_cache=cache or ReplayCache(), **kw)


def test_valid_assertion(keys) -> None:  # type: ignore[no-untyped-def]
    key, keyset = keys
    claims = _verify(create_client_assertion(key, client_id="signer", audience=AUD), keyset)
    assert claims["iss"] == claims["sub"] == "signer"


def test_key_file_is_stable_and_private(tmp_path: Path) -> None:
    first = load_or_create_ec_key(tmp_path / "k.pem")
    assert load_or_create_ec_key(tmp_path / "k.pem").kid == first.kid
    assert (tmp_path / "k.pem").stat().st_mode & 0o777 == 0o600
    assert "d" not in public_jwks(first)["keys"][0]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"client_id": "other"}, "iss is 'other'"),
    ({"audience": "http://elsewhere"}, "does not name"),
    ({"now": time.time() - 3600}, "expired"),
    ({"now": time.time() + 3600}, "in the future"),
    ({"lifetime": 3600}, "exceeds"),
])
def test_refusals(keys, kwargs: dict, message: str) -> None:  # type: ignore[no-untyped-def]
    key, keyset = keys
    args = {"client_id": "signer", "audience": AUD, **kwargs}
    with pytest.raises(InvalidClient, match=message):
        _verify(create_client_assertion(key, **args), keyset)


def test_replay_and_foreign_key_refused(keys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    key, keyset = keys
    cache = ReplayCache()
    assertion = create_client_assertion(key, client_id="signer", audience=AUD)
    _verify(assertion, keyset, cache)
    with pytest.raises(InvalidClient, match="already used"):
        _verify(assertion, keyset, cache)
    stranger = load_or_create_ec_key(tmp_path / "other.pem")
    with pytest.raises(InvalidClient, match="rejected"):
        _verify(create_client_assertion(stranger, client_id="signer", audience=AUD), keyset)


def test_replay_cache_forgets_only_expired_ids() -> None:
    cache = ReplayCache()
    assert cache.check_and_remember("a", expires_at=100.0, now=0.0)
    assert cache.check_and_remember("b", expires_at=200.0, now=0.0)
    assert not cache.check_and_remember("a", expires_at=100.0, now=50.0)  # replay while valid
    assert not cache.check_and_remember("b", expires_at=200.0, now=150.0)
    assert cache.remembered() == 1  # "a" expired and was dropped
    assert cache.check_and_remember("a", expires_at=300.0, now=150.0)  # a new assertion may reuse it
    assert not cache.check_and_remember("a", expires_at=300.0, now=250.0)  # its old expiry must not drop it
    assert cache.remembered() == 1
