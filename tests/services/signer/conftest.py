"""Fixtures of the signer tests: settings with every secret, a provisioned SoftHSM2 token, the HSM,
the real IdP/CA/signer on loopback, and for the core's unit tests an in-process TSP and a clock.

SoftHSM reads its configuration once per process, so every signer app of the test process shares
the suite's one data directory; each app gets its own ``state_dir`` (database and audit log)
through :func:`fresh_settings`.
"""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import SecretStr

from services.signer.hsm import Hsm, OneTimeKey
from services.signer.settings import SecretPartner, SignerSettings
from shared.jose_keys import load_or_create_ec_key
from shared.testing import LiveServer
from shared.testing.partner import PORTAL_REDIRECT, Portal
from testkit.ecosystem import Ecosystem


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


class SignerEcosystem(Ecosystem):
    """The real IdP, CA and signer (:class:`testkit.ecosystem.Ecosystem`), the portal's
    redirect URI :data:`PORTAL_REDIRECT`; ``settings``, ``service`` and ``ca`` name the signer's
    settings, the signer's core and the CA's server, as the signer tests use them."""

    def __init__(self, root: Path, hsm: SignerSettings, **signer_settings: Any) -> None:
        # The tests play the partner portal: they hold its client-assertion key and publish its
        # JWKS, as the portal does at /.well-known/jwks.json; a second partner authenticates with
        # a client secret (HTTP Basic).
        self.portal_key = load_or_create_ec_key(root / "portal" / "client-assertion-key.pem")
        self.portal_jwks = LiveServer(_jwks_app(self.portal_key)).start()
        self.partner_secret = secrets.token_urlsafe(24)
        partner = SecretPartner(client_id="secret-partner", client_secret=SecretStr(self.partner_secret),
                                name="Secret Partner", redirect_uris=[PORTAL_REDIRECT])
        try:
            super().__init__(root, ("idp", "ca", "signer"), hsm=hsm, settings={"signer": {
                "portal_redirect_uris": [PORTAL_REDIRECT], "partner_clients": [partner],
                "portal_jwks_url": f"{self.portal_jwks.url}/.well-known/jwks.json", **signer_settings}})
        except BaseException:
            self.portal_jwks.stop()
            raise

    def stop(self) -> None:
        """Stop the services and the partner's key publication."""
        super().stop()
        self.portal_jwks.stop()

    @property
    def settings(self) -> Any:
        return self.settings_of("signer")

    @property
    def service(self) -> Any:
        return self.signer_service

    @property
    def signer_app(self) -> Any:
        return self.app("signer")

    @property
    def ca(self) -> LiveServer:
        return self.servers["ca"]

    @ca.setter
    def ca(self, server: LiveServer) -> None:  # a test restarts the CA (an outage)
        self.servers["ca"] = server


def _jwks_app(key: Any) -> Any:
    """The partner's key publication (``/.well-known/jwks.json``), as the portal serves its own."""
    from flask import Flask, jsonify

    from shared.jose_keys import public_jwks

    app = Flask("partner-jwks")
    app.add_url_rule("/.well-known/jwks.json", "jwks", lambda: jsonify(public_jwks(key)))
    return app


@pytest.fixture(scope="session")
def start_ecosystem(signer_settings: SignerSettings) -> Callable[..., SignerEcosystem]:
    """``start_ecosystem(root, **signer_settings)``: a :class:`SignerEcosystem` on the session's token."""
    return lambda root, **settings: SignerEcosystem(root, signer_settings, **settings)


def _jwks_app(key: Any) -> Any:
    """The partner's key publication (``/.well-known/jwks.json``), as the portal serves its own."""
    from flask import Flask, jsonify

    from shared.jose_keys import public_jwks

    app = Flask("partner-jwks")
    app.add_url_rule("/.well-known/jwks.json", "jwks", lambda: jsonify(public_jwks(key)))
    return app


