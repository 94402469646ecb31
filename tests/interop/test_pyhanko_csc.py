"""pyHanko's own CSC client, unchanged, against ``/csc/v1`` of a live SignLab signer.

Everything on the client side is pyHanko's published API — ``CSCServiceSessionInfo``,
``fetch_certs_in_csc_credential``, ``CSCSigner``, ``CSCAuthorizationManager`` (its documented
extension point, implemented here only with its own ``format_csc_auth_request`` /
``parse_csc_auth_response`` helpers), ``PrefetchedSADAuthorizationManager`` and
``async_sign_pdf`` / interrupted signing. The OAuth 2 side (PAR, token with PKCE) uses authlib's
client (see ``conftest.InteropEcosystem.authorize``). Signatures are validated by pyHanko against the
SignLab root only, with revocation *required* (OCSP/CRL fetched from the running CA).

Certificate-first flow (`docs/signer.md`): service authorization with an eID login at the
IdP (headless ``login_hint``) + consent → token carries ``credentialID`` → credentials/info →
a SAD for the DTBS/R hashes pyHanko computed → signatures/signHash. SCAL 2 (the default): the SAD
comes from the person's approval of exactly those hashes — a CSC credential authorization (PAR with
``scope=credential`` and the ``hash`` parameters, eID login, consent listing them), made by the
authorization manager, pyHanko's documented extension point. SCAL 1, asked for explicitly
(``SCAL=1``): credentials/authorize binds the SAD to the hashes the client names.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from base64 import b64decode, b64encode, urlsafe_b64encode
from io import BytesIO
from typing import Any

import aiohttp
import pytest
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.pdf_utils.writer import PageObject, PdfFileWriter
from pyhanko.sign import fields, signers
from pyhanko.sign.general import SigningError
from pyhanko.sign.signers.csc_signer import (
    CSCAuthorizationInfo,
    CSCAuthorizationManager,
    CSCCredentialInfo,
    CSCServiceSessionInfo,
    CSCSigner,
    PrefetchedSADAuthorizationManager,
    fetch_certs_in_csc_credential,
)
from pyhanko.sign.signers.pdf_signer import PdfTBSDocument
from pyhanko.sign.timestamps.aiohttp_client import AIOHttpTimeStamper
from pyhanko.sign.validation import async_validate_pdf_signature

pytestmark = pytest.mark.hsm

QCP_N_QSCD = "0.4.0.194112.1.2"
NCP = "0.4.0.2042.1.1"
ECDSA_SHA256 = "1.2.840.10045.4.3.2"


def make_pdf(text: str = "Interop contract") -> bytes:
    """A one-page PDF."""
    writer = PdfFileWriter()
    stream = writer.add_object(generic.StreamObject(stream_data=f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()))
    writer.insert_page(PageObject(contents=stream, media_box=(0, 0, 595, 842)))
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


class PersonApprovalManager(CSCAuthorizationManager):
    """SCAL 2: the person approves the hashes pyHanko computed — a CSC credential authorization
    (PAR ``scope=credential``, ``credentialID``, ``numSignatures``, ``hash`` base64url and
    comma-separated, CSC v1 §8.3.2), the eID login and the consent page listing them; the
    credential-scope access token is the SAD."""

    def __init__(self, ecosystem: Any, info: CSCServiceSessionInfo, creds: CSCCredentialInfo) -> None:
        super().__init__(info, creds)
        self.ecosystem = ecosystem
        self.requested: list[list[str]] = []

    async def authorize_signature(self, hash_b64s: list[str]) -> CSCAuthorizationInfo:
        self.requested.append(list(hash_b64s))
        hashes = ",".join(urlsafe_b64encode(b64decode(h)).decode().rstrip("=") for h in hash_b64s)
        tokens = await asyncio.to_thread(self.ecosystem.authorize, {
            "scope": "credential", "credentialID": self.csc_session_info.credential_id,
            "numSignatures": str(len(hash_b64s)), "hash": hashes})
        return CSCAuthorizationInfo(sad=tokens.access_token, expires_at=None)


class CredentialsAuthorizeManager(CSCAuthorizationManager):
    """An authorization manager that calls ``credentials/authorize`` for the hashes pyHanko computed
    (a SCAL 1, count-only credential).

    Built only from pyHanko's helpers (``format_csc_auth_request``, ``auth_headers``,
    ``endpoint_url``, ``parse_csc_auth_response``), like pyHanko's own test client.
    """

    def __init__(self, session: aiohttp.ClientSession, info: CSCServiceSessionInfo, creds: CSCCredentialInfo) -> None:
        super().__init__(info, creds)
        self.session = session
        self.requested: list[list[str]] = []

    async def authorize_signature(self, hash_b64s: list[str]) -> CSCAuthorizationInfo:
        self.requested.append(list(hash_b64s))
        return await self._authorize(hash_b64s)

    async def _authorize(self, hash_b64s: list[str]) -> CSCAuthorizationInfo:
        async with self.session.post(self.csc_session_info.endpoint_url("credentials/authorize"),
                                     json=self.format_csc_auth_request(hash_b64s=hash_b64s),
                                     headers=self.auth_headers) as answer:
            body = await answer.json()
            if answer.status != 200:
                raise SigningError(f"credentials/authorize refused: {answer.status} {json.dumps(body)}")
            return self.parse_csc_auth_response(body)


class ReplayingManager(CredentialsAuthorizeManager):
    """Misbehaving client: authorizes once, then hands the same SAD out again (SAD replay)."""

    cached: CSCAuthorizationInfo | None = None

    async def authorize_signature(self, hash_b64s: list[str]) -> CSCAuthorizationInfo:
        self.requested.append(list(hash_b64s))
        if self.cached is None:
            self.cached = await self._authorize(hash_b64s)
        return self.cached


class UnderAuthorizingManager(CredentialsAuthorizeManager):
    """Misbehaving client: asks for a SAD for only the first hash of a batch, then signs them all."""

    async def authorize_signature(self, hash_b64s: list[str]) -> CSCAuthorizationInfo:
        self.requested.append(list(hash_b64s))
        return await self._authorize(hash_b64s[:1])


class NeverCalledManager(CSCAuthorizationManager):
    """For the preparation pass of interrupted signing: pyHanko must not ask for a SAD there."""

    async def authorize_signature(self, hash_b64s: list[str]) -> CSCAuthorizationInfo:
        raise AssertionError("no authorization expected while preparing the document")


def _meta(field: str = "Signature1") -> signers.PdfSignatureMetadata:
    return signers.PdfSignatureMetadata(field_name=field, md_algorithm="sha256",
                                        subfilter=fields.SigSeedSubFilter.PADES)


async def _validate(ecosystem: Any, pdf: bytes) -> list[Any]:
    """pyHanko validation of every signature of ``pdf``: SignLab root only, revocation required."""
    statuses = []
    for embedded in PdfFileReader(BytesIO(pdf)).embedded_signatures:
        status = await async_validate_pdf_signature(embedded, ecosystem.validation_context())
        assert status.intact and status.valid and status.trusted, status.pretty_print_details()
        assert status.bottom_line, status.pretty_print_details()
        statuses.append(status)
    return statuses


def _policies(status: Any) -> set[str]:
    return {p["policy_identifier"].dotted for p in status.signing_cert.certificate_policies_value}


def _credential(ecosystem: Any, credential_id: str) -> Any:
    return ecosystem.signer_service.store.credential(credential_id)


def test_csc_signer_qes_pades_b_t_validates(ecosystem: Any) -> None:
    """fetch_certs_in_csc_credential + the person's approval of the hash (SCAL 2) + async_sign_pdf
    (B-T via the SignLab TSA)."""
    tokens = ecosystem.service_authorization(num_signatures=1)

    async def run() -> tuple[bytes, CSCCredentialInfo, PersonApprovalManager]:
        async with aiohttp.ClientSession() as session:
            info = CSCServiceSessionInfo(ecosystem.signer_url, tokens.credential_id, oauth_token=tokens.access_token)
            creds = await fetch_certs_in_csc_credential(session, info)
            manager = PersonApprovalManager(ecosystem, info, creds)
            signer = CSCSigner(session, auth_manager=manager)
            tsa = AIOHttpTimeStamper(f"{ecosystem.ca_url}/tsa", session)  # pyHanko's RFC 3161 client
            out = await signers.async_sign_pdf(IncrementalPdfFileWriter(BytesIO(make_pdf())), _meta(),
                                               signer=signer, timestamper=tsa)
            return out.getvalue(), creds, manager

    signed, creds, manager = asyncio.run(run())
    # What pyHanko read from credentials/info: SCAL 2 → hashes pinned; one signature allowed.
    assert creds.hash_pinning_required and creds.max_batch_size == 1
    assert creds.signing_cert.subject.native["serial_number"] == "PNONO-14838540105"
    assert len(creds.chain) == 2  # issuing CA + root ("certificates": "chain")
    assert "sha256_ecdsa" in creds.supported_mechanisms
    assert len(manager.requested) == 1 and len(manager.requested[0]) == 1
    [status] = asyncio.run(_validate(ecosystem, signed))
    assert QCP_N_QSCD in _policies(status)
    assert status.timestamp_validity is not None and status.timestamp_validity.valid
    assert status.timestamp_validity.trusted
    # The budget is spent: key destroyed, credential disabled, transaction completed.
    credential = _credential(ecosystem, tokens.credential_id)
    assert (credential.status, credential.remaining) == ("disabled", 0)
    assert ecosystem.signer_service.store.transaction(credential.transaction_id).state == "completed"


def test_prefetched_sad_from_oauth_credential_authorization(ecosystem: Any) -> None:
    """PrefetchedSADAuthorizationManager with a SAD obtained *before* signing, pinned to the DTBS/R.

    Interrupted signing (pyHanko's documented pattern): prepare the PDF, compute the signed
    attributes and their digest, obtain a SAD for that digest out of band — here through the CSC
    OAuth 2 credential authorization (RAR ``authorization_details`` with ``credentialID``, a second
    eID login and consent) — then let ``CSCSigner`` sign the prescribed attributes with it.
    """
    tokens = ecosystem.service_authorization(num_signatures=1, qualifier="eu_eidas_aes", login_hint="kari-nordmann@no-minid")

    async def run() -> bytes:
        async with aiohttp.ClientSession() as session:
            info = CSCServiceSessionInfo(ecosystem.signer_url, tokens.credential_id, oauth_token=tokens.access_token)
            creds = await fetch_certs_in_csc_credential(session, info)
            preparer = CSCSigner(session, auth_manager=NeverCalledManager(info, creds))
            pdf_signer = signers.PdfSigner(_meta(), signer=preparer)
            prep, tbs, output = await pdf_signer.async_digest_doc_for_signing(
                IncrementalPdfFileWriter(BytesIO(make_pdf("Prefetched"))))
            signed_attrs = await preparer.signed_attrs(prep.document_digest, "sha256", use_pades=True)
            dtbsr = hashlib.sha256(signed_attrs.dump()).digest()
            # Out of band: the user authorizes exactly this hash for this credential.
            credential_tokens = await asyncio.to_thread(ecosystem.authorize, {
                "authorization_details": json.dumps([{
                    "type": "credential", "credentialID": tokens.credential_id, "hashAlgorithmOID": "2.16.840.1.101.3.4.2.1",
                    "documentDigests": [{"hash": b64encode(dtbsr).decode(), "label": "prefetched.pdf"}]}])},
                login_hint="kari-nordmann@no-minid")
            assert credential_tokens.body["expires_in"] <= 300
            manager = PrefetchedSADAuthorizationManager(
                info, creds, CSCAuthorizationInfo(sad=credential_tokens.access_token))
            signer = CSCSigner(session, auth_manager=manager)
            cms_obj = await signer.async_sign_prescribed_attributes("sha256", signed_attrs=signed_attrs)
            await PdfTBSDocument.async_finish_signing(output, prep, cms_obj, post_sign_instr=tbs.post_sign_instructions)
            # pyHanko's own one-shot rule: the prefetched SAD is not handed out twice.
            with pytest.raises(SigningError, match="stale"):
                await manager.authorize_signature([b64encode(dtbsr).decode()])
            return output.getvalue()

    signed = asyncio.run(run())
    [status] = asyncio.run(_validate(ecosystem, signed))
    assert NCP in _policies(status) and QCP_N_QSCD not in _policies(status)
    credential = _credential(ecosystem, tokens.credential_id)
    assert (credential.status, credential.remaining) == ("disabled", 0)


def test_multisignature_within_the_authorized_count(ecosystem: Any) -> None:
    """SCAL 1, numSignatures=3: two sequential signatures on one PDF, then a batch of one more; a 4th is refused."""
    tokens = ecosystem.service_authorization(num_signatures=3, scal="1")

    async def run() -> tuple[bytes, bytes, CredentialsAuthorizeManager]:
        async with aiohttp.ClientSession() as session:
            info = CSCServiceSessionInfo(ecosystem.signer_url, tokens.credential_id, oauth_token=tokens.access_token)
            creds = await fetch_certs_in_csc_credential(session, info)
            assert creds.max_batch_size == 3
            manager = CredentialsAuthorizeManager(session, info, creds)
            signer = CSCSigner(session, auth_manager=manager)
            first = await signers.async_sign_pdf(IncrementalPdfFileWriter(BytesIO(make_pdf("Two signers"))),
                                                 _meta("Signature1"), signer=signer)
            second = await signers.async_sign_pdf(IncrementalPdfFileWriter(BytesIO(first.getvalue())),
                                                  _meta("Signature2"), signer=signer)
            third = await signers.async_sign_pdf(IncrementalPdfFileWriter(BytesIO(make_pdf("Third"))),
                                                 _meta(), signer=signer)
            # The credential's budget is spent: pyHanko's next attempt is refused by the service.
            with pytest.raises(SigningError):
                await signers.async_sign_pdf(IncrementalPdfFileWriter(BytesIO(make_pdf("Fourth"))), _meta(),
                                             signer=signer)
            return second.getvalue(), third.getvalue(), manager

    two, one, manager = asyncio.run(run())
    statuses = asyncio.run(_validate(ecosystem, two))
    assert len(statuses) == 2
    assert statuses[0].signing_cert.dump() == statuses[1].signing_cert.dump()  # one credential, one certificate
    asyncio.run(_validate(ecosystem, one))
    assert [len(h) for h in manager.requested] == [1, 1, 1, 1]
    credential = _credential(ecosystem, tokens.credential_id)
    assert (credential.status, credential.remaining) == ("disabled", 0)
    events = [e.event for e in ecosystem.signer_service.audit.entries()
              if e.data.get("transaction_id") == credential.transaction_id]
    assert events.count("signature.created") == 3 and events.count("key.destroyed") == 1


def test_batch_signing_one_sad_for_several_hashes(ecosystem: Any) -> None:
    """CSCSigner batching (batch_size=2): the person approves both hashes at once (one consent, one
    SAD) and one signHash signs two PDFs (SCAL 2)."""
    tokens = ecosystem.service_authorization(num_signatures=2)

    async def run() -> tuple[list[bytes], PersonApprovalManager]:
        async with aiohttp.ClientSession() as session:
            info = CSCServiceSessionInfo(ecosystem.signer_url, tokens.credential_id, oauth_token=tokens.access_token)
            creds = await fetch_certs_in_csc_credential(session, info)
            manager = PersonApprovalManager(ecosystem, info, creds)
            signer = CSCSigner(session, auth_manager=manager, batch_size=2)
            outs = await asyncio.gather(*(
                signers.async_sign_pdf(IncrementalPdfFileWriter(BytesIO(make_pdf(f"Batch {i}"))), _meta(), signer=signer)
                for i in range(2)))
            return [o.getvalue() for o in outs], manager

    pdfs, manager = asyncio.run(run())
    assert [len(h) for h in manager.requested] == [2]
    for pdf in pdfs:
        asyncio.run(_validate(ecosystem, pdf))
    assert _credential(ecosystem, tokens.credential_id).remaining == 0


def test_refusal_sad_reused(ecosystem: Any) -> None:
    """A SAD handed out twice: the service refuses the second signHash; nothing is spent by it (SCAL 1)."""
    tokens = ecosystem.service_authorization(num_signatures=2, scal="1")

    async def run() -> tuple[str, bytes]:
        async with aiohttp.ClientSession() as session:
            info = CSCServiceSessionInfo(ecosystem.signer_url, tokens.credential_id, oauth_token=tokens.access_token)
            creds = await fetch_certs_in_csc_credential(session, info)
            replaying = ReplayingManager(session, info, creds)
            signer = CSCSigner(session, auth_manager=replaying)
            first = await signers.async_sign_pdf(IncrementalPdfFileWriter(BytesIO(make_pdf("Replay 1"))), _meta(),
                                                 signer=signer)
            with pytest.raises(SigningError) as caught:
                await signers.async_sign_pdf(IncrementalPdfFileWriter(BytesIO(make_pdf("Replay 2"))), _meta(),
                                             signer=signer)
            assert _credential(ecosystem, tokens.credential_id).remaining == 1  # the refusal spent nothing
            # An honest client can still use what is left.
            honest = CSCSigner(session, auth_manager=CredentialsAuthorizeManager(session, info, creds))
            await signers.async_sign_pdf(IncrementalPdfFileWriter(BytesIO(make_pdf("Honest"))), _meta(), signer=honest)
            # pyHanko logs the 400 of signHash ("Failed to commit signatures") and raises its own error.
            return str(caught.value), first.getvalue()

    error, first = asyncio.run(run())
    assert "No signing results available" in error or "Signature request failed" in error, error
    asyncio.run(_validate(ecosystem, first))
    credential = _credential(ecosystem, tokens.credential_id)
    events = [e for e in ecosystem.signer_service.audit.entries()
              if e.data.get("transaction_id") == credential.transaction_id]
    refused = [e.data.get("reason", "") for e in events if e.event == "sad.refused"]
    assert any("replay" in r or "already used" in r for r in refused), refused
    assert [e.event for e in events].count("signature.created") == 2
    assert (credential.status, credential.remaining) == ("disabled", 0)


def test_refusal_more_hashes_than_authorized(ecosystem: Any) -> None:
    """More hashes than authorized: refused at credentials/authorize (count) and at signHash (SAD binding)."""
    one = ecosystem.service_authorization(num_signatures=1, scal="1")
    two = ecosystem.service_authorization(num_signatures=2, scal="1")

    async def batch_of_two(tokens: Any, manager_class: type[CredentialsAuthorizeManager]) -> CredentialsAuthorizeManager:
        async with aiohttp.ClientSession() as session:
            info = CSCServiceSessionInfo(ecosystem.signer_url, tokens.credential_id, oauth_token=tokens.access_token)
            creds = await fetch_certs_in_csc_credential(session, info)
            manager = manager_class(session, info, creds)
            signer = CSCSigner(session, auth_manager=manager, batch_size=2)
            results = await asyncio.gather(*(
                signers.async_sign_pdf(IncrementalPdfFileWriter(BytesIO(make_pdf(f"Too many {i}"))), _meta(),
                                       signer=signer)
                for i in range(2)), return_exceptions=True)
            assert all(isinstance(r, SigningError) for r in results), results
            return manager

    # 1) numSignatures=1 credential, pyHanko batches 2 hashes: credentials/authorize refuses.
    manager = asyncio.run(batch_of_two(one, CredentialsAuthorizeManager))
    assert [len(h) for h in manager.requested] == [2]
    # 2) numSignatures=2 credential, a SAD for 1 hash, signHash with 2 hashes: refused, nothing signed.
    manager = asyncio.run(batch_of_two(two, UnderAuthorizingManager))
    assert [len(h) for h in manager.requested] == [2]
    for tokens in (one, two):
        credential = _credential(ecosystem, tokens.credential_id)
        assert credential.status == "enabled" and credential.remaining == credential.multisign
        events = [e for e in ecosystem.signer_service.audit.entries()
                  if e.data.get("transaction_id") == credential.transaction_id]
        assert "signature.created" not in [e.event for e in events]
        assert any(e.event == "sad.refused" for e in events)
