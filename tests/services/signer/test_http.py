"""The SSASP over real HTTP with the real IdP and CA apps and SoftHSM: person signing and refusals."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
from collections.abc import Iterator
from io import BytesIO
from typing import Any
from urllib.parse import urljoin

import pytest
import requests
from asn1crypto import cms, x509
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import fields, signers
from pyhanko.sign.signers.pdf_cms import ExternalSigner
from pyhanko.sign.signers.pdf_signer import PdfTBSDocument
from pyhanko.sign.validation import async_validate_detached_cms, async_validate_pdf_signature
from pyhanko_certvalidator import ValidationContext

from shared.clients.signer import SignerClient
from shared.errors import UpstreamError
from shared.testing.partner import PORTAL_REDIRECT, Portal, make_pdf, no_keys

pytestmark = pytest.mark.hsm

def audit_events(eco: Any, transaction_id: str) -> list[str]:
    return [e.event for e in eco.service.audit.entries() if e.data.get("transaction_id") == transaction_id]



def test_qes_pades_flow_validates_with_pyhanko(portal: Portal, ecosystem: Any, root: x509.Certificate) -> None:
    pdf = make_pdf()
    meta = signers.PdfSignatureMetadata(field_name="Signature1", md_algorithm="sha256",
                                        subfilter=fields.SigSeedSubFilter.PADES, name="Kari Nordmann")
    pdf_signer = signers.PdfSigner(meta, signer=ExternalSigner(None, None, signature_value=bytes(256)))
    prep, _tbs, output = asyncio.run(pdf_signer.async_digest_doc_for_signing(
        IncrementalPdfFileWriter(BytesIO(pdf)), bytes_reserved=16384))
    token = portal.token(documents=[(prep.document_digest, "contract.pdf")])
    assert token.expires_in <= 300
    assert token.authorization_details[0]["signatureQualifier"] == "eu_eidas_qes"
    result = portal.client.sign_doc(token.access_token, digests=[prep.document_digest], signature_format="P")
    assert result.qualifier == "eu_eidas_qes" and result.loa == "high"
    assert len(result.certificates) == 3
    signed = cms.ContentInfo.load(result.signature_objects[0])
    attrs = {a["type"].native for a in signed["content"]["signer_infos"][0]["signed_attrs"]}
    assert "signing_time" not in attrs and "signing_certificate_v2" in attrs
    asyncio.run(PdfTBSDocument.async_finish_signing(output, prep, result.signature_objects[0]))
    embedded = PdfFileReader(BytesIO(output.getvalue())).embedded_signatures[0]
    status = asyncio.run(async_validate_pdf_signature(
        embedded, ValidationContext(trust_roots=[root], allow_fetching=False)))
    assert status.intact and status.valid and status.trusted, status.summary()
    leaf = status.signing_cert
    assert "0.4.0.194112.1.2" in {p["policy_identifier"].dotted for p in leaf.certificate_policies_value}
    assert leaf.subject.native["serial_number"] == "PNONO-14838540105"
    assert int(result.certificate_serial, 16) == leaf.serial_number
    no_keys(ecosystem)
    events = audit_events(ecosystem, result.transaction_id)
    for event in ("par.accepted", "authentication.verified", "consent.given", "token.issued", "sad.accepted",
                  "key.created", "csr.sent", "certificate.issued", "signature.created", "key.destroyed",
                  "transaction.completed"):
        assert event in events
    assert ecosystem.service.store.transaction(result.transaction_id).state == "completed"
    assert ecosystem.service.evidence.of(result.transaction_id) is None
    assert ecosystem.service.audit.verify().ok


def test_ades_cades_and_jades_flow(portal: Portal, ecosystem: Any, root: x509.Certificate) -> None:
    doc_c, doc_j = b"CAdES document body", b'{"payment": 100}'
    digests = [hashlib.sha256(doc_c).digest(), hashlib.sha256(doc_j).digest()]
    token = portal.token(documents=[(digests[0], "order.txt"), (digests[1], "payment.json")],
                         qualifier="eu_eidas_aes", login_hint="kari-nordmann@no-minid")
    result = portal.client.sign_doc(token.access_token, digests=digests, formats=["C", "J"])
    assert result.qualifier == "eu_eidas_aes" and result.loa == "substantial"
    signed = cms.ContentInfo.load(result.signature_objects[0])["content"]
    status = asyncio.run(async_validate_detached_cms(
        doc_c, signed, signer_validation_context=ValidationContext(trust_roots=[root], allow_fetching=False)))
    assert status.intact and status.valid and status.trusted
    assert "0.4.0.2042.1.1" in {p["policy_identifier"].dotted for p in status.signing_cert.certificate_policies_value}
    jws = result.signature_objects[1].decode("ascii")
    header, payload, _ = jws.split(".")
    assert payload == ""
    import json
    decoded = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    assert decoded["sigD"]["hashV"] == [base64.urlsafe_b64encode(digests[1]).rstrip(b"=").decode()]
    assert decoded["sigD"]["pars"] == ["payment.json"]
    no_keys(ecosystem)


def _sad_refusal(portal: Portal, **sign_kwargs: Any) -> Any:
    digest = hashlib.sha256(secrets.token_bytes(8)).digest()
    token = portal.token(documents=[(digest, "a.pdf")])
    with pytest.raises(UpstreamError) as caught:
        portal.client.sign_doc(token.access_token, **{"digests": [digest], **sign_kwargs})
    return caught.value


def test_replayed_sad_is_refused_and_nothing_signed(portal: Portal, ecosystem: Any) -> None:
    digest = hashlib.sha256(b"replay").digest()
    token = portal.token(documents=[(digest, "a.pdf")])
    first = portal.client.sign_doc(token.access_token, digests=[digest])
    with pytest.raises(UpstreamError) as caught:
        portal.client.sign_doc(token.access_token, digests=[digest])
    assert caught.value.upstream_status == 400 and caught.value.upstream_error == "invalid_request"
    assert "replay" in caught.value.upstream_description
    events = audit_events(ecosystem, first.transaction_id)
    assert events.count("signature.created") == 1 and events.count("key.created") == 1
    assert "sad.refused" in events
    no_keys(ecosystem)


def test_substituted_digest_is_refused(portal: Portal, ecosystem: Any) -> None:
    error = _sad_refusal(portal, digests=[hashlib.sha256(b"other document").digest()])
    assert error.upstream_error == "invalid_request" and "not authorized" in error.upstream_description
    no_keys(ecosystem)


def test_expired_sad_is_refused(portal: Portal, ecosystem: Any) -> None:
    digest = hashlib.sha256(b"late").digest()
    token = portal.token(documents=[(digest, "a.pdf")])
    service = ecosystem.service
    real = service.clock
    service.clock = lambda: real() + 301
    try:
        with pytest.raises(UpstreamError) as caught:
            portal.client.sign_doc(token.access_token, digests=[digest])
    finally:
        service.clock = real
    assert caught.value.upstream_status == 401 and "expired" in caught.value.upstream_description
    no_keys(ecosystem)


@pytest.mark.parametrize(("body", "status", "fragment"), [
    ({"documentDigests": [{"hashes": ["!!!"], "hashAlgorithmOID": "2.16.840.1.101.3.4.2.1", "signature_format": "P"}]},
     400, "base64"),
    ({"documentDigests": [{"hashes": [base64.b64encode(bytes(31)).decode()],
                           "hashAlgorithmOID": "2.16.840.1.101.3.4.2.1", "signature_format": "P"}]}, 400, "length"),
    ({"documentDigests": [{"hashes": [base64.b64encode(bytes(20)).decode()], "hashAlgorithmOID": "1.3.14.3.2.26",
                           "signature_format": "P"}]}, 400, "unsupported hash"),
    ({"documents": [{"document": base64.b64encode(b"%PDF-1.7").decode(), "signature_format": "P"}]}, 400,
     "whole documents"),
    ({"documentDigests": [{"hashes": ["{d}"], "hashAlgorithmOID": "2.16.840.1.101.3.4.2.1",
                           "signature_format": "X"}]}, 400, "signature_format"),
    ({"documentDigests": [{"hashes": ["{d}", "{o}"], "hashAlgorithmOID": "2.16.840.1.101.3.4.2.1",
                           "signature_format": "P"}]}, 400, "not authorized"),
], ids=["base64-garbage", "digest-length", "sha1", "whole-document", "xades", "more-than-authorized"])
def test_bad_sign_doc_requests(portal: Portal, ecosystem: Any, body: dict[str, Any], status: int, fragment: str) -> None:
    digest = hashlib.sha256(secrets.token_bytes(8)).digest()
    token = portal.token(documents=[(digest, "a.pdf")])
    text = str(body).replace("'", '"').replace("{d}", base64.b64encode(digest).decode()).replace(
        "{o}", base64.b64encode(hashlib.sha256(b"o").digest()).decode())
    import json
    answer = requests.post(f"{ecosystem.signer_url}/csc/v2/signatures/signDoc", json=json.loads(text),
                           headers={"Authorization": f"Bearer {token.access_token}"}, timeout=30)
    assert answer.status_code == status, answer.text
    assert fragment in answer.json()["error_description"]
    no_keys(ecosystem)
    # The refused request did not consume the SAD: the right request still signs once.
    assert portal.client.sign_doc(token.access_token, digests=[digest]).signature_objects
    no_keys(ecosystem)


def test_oauth_refusals(portal: Portal, ecosystem: Any) -> None:
    base = ecosystem.signer_url
    digest = hashlib.sha256(b"oauth").digest()
    # Unknown client / wrong secret at PAR.
    bad = SignerClient(base, client_id="signlab-portal", client_secret="wrong")
    with pytest.raises(UpstreamError) as caught:
        bad.push_authorization_request(redirect_uri=PORTAL_REDIRECT, state="s", code_challenge="x" * 43,
                                       qualifier="eu_eidas_qes", documents=[(digest, "a")])
    assert caught.value.upstream_status == 401 and caught.value.upstream_error == "invalid_client"
    # PKCE plain is refused.
    with pytest.raises(UpstreamError) as caught:
        portal.client.push_authorization_request(redirect_uri=PORTAL_REDIRECT, state="s", code_challenge="x" * 43,
                                                 qualifier="eu_eidas_qes", documents=[(digest, "a")],
                                                 extra={"code_challenge_method": "plain"})
    assert "S256" in caught.value.upstream_description
    # Unregistered redirect URI.
    with pytest.raises(UpstreamError) as caught:
        portal.client.push_authorization_request(redirect_uri="http://evil.example/cb", state="s",
                                                 code_challenge="x" * 43, qualifier="eu_eidas_qes",
                                                 documents=[(digest, "a")])
    assert "redirect_uri" in caught.value.upstream_description
    # Bad PKCE verifier, then the replayed code.
    query, verifier, _ = portal.authorize(documents=[(digest, "a.pdf")])
    with pytest.raises(UpstreamError) as caught:
        portal.client.exchange_code(query["code"][0], PORTAL_REDIRECT, verifier + "x")
    assert caught.value.upstream_error == "invalid_grant" and "PKCE" in caught.value.upstream_description
    with pytest.raises(UpstreamError) as caught:
        portal.client.exchange_code(query["code"][0], PORTAL_REDIRECT, verifier)
    assert caught.value.upstream_error == "invalid_grant" and "already used" in caught.value.upstream_description
    no_keys(ecosystem)


def test_declined_consent_and_low_loa_return_errors_to_the_portal(portal: Portal, ecosystem: Any) -> None:
    digest = hashlib.sha256(b"decline").digest()
    query, _, state = portal.authorize(documents=[(digest, "a.pdf")], approve=False)
    assert query["error"] == ["access_denied"] and query["state"] == [state]
    assert "declined" in query["error_description"][0]
    # QES with an eID means at LoA low: the IdP or the signer refuses; the reason is kept.
    query, _, _ = portal.authorize(documents=[(digest, "a.pdf")], login_hint="kari-nordmann@no-minid")
    assert query["error"] == ["access_denied"], query
    no_keys(ecosystem)


def test_ca_failure_mid_flow_destroys_the_key(portal: Portal, ecosystem: Any) -> None:
    digest = hashlib.sha256(b"ca down").digest()
    token = portal.token(documents=[(digest, "a.pdf")])
    ecosystem.ca.stop()
    try:
        with pytest.raises(UpstreamError) as caught:
            portal.client.sign_doc(token.access_token, digests=[digest])
    finally:
        from shared.testing import LiveServer

        ecosystem.ca = LiveServer(ecosystem.ca.app, ecosystem.ca.port).start()
    assert caught.value.upstream_status == 503
    tx = [e for e in ecosystem.service.audit.entries() if e.event == "signing.failed"][-1].data["transaction_id"]
    events = audit_events(ecosystem, tx)
    assert "key.created" in events and "key.destroyed" in events and "signature.created" not in events
    assert ecosystem.service.store.transaction(tx).state == "failed"
    no_keys(ecosystem)


def test_openapi_and_jwks_and_info(ecosystem: Any) -> None:
    doc = requests.get(f"{ecosystem.signer_url}/csc/openapi.json", timeout=10).json()
    assert doc["openapi"].startswith("3.") and "/csc/v2/signatures/signDoc" in doc["paths"]
    status = doc["paths"]["/oauth2/transaction-status"]["post"]
    assert set(status["responses"]) >= {"200", "400", "401", "404"}
    assert status["responses"]["200"]["content"]["application/json"]["schema"]["required"] == [
        "transaction_id", "state", "ended"]
    jwks = requests.get(f"{ecosystem.signer_url}/.well-known/jwks.json", timeout=10).json()
    assert jwks["keys"][0]["kty"] == "EC" and "d" not in jwks["keys"][0]
    info = requests.post(f"{ecosystem.signer_url}/csc/v1/info", json={}, timeout=10).json()
    assert info["specs"] == "1.0.4.0" and "signatures/signHash" in info["methods"]


def test_idp_login_page_shows_what_is_signed_for_whom(portal: Portal) -> None:
    """Step 3 carries a binding message, so the signer sees at the eID login (step 4) what is asked."""
    verifier = secrets.token_urlsafe(48)
    documents = [(hashlib.sha256(b"one").digest(), "one.pdf"), (hashlib.sha256(b"two").digest(), "two.pdf")]
    par = portal.client.push_authorization_request(
        redirect_uri=PORTAL_REDIRECT, state="s", code_challenge=create_s256_code_challenge(verifier),
        qualifier="eu_eidas_qes", documents=documents, login_hint=None)
    session, url = requests.Session(), par.authorize_url
    for _ in range(5):
        answer = session.get(url, allow_redirects=False, timeout=30)
        if answer.status_code not in (302, 303):
            break
        url = urljoin(url, answer.headers["Location"])
    assert answer.status_code == 200
    assert "Sign 2 documents (QES) for SignLab Demo Partner" in answer.text


@pytest.mark.parametrize(("path", "body", "fragment"), [
    ("/csc/v2/info", {"lang": 5}, "Invalid parameter lang: must satisfy type 'string'"),
    ("/csc/v1/credentials/info", {"lang": "en"}, "Missing parameter credentialID"),
    ("/csc/v1/credentials/list", {"maxResults": "ten"}, "Invalid parameter maxResults"),
    ("/csc/v1/credentials/authorize", {"credentialID": "c", "numSignatures": 1, "SAD": "secret-sad", "description": 5},
     "Invalid parameter description"),
])
def test_bodies_are_checked_against_the_published_schema(ecosystem: Any, service_token: str, path: str,
                                                         body: dict[str, Any], fragment: str) -> None:
    """What the OpenAPI document says is what the service enforces; the refusal never echoes values."""
    answer = requests.post(f"{ecosystem.signer_url}{path}", json=body, timeout=10,
                           headers={"Authorization": f"Bearer {service_token}"})
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "invalid_request" and fragment in answer.json()["error_description"]
    assert "secret-sad" not in answer.text and "\"ten\"" not in answer.text


@pytest.fixture
def service_token(portal: Portal) -> Iterator[str]:
    """A certificate-first service token (its one-time key destroyed after the test)."""
    token = portal.token(scope="service", num_signatures=1).access_token
    yield token
    portal.client.revoke(token)


@pytest.mark.parametrize("path", ["/csc/v1/credentials/info", "/csc/v2/credentials/list", "/csc/v1/credentials/authorize",
                                  "/csc/v1/credentials/extendTransaction", "/csc/v1/signatures/signHash",
                                  "/csc/v2/signatures/signDoc", "/csc/v2/signatures/timestamp"])
def test_an_unauthenticated_call_gets_401_before_any_400_for_its_body(ecosystem: Any, path: str) -> None:
    """Review weakness: without a valid bearer token the answer is 401, whatever the body (a
    schema-breaking one, whole documents, garbage) — nothing about the body is told."""
    for headers in ({}, {"Authorization": "Bearer not-a-token-of-this-service"}):
        for body in ({"lang": 5, "hash": ["not base64!"]}, {"documents": [{"document": "JVBERi0="}]}, []):
            answer = requests.post(f"{ecosystem.signer_url}{path}", json=body, headers=headers, timeout=10)
            assert answer.status_code == 401, (path, headers, body, answer.text)
            assert answer.json()["error"] == "invalid_token" and answer.headers["WWW-Authenticate"].startswith("Bearer")


# Kept before test_client_secret_guessing_locks_that_client_only, which locks the secret partner out
# of this address for a minute.
def test_transaction_status_is_the_partners_own_and_needs_its_authentication(portal: Portal, ecosystem: Any) -> None:
    """``oauth2/transaction-status``: 401 without client authentication, 404 for another client's
    transaction (the same answer as for an unknown id: no oracle), the state for the partner's own;
    ``answer_lost`` only as true or false, and on a transaction that did not complete it changes
    nothing (no audit entry, nothing to revoke)."""
    endpoint = f"{ecosystem.signer_url}/oauth2/transaction-status"
    pushed = portal.client.push_authorization_request(
        redirect_uri=PORTAL_REDIRECT, state="s", code_challenge=create_s256_code_challenge("v" * 43),
        qualifier="eu_eidas_qes", documents=[(hashlib.sha256(b"mine").digest(), "mine.txt")], login_hint=None)
    assert pushed.transaction_id
    mine = portal.client.transaction_status(pushed.transaction_id)
    assert (mine.transaction_id, mine.state, mine.ended, mine.error) == (pushed.transaction_id, "requested", False, None)
    entries = len(list(ecosystem.service.audit.entries()))
    reported = portal.client.transaction_status(pushed.transaction_id, answer_lost=True)
    assert (reported.state, reported.certificate_revocation) == ("requested", None)
    assert not [e for e in list(ecosystem.service.audit.entries())[entries:] if e.event == "transaction.answer_lost"]

    anonymous = requests.post(endpoint, data={"transaction_id": pushed.transaction_id}, timeout=10)
    assert anonymous.status_code == 401 and anonymous.json()["error"] == "invalid_client", anonymous.text
    assert "requested" not in anonymous.text
    other = (ecosystem.settings.partner_clients[0].client_id, ecosystem.partner_secret)
    for transaction_id in (pushed.transaction_id, "tx-unknown"):
        foreign = requests.post(endpoint, data={"transaction_id": transaction_id}, auth=other, timeout=10)
        assert foreign.status_code == 404 and foreign.json()["error"] == "not_found", foreign.text
        assert "requested" not in foreign.text
    odd = requests.post(endpoint, data={"transaction_id": pushed.transaction_id, "answer_lost": "maybe"}, auth=other,
                        timeout=10)
    assert odd.status_code == 400 and odd.json()["error"] == "invalid_request", odd.text


def test_client_secret_guessing_locks_that_client_only(portal: Portal, ecosystem: Any) -> None:
    """Brute force of a partner's client secret over HTTP: that partner is locked for that address
    after the limit (429, even the right secret); the portal, which authenticates with
    private_key_jwt, keeps working from the same address."""
    partner = ecosystem.settings.partner_clients[0].client_id
    par = f"{ecosystem.signer_url}/oauth2/par"
    form = {"response_type": "code", "client_id": partner}
    for _ in range(ecosystem.settings.client_lockout_failures):
        refused = requests.post(par, auth=(partner, "guess"), data=form, timeout=10)
        assert refused.status_code == 401 and refused.json()["error"] == "invalid_client", refused.text
    locked = requests.post(par, auth=(partner, ecosystem.partner_secret), data=form, timeout=10)
    assert locked.status_code == 429 and locked.json()["error"] == "too_many_attempts", locked.text
    assert int(locked.headers["Retry-After"]) >= 1
    assert portal.token(documents=[(hashlib.sha256(b"still works").digest(), "x.txt")]).access_token
    assert any(e.event == "client.locked" and e.data["client_id"] == partner
               for e in ecosystem.service.audit.entries())


def test_metadata_names_the_client_authentication_methods(ecosystem: Any) -> None:
    metadata = requests.get(f"{ecosystem.signer_url}/.well-known/oauth-authorization-server", timeout=10).json()
    assert metadata["token_endpoint_auth_methods_supported"] == [
        "private_key_jwt", "client_secret_basic", "client_secret_post"]
    assert "ES256" in metadata["token_endpoint_auth_signing_alg_values_supported"]


def test_revocation_data_only_when_asked(portal: Portal, ecosystem: Any) -> None:
    """CSC ``returnValidationInfo``: the chain always comes; CRL and OCSP only when the client asks."""
    plain_digest, asked_digest = hashlib.sha256(b"plain").digest(), hashlib.sha256(b"asked").digest()
    plain = portal.client.sign_doc(portal.token(documents=[(plain_digest, "a.txt")]).access_token,
                                   digests=[plain_digest], signature_format="C")
    assert len(plain.certificates) == 3 and plain.validation_info["crl"] == [] == plain.validation_info["ocsp"]
    asked = portal.client.sign_doc(portal.token(documents=[(asked_digest, "b.txt")]).access_token,
                                   digests=[asked_digest], signature_format="C", return_validation_info=True)
    assert asked.validation_info["crl"] and asked.validation_info["ocsp"]
    no_keys(ecosystem)


def test_the_trainer_reads_the_audit_log_and_its_chain_status(portal: Portal, ecosystem: Any) -> None:
    """#20: the audit log, read-only, behind the trainer token; pseudonymised subjects, paged."""
    base = f"{ecosystem.signer_url}/trainer"
    anonymous = requests.get(f"{base}/api/audit", timeout=10, headers={"Accept": "application/json"})
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"].startswith('Bearer realm=')
    trainer = {"Authorization": f"Bearer {ecosystem.settings.trainer_token.get_secret_value()}"}
    digest = hashlib.sha256(b"seen by the trainer").digest()
    signed = portal.client.sign_doc(portal.token(documents=[(digest, "t.txt")]).access_token, digests=[digest],
                                    signature_format="C")
    view = requests.get(f"{base}/api/audit?per_page=20", headers=trainer, timeout=10).json()
    assert view["chain"]["ok"] and view["chain"]["entries"] == len(list(ecosystem.service.audit.entries()))
    assert [e["seq"] for e in view["entries"]] == sorted((e["seq"] for e in view["entries"]), reverse=True)
    mine = [e for e in view["entries"] if e["data"].get("transaction_id") == signed.transaction_id]
    assert mine[0]["event"] == "transaction.completed"
    verified = [e for e in view["entries"] if e["event"] == "authentication.verified"]
    assert verified and all(e["data"]["subject"].startswith("ps-") for e in verified)
    assert "14838540105" not in str(view) and "Nordmann" not in str(view)
    page = requests.get(f"{base}/audit", headers=trainer, timeout=10)
    assert page.status_code == 200 and "intact" in page.text and signed.transaction_id in page.text
    assert requests.post(f"{base}/api/audit", headers=trainer, timeout=10).status_code == 405  # read-only
    assert requests.get(f"{base}/api/audit?per_page=0", headers=trainer, timeout=10).status_code == 400


