"""Crash consistency of the TSP: issuance logged before it is effective, start-up reconciliation of
log and database, idempotent issuance by request id, and revocation by the signing service of the
certificates of its failed flows (seen in CRL and OCSP)."""

from __future__ import annotations

import datetime as dt
import secrets
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from pydantic import SecretStr

from services.ca import create_app
from services.ca.authority import RECONCILER, CertificateAuthority
from services.ca.core import build_tsp
from services.ca.issuance_log import EVENT_ISSUED, EVENT_REVOCATION_REFUSED, EVENT_REVOKED, EVENT_WITHDRAWN, IssuanceLog, cross_check
from services.ca.profiles import Profile, SubjectIdentity
from services.ca.provision import provision
from services.ca.settings import CaSettings
from services.ca.store import CertificateStore
from shared.errors import UpstreamError

SUBJECT = SubjectIdentity(country="NO", given_name="Kari", family_name="Nordmann", serial_number="PNONO-01017012345")


def _ocsp_status(ca_env: Any, serial: str) -> tuple[ocsp.OCSPCertStatus, Any]:
    issuing = x509.load_der_x509_certificate(ca_env.client.certificate("issuing"))
    request = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
        _name_hash(issuing), _key_hash(issuing), int(serial, 16),
        hashes.SHA256()).build()
    answer = ocsp.load_der_ocsp_response(ca_env.client.ocsp(request.public_bytes(serialization.Encoding.DER)))
    return answer.certificate_status, answer.revocation_reason


def _name_hash(cert: x509.Certificate) -> bytes:
    digest = hashes.Hash(hashes.SHA256())
    digest.update(cert.subject.public_bytes())
    return digest.finalize()


def _key_hash(cert: x509.Certificate) -> bytes:
    digest = hashes.Hash(hashes.SHA256())
    digest.update(cert.public_key().public_bytes(serialization.Encoding.X962,
                                                 serialization.PublicFormat.UncompressedPoint))
    return digest.finalize()


def _crl_serials(ca_env: Any) -> dict[int, Any]:
    crl = x509.load_der_x509_crl(ca_env.client.crl("issuing"))
    return {entry.serial_number: entry for entry in crl}


def _log_events(ca_env: Any, serial: str) -> list[dict[str, Any]]:
    return [e for e in ca_env.app.extensions["signlab.ca"].authority.log.entries() if e.get("serial") == serial]


# --- issuance: logged before it is stored, idempotent by request id -------------------------------


