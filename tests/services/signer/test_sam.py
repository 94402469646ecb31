"""The SAM: every rule accepts what it should and refuses what it should; the compositions spend
the SAD only when every rule said yes, and audit each refusal.

Built directly (no HTTP) on a real SQLite store and audit log, with an injected clock.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from services.signer import sam
from services.signer.csc import (
    CredentialsAuthorizeRequest,
    DocumentToSign,
    ExtendTransactionRequest,
    SignDocRequest,
    SignHashRequest,
)
from services.signer.errors import DigestNotAuthorized, SadExpired, SadInvalid, TooManySignatures, UnsupportedAlgorithm
from services.signer.store import CredentialRecord, Store, TokenRecord, TransactionRecord, secret_hash
from shared.audit import AuditLog
from shared.errors import InvalidRequest, InvalidToken, SignLabError
from shared.flow import step

NOW = 1_700_000_000.0
ECDSA_SHA256 = "1.2.840.10045.4.3.2"
RSA_SHA256 = "1.2.840.113549.1.1.11"
S6 = step(6)


def digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


A, B, C = digest("a"), digest("b"), digest("c")


def token(value: str = "t", *, kind: str = "sign", digests: tuple[bytes, ...] = (A,), hash_alg: str | None = "sha256",
          credential_id: str | None = None, expires_at: float = NOW + 300, used_at: float | None = None,
          revoked: int = 0, num: int | None = None, subject: str = "ps-1", client_id: str = "portal") -> TokenRecord:
    return TokenRecord(secret_hash(value), kind, client_id, "tx-1", credential_id, subject, hash_alg,
                       sorted(d.hex() for d in digests), len(digests) if num is None else num, expires_at, used_at,
                       revoked, None)


def credential(*, multisign: int = 2, remaining: int = 2, status: str = "enabled", expires_at: float = NOW + 600,
               subject: str = "ps-1", client_id: str = "portal", algorithm: str = "ec-p256",
               scal: str = "2") -> CredentialRecord:
    return CredentialRecord("cred-1", "tx-1", client_id, subject, "k1", algorithm, "", "", [], "eu_eidas_aes", "01",
                            multisign, remaining, status, expires_at, NOW, scal)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "signer.sqlite3")


@pytest.fixture
def audit(tmp_path: Path) -> AuditLog:
    return AuditLog(tmp_path / "audit.jsonl")


@pytest.fixture
def clock(clock: Any) -> Any:
    """The injected clock (conftest), set to the records' time."""
    clock.now = NOW
    return clock


@pytest.fixture
def module(store: Store, audit: AuditLog, clock: Any) -> sam.SignatureActivationModule:
    return sam.SignatureActivationModule(store, audit, clock)


def events(audit: AuditLog) -> list[str]:
    return [e.event for e in audit.entries()]


# ---------------------------------------------------------------------------- each rule: accept and refuse

