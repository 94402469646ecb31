"""The authorization server built directly (no HTTP): PAR, the pushed request's single use,
consent with its browser and CSRF checks, the token endpoint's checks, revocation.

The redirect to the IdP and its callback need the IdP's login and are covered over HTTP
(test_http.py, tests/interop); here the transaction is moved past them in the store.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from services.signer.authorization import PAR_URN, RedirectError
from services.signer.service import SignerCore
from services.signer.store import secret_hash
from shared.digests import digest_fingerprint
from shared.errors import AccessDenied, Conflict, InvalidGrant, InvalidRequest, NotFound

SHA256 = "2.16.840.1.101.3.4.2.1"
DETAILS = json.dumps([{"type": "credential", "signatureQualifier": "eu_eidas_qes", "hashAlgorithmOID": SHA256,
                       "documentDigests": [{"hash": base64.b64encode(hashlib.sha256(b"a").digest()).decode(),
                                            "label": "a.pdf"}]}])


def events(core: SignerCore) -> list[str]:
    return [e.event for e in core.audit.entries()]


def portal(core: SignerCore) -> Any:
    return core.clients.client(core.settings.portal_client_id)


def test_pushed_request_is_stored_and_single_use(core: SignerCore) -> None:
    pushed = core.push_authorization_request(portal(core), {
        "response_type": "code", "code_challenge": "c" * 43, "code_challenge_method": "S256",
        "authorization_details": DETAILS})
    assert pushed["request_uri"].startswith(PAR_URN) and pushed["expires_in"] == core.settings.par_lifetime_seconds
    record = core.store.transaction_by("par_hash", secret_hash(pushed["request_uri"].removeprefix(PAR_URN)))
    assert record is not None and (record.kind, record.state) == ("sign", "requested")
    core.store.consume_par(secret_hash(pushed["request_uri"].removeprefix(PAR_URN)), core.now())  # used once
    with pytest.raises(InvalidRequest, match="already used"):
        core.start_authorization({"client_id": portal(core).client_id, "request_uri": pushed["request_uri"]})
    with pytest.raises(InvalidRequest, match=r"step 2.*S256"):
        core.push_authorization_request(portal(core), {"response_type": "code", "code_challenge": "c" * 43,
                                                       "code_challenge_method": "plain", "scope": "service"})
    assert events(core) == ["par.accepted", "authorize.refused", "par.refused"]


def test_an_expired_pushed_request_fails_its_transaction(core: SignerCore, clock: Any) -> None:
    pushed = core.push_authorization_request(portal(core), {
        "response_type": "code", "code_challenge": "c" * 43, "code_challenge_method": "S256", "scope": "service"})
    record = core.store.transaction_by("par_hash", secret_hash(pushed["request_uri"].removeprefix(PAR_URN)))
    assert record is not None
    clock.now += core.settings.par_lifetime_seconds + 1
    with pytest.raises(InvalidRequest, match="request_uri expired"):
        core.start_authorization({"client_id": portal(core).client_id, "request_uri": pushed["request_uri"]})
    ended = core.store.transaction(record.id)
    assert ended is not None and ended.state == "failed" and ended.idp_state is None  # the IdP was never asked


def authenticated(core: SignerCore, consented: Any) -> tuple[str, str]:
    """A transaction right after the IdP callback, and its browser-binding value."""
    transaction_id, _, _ = consented(authorization_details=DETAILS)
    core.store.update_transaction(transaction_id, browser_hash=secret_hash("browser"))
    core.store.advance(transaction_id, ["consented"], "authenticated")
    return transaction_id, "browser"


def test_consent_needs_the_same_browser_and_the_form_token(core: SignerCore, consented: Any) -> None:
    transaction_id, browser = authenticated(core, consented)
    with pytest.raises(AccessDenied, match="this browser did not start"):
        core.consent_view(transaction_id, "another browser")
    with pytest.raises(NotFound):
        core.consent_view("tx-guessed", browser)
    view = core.consent_view(transaction_id, browser)
    assert view.qualified and view.documents == [{"label": "a.pdf", "fingerprint": digest_fingerprint(
        hashlib.sha256(b"a").digest(), "sha256")}]
    assert view.documents[0]["fingerprint"].startswith("SHA-256 ")  # the algorithm's real name, as the portal shows it
    with pytest.raises(AccessDenied, match="CSRF"):
        core.consent_decision(transaction_id, browser, "forged", True)
    location = core.consent_decision(transaction_id, browser, view.csrf_token, True)
    assert parse_qs(urlparse(location).query)["state"] == ["s"] and "code" in parse_qs(urlparse(location).query)
    with pytest.raises(Conflict, match="consented; consent is no longer possible"):
        core.consent_decision(transaction_id, browser, view.csrf_token, True)
    assert events(core)[-4:] == ["browser.refused", "consent.refused", "consent.refused", "consent.given"]


def test_declining_goes_back_to_the_partner(core: SignerCore, consented: Any) -> None:
    transaction_id, browser = authenticated(core, consented)
    view = core.consent_view(transaction_id, browser)
    with pytest.raises(RedirectError) as declined:
        core.consent_decision(transaction_id, browser, view.csrf_token, False)
    assert parse_qs(urlparse(declined.value.location).query)["error"] == ["access_denied"]
    assert core.store.transaction(transaction_id).state == "failed"  # type: ignore[union-attr]


@pytest.mark.parametrize(("change", "fragment"), [
    ({"code_verifier": "wrong" * 10}, "PKCE verification failed"),
    ({"redirect_uri": "https://elsewhere.example.com/"}, "redirect_uri differs"),
    ({"redirect_uri": None}, "redirect_uri is required"),
    ({"grant_type": "client_credentials"}, "grant_type"),
    ({"code": "unknown"}, "unknown authorization code"),
], ids=["pkce", "redirect-uri", "redirect-uri-missing", "grant-type", "unknown-code"])
def test_token_endpoint_checks(core: SignerCore, consented: Any, change: dict[str, str | None],
                               fragment: str) -> None:
    redirect_uri = portal(core).redirect_uris[0]
    _, code, verifier = consented(authorization_details=DETAILS, redirect_uri=redirect_uri)
    params = {"grant_type": "authorization_code", "code": code, "code_verifier": verifier,
              "redirect_uri": redirect_uri, **change}
    with pytest.raises((InvalidGrant, InvalidRequest), match=fragment):
        core.exchange_code(portal(core), {k: v for k, v in params.items() if v is not None})


def test_redirect_uri_may_be_left_out_of_the_token_request_only_if_the_authorization_request_did(
        core: SignerCore, consented: Any) -> None:
    """RFC 6749 §4.1.3: the only registered URI may be left out of both; given once, it is required."""
    _, code, verifier = consented(authorization_details=DETAILS)
    answer = core.exchange_code(portal(core), {"grant_type": "authorization_code", "code": code,
                                               "code_verifier": verifier})
    assert answer["access_token"]


def test_an_expired_code_is_refused_by_the_clock(core: SignerCore, consented: Any, clock: Any) -> None:
    _, code, verifier = consented(authorization_details=DETAILS)
    clock.now += 61
    with pytest.raises(InvalidGrant, match="expired"):
        core.exchange_code(portal(core), {"grant_type": "authorization_code", "code": code, "code_verifier": verifier})


def test_revoking_a_service_token_destroys_the_credential_key_at_once(core: SignerCore, consented: Any) -> None:
    transaction_id, code, verifier = consented(scope="service", numSignatures="1")
    answer = core.exchange_code(portal(core), {"grant_type": "authorization_code", "code": code,
                                               "code_verifier": verifier})
    assert len([row for row in core.hsm.key_objects() if row["label"] == transaction_id]) == 2
    core.revoke(portal(core), answer["access_token"])
    core.revoke(portal(core), "unknown-token")  # RFC 7009: no error
    assert [row for row in core.hsm.key_objects() if row["label"] == transaction_id] == []
    assert core.store.transaction(transaction_id).state == "expired"  # type: ignore[union-attr]
