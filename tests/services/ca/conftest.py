"""Fixtures of the TSP tests: a provisioned CA served on loopback, plus a test IdP and a test signer.

The IdP and the signing service are other roles: here each is a tiny real Flask app on a real
socket that publishes a JWKS (and, for the IdP, OIDC discovery), with keys the tests sign ID
tokens and client assertions with — so the CA runs its real HTTP fetches and real checks.
"""

from __future__ import annotations

import base64
import contextlib
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from flask import Flask, jsonify
from joserfc import jwt
from joserfc.jwk import ECKey
from pydantic import SecretStr

from services.ca import create_app
from services.ca.provision import provision
from services.ca.settings import CaSettings
from shared.client_assertion import create_client_assertion
from shared.clients.ca import CaClient
from shared.identity import LOA_HIGH, LOA_LOW, LOA_SUBSTANTIAL
from shared.jose_keys import public_jwks
from shared.testing import LiveServer, free_port

ACR = {"low": LOA_LOW, "substantial": LOA_SUBSTANTIAL, "high": LOA_HIGH}
EIDS = {
    "high": {"id": "no-bankid", "name": "BankID", "country": "NO", "loa": "high", "qes_approved": True},
    "high-unapproved": {"id": "xx-high", "name": "Unlisted High eID", "country": "NO", "loa": "high",
                        "qes_approved": False},
    "substantial": {"id": "se-freja", "name": "Freja eID", "country": "SE", "loa": "substantial",
                    "qes_approved": False},
    "low": {"id": "no-minid", "name": "MinID", "country": "NO", "loa": "low", "qes_approved": False},
}


def _new_key() -> ECKey:
    key = ECKey.generate_key("P-256", parameters={"use": "sig", "alg": "ES256"})
    key.ensure_kid()
    return key


def _jwks_app(name: str, keys: list[ECKey], discovery: dict[str, Any] | None = None) -> Flask:
    app = Flask(name)

    @app.get("/jwks.json")
    def jwks() -> Any:
        return jsonify(public_jwks(*keys))

    if discovery is not None:
        @app.get("/.well-known/openid-configuration")
        def config() -> Any:
            return jsonify(discovery)

    return app


@dataclass
class CaEnv:
    """A running CA with the peers the tests need."""

    settings: CaSettings
    url: str
    client: CaClient
    idp_url: str
    idp_key: ECKey
    signer_key: ECKey
    admin_token: str
    app: Flask

    def id_token(self, eid: str = "high", *, key: ECKey | None = None, issuer: str | None = None,
                 iat: float | None = None, exp_in: int = 300, kid: str | None = None, **claims: Any) -> str:
        """An ID token in the IdP contract's shape, signed with the test IdP key (or ``key``)."""
        now = time.time() if iat is None else iat
        means = EIDS[eid]
        body: dict[str, Any] = {
            "iss": issuer or self.idp_url, "sub": "sub-" + secrets.token_hex(4), "aud": "signlab-signer",
            "iat": int(now), "exp": int(now) + exp_in, "auth_time": int(now) - 5, "nonce": "n-1",
            "acr": ACR[means["loa"]], "amr": ["pwd", "otp"], "given_name": "Kari", "family_name": "Nordmann",
            "birthdate": "1970-01-01", "signlab_eid": means,
            "signlab_person_id": {"semantics": "PNO", "country": "NO", "value": "01017012345"},
        }
        body.update(claims)
        signing = key or self.idp_key
        return jwt.encode({"alg": "ES256", "kid": kid or signing.kid, "typ": "JWT"}, body, signing)

    def assertion(self, *, key: ECKey | None = None, client_id: str = "signlab-signer",
                  audience: str | None = None) -> str:
        """A client assertion of the signing service."""
        return create_client_assertion(key or self.signer_key, client_id=client_id,
                                       audience=audience or self.client.issuance_url)

    def request(self, profile: str = "qes", eid: str = "high", csr: bytes | None = None, **overrides: Any) -> dict[str, Any]:
        """A complete issuance request body."""
        body: dict[str, Any] = {
            "csr": base64.b64encode(csr if csr is not None else make_csr()).decode("ascii"),
            "profile": profile, "id_token": self.id_token(eid), "transaction_id": "txn-" + secrets.token_hex(4),
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": self.assertion(),
        }
        body.update(overrides)
        return body