RULES: list[tuple[str, Callable[[], Any], Callable[[], Any], type[SignLabError], str]] = [
    ("token known", lambda: sam.check_token_known(token()), lambda: sam.check_token_known(token(revoked=1)),
     InvalidToken, "unknown or revoked"),
    ("token type", lambda: sam.check_token_type(token(kind="sign"), ("sign",)),
     lambda: sam.check_token_type(token(kind="service"), ("sign",)), InvalidToken, "service-scope token"),
    ("spent SAD", lambda: sam.check_token_not_spent(token(kind="service", used_at=NOW)),
     lambda: sam.check_token_not_spent(token(kind="sad", used_at=NOW)), InvalidToken, "already used"),
    ("token expiry", lambda: sam.check_token_expiry(token(expires_at=NOW), NOW),
     lambda: sam.check_token_expiry(token(expires_at=NOW - 5), NOW), InvalidToken, "expired 5 s ago"),
    ("credential owner", lambda: sam.check_credential_owner(token(), "cred-1", credential()),
     lambda: sam.check_credential_owner(token(client_id="other-portal"), "cred-1", credential()),
     InvalidRequest, "Invalid parameter credentialID"),
    ("credential of this user", lambda: sam.check_credential_owner(token(), "cred-1", credential()),
     lambda: sam.check_credential_owner(token(subject="ps-2"), "cred-1", credential()),
     InvalidRequest, "Invalid parameter credentialID"),
    ("SAD given", lambda: sam.check_sad_given("s"), lambda: sam.check_sad_given(""), SadInvalid, "Missing"),
    ("SAD known", lambda: sam.check_sad_known(token(kind="sad")),
     lambda: sam.check_sad_known(token(kind="service")), SadInvalid, "invalid SAD"),
    ("SAD not revoked", lambda: sam.check_sad_known(token(kind="credential")),
     lambda: sam.check_sad_known(token(kind="credential", revoked=1)), SadInvalid, "invalid SAD"),
    ("SAD of this credential", lambda: sam.check_sad_credential_binding(token(credential_id="cred-1"), credential()),
     lambda: sam.check_sad_credential_binding(token(credential_id="cred-2"), credential()),
     SadInvalid, "another credential"),
    ("SAD unused", lambda: sam.check_sad_unused(token()), lambda: sam.check_sad_unused(token(used_at=NOW)),
     SadInvalid, "replay"),
    ("SAD expiry", lambda: sam.check_sad_expiry(token(expires_at=NOW), NOW),
     lambda: sam.check_sad_expiry(token(expires_at=NOW - 0.5), NOW), SadExpired, "SAD expired 1 s ago"),
    ("qualifier binding", lambda: sam.check_qualifier_binding("eu_eidas_qes", "eu_eidas_qes", at=S6),
     lambda: sam.check_qualifier_binding("eu_eidas_aes", "eu_eidas_qes", at=S6),
     DigestNotAuthorized, "not the authorized eu_eidas_aes"),
    ("signature algorithm", lambda: sam.check_signature_algorithm(ECDSA_SHA256, [ECDSA_SHA256], "the key", at=S6),
     lambda: sam.check_signature_algorithm(RSA_SHA256, [ECDSA_SHA256], "the key", at=S6),
     UnsupportedAlgorithm, "does not fit the key"),
    ("hash algorithm binding", lambda: sam.check_hash_algorithm_binding(token(), ["sha256"], at=S6),
     lambda: sam.check_hash_algorithm_binding(token(), ["sha384"], at=S6),
     DigestNotAuthorized, "sha384 is not the authorized sha256"),
    ("digest length of the SAD's algorithm", lambda: sam.check_digest_lengths([A], "sha256"),
     lambda: sam.check_digest_lengths([bytes(48)], "sha256"), InvalidRequest, "sha256 needs 32 bytes, got 48"),
    ("digest set binding", lambda: sam.check_digest_set_binding(token(digests=(A, B)), [B], at=S6),
     lambda: sam.check_digest_set_binding(token(digests=(A, B)), [C], at=S6),
     DigestNotAuthorized, "not authorized by the SAD"),
    ("count at most", lambda: sam.check_count(token(digests=(A, B)), [A], exact=False, at=S6),
     lambda: sam.check_count(token(digests=(A,)), [A, B], exact=False, at=S6),
     TooManySignatures, "2 signatures requested, 1 authorized"),
    ("count exact", lambda: sam.check_count(token(digests=(A, B)), [B, A], exact=True, at=S6),
     lambda: sam.check_count(token(digests=(A, B)), [A], exact=True, at=S6), InvalidRequest, "exactly 2 digests"),
    ("count without repeats", lambda: sam.check_count(token(digests=(A, B)), [A, B], exact=False, at=S6),
     lambda: sam.check_count(token(digests=(A, B)), [A, A], exact=False, at=S6), InvalidRequest, "listed twice"),
    ("count within multisign", lambda: sam.check_count_within_credential([A, B], credential(multisign=2), at=S6),
     lambda: sam.check_count_within_credential([A, B], credential(multisign=1), at=S6),
     InvalidRequest, "at most 1 hash values"),
    ("signatures left", lambda: sam.check_signatures_left(credential(remaining=1), 1, at=S6),
     lambda: sam.check_signatures_left(credential(remaining=1), 2, at=S6), TooManySignatures, "too high"),
    ("hash count", lambda: sam.check_hash_count(2, [A, B], at=S6),
     lambda: sam.check_hash_count(2, [A], at=S6), InvalidRequest, "must equal numSignatures"),
    ("hash algorithm of the hashes", lambda: sam.check_hash_algorithm_of_hashes(None, [A, B], at=S6),
     lambda: sam.check_hash_algorithm_of_hashes(None, [A, bytes(48)], at=S6), InvalidRequest, "differ in length"),
    ("count-only credential", lambda: sam.check_count_only_credential(credential(scal="1"), "m", at=S6),
     lambda: sam.check_count_only_credential(credential(), "credentials/authorize", at=S6),
     InvalidRequest, "it is SCAL 2 (authMode oauth2code)"),
    ("SCAL 2: approved by the person",
     lambda: sam.check_person_approved(token(kind="credential", credential_id="cred-1"), credential(), at=S6),
     lambda: sam.check_person_approved(token(kind="sad", credential_id="cred-1"), credential(), at=S6),
     SadInvalid, "not approved by the person"),
    ("SCAL 1: a partner's SAD", lambda: sam.check_person_approved(token(kind="sad"), credential(scal="1"), at=S6),
     lambda: sam.check_person_approved(token(kind="sad"), credential(scal="2"), at=S6),
     SadInvalid, "not approved by the person"),
    ("credential enabled", lambda: sam.check_credential_usable(credential(), NOW, at=S6),
     lambda: sam.check_credential_usable(credential(status="disabled"), NOW, at=S6), InvalidRequest, "disabled"),
    ("credential not expired", lambda: sam.check_credential_usable(credential(expires_at=NOW), NOW, at=S6),
     lambda: sam.check_credential_usable(credential(expires_at=NOW - 1), NOW, at=S6), InvalidRequest, "expired"),
]


