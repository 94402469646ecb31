"""Certificate-first credentials of the core built directly (no HTTP; conftest ``core``): made at
steps 6-7, described as CSC v1/v2 say, authorized per batch of hashes, spent by signHash, and
ended with their key."""

from __future__ import annotations

import base64
import hashlib
import secrets
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils

from services.signer.csc import (
    CredentialInfoRequest,
    CredentialsAuthorizeRequest,
    CredentialsListRequest,
    SignHashRequest,
)
from services.signer.faults import HSM_SIGN
from services.signer.hsm import HsmError
from services.signer.service import SignerCore
from services.signer.store import TokenRecord, TransactionRecord, secret_hash

pytestmark = pytest.mark.hsm

ECDSA_SHA256 = "1.2.840.10045.4.3.2"
BEARER = "the-service-token"


def service_token(core: SignerCore, signatures: int, scal: str = "1", bearer: str = BEARER) -> TokenRecord:
    """A consented service-scope transaction, its credential (steps 6-7; count-only SCAL 1 unless
    said, so that credentials/authorize issues its SADs) and its service token (whose value is
    :data:`BEARER`)."""
    now = core.now()
    record = TransactionRecord(f"tx-{secrets.token_hex(6)}", "service", "signlab-portal", "requested", now, now,
                               now + 600, {"qualifier": "eu_eidas_aes", "num_signatures": signatures, "scal": scal})
    core.store.create_transaction(record)
    transaction = core.store.advance(record.id, ["requested"], "consented", subject="ps-kari")
    core.evidence.keep(record.id, "evidence")
    credential = core.credentials.create(transaction)
    token = TokenRecord(secret_hash(bearer), "service", "signlab-portal", record.id, credential.id, "ps-kari",
                        None, [], signatures, now + 600, None, 0, None)
    core.store.add_token(token)
    return token


def test_credential_is_listed_and_described_for_v1_and_v2(core: SignerCore, clock: Any) -> None:
    scal2 = service_token(core, 1, scal="2", bearer="scal-2-token")
    assert scal2.credential_id is not None
    described = core.credentials.info(scal2, CredentialInfoRequest(scal2.credential_id), 1)
    assert (described["SCAL"], described["authMode"]) == ("2", "oauth2code") and "SCAL 2" in described["description"]
    core.revoke(core.clients.client("signlab-portal"), "scal-2-token")  # its key goes at once
    token = service_token(core, 2)
    assert token.credential_id is not None
    listed_v1 = core.credentials.list_credentials(token, CredentialsListRequest.parse({}), 1)
    assert listed_v1 == {"credentialIDs": [token.credential_id]}
    with_info = CredentialsListRequest.parse({"credentialInfo": True, "certInfo": True})
    listed = core.credentials.list_credentials(token, with_info, 2)
    [info] = listed["credentialInfos"]
    assert info["SCAL"] == "1" and info["multisign"] == 2 and info["auth"] == {"mode": "implicit"}
    assert "SCAL 1 (count only)" in info["description"]
    assert info["key"] == {"status": "enabled", "algo": info["key"]["algo"], "len": 256, "curve": "1.2.840.10045.3.1.7"}
    assert ECDSA_SHA256 in info["key"]["algo"] and info["cert"]["subjectDN"]
    v1 = core.credentials.info(token, CredentialInfoRequest(token.credential_id, "chain", False), 1)
    assert v1["authMode"] == "implicit" and len(v1["cert"]["certificates"]) == 3 and "subjectDN" not in v1["cert"]
    clock.now += 3600  # past the credential's lifetime: described as expired (the sweep destroys it)
    expired = core.credentials.info(token, CredentialInfoRequest(token.credential_id), 1)
    assert (expired["key"]["status"], expired["cert"]["status"]) == ("disabled", "expired")
    core.lifecycle.sweep()
    assert [row for row in core.hsm.key_objects() if row["label"] == token.transaction_id] == []


