"""The SSASP core built directly, without Flask or HTTP: a real PAR, the token endpoint, the SAM
and the one-time pipeline on the real SoftHSM token, with the TSP's CA code in process.

Steps 3-5 need the IdP's login in a browser (covered over HTTP by test_http.py); here the
transaction is moved to ``consented`` in the store, as the consent step leaves it.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest
from asn1crypto import cms

from services.signer.csc import CredentialsAuthorizeRequest, DocumentToSign, SignDocRequest, SignHashRequest
from services.signer.errors import SadInvalid
from services.signer.service import SignerCore
from shared.errors import InvalidGrant, InvalidToken

pytestmark = pytest.mark.hsm

SHA256 = "2.16.840.1.101.3.4.2.1"
ECDSA_SHA256 = "1.2.840.10045.4.3.2"


@pytest.fixture
def service(core: SignerCore) -> SignerCore:
    return core


def token(service: SignerCore, code: str, verifier: str) -> dict[str, Any]:
    client = service.clients.client(service.settings.portal_client_id)
    return service.exchange_code(client, {"grant_type": "authorization_code", "code": code, "code_verifier": verifier})


def test_person_signing_through_the_core(service: SignerCore, consented: Any) -> None:
    digest = hashlib.sha256(b"contract").digest()
    details = [{"type": "credential", "signatureQualifier": "eu_eidas_qes", "hashAlgorithmOID": SHA256,
                "documentDigests": [{"hash": base64.b64encode(digest).decode(), "label": "contract.pdf"}]}]
    transaction_id, code, verifier = consented(authorization_details=json.dumps(details))
    answer = token(service, code, verifier)
    assert answer["authorization_details"] == details and answer["expires_in"] == 300
    with pytest.raises(InvalidGrant, match="already used"):
        token(service, code, verifier)  # the code is single use, and its replay revokes the token
    transaction_id, code, verifier = consented(authorization_details=json.dumps(details))
    access = service.sam.access_token(token(service, code, verifier)["access_token"], ("sign",))
    request = SignDocRequest("eu_eidas_qes", (DocumentToSign(digest, "sha256", "P", "ades-b-b", None),))
    signed = service.sign_doc(access, request)
    signer_info = cms.ContentInfo.load(base64.b64decode(signed["SignatureObject"][0]))["content"]["signer_infos"][0]
    assert {a["type"].native: a["values"][0].native for a in signer_info["signed_attrs"]}["message_digest"] == digest
    assert signed["transactionID"] == transaction_id and signed["loa"] == "high"
    with pytest.raises(SadInvalid, match="replay"):
        service.sign_doc(access, request)
    assert [row for row in service.hsm.key_objects() if row["label"] == transaction_id] == []
    assert service.audit.verify().ok


def test_certificate_first_through_the_core(service: SignerCore, consented: Any) -> None:
    transaction_id, code, verifier = consented(scope="service", signatureQualifier="eu_eidas_aes", numSignatures="1",
                                               SCAL="1")
    answer = token(service, code, verifier)
    assert answer["scope"] == "service" and answer["credentialID"].startswith("cred-")
    service_token = service.sam.access_token(answer["access_token"], ("service",))
    dtbsr = hashlib.sha256(b"signed attributes").digest()
    sad = service.credentials_authorize(service_token, CredentialsAuthorizeRequest(answer["credentialID"], 1,
                                                                                   "sha256", (dtbsr,)))
    holder = service.sam.sign_hash_token(answer["access_token"], sad_in_body=True)
    signed = service.sign_hash(holder, SignHashRequest(answer["credentialID"], sad["SAD"], ECDSA_SHA256, "sha256",
                                                       (dtbsr,)))
    assert len(signed["signatures"]) == 1
    assert service.store.transaction(transaction_id).state == "completed"  # type: ignore[union-attr]
    assert [row for row in service.hsm.key_objects() if row["label"] == transaction_id] == []


def test_moving_the_clock_moves_every_part(service: SignerCore, consented: Any, clock: Any) -> None:
    transaction_id, code, verifier = consented(scope="service", numSignatures="1")
    answer = token(service, code, verifier)
    assert len([row for row in service.hsm.key_objects() if row["label"] == transaction_id]) == 2
    clock.now += 3600
    with pytest.raises(InvalidToken, match="expired"):  # the SAM
        service.sam.access_token(answer["access_token"], ("service",))
    assert service.sweep() == 1  # the lifecycle: the credential's key is destroyed at expiry
    assert [row for row in service.hsm.key_objects() if row["label"] == transaction_id] == []
    assert service.store.transaction(transaction_id).state == "expired"  # type: ignore[union-attr]


def test_the_audit_page_is_newest_first_with_the_chain_status(service: SignerCore) -> None:
    for number in range(5):
        service.audit.append("test.entry", number=number)
    first = service.audit_page(1, 2)
    total = first["chain"]["entries"]
    assert first["chain"]["ok"] and first["chain"]["summary"].startswith("intact")
    assert first["pages"] == -(-total // 2) and [e["seq"] for e in first["entries"]] == [total, total - 1]
    last = service.audit_page(99, 2)  # beyond the end: the oldest page
    assert last["page"] == last["pages"] and last["entries"][-1]["seq"] == 1
    # Damage one line: the view says where, and shows what comes before it.
    lines = service.audit.path.read_text().splitlines(keepends=True)
    lines[2] = lines[2].replace('"test.entry"', '"edited.entry"') if "test.entry" in lines[2] else "not json\n"
    service.audit.path.write_text("".join(lines))
    tampered = service.audit_page(1, 50)
    assert not tampered["chain"]["ok"] and tampered["chain"]["first_broken"] == 3
    assert "TAMPERED at entry 3" in tampered["chain"]["summary"]
    assert [e["seq"] for e in tampered["entries"]] == [2, 1]


def test_startup_cuts_an_interrupted_audit_write_and_records_it(service: SignerCore) -> None:
    """#25: a torn last line (a write the crash interrupted) is cut and recorded at start-up."""
    with service.audit.path.open("ab") as log:
        log.write(b'{"seq": 99999, "event": "half a li')
    service.startup()
    verification = service.audit.verify()
    assert verification.ok and verification.torn_bytes == 0
    assert verification.recoveries and verification.recoveries[-1].data["cut_bytes"] == len(b'{"seq": 99999, "event": "half a li')