@pytest.mark.parametrize(("accept", "refuse", "error", "fragment"), [r[1:] for r in RULES], ids=[r[0] for r in RULES])
def test_rule_accepts_and_refuses(accept: Callable[[], Any], refuse: Callable[[], Any], error: type[SignLabError],
                                  fragment: str) -> None:
    accept()
    with pytest.raises(error) as refused:
        refuse()
    assert fragment in refused.value.error_description
    assert refused.value.status in (400, 401)


def test_single_use_is_atomic_and_the_second_use_is_a_replay(store: Store) -> None:
    record = token("sad")
    store.add_token(record)
    sam.consume_single_use(store, record, NOW, at=S6)
    with pytest.raises(SadInvalid, match="replay refused"):
        sam.consume_single_use(store, record, NOW, at=S6)
    assert store.token(record.token_hash).used_at == NOW  # type: ignore[union-attr]


def test_credential_budget_is_spent_and_refused_when_short(store: Store) -> None:
    store.add_credential(credential(remaining=2))
    sam.spend_credential_budget(store, credential(), 2, at=S6)
    with pytest.raises(TooManySignatures, match="no signatures left"):
        sam.spend_credential_budget(store, credential(), 1, at=S6)
    assert store.credential("cred-1").remaining == 0  # type: ignore[union-attr]


# ---------------------------------------------------------------------------- the compositions


def sign_token(store: Store, value: str = "sign-token", **kwargs: Any) -> TokenRecord:
    record = token(value, **kwargs)
    store.add_token(record)
    return record


def transaction(qualifier: str = "eu_eidas_qes") -> TransactionRecord:
    return TransactionRecord("tx-1", "sign", "portal", "consented", NOW, NOW, NOW + 600, {"qualifier": qualifier})


def sign_doc(*digests: bytes, qualifier: str | None = None, sign_algo: str | None = None) -> SignDocRequest:
    return SignDocRequest(qualifier, tuple(DocumentToSign(d, "sha256", "P", "ades-b-b", sign_algo) for d in digests))