def test_issuance_is_logged_before_the_database_commit(ca_env: Any, csr_factory: Any,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """At the moment the certificate is stored, its issuance-log entry is already written."""
    authority = ca_env.app.extensions["signlab.ca"].authority
    seen_in_log: list[bool] = []
    real_add = authority.store.add

    def add(**fields: Any) -> None:
        serial = format(fields["serial"], "x")
        seen_in_log.append(any(e.get("serial") == serial and e["event"] == EVENT_ISSUED for e in authority.log.entries()))
        real_add(**fields)

    monkeypatch.setattr(authority.store, "add", add)
    ca_env.client.issue_certificate(csr_der=csr_factory(), profile="qes", id_token=ca_env.id_token(),
                                    client_assertion=ca_env.assertion())
    assert seen_in_log == [True]


def test_a_store_failure_after_the_log_entry_withdraws_the_certificate(ca_env: Any, csr_factory: Any,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The database refuses the commit (a full disk): the answer is a plain 507, the logged
    certificate is withdrawn in the log (never answered) and the cross-check stays clean."""
    import sqlite3

    authority = ca_env.app.extensions["signlab.ca"].authority

    def full(**_fields: Any) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(authority.store, "add", full)
    before = len(authority.log.entries())
    with pytest.raises(UpstreamError) as refused:
        ca_env.client.issue_certificate(csr_der=csr_factory(), profile="qes", id_token=ca_env.id_token(),
                                        client_assertion=ca_env.assertion())
    assert refused.value.upstream_status == 507 and "disk is full" in refused.value.upstream_description
    events = [e["event"] for e in authority.log.entries()[before:]]
    assert events == [EVENT_ISSUED, EVENT_WITHDRAWN]
    monkeypatch.undo()
    assert cross_check(authority.store.states(), authority.log.raw_entries()).ok


def test_a_repeated_request_id_gets_the_first_certificate(ca_env: Any, csr_factory: Any) -> None:
    """A retry (same request id, same key) is answered with the certificate already issued; the
    same request id with another key is a 409 conflict."""
    key = ec.generate_private_key(ec.SECP256R1())
    request_id = "req-" + secrets.token_hex(6)
    first = ca_env.client.issue_certificate(csr_der=csr_factory(key), profile="qes", id_token=ca_env.id_token(),
                                            client_assertion=ca_env.assertion(), request_id=request_id)
    again = ca_env.client.issue_certificate(csr_der=csr_factory(key), profile="qes", id_token=ca_env.id_token(),
                                            client_assertion=ca_env.assertion(), request_id=request_id)
    assert again.serial == first.serial and again.certificate == first.certificate
    assert [e["event"] for e in _log_events(ca_env, first.serial)] == [EVENT_ISSUED]
    with pytest.raises(UpstreamError) as conflict:
        ca_env.client.issue_certificate(csr_der=csr_factory(), profile="qes", id_token=ca_env.id_token(),
                                        client_assertion=ca_env.assertion(), request_id=request_id)
    assert conflict.value.upstream_status == 409 and "request_id_reused" in conflict.value.upstream_description


# --- revocation by the signing service ------------------------------------------------------------


def test_the_signing_service_revokes_the_certificate_of_a_failed_flow(ca_env: Any, csr_factory: Any) -> None:
    """By serial and by transaction id; CRL and OCSP say revoked (cessationOfOperation); the
    issuance log names the requester, the transaction and the note."""
    by_serial = ca_env.client.issue_certificate(csr_der=csr_factory(), profile="qes", id_token=ca_env.id_token(),
                                                client_assertion=ca_env.assertion(), transaction_id="txn-failed-1")
    by_transaction = ca_env.client.issue_certificate(csr_der=csr_factory(), profile="ades",
                                                     id_token=ca_env.id_token(), client_assertion=ca_env.assertion(),
                                                     transaction_id="txn-failed-2")
    assert _ocsp_status(ca_env, by_serial.serial)[0] == ocsp.OCSPCertStatus.GOOD

    revoked = ca_env.client.revoke_issued(client_assertion=ca_env.assertion(audience=ca_env.client.revocation_url),
                                          serial=by_serial.serial, note="step 8 failed: HSM error")
    assert [(r.serial, r.status, r.revocation_reason) for r in revoked] == [
        (by_serial.serial, "revoked", "cessationOfOperation")]
    revoked = ca_env.client.revoke_issued(client_assertion=ca_env.assertion(audience=ca_env.client.revocation_url),
                                          transaction_id="txn-failed-2")
    assert [r.serial for r in revoked] == [by_transaction.serial]

    crl = _crl_serials(ca_env)
    for issued in (by_serial, by_transaction):
        status, reason = _ocsp_status(ca_env, issued.serial)
        assert status == ocsp.OCSPCertStatus.REVOKED and reason == x509.ReasonFlags.cessation_of_operation
        entry = crl[int(issued.serial, 16)]
        assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == \
            x509.ReasonFlags.cessation_of_operation
    logged = _log_events(ca_env, by_serial.serial)[-1]
    assert logged["event"] == EVENT_REVOKED and logged["requester"] == "signlab-signer"
    assert logged["transaction_id"] == "txn-failed-1" and logged["note"] == "step 8 failed: HSM error"

    again = ca_env.client.revoke_issued(client_assertion=ca_env.assertion(audience=ca_env.client.revocation_url),
                                        serial=by_serial.serial, reason="keyCompromise")
    assert again[0].revocation_reason == "cessationOfOperation"  # the first revocation stays


def test_only_the_requester_may_revoke_and_refusals_are_logged(ca_env: Any, csr_factory: Any) -> None:
    authority: CertificateAuthority = ca_env.app.extensions["signlab.ca"].authority
    key = ec.generate_private_key(ec.SECP256R1())
    other = authority.issue(public_key=key.public_key(), subject=SUBJECT, profile=Profile.QES, subject_id="ps-x",
                            loa="high", requester="another-signing-service", transaction_id="txn-other")
    audience = ca_env.client.revocation_url
    with pytest.raises(UpstreamError) as not_yours:
        ca_env.client.revoke_issued(client_assertion=ca_env.assertion(audience=audience), serial=other.serial)
    assert not_yours.value.upstream_status == 404
    with pytest.raises(UpstreamError) as wrong_audience:  # an issuance assertion does not revoke
        ca_env.client.revoke_issued(client_assertion=ca_env.assertion(), serial=other.serial)
    assert wrong_audience.value.upstream_status == 401
    with pytest.raises(UpstreamError) as nothing_named:
        ca_env.client.revoke_issued(client_assertion=ca_env.assertion(audience=audience))
    assert nothing_named.value.upstream_status == 400 and "target_missing" in nothing_named.value.upstream_description
    assert authority.lookup(int(other.serial, 16)).revoked_at is None
    refusals = [e for e in authority.log.entries() if e["event"] == EVENT_REVOCATION_REFUSED][-3:]
    assert [(e["reason"], e["requester"]) for e in refusals] == [
        ("certificate_not_found", "signlab-signer"), ("unknown_caller", "unauthenticated"),
        ("target_missing", "signlab-signer")]


def test_the_verify_endpoint_cross_checks_database_and_log(ca_env: Any) -> None:
    answer = ca_env.client.session.get(f"{ca_env.url}/api/v1/issuance-log/verify", timeout=10).json()
    assert answer["ok"] and answer["cross_check"]["ok"]
    assert answer["cross_check"]["certificates"] == len(ca_env.app.extensions["signlab.ca"].authority.store.states())


# --- start-up reconciliation ----------------------------------------------------------------------


@pytest.fixture
def fresh_ca(tmp_path: Path) -> CaSettings:
    settings = CaSettings(data_dir=tmp_path / "ca", admin_token=SecretStr("admin"), trainer_token=SecretStr("trainer"), log_level="WARNING",
                          signer_jwks_url="http://127.0.0.1:9/jwks.json", idp_url="http://127.0.0.1:9")
    provision(settings)
    return settings


def _issue_into(authority: CertificateAuthority, transaction_id: str) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return authority.issue(public_key=key.public_key(), subject=SUBJECT, profile=Profile.QES, subject_id="ps-r",
                           loa="high", requester="signlab-signer", transaction_id=transaction_id).serial


def test_start_up_reconciles_every_kind_of_gap(fresh_ca: CaSettings, tmp_path: Path) -> None:
    """What a crash between log and database can leave, and a torn end of the log, each mended by
    the next start with explicit entries; afterwards the cross-check is clean and OCSP agrees."""
    tsp = build_tsp(fresh_ca)
    authority = tsp.authority
    # logged, never stored: the CA died between the log entry and the commit
    side_store = CertificateAuthority(settings=fresh_ca, hierarchy=tsp.hierarchy,
                                      store=CertificateStore(tmp_path / "elsewhere.sqlite3"), log=authority.log)
    logged_only = _issue_into(side_store, "txn-logged-only")
    # stored, never logged: an issuance that never completed (no log entry)
    side_log = CertificateAuthority(settings=fresh_ca, hierarchy=tsp.hierarchy, store=authority.store,
                                    log=IssuanceLog(tmp_path / "elsewhere.jsonl"))
    stored_only = _issue_into(side_log, "txn-stored-only")
    # revocations on one side only
    revoked_in_log = _issue_into(authority, "txn-r1")
    authority.log.revoked(serial=revoked_in_log, reason="keyCompromise", requester="admin")
    revoked_in_db = _issue_into(authority, "txn-r2")
    authority.store.revoke(int(revoked_in_db, 16), "superseded", dt.datetime.now(dt.UTC))
    intact = _issue_into(authority, "txn-fine")
    with open(fresh_ca.issuance_log_path, "ab") as handle:
        handle.write(b'{"data":{"serial":"')  # killed inside a write
    assert not cross_check(authority.store.states(), authority.log.raw_entries()).ok

    client = create_app(fresh_ca).test_client()  # the restart

    tsp = build_tsp(fresh_ca)
    entries = tsp.authority.log.entries()
    by_serial = {serial: [(e["event"], e.get("requester"), e.get("reason"), bool(e.get("recovered")))
                          for e in entries if e.get("serial") == serial]
                 for serial in (logged_only, stored_only, revoked_in_log, revoked_in_db, intact)}
    assert by_serial[logged_only] == [(EVENT_ISSUED, "signlab-signer", None, False), (EVENT_WITHDRAWN, None, None, False)]
    assert by_serial[stored_only] == [(EVENT_ISSUED, "signlab-signer", None, True),
                                      (EVENT_REVOKED, RECONCILER, "cessationOfOperation", False)]
    assert by_serial[revoked_in_log][-1] == (EVENT_REVOKED, "admin", "keyCompromise", False)
    assert by_serial[revoked_in_db][-1] == (EVENT_REVOKED, RECONCILER, "superseded", True)
    assert by_serial[intact] == [(EVENT_ISSUED, "signlab-signer", None, False)]
    assert tsp.authority.lookup(int(revoked_in_log, 16)).revocation_reason == "keyCompromise"
    assert tsp.authority.lookup(int(stored_only, 16)).revocation_reason == "cessationOfOperation"
    assert tsp.authority.lookup(int(logged_only, 16)) is None
    verification = tsp.authority.log.verify()
    assert verification.ok and len(verification.recoveries) == 1 and verification.torn_bytes == 0
    assert cross_check(tsp.authority.store.states(), tsp.authority.log.raw_entries()).ok

    ocsp_request = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
        _name_hash(tsp.hierarchy.issuing.cert), _key_hash(tsp.hierarchy.issuing.cert), int(stored_only, 16),
        hashes.SHA256()).build().public_bytes(serialization.Encoding.DER)
    answer = ocsp.load_der_ocsp_response(client.post("/ocsp", data=ocsp_request,
                                                     content_type="application/ocsp-request").data)
    assert answer.certificate_status == ocsp.OCSPCertStatus.REVOKED

    restarted_again = len(entries)
    create_app(fresh_ca)  # nothing left to mend: no new entry
    assert len(build_tsp(fresh_ca).authority.log.entries()) == restarted_again
