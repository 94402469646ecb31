"""Acceptance with the real TSP (CA + TSA + CRLs + trusted list) on a loopback port.

The certificates are issued by the real CA through its issuance API; the CA's peers (IdP JWKS,
signer JWKS) are tiny real apps publishing test keys, as in the CA's own tests. Only steps 8-9
(building the CMS with the one-time key) are done here with pyHanko's ``SimpleSigner`` instead of
the SSASP, because this test is about the portal's packaging and validation against the real TSP.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from flask import Flask, jsonify
from joserfc import jwt
from joserfc.jwk import ECKey
from pydantic import SecretStr
from pyhanko.sign import signers
from pyhanko_certvalidator.registry import SimpleCertificateStore

from services.ca import create_app as create_ca
from services.ca.provision import provision as provision_ca
from services.ca.settings import CaSettings
from services.portal import pades
from services.portal.documents import Level, Qualifier
from services.portal.trust import TrustStore
from services.portal.validation import validate_document
from shared.client_assertion import create_client_assertion
from shared.clients.ca import CaClient
from shared.identity import LOA_HIGH, LOA_SUBSTANTIAL
from shared.jose_keys import public_jwks
from shared.testing import LiveServer, free_port

PDF = (Path(__file__).parents[3] / "services" / "portal" / "samples" / "employment-contract.pdf").read_bytes()


def _jwks_app(name: str, key: ECKey, discovery: dict[str, Any] | None = None) -> Flask:
    app = Flask(name)
    app.add_url_rule("/jwks.json", "jwks", lambda: jsonify(public_jwks(key)))
    if discovery is not None:
        app.add_url_rule("/.well-known/openid-configuration", "disc", lambda: jsonify(discovery))
    return app


def _key() -> ECKey:
    key = ECKey.generate_key("P-256", parameters={"use": "sig", "alg": "ES256"})
    key.ensure_kid()
    return key


class RealTsp:
    def __init__(self, tmp: Path) -> None:
        self.idp_key, self.signer_key = _key(), _key()
        idp_port = free_port()
        self.idp_url = f"http://127.0.0.1:{idp_port}"
        idp_metadata = {"issuer": self.idp_url, "jwks_uri": f"{self.idp_url}/jwks.json"}
        self.idp = LiveServer(_jwks_app("idp", self.idp_key, idp_metadata), idp_port).start()
        self.signer = LiveServer(_jwks_app("signer", self.signer_key)).start()
        port = free_port()
        self.settings = CaSettings(port=port, data_dir=tmp, idp_url=self.idp_url, signer_jwks_url=f"{self.signer.url}/jwks.json",
                                   admin_token=SecretStr(secrets.token_urlsafe(16)),
                                   trainer_token=SecretStr("trainer-token-of-the-tests"), log_level="WARNING")
        provision_ca(self.settings)
        self.server = LiveServer(create_ca(self.settings), port).start()
        self.client = CaClient(self.server.url, public_cert_base=self.settings.public_cert_base)

    def issue(self, profile: str) -> tuple[ec.EllipticCurvePrivateKey, Any]:
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
               .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER))
        now = int(time.time())
        high = profile == "qes"
        eid = {"id": "no-bankid", "name": "BankID", "country": "NO", "loa": "high", "qes_approved": True} if high else \
              {"id": "se-freja", "name": "Freja eID", "country": "SE", "loa": "substantial", "qes_approved": False}
        claims = {"iss": self.idp_url, "sub": "sub-1", "aud": "signlab-signer", "iat": now, "exp": now + 300, "auth_time": now - 5,
                  "nonce": "n", "acr": LOA_HIGH if high else LOA_SUBSTANTIAL, "amr": ["pwd"], "given_name": "Kari",
                  "family_name": "Nordmann", "birthdate": "1970-01-01", "signlab_eid": eid,
                  "signlab_person_id": {"semantics": "PNO", "country": "NO", "value": "01017012345"}}
        id_token = jwt.encode({"alg": "ES256", "kid": self.idp_key.kid, "typ": "JWT"}, claims, self.idp_key)
        assertion = create_client_assertion(self.signer_key, client_id="signlab-signer", audience=self.client.issuance_url)
        issued = self.client.issue_certificate(csr_der=csr, profile=profile, id_token=id_token, client_assertion=assertion,
                                               transaction_id="tx-portal-test")
        return key, issued

    def stop(self) -> None:
        self.client.close()
        for live in (self.server, self.signer, self.idp):
            live.stop()


@pytest.fixture(scope="module")
def tsp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealTsp]:
    env = RealTsp(tmp_path_factory.mktemp("ca"))
    yield env
    env.stop()


@pytest.fixture(scope="module")
def trust(tsp: RealTsp, tmp_path_factory: pytest.TempPathFactory) -> TrustStore:
    trust_dir = tmp_path_factory.mktemp("trust")
    (trust_dir / "root.der").write_bytes(tsp.client.certificate("root"))
    return TrustStore(trust_dir / "root.der", trust_dir / "tl.xml", tsp.client, f"{tsp.server.url}/tsa")


@pytest.mark.parametrize(("profile", "expected"), [("qes", "QES"), ("ades", "AdES")])
def test_pades_b_lta_with_real_tsp_is_qualified_only_for_qes(tsp: RealTsp, trust: TrustStore, profile: str, expected: str) -> None:
    key, issued = tsp.issue(profile)
    prep = asyncio.run(pades.prepare_pdf(PDF, label="c.pdf", qualifier=Qualifier(profile), visible=True,
                                         signer_name="Kari Nordmann", bytes_reserved=32768))
    signer = signers.SimpleSigner(
        signing_cert=asn1_x509.Certificate.load(issued.certificate),
        signing_key=asn1_keys.PrivateKeyInfo.load(key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                                                   serialization.NoEncryption())),
        cert_registry=SimpleCertificateStore.from_certs([asn1_x509.Certificate.load(c) for c in issued.chain]),
    )
    cms_der = asyncio.run(signer.async_sign(prep.digest, "sha256", use_pades=True)).dump()
    settings = trust.settings()
    signed = asyncio.run(pades.augment_pdf(prep, cms_der, level=Level.B_LTA, timestamper=trust.timestamper(),
                                           root=trust.root(), material=settings.material))
    report = asyncio.run(validate_document("c.pdf", signed, settings))
    sig = report.signatures[0]
    assert report.indication == "TOTAL_PASSED", report.to_dict()
    assert sig.level == "B-LTA"
    assert sig.qualification == expected, sig.qualification_detail
    tampered = bytearray(signed)
    tampered[tampered.find(b"Salary") + 1] ^= 1
    bad = asyncio.run(validate_document("c.pdf", bytes(tampered), settings))
    assert (bad.indication, bad.sub_indication) == ("TOTAL_FAILED", "HASH_FAILURE")