def test_access_token_refusals_are_audited(module: sam.SignatureActivationModule, store: Store, audit: AuditLog,
                                           clock: Any) -> None:
    sign_token(store)
    assert module.access_token("sign-token", ("sign",)).kind == "sign"
    with pytest.raises(InvalidToken, match="required"):
        module.access_token(None, ("sign",))
    with pytest.raises(InvalidToken, match="unknown"):
        module.access_token("forged", ("sign",))
    with pytest.raises(InvalidToken, match="sign-scope"):
        module.access_token("sign-token", ("service",))
    clock.now = NOW + 301
    with pytest.raises(InvalidToken, match="expired 1 s ago"):
        module.access_token("sign-token", ("sign",))
    assert events(audit) == ["token.refused", "token.refused", "sad.refused"]


def test_timestamp_token_refuses_spent_revoked_and_expired_tokens(module: sam.SignatureActivationModule,
                                                                   store: Store, audit: AuditLog, clock: Any) -> None:
    """V6: a time-stamp needs a live token; a used SAD or a revoked token gets 401, audited."""
    sign_token(store, "service-token", kind="service")
    sign_token(store, "used-sad", kind="sad", used_at=NOW)
    sign_token(store, "used-sign-token", kind="sign", used_at=NOW)
    sign_token(store, "revoked", kind="service", revoked=1)
    assert module.timestamp_token("service-token").kind == "service"
    for value, fragment in (("used-sad", "already used"), ("used-sign-token", "already used"),
                            ("revoked", "unknown or revoked"), (None, "required")):
        with pytest.raises(InvalidToken, match=fragment):
            module.timestamp_token(value)
    clock.now = NOW + 301
    with pytest.raises(InvalidToken, match="expired"):
        module.timestamp_token("service-token")
    assert events(audit) == ["token.refused"] * 4


def test_sign_doc_spends_the_token_once(module: sam.SignatureActivationModule, store: Store, audit: AuditLog) -> None:
    access = sign_token(store, digests=(A, B))
    module.activate_sign_doc(access, transaction(), sign_doc(B, A, qualifier="eu_eidas_qes", sign_algo=ECDSA_SHA256),
                             "ec-p256")
    assert events(audit) == ["sad.accepted"]
    with pytest.raises(SadInvalid, match="replay refused"):
        module.activate_sign_doc(access, transaction(), sign_doc(A, B), "ec-p256")
    assert events(audit) == ["sad.accepted", "sad.refused"]


@pytest.mark.parametrize(("request_", "error", "fragment"), [
    (sign_doc(A, C), DigestNotAuthorized, "not authorized"),
    (sign_doc(A), InvalidRequest, "exactly 2"),
    (sign_doc(A, B, qualifier="eu_eidas_aes"), DigestNotAuthorized, "signatureQualifier"),
    (sign_doc(A, B, sign_algo=RSA_SHA256), UnsupportedAlgorithm, "one-time ec-p256 key"),
    (SignDocRequest(None, (DocumentToSign(A, "sha256", "P", "ades-b-b", None),
                           DocumentToSign(digest("b") + bytes(16), "sha384", "P", "ades-b-b", None))),
     DigestNotAuthorized, "sha384"),
], ids=["other-digest", "fewer-digests", "other-qualifier", "rsa-for-ec-key", "other-hash-algorithm"])
def test_sign_doc_refusal_is_audited_and_spends_nothing(module: sam.SignatureActivationModule, store: Store,
                                                        audit: AuditLog, request_: SignDocRequest,
                                                        error: type[SignLabError], fragment: str) -> None:
    access = sign_token(store, digests=(A, B))
    with pytest.raises(error) as refused:
        module.activate_sign_doc(access, transaction(), request_, "ec-p256")
    assert fragment in refused.value.error_description and refused.value.step == S6
    [entry] = list(audit.entries())
    assert (entry.event, entry.step, entry.data["transaction_id"]) == ("sad.refused", 6, "tx-1")
    assert store.token(access.token_hash).used_at is None  # type: ignore[union-attr]
    module.activate_sign_doc(access, transaction(), sign_doc(A, B), "ec-p256")  # the right request still passes


