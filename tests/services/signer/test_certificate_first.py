"""Certificate-first flow on /csc/v1 with pyHanko's own CSCSigner, unchanged (design §2, second flow)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from io import BytesIO
from typing import Any

import aiohttp
import pytest
import requests
from asn1crypto import x509
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import fields, signers
from pyhanko.sign.signers.csc_signer import (
    CSCAuthorizationInfo,
    CSCAuthorizationManager,
    CSCServiceSessionInfo,
    CSCSigner,
    fetch_certs_in_csc_credential,
)
from pyhanko.sign.validation import async_validate_pdf_signature
from pyhanko_certvalidator import ValidationContext

from shared.errors import UpstreamError
from shared.testing.partner import Portal, make_pdf

pytestmark = pytest.mark.hsm

class AuthorizeManager(CSCAuthorizationManager):
    """Gets a SAD from credentials/authorize for exactly the hashes pyHanko computed (SCAL 2)."""

    def __init__(self, session: aiohttp.ClientSession, info: CSCServiceSessionInfo, creds: Any) -> None:
        super().__init__(info, creds)
        self.session = session
        self.calls = 0

    async def authorize_signature(self, hash_b64s: list[str]) -> CSCAuthorizationInfo:
        self.calls += 1
        async with self.session.post(self.csc_session_info.endpoint_url("credentials/authorize"),
                                     json=self.format_csc_auth_request(hash_b64s=hash_b64s),
                                     headers=self.auth_headers, raise_for_status=True) as answer:
            return self.parse_csc_auth_response(await answer.json())


@pytest.fixture(scope="module")
def portal(ecosystem: Any) -> Any:
    return Portal(ecosystem)


def _service_token(portal: Any, qualifier: str = "eu_eidas_qes") -> Any:
    token = portal.token(scope="service", qualifier=qualifier, num_signatures=1)
    assert token.credential_id and token.scope == "service"
    return token


def test_pyhanko_csc_signer_unchanged(portal: Any, ecosystem: Any) -> None:
    token = _service_token(portal)
    root = x509.Certificate.load(requests.get(f"{ecosystem.ca_url}/certs/root.crt", timeout=10).content)
    assert portal.client.credentials_list(token.access_token) == [token.credential_id]
    info = portal.client.credentials_info(token.access_token, token.credential_id)
    assert info.scal == "2" and info.multisign == 1 and "1.2.840.10045.4.3.2" in info.key_algorithms
    assert len(ecosystem.service.hsm.key_objects()) == 2  # the credential's key exists before hashing

    async def sign() -> tuple[bytes, int]:
        async with aiohttp.ClientSession() as session:
            session_info = CSCServiceSessionInfo(ecosystem.signer_url, token.credential_id,
                                                 oauth_token=token.access_token)
            creds = await fetch_certs_in_csc_credential(session, session_info)
            manager = AuthorizeManager(session, session_info, creds)
            signer = CSCSigner(session, auth_manager=manager)
            meta = signers.PdfSignatureMetadata(field_name="Sig1", md_algorithm="sha256",
                                                subfilter=fields.SigSeedSubFilter.PADES)
            out = await signers.async_sign_pdf(IncrementalPdfFileWriter(BytesIO(make_pdf())), meta,
                                               signer=signer)
            return out.getvalue(), manager.calls

    signed, calls = asyncio.run(sign())
    assert calls == 1
    embedded = PdfFileReader(BytesIO(signed)).embedded_signatures[0]
    status = asyncio.run(async_validate_pdf_signature(
        embedded, ValidationContext(trust_roots=[root], allow_fetching=False)))
    assert status.intact and status.valid and status.trusted, status.summary()
    # One signature, then the key is destroyed and the credential disabled.
    assert ecosystem.service.hsm.key_objects() == []
    credential = ecosystem.service.store.credential(token.credential_id)
    assert credential.status == "disabled" and credential.remaining == 0
    assert ecosystem.service.store.transaction(credential.transaction_id).state == "completed"


def test_sad_binds_the_hashes_and_is_single_use(portal: Any, ecosystem: Any) -> None:
    token = _service_token(portal, "eu_eidas_aes")
    info = portal.client.credentials_info(token.access_token, token.credential_id)
    algo = "1.2.840.10045.4.3.2"
    dtbsr = hashlib.sha256(b"signed attributes").digest()
    sad, expires = portal.client.credentials_authorize(token.access_token, token.credential_id, [dtbsr])
    assert 0 < expires <= 300
    # Another hash than the authorized one.
    with pytest.raises(UpstreamError) as caught:
        portal.client.sign_hash(token.access_token, token.credential_id, sad,
                                [hashlib.sha256(b"other").digest()], algo)
    assert "not authorized" in caught.value.upstream_description
    # More signatures than authorized.
    with pytest.raises(UpstreamError) as caught:
        portal.client.credentials_authorize(token.access_token, token.credential_id, [dtbsr, bytes(32)])
    assert caught.value.upstream_error == "invalid_request"
    # Unsupported algorithm.
    with pytest.raises(UpstreamError) as caught:
        portal.client.sign_hash(token.access_token, token.credential_id, sad, [dtbsr], "1.2.840.113549.1.1.11")
    assert "signAlgo" in caught.value.upstream_description
    [signature] = portal.client.sign_hash(token.access_token, token.credential_id, sad, [dtbsr], algo)
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, utils
    from cryptography.x509 import load_der_x509_certificate

    public = load_der_x509_certificate(info.certificates[0]).public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(signature, dtbsr, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    # Replay: refused, nothing signed, key gone.
    with pytest.raises(UpstreamError) as caught:
        portal.client.sign_hash(token.access_token, token.credential_id, sad, [dtbsr], algo)
    assert caught.value.upstream_error == "invalid_request"
    assert ecosystem.service.hsm.key_objects() == []
    events = [e.event for e in ecosystem.service.audit.entries()
              if e.data.get("transaction_id") == ecosystem.service.store.credential(token.credential_id).transaction_id]
    assert events.count("signature.created") == 1 and "key.destroyed" in events


def test_v2_spelling_and_base64url_hashes(portal: Any, ecosystem: Any) -> None:
    token = _service_token(portal)
    dtbsr = hashlib.sha256(b"v2 attrs").digest()
    urlsafe = base64.urlsafe_b64encode(dtbsr).decode().rstrip("=")
    answer = requests.post(f"{ecosystem.signer_url}/csc/v2/credentials/authorize", timeout=10,
                           headers={"Authorization": f"Bearer {token.access_token}"},
                           json={"credentialID": token.credential_id, "numSignatures": 1, "hashes": [urlsafe],
                                 "hashAlgorithmOID": "2.16.840.1.101.3.4.2.1"})
    assert answer.status_code == 200, answer.text
    [signature] = portal.client.sign_hash(token.access_token, token.credential_id, answer.json()["SAD"], [dtbsr],
                                          "1.2.840.10045.4.3.2", version=2)
    assert signature[0] == 0x30  # DER ECDSA-Sig-Value, not raw r||s
    assert ecosystem.service.hsm.key_objects() == []


def test_expired_credential_is_swept(portal: Any, ecosystem: Any) -> None:
    token = _service_token(portal)
    assert len(ecosystem.service.hsm.key_objects()) == 2
    service = ecosystem.service
    real = service.clock
    service.clock = lambda: real() + 3600
    try:
        assert service.sweep() >= 1
    finally:
        service.clock = real
    assert ecosystem.service.hsm.key_objects() == []
    assert service.store.credential(token.credential_id).status == "disabled"
    with pytest.raises(UpstreamError):
        portal.client.credentials_authorize(token.access_token, token.credential_id, [bytes(32)])


def test_timestamp_is_proxied_to_the_tsa_with_the_nonce(portal: Any, ecosystem: Any) -> None:
    """``signatures/timestamp``: an RFC 3161 token from the TSP's TSA over exactly the given hash."""
    from asn1crypto import cms

    token = _service_token(portal)
    digest = hashlib.sha256(b"time-stamp me").digest()
    der = portal.client.timestamp(token.access_token, digest, nonce="0a1b2c")
    info = cms.ContentInfo.load(der)["content"]["encap_content_info"]["content"].parsed
    assert info["message_imprint"]["hashed_message"].native == digest and info["nonce"].native == 0x0A1B2C
    refused = requests.post(f"{portal.client.base_url}/csc/v1/signatures/timestamp", timeout=10,
                            json={"hash": base64.b64encode(digest).decode(), "hashAlgo": "2.16.840.1.101.3.4.2.1"})
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_token"
    no_algorithm = requests.post(f"{portal.client.base_url}/csc/v1/signatures/timestamp", timeout=10,
                                 headers={"Authorization": f"Bearer {token.access_token}"},
                                 json={"hash": base64.b64encode(digest).decode()})
    assert no_algorithm.status_code == 400 and "hashAlgorithmOID" in no_algorithm.json()["error_description"]
    portal.client.revoke(token.access_token)  # the unused one-time credential's key goes at once
    assert ecosystem.service.hsm.key_objects() == []