def make_csr(key: Any = None, common_name: str = "Mallory Wants This Name") -> bytes:
    """A DER PKCS#10 request (EC P-256 by default); its subject is deliberately not the signer's."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    algorithm = None if key.__class__.__name__.startswith("Ed") else hashes.SHA256()
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
           .sign(key, algorithm))
    return csr.public_bytes(serialization.Encoding.DER)


@pytest.fixture(scope="session")
def csr_factory() -> Callable[..., bytes]:
    """:func:`make_csr`, as a fixture (test modules cannot import the conftest)."""
    return make_csr


@contextlib.contextmanager
def _running_ca(data_dir: Path, **overrides: Any) -> Iterator[CaEnv]:
    """A provisioned CA on a loopback port (settings ``overrides`` applied), with a test IdP and a
    test signer JWKS."""
    idp_key, signer_key = _new_key(), _new_key()
    idp_port = free_port()
    idp_url = f"http://127.0.0.1:{idp_port}"
    idp = LiveServer(_jwks_app("test-idp", [idp_key], {"issuer": idp_url, "jwks_uri": f"{idp_url}/jwks.json"}),
                     idp_port).start()
    signer = LiveServer(_jwks_app("test-signer", [signer_key])).start()
    port = free_port()
    admin = secrets.token_urlsafe(16)
    settings = CaSettings(port=port, data_dir=data_dir, idp_url=idp_url, signer_jwks_url=f"{signer.url}/jwks.json",
                          admin_token=SecretStr(admin), trainer_token=SecretStr("trainer-token-of-the-tests"),
                          log_level="WARNING", **overrides)
    provision(settings)
    app = create_app(settings)
    server = LiveServer(app, port).start()
    client = CaClient(server.url, public_cert_base=settings.public_cert_base)
    try:
        yield CaEnv(settings, server.url, client, idp_url, idp_key, signer_key, admin, app)
    finally:
        client.close()
        for live in (server, signer, idp):
            live.stop()


@pytest.fixture(scope="session")
def ca_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CaEnv]:
    """A provisioned CA with the default settings (revocation profile ``crl-ocsp``)."""
    with _running_ca(tmp_path_factory.mktemp("ca")) as env:
        yield env


@pytest.fixture(scope="session")
def short_term_ca_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CaEnv]:
    """A provisioned CA in the revocation profile ``short-term-no-revocation``."""
    with _running_ca(tmp_path_factory.mktemp("ca-short-term"), revocation_profile="short-term-no-revocation") as env:
        yield env


def _issuer(env: CaEnv) -> Callable[..., Any]:
    def _issue(profile: str = "qes", eid: str = "high") -> Any:
        key = ec.generate_private_key(ec.SECP256R1())
        issued = env.client.issue_certificate(csr_der=make_csr(key), profile=profile,
                                              id_token=env.id_token(eid), client_assertion=env.assertion(),
                                              transaction_id="txn-test")
        return issued, key
    return _issue


@pytest.fixture(scope="session")
def issue(ca_env: CaEnv) -> Callable[..., Any]:
    """Issue through the HTTP API; returns (IssuedCertificate, private key)."""
    return _issuer(ca_env)


@pytest.fixture(scope="session")
def issue_short_term(short_term_ca_env: CaEnv) -> Callable[..., Any]:
    """Like ``issue``, from the CA in the short-term-no-revocation profile."""
    return _issuer(short_term_ca_env)