def certificate_first(store: Store, *, sad_digests: tuple[bytes, ...] = (A,), multisign: int = 2,
                      sad_expires: float = NOW + 300, scal: str = "1") -> None:
    """A certificate-first credential (count-only SCAL 1 unless said), its service token and a
    partner-made SAD ("the-sad", from credentials/authorize)."""
    store.add_credential(credential(multisign=multisign, remaining=multisign, scal=scal))
    store.add_token(token("service-token", kind="service", digests=(), hash_alg=None, credential_id="cred-1",
                          num=multisign))
    store.add_token(token("the-sad", kind="sad", digests=sad_digests, credential_id="cred-1", expires_at=sad_expires))


def sign_hash(*digests: bytes, sad: str | None = "the-sad", algo: str = ECDSA_SHA256) -> SignHashRequest:
    return SignHashRequest("cred-1", sad, algo, "sha256", digests)


def holder(module: sam.SignatureActivationModule) -> TokenRecord:
    return module.sign_hash_token("service-token", sad_in_body=True)


def test_sign_hash_spends_the_sad_and_the_budget(module: sam.SignatureActivationModule, store: Store) -> None:
    certificate_first(store)
    assert module.activate_sign_hash(holder(module), sign_hash(A)).id == "cred-1"
    assert store.credential("cred-1").remaining == 1  # type: ignore[union-attr]
    with pytest.raises(SadInvalid, match="already used"):
        module.activate_sign_hash(holder(module), sign_hash(A))
    assert store.credential("cred-1").remaining == 1  # type: ignore[union-attr]


@pytest.mark.parametrize(("request_", "error", "fragment"), [
    (sign_hash(B), DigestNotAuthorized, "not authorized"),
    (sign_hash(A, algo=RSA_SHA256), UnsupportedAlgorithm, "signAlgo"),
    (sign_hash(A, sad="forged"), SadInvalid, "invalid SAD"),
    (sign_hash(A, sad=None), SadInvalid, "Missing"),
    (sign_hash(A, B, C), InvalidRequest, "at most 2 hash values"),
    (SignHashRequest("cred-2", "the-sad", ECDSA_SHA256, "sha256", (A,)), InvalidRequest, "credentialID"),
], ids=["other-hash", "wrong-sign-algo", "forged-sad", "no-sad", "over-multisign", "other-credential"])
def test_sign_hash_refusal_is_audited_and_spends_nothing(module: sam.SignatureActivationModule, store: Store,
                                                         audit: AuditLog, request_: SignHashRequest,
                                                         error: type[SignLabError], fragment: str) -> None:
    certificate_first(store)
    with pytest.raises(error) as refused:
        module.activate_sign_hash(holder(module), request_)
    assert fragment in refused.value.error_description
    assert [(e.event, e.step) for e in audit.entries()] == [("sad.refused", 6)]
    assert store.credential("cred-1").remaining == 2  # type: ignore[union-attr]
    assert store.token(secret_hash("the-sad")).used_at is None  # type: ignore[union-attr]


def test_scal2_sign_hash_needs_the_persons_approval(module: sam.SignatureActivationModule, store: Store,
                                                    audit: AuditLog) -> None:
    """A SCAL 2 credential signs only with the credential token of the person's consent; a SAD the
    partner holds otherwise is refused at step 6 (audited with the hashes), spending nothing."""
    certificate_first(store, scal="2")
    with pytest.raises(SadInvalid, match="not approved by the person") as refused:
        module.activate_sign_hash(holder(module), sign_hash(A))
    assert refused.value.step == S6
    [entry] = list(audit.entries())
    assert (entry.event, entry.step, entry.data["digests"]) == ("sad.refused", 6, [A.hex()])
    store.add_token(token("approved", kind="credential", digests=(B,), credential_id="cred-1"))
    with pytest.raises(DigestNotAuthorized):
        module.activate_sign_hash(holder(module), sign_hash(A, sad="approved"))
    assert module.activate_sign_hash(holder(module), sign_hash(B, sad="approved")).id == "cred-1"


def test_sign_hash_sad_expiry_follows_the_injected_clock(module: sam.SignatureActivationModule, store: Store,
                                                         clock: Any) -> None:
    certificate_first(store, sad_expires=NOW + 60)
    clock.now = NOW + 61
    with pytest.raises(SadExpired, match="1 s ago"):
        module.activate_sign_hash(holder(module), sign_hash(A))
    clock.now = NOW + 60
    module.activate_sign_hash(holder(module), sign_hash(A))


