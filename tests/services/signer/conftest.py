"""Fixtures of the signer tests: settings with every secret, a provisioned SoftHSM2 token, the HSM.

SoftHSM reads its configuration once per process, so every signer app of the test process shares
the suite's one data directory; each app gets its own ``state_dir`` (database and audit log)
through :func:`fresh_settings`.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import SecretStr

from services.signer.hsm import Hsm, OneTimeKey
from services.signer.settings import SignerSettings
from shared.testing import LiveServer, free_port


@pytest.fixture(scope="session")
def signer_settings(signer_settings: SignerSettings) -> SignerSettings:
    """The suite's provisioned token (tests/conftest.py), without the background sweeper thread.

    Built on the suite-wide fixture so the whole test process uses one SoftHSM configuration.
    """
    return signer_settings.model_copy(update={"sweep_interval_seconds": 0})


@pytest.fixture
def fresh_settings(signer_settings: SignerSettings, tmp_path: Path) -> SignerSettings:
    """The session's HSM settings with a fresh state directory (own database and audit log)."""
    return signer_settings.model_copy(update={"state_dir": tmp_path / "state"})


@pytest.fixture(scope="session")
def hsm(signer_settings: SignerSettings) -> Hsm:
    """The process's HSM handle on the session token."""
    return Hsm(signer_settings)


class LocalTestCa:
    """A throw-away root for unit tests of the CMS/JAdES builders (not the TSP service).

    The TSP's real issuance API is exercised by the integration tests; these unit tests need only
    *a* certificate over the HSM's public key to check that the signature objects are correct.
    """

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "SignLab unit-test root")])
        now = datetime.now(UTC)
        self.cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(self.key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=1))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.asn1 = asn1_x509.Certificate.load(self.cert.public_bytes(serialization.Encoding.DER))

    def issue(self, key: OneTimeKey) -> asn1_x509.Certificate:
        """A leaf certificate (nonRepudiation) for the one-time key."""
        public = serialization.load_der_public_key(key.public_key_info.dump())
        now = datetime.now(UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Unit Test Signer")]))
            .issuer_name(self.cert.subject).public_key(public)  # type: ignore[arg-type]
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=1))
            .not_valid_after(now + timedelta(minutes=15))
            .add_extension(x509.KeyUsage(False, True, False, False, False, False, False, False, False), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


@pytest.fixture(scope="session")
def local_ca() -> LocalTestCa:
    """A throw-away root for unit tests of the signature builders."""
    return LocalTestCa()


PORTAL_REDIRECT = "http://127.0.0.1:9/sign/callback"
"""The portal's registered redirect URI in these tests (never contacted: the test reads the redirect)."""


class Ecosystem:
    """The real IdP and CA apps and a signer app, each on its own loopback port."""

    def __init__(self, tmp: Path, signer_settings: SignerSettings) -> None:
        from services.ca import create_app as create_ca
        from services.ca.provision import provision as provision_ca
        from services.ca.settings import CaSettings
        from services.idp import create_app as create_idp
        from services.idp.settings import IdpSettings
        from services.signer import create_app as create_signer
        from services.signer.provision import provision as provision_signer

        signer_port, idp_port, ca_port = free_port(), free_port(), free_port()
        self.signer_url = f"http://127.0.0.1:{signer_port}"
        self.idp_url = f"http://127.0.0.1:{idp_port}"
        self.ca_url = f"http://127.0.0.1:{ca_port}"
        shared_secret = secrets.token_urlsafe(24)
        self.idp_admin = secrets.token_urlsafe(16)
        self.ca_admin = secrets.token_urlsafe(16)
        idp_settings = IdpSettings(port=idp_port, data_dir=tmp / "idp", signer_client_secret=SecretStr(shared_secret),
                                   signer_redirect_uris=[f"{self.signer_url}/oauth2/idp-callback"],
                                   admin_token=SecretStr(self.idp_admin), trainer_token=SecretStr("trainer-token-of-the-tests"), log_level="WARNING")
        ca_settings = CaSettings(port=ca_port, data_dir=tmp / "ca", idp_url=self.idp_url,
                                 signer_jwks_url=f"{self.signer_url}/.well-known/jwks.json",
                                 admin_token=SecretStr(self.ca_admin), trainer_token=SecretStr("trainer-token-of-the-tests"), log_level="WARNING")
        provision_ca(ca_settings)
        self.settings = signer_settings.model_copy(update={
            "port": signer_port, "state_dir": tmp / "signer-state", "idp_url": self.idp_url, "ca_url": self.ca_url,
            "idp_client_secret": SecretStr(shared_secret), "portal_redirect_uris": [PORTAL_REDIRECT],
            "log_level": "WARNING"})
        provision_signer(self.settings)
        self.idp = LiveServer(create_idp(idp_settings), idp_port).start()
        self.ca = LiveServer(create_ca(ca_settings), ca_port).start()
        self.signer_app = create_signer(self.settings)
        self.signer = LiveServer(self.signer_app, signer_port).start()

    @property
    def service(self):  # type: ignore[no-untyped-def]
        """The signer's core (store, audit, HSM)."""
        return self.signer_app.extensions["signlab.signer"]

    def stop(self) -> None:
        """Stop the three servers."""
        for live in (self.signer, self.ca, self.idp):
            live.stop()


@pytest.fixture(scope="module")
def ecosystem(signer_settings: SignerSettings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ecosystem]:
    """Real IdP + CA + signer on loopback (one per test module)."""
    env = Ecosystem(tmp_path_factory.mktemp("eco"), signer_settings)
    try:
        yield env
    finally:
        env.stop()