def test_read_only_csc_methods_keep_answering_while_the_disk_is_low(portal: Portal, ecosystem: Any) -> None:
    """#25: below the disk threshold requests that write get 507; info, credentials/list and
    credentials/info store nothing and keep answering."""
    token = portal.token(scope="service", num_signatures=1)
    disk = ecosystem.signer_app.extensions["signlab.disk"]
    assert disk.path == ecosystem.settings.state_path  # it measures where the database and audit log are
    threshold = disk.min_free_bytes
    disk.min_free_bytes = 1 << 62  # more than any disk has: "low" from now on
    bearer = {"Authorization": f"Bearer {token.access_token}"}
    try:
        base = f"{ecosystem.signer_url}/csc/v1"
        assert requests.post(f"{base}/info", json={}, timeout=10).status_code == 200
        listed = requests.post(f"{base}/credentials/list", json={}, headers=bearer, timeout=10)
        assert listed.status_code == 200 and listed.json()["credentialIDs"] == [token.credential_id]
        info = requests.post(f"{base}/credentials/info", json={"credentialID": token.credential_id}, headers=bearer,
                             timeout=10)
        assert info.status_code == 200 and info.json()["SCAL"] == "2"
        refused = requests.post(f"{base}/credentials/authorize", headers=bearer, timeout=10, json={
            "credentialID": token.credential_id, "numSignatures": 1, "hash": [base64.b64encode(bytes(32)).decode()]})
        assert refused.status_code == 507 and refused.json()["error"] == "temporarily_unavailable"
    finally:
        disk.min_free_bytes = threshold
    portal.client.revoke(token.access_token)
    no_keys(ecosystem)
