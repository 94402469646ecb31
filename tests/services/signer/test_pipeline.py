"""The one-time signing pipeline, steps 6-10, on the real SoftHSM token with the TSP's CA code
in process and an injected clock: what it signs verifies, and every path destroys the key."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from asn1crypto import cms
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils

from services.signer.csc import DocumentToSign
from services.signer.evidence import IdentityEvidence
from services.signer.faults import HSM_SIGN
from services.signer.hsm import Hsm, HsmError
from services.signer.keys import OneTimeKeys
from services.signer.lifecycle import TransactionLifecycle
from services.signer.orphans import OrphanCertificates
from services.signer.pipeline import SigningPipeline, check_issued_certificate
from services.signer.settings import SignerSettings
from services.signer.store import CredentialRecord, Store, TransactionRecord
from shared.audit import AuditLog
from shared.errors import SignLabError

pytestmark = pytest.mark.hsm


class Parts:
    """The pipeline and what it is made of, built directly (no app, no HTTP)."""

    def __init__(self, settings: SignerSettings, hsm: Hsm, tsp: Any, clock: Any) -> None:
        self.hsm = hsm
        self.store = Store(settings.database_path)
        self.audit = AuditLog(settings.audit_path)
        self.keys = OneTimeKeys(self.hsm, self.audit, "ec-p256")
        self.evidence = IdentityEvidence()
        self.orphans = OrphanCertificates(tsp, self.store, self.audit)
        self.lifecycle = TransactionLifecycle(self.store, self.audit, self.keys, self.evidence, self.orphans, clock)
        self.pipeline = SigningPipeline(self.hsm, tsp, self.store, self.audit, self.keys, self.evidence,
                                        self.lifecycle, clock)

    def consented(self, qualifier: str = "eu_eidas_qes", kind: str = "sign") -> TransactionRecord:
        """A transaction the signer consented to (what steps 2-5 leave behind)."""
        now = datetime.now(UTC).timestamp()
        record = TransactionRecord(f"tx-{secrets.token_hex(6)}", kind, "signlab-portal", "requested", now, now,
                                   now + 600, {"qualifier": qualifier, "num_signatures": 2})
        self.store.create_transaction(record)
        self.evidence.keep(record.id, "evidence")
        return self.store.advance(record.id, ["requested"], "consented", identity={"loa": "high"})

    def events(self, transaction_id: str) -> list[str]:
        return [e.event for e in self.audit.entries() if e.data.get("transaction_id") == transaction_id]

    def keys_left(self, transaction_id: str) -> list[dict[str, object]]:
        return [row for row in self.hsm.key_objects() if row["label"] == transaction_id]


@pytest.fixture
def parts(fresh_settings: SignerSettings, own_hsm: Hsm, in_process_tsp: Any, clock: Any) -> Parts:
    return Parts(fresh_settings, own_hsm, in_process_tsp, clock)


def document(text: str, fmt: str) -> DocumentToSign:
    return DocumentToSign(hashlib.sha256(text.encode()).digest(), "sha256", fmt, "ades-b-b", None)


def test_steps_6_to_10_sign_every_document_and_destroy_the_key(parts: Parts, in_process_tsp: Any) -> None:
    transaction = parts.consented()
    documents = [document("contract", "P"), document("annex", "C"), document("payload", "J")]
    answer = parts.pipeline.sign_documents(transaction, documents, {documents[2].digest: "payload.json"},
                                           with_revocation=True)
    assert answer["transactionID"] == transaction.id and answer["signatureFormats"] == ["P", "C", "J"]
    assert answer["certificateSerial"] == in_process_tsp.issued[-1] and len(answer["validationInfo"]["crl"]) == 2  # issuing and root CA
    leaf = x509.load_der_x509_certificate(base64.b64decode(answer["validationInfo"]["certificates"][0]))
    public_key = leaf.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    for signed, doc in zip(answer["SignatureObject"][:2], documents, strict=False):
        signer_info = cms.ContentInfo.load(base64.b64decode(signed))["content"]["signer_infos"][0]
        attributes = {a["type"].native: a["values"][0].native for a in signer_info["signed_attrs"]}
        assert attributes["message_digest"] == doc.digest  # the document digest, signed as given
        assert ("signing_time" in attributes) == (doc.signature_format == "C")  # PAdES: the PDF's /M carries the time
        signed_attrs = bytearray(signer_info["signed_attrs"].dump())
        signed_attrs[0] = 0x31
        public_key.verify(signer_info["signature"].native, bytes(signed_attrs), ec.ECDSA(hashes.SHA256()))
    assert parts.keys_left(transaction.id) == []
    assert parts.events(transaction.id) == [
        "key.created", "csr.sent", "certificate.issued", *["dtbsr.built", "signature.created"] * 3, "key.destroyed",
        "transaction.completed"]
    ended = parts.store.transaction(transaction.id)
    assert ended is not None and ended.state == "completed" and parts.evidence.of(transaction.id) is None
    assert parts.audit.verify().ok


@pytest.mark.parametrize(("arrange", "error", "status", "fragment", "certificate"), [
    (lambda tsp, clock: setattr(tsp, "refuse", "access_denied"), "access_denied", 403, "the TSP refused",
     "certificate.revocation_unneeded"),
    (lambda tsp, clock: setattr(tsp, "refuse", "server_error"), "server_error", 502, "the TSP refused",
     "certificate.revocation_unneeded"),
    (lambda tsp, clock: (setattr(tsp, "refuse", "temporarily_unavailable"), setattr(tsp, "refuse_status", 507)),
     "temporarily_unavailable", 503, "the TSP cannot issue certificates now", "certificate.revocation_unneeded"),
    (lambda tsp, clock: setattr(tsp, "certify_other_key", True), "server_error", 502, "not the one-time key",
     "certificate.revoked"),
    (lambda tsp, clock: setattr(clock, "now", clock.now + 86400), "server_error", 502, "expired at",
     "certificate.revoked"),
    (lambda tsp, clock: setattr(clock, "now", clock.now - 600), "server_error", 502,
     "s after this service's clock (is the TSP's clock ahead?)", "certificate.revoked"),
], ids=["tsp-policy-refusal", "tsp-failure", "tsp-disk-full", "certificate-for-another-key",
        "certificate-expired-by-the-clock", "tsp-clock-ahead"])
def test_step_7_failure_fails_the_transaction_and_destroys_the_key(parts: Parts, in_process_tsp: Any, clock: Any,
                                                                   arrange: Any, error: str, status: int,
                                                                   fragment: str, certificate: str) -> None:
    """The key is destroyed first; then a certificate the TSP issued anyway (unusable) is revoked,
    or the TSP confirms it issued none."""
    transaction = parts.consented()
    issued_before = len(in_process_tsp.issued)
    arrange(in_process_tsp, clock)
    try:
        with pytest.raises(SignLabError) as refused:
            parts.pipeline.sign_documents(transaction, [document("contract", "P")], {})
    finally:
        in_process_tsp.refuse_status = 403
    assert (refused.value.error, refused.value.status) == (error, status)
    assert refused.value.step is not None and refused.value.step.number == 7
    assert fragment in refused.value.description
    assert parts.keys_left(transaction.id) == []
    events = parts.events(transaction.id)
    assert events[-3:] == ["signing.failed", "key.destroyed", certificate] and "signature.created" not in events
    ended = parts.store.transaction(transaction.id)
    assert ended is not None and ended.state == "failed"
    if certificate == "certificate.revoked":
        [serial] = in_process_tsp.issued[issued_before:]
        assert in_process_tsp.status_of(serial) == "revoked" and ended.certificate_revocation == "revoked"
    else:
        assert ended.certificate_revocation == "nothing_issued"


def test_hsm_failure_at_step_9_leaves_no_signature_no_key_and_no_valid_certificate(parts: Parts, failing_hsm: Any,
                                                                                   in_process_tsp: Any) -> None:
    transaction = parts.consented()
    failing_hsm.arm(HSM_SIGN)
    with pytest.raises(HsmError) as refused:
        parts.pipeline.sign_documents(transaction, [document("contract", "P")], {})
    assert refused.value.step is not None and refused.value.step.number == 9  # not the CSR's step-7 signature
    assert parts.keys_left(transaction.id) == []
    assert parts.events(transaction.id)[-3:] == ["signing.failed", "key.destroyed", "certificate.revoked"]
    revoked = [e for e in parts.audit.entries() if e.event == "certificate.revoked"][-1]
    assert revoked.data["serials"] == [in_process_tsp.issued[-1]] and "step 9" in revoked.data["note"]
    assert in_process_tsp.status_of(in_process_tsp.issued[-1]) == "revoked"


def test_a_revocation_the_tsp_cannot_take_now_is_retried_by_the_sweep(parts: Parts, failing_hsm: Any,
                                                                      in_process_tsp: Any) -> None:
    """#25: the TSP unreachable when the flow fails after step 7: "revocation pending", audited;
    the sweep revokes once the TSP answers again (by transaction id)."""
    transaction = parts.consented()
    failing_hsm.arm(HSM_SIGN)
    in_process_tsp.unreachable = False
    original = in_process_tsp.issue

    def issue_then_go_down(**kwargs: Any) -> Any:
        issued = original(**kwargs)
        in_process_tsp.unreachable = True  # the TSP answered the issuance, then went away
        return issued

    in_process_tsp.issue = issue_then_go_down
    try:
        with pytest.raises(HsmError):
            parts.pipeline.sign_documents(transaction, [document("contract", "P")], {})
        assert parts.store.transaction(transaction.id).certificate_revocation == "pending"  # type: ignore[union-attr]
        assert parts.events(transaction.id)[-1] == "certificate.revocation_failed"
        assert parts.lifecycle.sweep() == 0  # nothing expired; the retry fails again, still pending
        assert parts.store.transaction(transaction.id).certificate_revocation == "pending"  # type: ignore[union-attr]
        in_process_tsp.unreachable = False
        parts.lifecycle.sweep()
    finally:
        del in_process_tsp.issue
        in_process_tsp.unreachable = False
    assert parts.store.transaction(transaction.id).certificate_revocation == "revoked"  # type: ignore[union-attr]
    assert in_process_tsp.status_of(in_process_tsp.issued[-1]) == "revoked"
    assert parts.events(transaction.id)[-1] == "certificate.revoked"


def test_certificate_first_key_signs_hashes_as_given_until_destroyed(parts: Parts) -> None:
    transaction = parts.consented("eu_eidas_aes", kind="service")
    key, issued = parts.pipeline.step6_7_create_credential_key(transaction)
    assert parts.store.transaction(transaction.id).state == "certificate_issued"  # type: ignore[union-attr]
    credential = CredentialRecord("cred-unit", transaction.id, "signlab-portal", "ps-1", key.key_id, key.algorithm,
                                  "", "", [], "eu_eidas_aes", issued.serial, 1, 1, "enabled", 0.0, 0.0)
    dtbsr = hashlib.sha256(b"signed attributes from the portal").digest()
    [signature] = parts.pipeline.step9_sign_hashes(credential, [dtbsr], "sha256")
    public_key = x509.load_der_x509_certificate(issued.leaf.dump()).public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    public_key.verify(signature, dtbsr, ec.ECDSA(utils.Prehashed(hashes.SHA256())))  # never hashed again
    parts.keys.step9_destroy(key.key_id, transaction.id)
    with pytest.raises(HsmError, match="not in this process"):
        parts.pipeline.step9_sign_hashes(credential, [dtbsr], "sha256")
    assert parts.events(transaction.id)[-3:] == ["signature.created", "key.destroyed", "signing.failed"]
    assert parts.keys_left(transaction.id) == []


def test_certificate_first_step_7_failure_destroys_the_key(parts: Parts, in_process_tsp: Any) -> None:
    transaction = parts.consented(kind="service")
    in_process_tsp.refuse = "invalid_request"
    with pytest.raises(SignLabError, match="the TSP refused"):
        parts.pipeline.step6_7_create_credential_key(transaction)
    assert parts.keys_left(transaction.id) == []
    assert parts.events(transaction.id)[-3:] == ["key.destroyed", "credential.failed",
                                                 "certificate.revocation_unneeded"]
    assert parts.store.transaction(transaction.id).state == "failed"  # type: ignore[union-attr]


def test_issued_certificate_check_names_the_missing_policy(parts: Parts) -> None:
    """An AdES certificate where QES was consented to is unusable (never a silent downgrade)."""
    transaction = parts.consented("eu_eidas_aes", kind="service")
    key, issued = parts.pipeline.step6_7_create_credential_key(transaction)
    now = datetime.now(UTC)
    try:
        assert check_issued_certificate(issued, key, "eu_eidas_aes", now) > now
        with pytest.raises(SignLabError, match=re.escape("lacks the eu_eidas_qes policy 0.4.0.194112.1.2")):
            check_issued_certificate(issued, key, "eu_eidas_qes", now)
        with pytest.raises(SignLabError, match="not valid now: it expired at") as expired:
            check_issued_certificate(issued, key, "eu_eidas_aes", now + timedelta(days=1))
        assert expired.value.status == 502
        not_before = x509.load_der_x509_certificate(issued.leaf.dump()).not_valid_before_utc
        with pytest.raises(SignLabError) as early:  # this service's clock 31 s behind the TSP's
            check_issued_certificate(issued, key, "eu_eidas_aes", not_before - timedelta(seconds=31))
        assert "its notBefore" in early.value.description and " is 31 s after this service's clock" in early.value.description
    finally:
        parts.keys.step9_destroy(key.key_id, transaction.id)
