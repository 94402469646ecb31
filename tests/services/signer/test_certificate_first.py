"""Certificate-first flow on /csc/v1 with pyHanko's own CSCSigner, unchanged (design §2, second flow).

SCAL 2 (the default): the SAD for ``signHash`` comes from the person's approval of the exact
hashes — a CSC credential authorization (``oauth2/authorize`` with ``scope=credential`` and the
``hash`` parameters, or PAR with ``authorization_details`` naming the credential), whose consent
page lists them. SCAL 1 (count only) exists only when the service authorization asks ``SCAL=1``;
then ``credentials/authorize`` issues the SAD for the hashes the partner names.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
from io import BytesIO
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
import requests
from asn1crypto import x509
from authlib.oauth2.rfc7636 import create_s256_code_challenge
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

from shared.digests import digest_fingerprint
from shared.errors import UpstreamError
from shared.testing.partner import PORTAL_REDIRECT, Portal, browse, make_pdf, no_keys

pytestmark = pytest.mark.hsm

class AuthorizeManager(CSCAuthorizationManager):
    """Gets a SAD from credentials/authorize for exactly the hashes pyHanko computed (a SCAL 1 credential)."""

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


class PersonApprovalManager(CSCAuthorizationManager):
    """SCAL 2: the SAD for the hashes pyHanko computed comes from the person — a CSC v1 credential
    authorization (``oauth2/authorize?scope=credential&credentialID=…&numSignatures=…&hash=…``,
    base64url, comma-separated), the eID login and the consent page listing the hashes, then the
    token endpoint; the credential-scope token is the SAD pyHanko sends to ``signHash``."""

    def __init__(self, info: CSCServiceSessionInfo, creds: Any, portal: Any) -> None:
        super().__init__(info, creds)
        self.portal = portal
        self.approved: list[list[str]] = []
        self.consent_pages: list[str] = []

    async def authorize_signature(self, hash_b64s: list[str]) -> CSCAuthorizationInfo:
        return await asyncio.to_thread(self._approve, hash_b64s)

    def _approve(self, hash_b64s: list[str]) -> CSCAuthorizationInfo:
        verifier, state = secrets.token_urlsafe(48), secrets.token_urlsafe(8)
        hashes = ",".join(base64.urlsafe_b64encode(base64.b64decode(h)).decode().rstrip("=") for h in hash_b64s)
        url = f"{self.portal.eco.signer_url}/oauth2/authorize?" + urlencode({
            "response_type": "code", "client_id": "signlab-portal", "redirect_uri": PORTAL_REDIRECT,
            "scope": "credential", "credentialID": self.csc_session_info.credential_id,
            "numSignatures": str(len(hash_b64s)), "hash": hashes, "state": state,
            "code_challenge": create_s256_code_challenge(verifier), "code_challenge_method": "S256",
            "login_hint": "kari-nordmann@no-bankid"})
        session = requests.Session()
        query = browse(url, session=_remembering(session, self.consent_pages))
        token = self.portal.client.exchange_code(query["code"][0], PORTAL_REDIRECT, verifier)
        self.approved.append(list(hash_b64s))
        return CSCAuthorizationInfo(sad=token.access_token, expires_at=None)


def _remembering(session: requests.Session, pages: list[str]) -> requests.Session:
    """``session``, keeping the text of every consent page it is shown."""
    def keep(response: requests.Response, *_args: Any, **_kwargs: Any) -> None:
        if "/oauth2/consent/" in response.url and response.request.method == "GET":
            pages.append(response.text)
    session.hooks["response"].append(keep)
    return session


@pytest.fixture(scope="module")
def portal(ecosystem: Any) -> Any:
    return Portal(ecosystem)


def _service_token(portal: Any, qualifier: str = "eu_eidas_qes", *, scal: str | None = None,
                   signatures: int = 1) -> Any:
    token = portal.token(scope="service", qualifier=qualifier, num_signatures=signatures,
                         extra={"SCAL": scal} if scal else None)
    assert token.credential_id and token.scope == "service"
    return token


def _sign_pdf_with_pyhanko(ecosystem: Any, token: Any, make_manager: Any) -> tuple[bytes, Any]:
    """pyHanko's CSCSigner, unchanged, signs a PDF with the credential; (PDF, the manager)."""
    async def sign() -> tuple[bytes, Any]:
        async with aiohttp.ClientSession() as session:
            session_info = CSCServiceSessionInfo(ecosystem.signer_url, token.credential_id,
                                                 oauth_token=token.access_token)
            creds = await fetch_certs_in_csc_credential(session, session_info)
            manager = make_manager(session, session_info, creds)
            signer = CSCSigner(session, auth_manager=manager)
            meta = signers.PdfSignatureMetadata(field_name="Sig1", md_algorithm="sha256",
                                                subfilter=fields.SigSeedSubFilter.PADES)
            out = await signers.async_sign_pdf(IncrementalPdfFileWriter(BytesIO(make_pdf())), meta,
                                               signer=signer)
            return out.getvalue(), manager

    return asyncio.run(sign())