def test_extend_transaction_rebinds_the_sad_to_new_hashes(portal: Any, ecosystem: Any) -> None:
    """v1 ``credentials/extendTransaction``: the old SAD is spent, the new one signs only the new hash."""
    from cryptography import x509 as cx509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, utils

    token = _service_token(portal)
    info = portal.client.credentials_info(token.access_token, token.credential_id)
    first, second = hashlib.sha256(b"first").digest(), hashlib.sha256(b"second").digest()
    old_sad, _ = portal.client.credentials_authorize(token.access_token, token.credential_id, [first])
    answer = requests.post(f"{portal.client.base_url}/csc/v1/credentials/extendTransaction", timeout=10,
                           headers={"Authorization": f"Bearer {token.access_token}"},
                           json={"credentialID": token.credential_id, "SAD": old_sad,
                                 "hash": [base64.b64encode(second).decode()]})
    assert answer.status_code == 200, answer.text
    new_sad = answer.json()["SAD"]
    with pytest.raises(UpstreamError, match="already used"):  # the old SAD cannot be replayed
        portal.client.sign_hash(token.access_token, token.credential_id, old_sad, [first], "1.2.840.10045.4.3.2")
    with pytest.raises(UpstreamError):  # the new SAD does not cover the old hash
        portal.client.sign_hash(token.access_token, token.credential_id, new_sad, [first], "1.2.840.10045.4.3.2")
    signature = portal.client.sign_hash(token.access_token, token.credential_id, new_sad, [second],
                                        "1.2.840.10045.4.3.2")[0]
    public_key = cx509.load_der_x509_certificate(info.certificates[0]).public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    public_key.verify(signature, second, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    assert ecosystem.service.hsm.key_objects() == []
