"""IdpClient against the real IdP on a loopback socket: discovery, JWKS cache and refetch on an
unknown kid (key rotation), code exchange, userinfo, catalogue and the admin failure API."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
import requests
from pydantic import SecretStr

from services.idp import create_app
from services.idp.provision import provision
from services.idp.settings import IdpSettings
from shared.clients.idp import IdpClient
from shared.errors import UpstreamError, UpstreamUnavailable
from shared.identity import IdentityEvidenceError
from shared.testing import LiveServer, free_port

CLIENT_SECRET = "s-" + "c" * 20
ADMIN_TOKEN = "a-" + "d" * 20
REDIRECT = "http://127.0.0.1:8999/cb"


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    port = free_port()
    settings = IdpSettings(port=port, data_dir=Path(tmp_path_factory.mktemp("idp")), log_level="WARNING",
                           signer_client_secret=SecretStr(CLIENT_SECRET), signer_redirect_uris=[REDIRECT],
                           admin_token=SecretStr(ADMIN_TOKEN), trainer_token=SecretStr("trainer-token-of-the-tests"),
                           admin_api_enabled=True)
    provision(settings)
    app = create_app(settings)
    with LiveServer(app, port) as server:
        yield server
    app.extensions["signlab.idp"].close()


def _login(client: IdpClient, hint: str) -> tuple[str, str, str]:
    """Headless login; returns (code, verifier, nonce)."""
    verifier, nonce = secrets.token_urlsafe(48), secrets.token_urlsafe(12)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    response = requests.get(client.discovery().authorization_endpoint, allow_redirects=False, timeout=10, params={
        "response_type": "code", "client_id": "signlab-signer", "redirect_uri": REDIRECT, "scope": "openid",
        "state": "s", "nonce": nonce, "code_challenge": challenge, "code_challenge_method": "S256", "login_hint": hint})
    code = parse_qs(urlparse(response.headers["Location"]).query)["code"][0]
    return code, verifier, nonce


def test_exchange_verify_userinfo(idp: LiveServer) -> None:
    client = IdpClient(idp.url)
    code, verifier, nonce = _login(client, "mette-jorgensen@dk-mitid")
    tokens = client.exchange_code(code, client_id="signlab-signer", client_secret=CLIENT_SECRET, redirect_uri=REDIRECT,
                                  code_verifier=verifier)
    identity = client.verify_id_token(tokens.id_token, audience="signlab-signer", nonce=nonce, min_loa="high")
    assert identity.etsi_serial_number() == "PNODK-110783-1238"
    assert client.userinfo(tokens.access_token)["family_name"] == "Jørgensen"
    with pytest.raises(UpstreamError) as caught:
        client.exchange_code(code, client_id="signlab-signer", client_secret=CLIENT_SECRET, redirect_uri=REDIRECT,
                             code_verifier=verifier)
    assert caught.value.upstream_error == "invalid_grant"


def test_jwks_is_cached_and_refetched_once_after_rotation(idp: LiveServer) -> None:
    admin = IdpClient(idp.url, admin_token=ADMIN_TOKEN)
    client = IdpClient(idp.url)
    before = {k.kid for k in client.jwks().keys}
    assert client.jwks() is client.jwks()
    new_kid = admin.rotate_keys()
    assert new_kid not in before
    code, verifier, nonce = _login(client, "kari-nordmann")
    tokens = client.exchange_code(code, client_id="signlab-signer", client_secret=CLIENT_SECRET, redirect_uri=REDIRECT,
                                  code_verifier=verifier)
    assert client.verify_id_token(tokens.id_token, audience="signlab-signer", nonce=nonce).subject
    assert new_kid in {k.kid for k in client.jwks().keys}


def test_unknown_key_still_fails_after_refetch(idp: LiveServer) -> None:
    client = IdpClient(idp.url)
    code, verifier, nonce = _login(client, "kari-nordmann!unknown-key")
    tokens = client.exchange_code(code, client_id="signlab-signer", client_secret=CLIENT_SECRET, redirect_uri=REDIRECT,
                                  code_verifier=verifier)
    with pytest.raises(IdentityEvidenceError) as caught:
        client.verify_id_token(tokens.id_token, audience="signlab-signer", nonce=nonce)
    assert caught.value.check == "kid"


def test_admin_methods_and_catalogue(idp: LiveServer) -> None:
    admin = IdpClient(idp.url, admin_token=ADMIN_TOKEN)
    armed = admin.arm_failure("slow", value=0.2, count=None, client_id="signlab-signer")
    assert armed.remaining is None and armed.value == 0.2
    assert [a.name for a in admin.armed_failures()] == ["slow"]
    admin.remove_failure(armed.id)
    admin.arm_failure("cancel")
    assert admin.clear_failures() == 1
    with pytest.raises(UpstreamError) as caught:
        admin.arm_failure("explode")
    assert caught.value.upstream_error == "invalid_request"
    with pytest.raises(UpstreamError) as caught:
        IdpClient(idp.url, admin_token="wrong").armed_failures()
    assert caught.value.upstream_status == 401
    with pytest.raises(ValueError, match="admin_token"):
        IdpClient(idp.url).armed_failures()
    assert len(admin.persons()) >= 12 and len(admin.eid_means()) >= 7
    assert {f["name"] for f in admin.failure_names()} >= {"wrong-nonce", "slow"}


def test_unreachable_idp() -> None:
    with pytest.raises(UpstreamUnavailable):
        IdpClient(f"http://127.0.0.1:{free_port()}", timeout=2).discovery()