def _check_signed_and_spent(ecosystem: Any, token: Any, signed: bytes) -> None:
    root = x509.Certificate.load(requests.get(f"{ecosystem.ca_url}/certs/root.crt", timeout=10).content)
    embedded = PdfFileReader(BytesIO(signed)).embedded_signatures[0]
    status = asyncio.run(async_validate_pdf_signature(
        embedded, ValidationContext(trust_roots=[root], allow_fetching=False)))
    assert status.intact and status.valid and status.trusted, status.summary()
    # One signature, then the key is destroyed and the credential disabled.
    assert ecosystem.service.hsm.key_objects() == []
    credential = ecosystem.service.store.credential(token.credential_id)
    assert credential.status == "disabled" and credential.remaining == 0
    assert ecosystem.service.store.transaction(credential.transaction_id).state == "completed"


def test_pyhanko_csc_signer_unchanged_with_the_persons_approval_of_the_hash(portal: Any, ecosystem: Any) -> None:
    """SCAL 2: pyHanko computes the DTBS/R; the person approves exactly that hash on the consent
    page (label and fingerprint); the credential-scope token is the SAD of signHash."""
    token = _service_token(portal)
    assert portal.client.credentials_list(token.access_token) == [token.credential_id]
    info = portal.client.credentials_info(token.access_token, token.credential_id)
    assert info.scal == "2" and info.raw["authMode"] == "oauth2code"
    assert info.multisign == 1 and "1.2.840.10045.4.3.2" in info.key_algorithms
    assert len(ecosystem.service.hsm.key_objects()) == 2  # the credential's key exists before hashing
    signed, manager = _sign_pdf_with_pyhanko(
        ecosystem, token, lambda _session, session_info, creds: PersonApprovalManager(session_info, creds, portal))
    [[approved]] = manager.approved
    [page] = manager.consent_pages
    assert digest_fingerprint(base64.b64decode(approved), "sha256") in page
    _check_signed_and_spent(ecosystem, token, signed)


def test_pyhanko_csc_signer_unchanged_with_an_explicit_count_only_credential(portal: Any, ecosystem: Any) -> None:
    """SCAL 1, asked for explicitly: credentials/info says so, credentials/authorize issues the SAD."""
    token = _service_token(portal, scal="1")
    info = portal.client.credentials_info(token.access_token, token.credential_id)
    assert info.scal == "1" and info.raw["authMode"] == "implicit" and "SCAL 1" in info.raw["description"]
    signed, manager = _sign_pdf_with_pyhanko(ecosystem, token, AuthorizeManager)
    assert manager.calls == 1
    _check_signed_and_spent(ecosystem, token, signed)