@pytest.fixture(scope="module")
def ecosystem(start_ecosystem: Callable[..., SignerEcosystem],
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[SignerEcosystem]:
    """Real IdP + CA + signer on loopback (one per test module)."""
    with start_ecosystem(tmp_path_factory.mktemp("eco")) as env:
        yield env


@pytest.fixture(scope="module")
def portal(ecosystem: SignerEcosystem) -> Portal:
    """The tests' partner (the portal's client at the signer) against the module's ecosystem."""
    return Portal(ecosystem)


@pytest.fixture(scope="module")
def root(ecosystem: SignerEcosystem) -> asn1_x509.Certificate:
    """The SignLab root, as a relying party downloads it from the CA."""
    return asn1_x509.Certificate.load(requests.get(f"{ecosystem.ca_url}/certs/root.crt", timeout=10).content)


# ---------------------------------------------------------------------------- the core without HTTP


class InProcessTsp:
    """The TSP's own CA code (``services.ca``) called in process, in place of the signer's
    :class:`~services.signer.upstream.CertificateGateway`, for unit tests of the signer's core.

    Real parts: the CSR's proof of possession is checked (``services.ca.issuance.parse_csr``) and
    the certificate comes from the real ``CertificateAuthority`` with the real profiles, CRL and
    TSA. Left to the TSP's own tests (and the HTTP tests here): the client assertion and the
    identity evidence; the subject is one fixed test person.

    :ivar refuse: an error code the next issuance answers with (the TSP refusing at step 7), with
        the HTTP status ``refuse_status``.
    :ivar certify_other_key: issue the next certificate for another key (the TSP's ``wrong-key``).
    :ivar unreachable: the next calls fail as if the TSP did not answer (an outage).
    """

    def __init__(self, data_dir: Path) -> None:
        from services.ca.core import build_tsp
        from services.ca.provision import provision
        from services.ca.settings import CaSettings
        from shared.testing import random_secrets

        settings = CaSettings(data_dir=data_dir, log_level="WARNING", **random_secrets(CaSettings))
        provision(settings)
        self.tsp = build_tsp(settings)
        self.refuse: str | None = None
        self.refuse_status = 403
        self.certify_other_key = False
        self.unreachable = False
        self.issued: list[str] = []

    def issue(self, *, csr_der: bytes, profile: str, id_token: str, transaction_id: str) -> Any:
        """The certificate for the CSR's key, as the signer's gateway returns it."""
        from services.ca.faults import substitute_public_key
        from services.ca.issuance import parse_csr
        from services.ca.profiles import Profile, SubjectIdentity
        from shared.clients.ca import IssuedCertificate
        from shared.errors import UpstreamError, UpstreamUnavailable
        from shared.flow import Role, step

        if self.unreachable:
            raise UpstreamUnavailable(Role.TSP, "no answer (the test's outage)", step=step(7))
        if self.refuse:
            error, self.refuse = self.refuse, None
            raise UpstreamError(Role.TSP, error, "refused by the test", self.refuse_status)
        csr = parse_csr(base64.b64encode(csr_der).decode())
        public_key = substitute_public_key() if self.certify_other_key else csr.public_key()
        self.certify_other_key = False
        issued = self.tsp.authority.issue(
            public_key=public_key, subject=SubjectIdentity("NO", "Kari", "Nordmann", "PNONO-14838540105"),  # type: ignore[arg-type]
            profile=Profile(profile), subject_id="ps-unit-test", loa="high", requester="signlab-signer",
            transaction_id=transaction_id)
        self.issued.append(issued.serial)
        return IssuedCertificate.from_json(issued.to_json())  # what the issuance API would answer

    def revoke_for_transaction(self, transaction_id: str, *, note: str) -> list[str]:
        """The TSP's revocation of what it issued for ``transaction_id`` (its own code, in process)."""
        from shared.errors import UpstreamError, UpstreamUnavailable
        from shared.flow import Role

        if self.unreachable:
            raise UpstreamUnavailable(Role.TSP, "no answer (the test's outage)")
        revoked = self.tsp.authority.revoke_issued_to("signlab-signer", serial=None, transaction_id=transaction_id,
                                                      reason="cessationOfOperation", note=note)
        if not revoked:
            raise UpstreamError(Role.TSP, "not_found", "no certificate issued to this client matches", 404)
        return [r.serial for r in revoked]

    def status_of(self, serial: str) -> str:
        """``valid`` / ``revoked`` … of a certificate the TSP issued (its own database)."""
        from services.ca.describe import status_of

        record = self.tsp.authority.lookup(int(serial, 16))
        assert record is not None
        return str(status_of(record))

    def validation_info(self, certificate: asn1_x509.Certificate, issuer: asn1_x509.Certificate, *,
                        required: bool = False) -> dict[str, list[str]]:
        """The issuing and root CA's CRLs (no OCSP here: the responder's own tests cover it)."""
        return {"crl": [base64.b64encode(self.tsp.authority.crl(name)).decode() for name in ("issuing", "root")],
                "ocsp": []}

    def timestamp(self, query_der: bytes) -> bytes:
        """The TSA's answer to a DER ``TimeStampReq``."""
        return self.tsp.tsa.respond(query_der)


@pytest.fixture(scope="module")
def in_process_tsp(tmp_path_factory: pytest.TempPathFactory) -> InProcessTsp:
    """A provisioned TSP called in process (one per test module)."""
    return InProcessTsp(tmp_path_factory.mktemp("tsp"))


class Clock:
    """An injected time source the test moves (seconds since the epoch, starting now)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    """A clock for one test."""
    return Clock()


@pytest.fixture
def core(fresh_settings: SignerSettings, own_hsm: Hsm, in_process_tsp: InProcessTsp, clock: Clock) -> Any:
    """The signer's core (``SignerCore``) built directly: real HSM, store and audit log, the
    in-process TSP, the injected clock; its IdP client is never called (no browser login here)."""
    from services.signer.service import SignerCore
    from services.signer.store import Store
    from services.signer.upstream import IdentityGateway
    from shared.audit import AuditLog

    made = SignerCore(fresh_settings, own_hsm, Store(fresh_settings.database_path),
                          AuditLog(fresh_settings.audit_path),
                          IdentityGateway(fresh_settings, "http://127.0.0.1:9/never-called"), in_process_tsp,
                          secrets.token_bytes(32), clock=clock)
    made.startup()
    return made


@pytest.fixture
def consented(core: Any) -> Any:
    """``consented(**par_params) -> (transaction id, code, code_verifier)``: a real PAR at ``core``
    (step 2), then the state the IdP login and the consent (steps 3-5) leave behind."""
    from authlib.oauth2.rfc7636 import create_s256_code_challenge

    from services.signer.store import secret_hash

    def make(**par: str) -> tuple[str, str, str]:
        client = core.clients.client(core.settings.portal_client_id)
        verifier = secrets.token_urlsafe(48)
        pushed = core.push_authorization_request(client, {
            "response_type": "code", "code_challenge": create_s256_code_challenge(verifier),
            "code_challenge_method": "S256", "state": "s", **par})
        record = core.store.transaction_by("par_hash", secret_hash(pushed["request_uri"].rsplit(":", 1)[1]))
        code = secrets.token_urlsafe(32)
        core.store.advance(record.id, ["requested"], "consented", subject="ps-kari", identity={"loa": "high"},
                           code_hash=secret_hash(code), code_expires=core.now() + 60)
        core.evidence.keep(record.id, "evidence")
        return record.id, code, verifier

    return make


@pytest.fixture
def own_hsm(signer_settings: SignerSettings) -> Iterator[Hsm]:
    """An HSM handle of its own on the session token, for tests that arm faults on it."""
    made = Hsm(signer_settings)
    yield made
    made.faults = None


@pytest.fixture
def failing_hsm(own_hsm: Hsm, tmp_path: Path, request: pytest.FixtureRequest) -> Any:
    """The lab fault board on :func:`own_hsm`: ``failing_hsm.arm("hsm-sign")`` fails its next C_Sign."""
    from services.signer.faults import SIGNER_FAULTS
    from shared.audit import AuditLog
    from shared.faults import FaultBoard

    if "core" in request.fixturenames:
        request.getfixturevalue("core")  # built first: the core sets its HSM's (disabled) fault board
    own_hsm.faults = FaultBoard(SIGNER_FAULTS, SecretStr("admin"), AuditLog(tmp_path / "faults.jsonl"))
    return own_hsm.faults
