"""How transactions end: expired (keys destroyed, credentials disabled, tokens revoked), failed,
completed after their credential; start-up and the sweep on an injected clock."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest

from services.signer.evidence import IdentityEvidence
from services.signer.hsm import Hsm
from services.signer.keys import OneTimeKeys
from services.signer.lifecycle import TransactionLifecycle
from services.signer.orphans import OrphanCertificates
from services.signer.settings import SignerSettings
from services.signer.store import CredentialRecord, Store, TokenRecord, TransactionRecord
from shared.audit import AuditLog

pytestmark = pytest.mark.hsm


@pytest.fixture
def lifecycle(signer_settings: SignerSettings, tmp_path: Path, clock: Any, in_process_tsp: Any) -> TransactionLifecycle:
    audit = AuditLog(tmp_path / "audit.jsonl")
    store = Store(tmp_path / "signer.sqlite3")
    return TransactionLifecycle(store, audit, OneTimeKeys(Hsm(signer_settings), audit, "ec-p256"), IdentityEvidence(),
                                OrphanCertificates(in_process_tsp, store, audit), clock)


def transaction(lifecycle: TransactionLifecycle, kind: str = "service", state: str = "consented",
                lifetime: float = 600) -> TransactionRecord:
    now = lifecycle.clock()
    record = TransactionRecord(f"tx-{secrets.token_hex(6)}", kind, "portal", "requested", now, now, now + lifetime,
                               {"qualifier": "eu_eidas_aes"})
    lifecycle.store.create_transaction(record)
    lifecycle.store.add_token(TokenRecord(f"token-of-{record.id}", kind, "portal", record.id, None, "ps", None, [], 1,
                                          now + 300, None, 0, None))
    return lifecycle.store.advance(record.id, ["requested"], state) if state != "requested" else record


def tokens_revoked(lifecycle: TransactionLifecycle, record: TransactionRecord) -> bool:
    token = lifecycle.store.token(f"token-of-{record.id}")
    assert token is not None
    return bool(token.revoked)


def on_token(lifecycle: TransactionLifecycle, record: TransactionRecord) -> list[dict[str, object]]:
    return [row for row in lifecycle.keys.hsm.key_objects() if row["label"] == record.id]


def test_expiry_destroys_keys_disables_credentials_and_revokes_tokens(lifecycle: TransactionLifecycle) -> None:
    record = transaction(lifecycle)
    key = lifecycle.keys.step6_create(record.id)
    lifecycle.store.add_credential(CredentialRecord("cred-life", record.id, "portal", "ps", key.key_id, "ec-p256", "",
                                                    "", [], "eu_eidas_aes", "1", 1, 1, "enabled", 0, 0))
    lifecycle.evidence.keep(record.id, "an ID token")
    lifecycle.expire(record, "test")
    assert lifecycle.store.transaction(record.id).state == "expired"  # type: ignore[union-attr]
    assert lifecycle.evidence.of(record.id) is None
    assert lifecycle.store.credential("cred-life").status == "disabled"  # type: ignore[union-attr]
    assert on_token(lifecycle, record) == [] and tokens_revoked(lifecycle, record)
    lifecycle.expire(record, "again")  # an ended transaction never restarts or ends twice
    assert [e.event for e in lifecycle.audit.entries()].count("transaction.expired") == 1


@pytest.mark.parametrize(("kind", "revoked"), [("service", True), ("credential", True), ("sign", False)])
def test_failure_revokes_the_tokens_except_the_spent_person_signing_token(lifecycle: TransactionLifecycle, kind: str,
                                                                          revoked: bool) -> None:
    record = transaction(lifecycle, kind)
    lifecycle.evidence.keep(record.id, "an ID token")
    lifecycle.fail(record, "x" * 600)
    assert lifecycle.evidence.of(record.id) is None
    failed = lifecycle.store.transaction(record.id)
    assert failed is not None and failed.state == "failed" and failed.error == "x" * 500
    assert tokens_revoked(lifecycle, record) is revoked


def test_sweep_follows_the_clock_and_startup_ends_everything_in_flight(lifecycle: TransactionLifecycle,
                                                                       clock: Any) -> None:
    short, long = transaction(lifecycle, lifetime=10), transaction(lifecycle, lifetime=1000)
    done = transaction(lifecycle, state="requested", lifetime=10)
    lifecycle.complete_certificate_first(done.id)  # not issued yet: nothing happens
    assert lifecycle.sweep() == 0
    clock.now += 11
    assert lifecycle.sweep() == 2  # the short one and the requested one
    assert lifecycle.store.transaction(long.id).state == "consented"  # type: ignore[union-attr]
    lifecycle.startup()
    assert {lifecycle.store.transaction(r.id).state for r in (short, long, done)} == {"expired"}  # type: ignore[union-attr]


def test_the_last_signature_completes_a_certificate_first_transaction(lifecycle: TransactionLifecycle) -> None:
    record = transaction(lifecycle, state="certificate_issued")
    lifecycle.complete_certificate_first(record.id)
    assert lifecycle.store.transaction(record.id).state == "completed"  # type: ignore[union-attr]
    assert [(e.event, e.step) for e in lifecycle.audit.entries()] == [("transaction.completed", 10)]


def test_startup_marks_the_certificates_of_interrupted_flows_and_the_sweep_revokes_them(
        lifecycle: TransactionLifecycle, in_process_tsp: Any) -> None:
    """#25: a restart after the CSR was sent leaves the transaction "revocation pending" without
    asking the TSP (a TSP that is down must not hold the start); the first sweep revokes by
    transaction id (the TSP's 404: nothing issued, is recorded as such)."""
    unused = transaction(lifecycle, state="consented")
    lifecycle.store.update_transaction(unused.id, certificate_revocation="pending")
    issued = transaction(lifecycle, state="consented")
    lifecycle.store.update_transaction(issued.id, certificate_revocation="pending")
    serial = in_process_tsp.issue(csr_der=_csr(lifecycle, issued.id), profile="ades", id_token="",
                                  transaction_id=issued.id).serial
    lifecycle.startup()
    assert {lifecycle.store.transaction(r.id).certificate_revocation for r in (unused, issued)} == {"pending"}  # type: ignore[union-attr]
    assert in_process_tsp.status_of(serial) == "valid"
    lifecycle.sweep()
    assert lifecycle.store.transaction(unused.id).certificate_revocation == "nothing_issued"  # type: ignore[union-attr]
    assert lifecycle.store.transaction(issued.id).certificate_revocation == "revoked"  # type: ignore[union-attr]
    assert in_process_tsp.status_of(serial) == "revoked"
    assert lifecycle.sweep() == 0 and lifecycle.store.ended_with_pending_revocation() == []


def _csr(lifecycle: TransactionLifecycle, transaction_id: str) -> bytes:
    """A CSR of a one-time key (destroyed at once: only its certificate matters here)."""
    from services.signer.signing import build_csr

    key = lifecycle.keys.step6_create(transaction_id)
    try:
        return build_csr(lifecycle.keys.hsm, key, common_name="unit test")
    finally:
        lifecycle.keys.step9_destroy(key.key_id, transaction_id)