def test_v2_credential_token_in_the_header_is_the_sad(module: sam.SignatureActivationModule, store: Store) -> None:
    certificate_first(store)
    store.add_token(token("credential-token", kind="credential", digests=(B,), credential_id="cred-1"))
    header = module.sign_hash_token("credential-token", sad_in_body=False)
    assert module.activate_sign_hash(header, sign_hash(B, sad=None)).id == "cred-1"
    with pytest.raises(SadInvalid, match="already used"):
        module.activate_sign_hash(header, sign_hash(B, sad=None))
    with pytest.raises(InvalidToken, match="credential-scope"):  # with a SAD in the body, the header is a service token
        module.sign_hash_token("credential-token", sad_in_body=True)


def test_sad_issuance(module: sam.SignatureActivationModule, store: Store, audit: AuditLog) -> None:
    certificate_first(store)
    service = store.token(secret_hash("service-token"))
    assert service is not None
    ok = CredentialsAuthorizeRequest("cred-1", 2, "sha256", (A, B))
    assert module.authorize_sad_issuance(service, ok)[0].id == "cred-1"
    # No hashAlgo: the SAD is still bound to one, the one the digests' length says.
    assert module.authorize_sad_issuance(service, CredentialsAuthorizeRequest("cred-1", 1, None, (A,)))[1] == "sha256"
    for request_, fragment in ((CredentialsAuthorizeRequest("cred-1", 3, "sha256", (A, B, C)), "too high"),
                               (CredentialsAuthorizeRequest("cred-1", 2, "sha256", (A,)), "numSignatures"),
                               (CredentialsAuthorizeRequest("cred-1", 2, None, (A, bytes(48))), "differ in length")):
        with pytest.raises(InvalidRequest, match=fragment):
            module.authorize_sad_issuance(service, request_)
    assert events(audit) == ["sad.refused"] * 3


def test_no_sad_without_the_person_for_a_scal2_credential(module: sam.SignatureActivationModule, store: Store,
                                                          audit: AuditLog) -> None:
    certificate_first(store, scal="2")
    service = store.token(secret_hash("service-token"))
    assert service is not None
    with pytest.raises(InvalidRequest, match="SCAL 2"):
        module.authorize_sad_issuance(service, CredentialsAuthorizeRequest("cred-1", 1, "sha256", (A,)))
    with pytest.raises(InvalidRequest, match="SCAL 2"):
        module.redeem_sad_for_extension(service, ExtendTransactionRequest("cred-1", "the-sad", (B,)))
    assert events(audit) == ["sad.refused", "sad.refused"]
    assert store.token(secret_hash("the-sad")).used_at is None  # type: ignore[union-attr]


def test_extension_checks_the_old_sad_and_spends_it(module: sam.SignatureActivationModule, store: Store) -> None:
    certificate_first(store)
    service = store.token(secret_hash("service-token"))
    assert service is not None
    with pytest.raises(InvalidRequest, match="needs 32 bytes"):
        module.redeem_sad_for_extension(service, ExtendTransactionRequest("cred-1", "the-sad", (bytes(48),)))
    _, old = module.redeem_sad_for_extension(service, ExtendTransactionRequest("cred-1", "the-sad", (B,)))
    assert old.digests == [A.hex()]
    with pytest.raises(SadInvalid, match="already used"):
        module.redeem_sad_for_extension(service, ExtendTransactionRequest("cred-1", "the-sad", (B,)))


def test_credential_for_an_authorization_request(module: sam.SignatureActivationModule, store: Store) -> None:
    store.add_credential(credential(remaining=1))
    assert module.credential_for_authorization_request("portal", "cred-1", 1).id == "cred-1"
    with pytest.raises(TooManySignatures):
        module.credential_for_authorization_request("portal", "cred-1", 2)
    with pytest.raises(InvalidRequest, match="not this client's"):
        module.credential_for_authorization_request("other-portal", "cred-1", 1)
