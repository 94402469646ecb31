"""Certificate-first credentials built directly (no HTTP): made at steps 6-7, described as CSC
v1/v2 say, authorized per batch of hashes, spent by signHash, and ended with their key."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils
from pydantic import SecretStr

from services.signer.credentials import Credentials
from services.signer.csc import CredentialInfoRequest, CredentialsAuthorizeRequest, CredentialsListRequest, SignHashRequest
from services.signer.faults import HSM_SIGN, SIGNER_FAULTS
from services.signer.hsm import Hsm, HsmError
from services.signer.keys import OneTimeKeys
from services.signer.lifecycle import TransactionLifecycle
from services.signer.pipeline import SigningPipeline
from services.signer.sam import SignatureActivationModule
from services.signer.settings import SignerSettings
from services.signer.store import Store, TokenRecord, TransactionRecord, secret_hash
from shared.audit import AuditLog
from shared.faults import FaultBoard

pytestmark = pytest.mark.hsm

ECDSA_SHA256 = "1.2.840.10045.4.3.2"
BEARER = "the-service-token"


class Parts:
    """Credentials and what they are made of, built directly."""

    def __init__(self, settings: SignerSettings, tsp: Any, clock: Any) -> None:
        self.hsm = Hsm(settings)
        self.store = Store(settings.database_path)
        self.audit = AuditLog(settings.audit_path)
        self.keys = OneTimeKeys(self.hsm, self.audit, "ec-p256")
        self.lifecycle = TransactionLifecycle(self.store, self.audit, self.keys, clock)
        self.sam = SignatureActivationModule(self.store, self.audit, clock)
        pipeline = SigningPipeline(self.hsm, tsp, self.store, self.audit, self.keys, self.lifecycle, clock)
        self.credentials = Credentials(self.store, self.audit, self.sam, pipeline, self.keys, self.lifecycle,
                                       token_lifetime=600, sad_lifetime=300, clock=clock)
        self.clock = clock

    def service_token(self, signatures: int) -> TokenRecord:
        """A consented service-scope transaction, its credential (steps 6-7) and its service token
    (whose value is :data:`BEARER`)."""
        now = self.clock()
        record = TransactionRecord(f"tx-{int(now * 1e6)}", "service", "signlab-portal", "requested", now, now,
                                   now + 600, {"qualifier": "eu_eidas_aes", "num_signatures": signatures})
        self.store.create_transaction(record)
        transaction = self.store.advance(record.id, ["requested"], "consented", subject="ps-kari",
                                         id_token="evidence")
        credential = self.credentials.create(transaction)
        token = TokenRecord(secret_hash(BEARER), "service", "signlab-portal", record.id, credential.id, "ps-kari",
                            None, [], signatures, now + 600, None, 0, None)
        self.store.add_token(token)
        return token


@pytest.fixture
def parts(fresh_settings: SignerSettings, in_process_tsp: Any, clock: Any) -> Parts:
    return Parts(fresh_settings, in_process_tsp, clock)


def test_credential_is_listed_and_described_for_v1_and_v2(parts: Parts) -> None:
    token = parts.service_token(2)
    assert token.credential_id is not None
    assert parts.credentials.list(token, CredentialsListRequest.parse({}), 1) == {"credentialIDs": [token.credential_id]}
    listed = parts.credentials.list(token, CredentialsListRequest.parse({"credentialInfo": True, "certInfo": True}), 2)
    [info] = listed["credentialInfos"]
    assert info["SCAL"] == "2" and info["multisign"] == 2 and info["auth"] == {"mode": "implicit"}
    assert info["key"] == {"status": "enabled", "algo": info["key"]["algo"], "len": 256, "curve": "1.2.840.10045.3.1.7"}
    assert ECDSA_SHA256 in info["key"]["algo"] and info["cert"]["subjectDN"]
    v1 = parts.credentials.info(token, CredentialInfoRequest(token.credential_id, "chain", False), 1)
    assert v1["authMode"] == "implicit" and len(v1["cert"]["certificates"]) == 3 and "subjectDN" not in v1["cert"]
    parts.clock.now += 3600  # past the credential's lifetime: described as expired (the sweep destroys it)
    expired = parts.credentials.info(token, CredentialInfoRequest(token.credential_id), 1)
    assert (expired["key"]["status"], expired["cert"]["status"]) == ("disabled", "expired")
    parts.lifecycle.sweep()
    assert [row for row in parts.hsm.key_objects() if row["label"] == token.transaction_id] == []


def test_sad_signs_exactly_its_hashes_and_the_last_signature_ends_the_credential(parts: Parts) -> None:
    token = parts.service_token(2)
    assert token.credential_id is not None
    first, second = hashlib.sha256(b"first").digest(), hashlib.sha256(b"second").digest()
    answers = []
    for dtbsr in (first, second):
        sad = parts.credentials.authorize(token, CredentialsAuthorizeRequest(token.credential_id, 1, "sha256",
                                                                             (dtbsr,)))
        assert 0 < sad["expiresIn"] <= 300
        holder = parts.sam.sign_hash_token(BEARER, sad_in_body=True)
        answers.append(parts.credentials.sign_hash(holder, SignHashRequest(token.credential_id, sad["SAD"],
                                                                          ECDSA_SHA256, "sha256", (dtbsr,))))
    leaf = x509.load_der_x509_certificate(base64.b64decode(
        parts.store.credential(token.credential_id).certificate))  # type: ignore[union-attr]
    public_key = leaf.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    for answer, dtbsr in zip(answers, (first, second), strict=True):
        public_key.verify(base64.b64decode(answer["signatures"][0]), dtbsr,
                          ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    spent = parts.store.credential(token.credential_id)
    assert spent is not None and (spent.status, spent.remaining) == ("disabled", 0)
    assert parts.store.transaction(token.transaction_id).state == "completed"  # type: ignore[union-attr]
    assert [row for row in parts.hsm.key_objects() if row["label"] == token.transaction_id] == []


@pytest.fixture
def failing_hsm(parts: Parts) -> Iterator[FaultBoard]:
    board = FaultBoard(SIGNER_FAULTS, SecretStr("admin"), parts.audit)
    parts.hsm.faults = board
    try:
        yield board
    finally:
        parts.hsm.faults = None


def test_hsm_failure_ends_the_credential_with_its_key(parts: Parts, failing_hsm: FaultBoard) -> None:
    token = parts.service_token(3)
    assert token.credential_id is not None
    dtbsr = hashlib.sha256(b"attributes").digest()
    sad = parts.credentials.authorize(token, CredentialsAuthorizeRequest(token.credential_id, 1, None, (dtbsr,)))
    failing_hsm.arm(HSM_SIGN)
    holder = parts.sam.access_token(BEARER, ("service",))
    with pytest.raises(HsmError):
        parts.credentials.sign_hash(holder, SignHashRequest(token.credential_id, sad["SAD"], ECDSA_SHA256, "sha256",
                                                            (dtbsr,)))
    ended = parts.store.credential(token.credential_id)
    assert ended is not None and ended.status == "disabled"  # two signatures were left, none can be made now
    assert [row for row in parts.hsm.key_objects() if row["label"] == token.transaction_id] == []
    events = [e.event for e in parts.audit.entries() if e.data.get("transaction_id") == token.transaction_id]
    # The credential's end closes its transaction, after a failure too (as the service always did).
    assert events[-3:] == ["signing.failed", "key.destroyed", "transaction.completed"]
    assert "signature.created" not in events
