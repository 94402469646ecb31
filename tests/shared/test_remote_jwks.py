"""RemoteJwks freshness: cached within cache_seconds, served stale while one background refetch
runs (the JWKS owner may be blocked waiting for this very service), fetched synchronously when
nothing is known, for an unknown kid, beyond the grace period, or with cache_seconds=0."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from flask import Flask, jsonify
from joserfc import jwt
from joserfc.jwk import ECKey

from shared import remote_jwks
from shared.flow import Role
from shared.jose_keys import public_jwks
from shared.testing import LiveServer


def _key() -> ECKey:
    key = ECKey.generate_key("P-256", parameters={"use": "sig", "alg": "ES256"})
    key.ensure_kid()
    return key


class Owner:
    """A JWKS endpoint that counts fetches and can be held (like a signer whose threads are busy)."""

    def __init__(self) -> None:
        self.keys = [_key()]
        self.fetches = 0
        self.release = threading.Event()
        self.release.set()
        app = Flask("jwks-owner")

        @app.get("/jwks.json")
        def jwks() -> Any:
            self.release.wait(30)
            self.fetches += 1
            return jsonify(public_jwks(*self.keys))

        self.server = LiveServer(app).start()
        self.url = f"{self.server.url}/jwks.json"

    def token(self, key: ECKey | None = None) -> str:
        key = key or self.keys[0]
        return jwt.encode({"alg": "ES256", "kid": key.kid}, {"iss": "x"}, key)


@pytest.fixture
def owner() -> Any:
    o = Owner()
    yield o
    o.release.set()
    o.server.stop()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(remote_jwks.time, "monotonic", c)
    return c


def _wait_refresh(jwks: remote_jwks.RemoteJwks) -> None:
    for thread in threading.enumerate():
        if thread.name.startswith("jwks-refresh"):
            thread.join(30)


def test_fresh_cache_is_reused_and_unknown_kid_refetched(owner: Owner, clock: Clock) -> None:
    jwks = remote_jwks.RemoteJwks(owner.url, Role.SSASP, cache_seconds=300)
    jwks.key_set_for(owner.token())
    jwks.key_set_for(owner.token())
    assert owner.fetches == 1
    rotated = _key()
    owner.keys.append(rotated)
    keys = jwks.key_set_for(owner.token(rotated))
    assert owner.fetches == 2 and rotated.kid in [k.kid for k in keys.keys]


def test_stale_keys_serve_while_one_background_refresh_runs(owner: Owner, clock: Clock) -> None:
    jwks = remote_jwks.RemoteJwks(owner.url, Role.SSASP, cache_seconds=300)
    first = jwks.key_set_for(owner.token())
    clock.now += 301
    owner.release.clear()  # the owner cannot answer now (all its threads wait for us)
    # Answered from the known keys without waiting for the owner (it would hang until released).
    assert jwks.key_set_for(owner.token()) is first
    assert jwks.key_set_for(owner.token()) is first  # no second refresh thread
    owner.release.set()
    _wait_refresh(jwks)
    assert owner.fetches == 2
    assert jwks.key_set_for(owner.token()) is not first  # the refreshed set


def test_beyond_the_grace_period_or_uncached_the_caller_fetches(owner: Owner, clock: Clock) -> None:
    jwks = remote_jwks.RemoteJwks(owner.url, Role.SSASP, cache_seconds=300)
    jwks.key_set_for(owner.token())
    clock.now += 601
    jwks.key_set_for(owner.token())
    assert owner.fetches == 2
    strict = remote_jwks.RemoteJwks(owner.url, Role.SSASP, cache_seconds=0)
    strict.key_set_for(owner.token())
    strict.key_set_for(owner.token())
    assert owner.fetches == 4
    assert strict.prefetch() is None  # no prefetch without caching


def test_prefetch_retries_until_the_owner_answers(owner: Owner) -> None:
    owner.release.clear()
    jwks = remote_jwks.RemoteJwks(owner.url, Role.SSASP, cache_seconds=300, timeout=0.2)
    thread = jwks.prefetch(within_seconds=60, interval=0.05)
    assert thread is not None
    owner.release.set()
    thread.join(30)
    fetched = owner.fetches
    assert fetched >= 1
    jwks.key_set_for(owner.token())
    assert owner.fetches == fetched  # the first token found the keys already there


def test_the_ca_prefetches_the_signer_jwks_from_its_first_request(owner: Owner, tmp_path: Any) -> None:
    """The cold-start stall: the first issuance must find the signer's keys already fetched (the
    signer cannot answer a JWKS fetch while all its threads wait for issuances)."""
    from pydantic import SecretStr

    from services.ca import create_app
    from services.ca.provision import provision
    from services.ca.settings import CaSettings

    settings = CaSettings(data_dir=tmp_path, signer_jwks_url=owner.url, admin_token=SecretStr("a" * 24),
                          trainer_token=SecretStr("trainer-token-of-the-tests"), idp_url="http://127.0.0.1:9", log_level="WARNING")
    provision(settings)
    app = create_app(settings)
    keys = app.extensions["signlab.ca"].issuance.signer_keys
    assert owner.fetches == 0  # an app that serves nothing starts nothing
    assert app.test_client().get("/healthz").status_code in (200, 503)
    for thread in threading.enumerate():
        if thread.name == f"jwks-prefetch-{Role.SSASP.value}":
            thread.join(30)
    assert owner.fetches == 1
    keys.key_set_for(owner.token())
    assert owner.fetches == 1