def test_sad_signs_exactly_its_hashes_and_the_last_signature_ends_the_credential(core: SignerCore) -> None:
    token = service_token(core, 2)
    assert token.credential_id is not None
    first, second = hashlib.sha256(b"first").digest(), hashlib.sha256(b"second").digest()
    answers = []
    for dtbsr in (first, second):
        sad = core.credentials.authorize(token, CredentialsAuthorizeRequest(token.credential_id, 1, "sha256",
                                                                             (dtbsr,)))
        assert 0 < sad["expiresIn"] <= 300
        holder = core.sam.sign_hash_token(BEARER, sad_in_body=True)
        answers.append(core.credentials.sign_hash(holder, SignHashRequest(token.credential_id, sad["SAD"],
                                                                          ECDSA_SHA256, "sha256", (dtbsr,))))
    leaf = x509.load_der_x509_certificate(base64.b64decode(
        core.store.credential(token.credential_id).certificate))  # type: ignore[union-attr]
    public_key = leaf.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    for answer, dtbsr in zip(answers, (first, second), strict=True):
        public_key.verify(base64.b64decode(answer["signatures"][0]), dtbsr,
                          ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    spent = core.store.credential(token.credential_id)
    assert spent is not None and (spent.status, spent.remaining) == ("disabled", 0)
    assert core.store.transaction(token.transaction_id).state == "completed"  # type: ignore[union-attr]
    assert [row for row in core.hsm.key_objects() if row["label"] == token.transaction_id] == []


def test_hsm_failure_ends_the_credential_with_its_key(core: SignerCore, failing_hsm: Any) -> None:
    token = service_token(core, 3)
    assert token.credential_id is not None
    dtbsr = hashlib.sha256(b"attributes").digest()
    sad = core.credentials.authorize(token, CredentialsAuthorizeRequest(token.credential_id, 1, None, (dtbsr,)))
    failing_hsm.arm(HSM_SIGN)
    holder = core.sam.access_token(BEARER, ("service",))
    with pytest.raises(HsmError):
        core.credentials.sign_hash(holder, SignHashRequest(token.credential_id, sad["SAD"], ECDSA_SHA256, "sha256",
                                                            (dtbsr,)))
    ended = core.store.credential(token.credential_id)
    assert ended is not None and ended.status == "disabled"  # two signatures were left, none can be made now
    assert [row for row in core.hsm.key_objects() if row["label"] == token.transaction_id] == []
    events = [e.event for e in core.audit.entries() if e.data.get("transaction_id") == token.transaction_id]
    # The credential's end closes its transaction, after a failure too (as the service always did);
    # its certificate never signed anything, so it is revoked.
    assert events[-4:] == ["signing.failed", "key.destroyed", "transaction.completed", "certificate.revoked"]
    assert "signature.created" not in events
    credential = core.store.credential(token.credential_id)
    assert credential is not None and core.ca.status_of(credential.serial) == "revoked"


def test_a_credential_that_signed_keeps_its_certificate_when_it_ends(core: SignerCore) -> None:
    """Its signatures must stay valid: an expiry after a signature keeps the certificate ("kept")."""
    token = service_token(core, 2)
    assert token.credential_id is not None
    dtbsr = hashlib.sha256(b"one of two").digest()
    sad = core.credentials.authorize(token, CredentialsAuthorizeRequest(token.credential_id, 1, "sha256", (dtbsr,)))
    holder = core.sam.sign_hash_token(BEARER, sad_in_body=True)
    core.credentials.sign_hash(holder, SignHashRequest(token.credential_id, sad["SAD"], ECDSA_SHA256, "sha256",
                                                       (dtbsr,)))
    core.revoke(core.clients.client("signlab-portal"), BEARER)  # the partner is done: the key goes
    ended = core.store.transaction(token.transaction_id)
    assert ended is not None and (ended.state, ended.certificate_revocation) == ("expired", "kept")
    credential = core.store.credential(token.credential_id)
    assert credential is not None and core.ca.status_of(credential.serial) == "valid"
    assert [e.event for e in core.audit.entries()][-1] == "certificate.kept"
