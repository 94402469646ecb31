"""Fixtures of the IPSP tests: a real IdP app (test client and live loopback server) and helpers
that drive the OIDC code flow with PKCE the way a relying party does."""

from __future__ import annotations

import base64
import hashlib
import secrets
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from flask import Flask
from flask.testing import FlaskClient
from joserfc.jwk import KeySet
from pydantic import SecretStr

from services.idp import create_app
from services.idp.provision import provision
from services.idp.settings import ClientRegistration, IdpSettings
from shared.testing import LiveServer, free_port

# Tests run with --import-mode=importlib, so test modules cannot import "conftest"; this alias lets
# them import the helpers below (``from idp_testkit import AuthRequest``) without a package.
sys.modules.setdefault("idp_testkit", sys.modules[__name__])

CLIENT_ID = "signlab-signer"
CLIENT_SECRET = "signer-secret-" + "x" * 16
REDIRECT_URI = "http://127.0.0.1:8999/oauth2/idp-callback"
OTHER_ID = "other-rp"
OTHER_SECRET = "other-secret-" + "y" * 16
OTHER_REDIRECT = "http://127.0.0.1:8998/cb"
ADMIN_TOKEN = "admin-" + "z" * 24
POST_LOGOUT = "http://127.0.0.1:8999/logged-out"


def make_settings(data_dir: Path, port: int = 8001, **overrides: Any) -> IdpSettings:
    """IdP settings for a test: the signer client plus a second client, admin API on."""
    values: dict[str, Any] = {
        "port": port, "data_dir": data_dir, "signer_client_secret": SecretStr(CLIENT_SECRET),
        "signer_redirect_uris": [REDIRECT_URI], "signer_post_logout_redirect_uris": [POST_LOGOUT],
        "admin_token": SecretStr(ADMIN_TOKEN), "trainer_token": SecretStr("trainer-token-of-the-tests"), "admin_api_enabled": True,
        "extra_clients": [ClientRegistration(client_id=OTHER_ID, client_secret=SecretStr(OTHER_SECRET),
                                          redirect_uris=[OTHER_REDIRECT], name="Other relying party")],
        "log_level": "WARNING",
    }
    values.update(overrides)
    return IdpSettings(**values)


@pytest.fixture
def settings(tmp_path: Path) -> IdpSettings:
    """Provisioned settings under a temporary data directory."""
    result = make_settings(tmp_path / "idp")
    provision(result)
    return result


@pytest.fixture
def app(settings: IdpSettings) -> Iterator[Flask]:
    """The IdP app."""
    application = create_app(settings)
    yield application
    application.extensions["signlab.idp"].close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client (keeps cookies like a browser)."""
    return app.test_client()


@pytest.fixture(scope="module")
def live_idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, IdpSettings]]:
    """The IdP served on a real loopback socket (its issuer is its real URL)."""
    port = free_port()
    result = make_settings(tmp_path_factory.mktemp("idp-live"), port=port)
    provision(result)
    application = create_app(result)
    server = LiveServer(application, port).start()
    yield server, result
    server.stop()
    application.extensions["signlab.idp"].close()


@dataclass
class AuthRequest:
    """One authentication request as a relying party builds it."""

    client_id: str = CLIENT_ID
    redirect_uri: str = REDIRECT_URI
    scope: str = "openid profile"
    state: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    nonce: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    verifier: str = field(default_factory=lambda: secrets.token_urlsafe(48))
    acr_values: str | None = None
    login_hint: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def challenge(self) -> str:
        """S256 of the verifier."""
        return base64.urlsafe_b64encode(hashlib.sha256(self.verifier.encode()).digest()).rstrip(b"=").decode()

    def params(self) -> dict[str, str]:
        """Query parameters of ``/authorize``."""
        result = {"response_type": "code", "client_id": self.client_id, "redirect_uri": self.redirect_uri,
                  "scope": self.scope, "state": self.state, "nonce": self.nonce, "code_challenge": self.challenge,
                  "code_challenge_method": "S256"}
        if self.acr_values:
            result["acr_values"] = self.acr_values
        if self.login_hint:
            result["login_hint"] = self.login_hint
        result.update(self.extra)
        return {k: v for k, v in result.items() if v is not None}


def query_of(location: str) -> dict[str, str]:
    """The query parameters of a redirect."""
    return {k: v[0] for k, v in parse_qs(urlparse(location).query).items()}


def authorize(client: FlaskClient, req: AuthRequest) -> Any:
    """``GET /authorize`` without following redirects."""
    return client.get("/authorize", query_string=req.params())


def redeem(client: FlaskClient, auth_code: str, req: AuthRequest, **form: str | None) -> Any:
    """``POST /token`` with client_secret_basic (override any form field with ``form``; None drops it)."""
    data: dict[str, str | None] = {"grant_type": "authorization_code", "code": auth_code, "redirect_uri": req.redirect_uri,
            "code_verifier": req.verifier}
    data.update(form)
    secret = CLIENT_SECRET if req.client_id == CLIENT_ID else OTHER_SECRET
    return client.post("/token", data={k: v for k, v in data.items() if v is not None}, auth=(req.client_id, secret))


def headless_tokens(client: FlaskClient, req: AuthRequest) -> dict[str, Any]:
    """Run the headless flow and return the token response (asserting every step succeeded)."""
    response = authorize(client, req)
    assert response.status_code == 302, response.get_data(as_text=True)
    params = query_of(response.headers["Location"])
    assert "code" in params, params
    assert params["state"] == req.state
    token = redeem(client, params["code"], req)
    assert token.status_code == 200, token.get_json()
    return token.get_json()  # type: ignore[no-any-return]


def jwks_of(client: FlaskClient) -> KeySet:
    """The published key set."""
    return KeySet.import_key_set(client.get("/.well-known/jwks.json").get_json())