def test_scal2_partner_cannot_get_or_make_a_sad_for_hashes_the_person_never_saw(portal: Any,
                                                                                ecosystem: Any) -> None:
    """Review weakness (SCAL 2 of certificate first): credentials/authorize and extendTransaction
    issue nothing for a SCAL 2 credential, a SAD approved for one hash signs no other (step 6,
    audited), and a v1 SAD of another (count-only) credential is no SAD here."""
    token = _service_token(portal, signatures=2)
    chosen = hashlib.sha256(b"a hash the person never saw").digest()
    with pytest.raises(UpstreamError) as refused:
        portal.client.credentials_authorize(token.access_token, token.credential_id, [chosen])
    assert refused.value.upstream_status == 400 and "SCAL 2" in refused.value.upstream_description
    approved = hashlib.sha256(b"the hash the person approved").digest()
    sad = portal.token(documents=[(approved, "contract.pdf (DTBS/R)")], credential_id=token.credential_id)
    assert sad.credential_id == token.credential_id
    since = len(list(ecosystem.service.audit.entries()))
    with pytest.raises(UpstreamError) as other:
        portal.client.sign_hash(token.access_token, token.credential_id, sad.access_token, [chosen],
                                "1.2.840.10045.4.3.2")
    assert other.value.upstream_status == 400 and "step 6" in other.value.upstream_description
    refusals = [e for e in list(ecosystem.service.audit.entries())[since:] if e.event == "sad.refused"]
    assert refusals and refusals[0].step == 6 and refusals[0].data["digests"] == [chosen.hex()]
    extended = requests.post(f"{ecosystem.signer_url}/csc/v1/credentials/extendTransaction", timeout=10,
                             headers={"Authorization": f"Bearer {token.access_token}"},
                             json={"credentialID": token.credential_id, "SAD": sad.access_token,
                                   "hash": [base64.b64encode(chosen).decode()]})
    assert extended.status_code == 400 and "SCAL 2" in extended.json()["error_description"]
    [signature] = portal.client.sign_hash(token.access_token, token.credential_id, sad.access_token, [approved],
                                          "1.2.840.10045.4.3.2")
    assert signature[0] == 0x30
    credential = ecosystem.service.store.credential(token.credential_id)
    assert credential.remaining == 1  # the refusals spent nothing
    portal.client.revoke(token.access_token)
    no_keys(ecosystem)


def test_sad_binds_the_hashes_and_is_single_use(portal: Any, ecosystem: Any) -> None:
    token = _service_token(portal, "eu_eidas_aes", scal="1")
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
    token = _service_token(portal, scal="1")
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
    token = _service_token(portal, scal="1")
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
    """v1 ``credentials/extendTransaction`` (SCAL 1): the old SAD is spent, the new one signs only the
    new hash; it never covers more signatures than the credential has left."""
    from cryptography import x509 as cx509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, utils

    token = _service_token(portal, scal="1", signatures=2)
    info = portal.client.credentials_info(token.access_token, token.credential_id)
    first, second, third = (hashlib.sha256(t).digest() for t in (b"first", b"second", b"third"))
    ecdsa = "1.2.840.10045.4.3.2"
    spent_sad, _ = portal.client.credentials_authorize(token.access_token, token.credential_id, [third])
    portal.client.sign_hash(token.access_token, token.credential_id, spent_sad, [third], ecdsa)  # 1 signature left

    def extend(sad: str, *digests: bytes) -> requests.Response:
        return requests.post(f"{portal.client.base_url}/csc/v1/credentials/extendTransaction", timeout=10,
                             headers={"Authorization": f"Bearer {token.access_token}"},
                             json={"credentialID": token.credential_id, "SAD": sad,
                                   "hash": [base64.b64encode(d).decode() for d in digests]})

    old_sad, _ = portal.client.credentials_authorize(token.access_token, token.credential_id, [first])
    wider = extend(old_sad, first, second)
    assert wider.status_code == 400 and "too high" in wider.json()["error_description"], wider.text
    answer = extend(old_sad, second)
    assert answer.status_code == 200, answer.text
    new_sad = answer.json()["SAD"]
    with pytest.raises(UpstreamError, match="already used"):  # the old SAD cannot be replayed
        portal.client.sign_hash(token.access_token, token.credential_id, old_sad, [first], ecdsa)
    with pytest.raises(UpstreamError):  # the new SAD does not cover the old hash
        portal.client.sign_hash(token.access_token, token.credential_id, new_sad, [first], ecdsa)
    signature = portal.client.sign_hash(token.access_token, token.credential_id, new_sad, [second], ecdsa)[0]
    public_key = cx509.load_der_x509_certificate(info.certificates[0]).public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    public_key.verify(signature, second, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    assert ecosystem.service.hsm.key_objects() == []
