"""The IPSP as OpenID4VP verifier: the EUDI Wallet login end to end over real HTTP (a live IdP and the
live wallet of ``tests/conftest.py``), and every check of a PID presentation refusing what it must.

The wallet makes the presentations (with its named faults); the IdP's checks must name the failed
check: each wallet fault has its own expected check below.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from idp_testkit import CLIENT_ID, REDIRECT_URI, AuthRequest, make_settings, query_of
from joserfc.jwk import KeySet

from services.idp import create_app
from services.idp.openid4vp import Verifier
from services.idp.pid_presentation import REQUIRED_CLAIMS, PresentationRefused
from services.idp.provision import provision
from services.idp.settings import IdpSettings
from services.wallet.holder import VerifierRequest
from shared.clients.wallet import WalletClient
from shared.identity import LOA_HIGH, LOA_SUBSTANTIAL, verify_id_token
from shared.testing import LiveServer, free_port

EXPECTED_CHECK = {
    "pid-expired": "exp", "pid-revoked": "status", "untrusted-provider": "trust chain", "wrong-nonce": "nonce",
    "wrong-audience": "aud", "kb-signature-invalid": "key binding", "missing-claim": "claims",
}


@pytest.fixture(scope="module")
def wallet_idp(tmp_path_factory: pytest.TempPathFactory, live_wallet: Any) -> Iterator[tuple[LiveServer, IdpSettings]]:
    """A live IdP that sends browsers to the live wallet and trusts its PID provider's list."""
    wallet_server, _core = live_wallet
    port = free_port()
    settings = make_settings(tmp_path_factory.mktemp("idp-wallet"), port=port, wallet_url=wallet_server.url,
                             wallet_trusted_list_url=f"{wallet_server.url}/pid-provider/trusted-providers")
    provision(settings)
    app = create_app(settings)
    with LiveServer(app, port=port) as server:
        yield server, settings
    app.extensions["signlab.idp"].close()


def _verifier(wallet_idp: tuple[LiveServer, IdpSettings]) -> Verifier:
    server, _settings = wallet_idp
    return server.app.extensions["signlab.idp.openid4vp"]  # type: ignore[no-any-return]


def _request_of(verifier: Verifier, nonce: str) -> VerifierRequest:
    """The IdP's request as the wallet sees it once checked (for presentations made directly)."""
    return VerifierRequest(invocation="", client_id=verifier.client_id, request_uri="", verifier_name="IPSP",
                           certificate_sha256="", response_uri="", response_mode="direct_post.jwt", nonce=nonce,
                           state=None, query_id="pid", claim_paths=REQUIRED_CLAIMS, purpose="test",
                           encryption_key=None, encryption_enc="A128GCM", header={}, claims={})


def _start(browser: requests.Session, base: str, req: AuthRequest, device: str) -> str:
    """``/authorize`` with ``…@eudi-wallet`` → the device choice → the wallet link or the QR page."""
    answer = browser.get(f"{base}/authorize", params=req.params(), allow_redirects=False, timeout=30)
    assert answer.status_code == 302, answer.text[:300]
    choice_url = base + answer.headers["Location"]
    page = browser.get(choice_url, timeout=30)
    token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
    chosen = browser.post(choice_url, data={"csrf_token": token, "device": device}, allow_redirects=False, timeout=30)
    assert chosen.status_code == 303, chosen.text[:300]
    location = chosen.headers["Location"]
    return location if location.startswith("http") else base + location


def _finish(browser: requests.Session, url: str) -> dict[str, str]:
    """Follow the IdP's return URL to the client's redirect URI; its query parameters."""
    answer = browser.get(url, allow_redirects=False, timeout=30)
    assert answer.status_code == 302, answer.text[:300]
    assert answer.headers["Location"].startswith(REDIRECT_URI)
    return query_of(answer.headers["Location"])


def test_same_device_login_gives_an_id_token_for_the_wallet_means(wallet_idp: Any, live_wallet: Any) -> None:
    server, settings = wallet_idp
    wallet_server, _core = live_wallet
    browser = requests.Session()
    req = AuthRequest(acr_values=LOA_HIGH, login_hint="kari-nordmann@eudi-wallet")
    wallet_link = _start(browser, server.url, req, "same-device")
    assert wallet_link.startswith(f"{wallet_server.url}/authorize?")
    invocation = parse_qs(urlsplit(wallet_link).query)
    assert set(invocation) == {"client_id", "request_uri"}  # only these two (RFC 9101 §5.2)
    assert invocation["client_id"][0] == _verifier(wallet_idp).client_id
    answer = WalletClient(wallet_server.url).present(wallet_link, "kari-nordmann")
    assert answer["outcome"] == "sent" and answer["verifier_answer"]["status"] == "verified"
    assert set(answer["disclosed"]) == {str(path[0]) for path in REQUIRED_CLAIMS}
    # The response_code binds the return to this browser: without it, or in another browser, no code.
    without = requests.get(answer["redirect_uri"].split("?")[0], allow_redirects=False, timeout=30)
    assert without.status_code == 404
    wrong = browser.get(answer["redirect_uri"].split("?")[0] + "?response_code=forged", allow_redirects=False, timeout=30)
    assert wrong.status_code == 400 and "response_code" in wrong.text
    params = _finish(browser, answer["redirect_uri"])
    assert params["state"] == req.state and "code" in params
    token = requests.post(f"{server.url}/token", auth=(CLIENT_ID, settings.signer_client_secret.get_secret_value()),
                          data={"grant_type": "authorization_code", "code": params["code"], "redirect_uri": REDIRECT_URI,
                                "code_verifier": req.verifier}, timeout=30).json()
    jwks = KeySet.import_key_set(requests.get(f"{server.url}/.well-known/jwks.json", timeout=30).json())
    identity = verify_id_token(token["id_token"], jwks, issuer=settings.base_url, audience=CLIENT_ID, nonce=req.nonce,
                               min_loa=LOA_HIGH)
    # The ID token says which means and level were used, and carries the PID's identity.
    assert (identity.eid_id, identity.loa, identity.qes_approved) == ("eudi-wallet", "high", True)
    assert identity.etsi_serial_number() == "PNONO-14838540105"
    assert (identity.given_name, identity.family_name, identity.birthdate) == ("Kari", "Nordmann", "1985-03-14")
    assert "eudi-wallet" in identity.amr


def test_cross_device_login_completes_only_in_the_browser_that_showed_the_code(wallet_idp: Any, live_wallet: Any) -> None:
    server, _settings = wallet_idp
    wallet_server, _core = live_wallet
    browser = requests.Session()
    req = AuthRequest(acr_values=LOA_SUBSTANTIAL, login_hint="aino-virtanen@eudi-wallet")
    wait_url = _start(browser, server.url, req, "cross-device")
    page = browser.get(wait_url, timeout=30).text
    link = page.split('data-invocation="')[1].split('"')[0].replace("&amp;", "&")
    assert link.startswith("openid4vp://?client_id=x509_hash%3A") and "<svg" in page
    status_url = wait_url.replace("/wait/", "/status/")
    assert requests.get(status_url, timeout=30).status_code == 404  # another browser learns nothing
    answer = WalletClient(wallet_server.url).present(link, "aino-virtanen")
    assert answer["outcome"] == "sent" and answer["redirect_uri"] is None  # the phone is not the browser
    status = browser.get(status_url, timeout=30).json()
    assert status["done"] and status["status"] == "verified"
    params = _finish(browser, server.url + status["complete_url"])
    assert "code" in params


@pytest.mark.parametrize("fault", sorted(EXPECTED_CHECK))
def test_each_broken_presentation_is_refused_with_its_check(fault: str, wallet_idp: Any, live_wallet: Any) -> None:
    verifier = _verifier(wallet_idp)
    _server, core = live_wallet
    nonce = secrets.token_urlsafe(24)
    request = _request_of(verifier, nonce)
    good, _ = core.wallet.presentation(request, "kari-nordmann")
    assert verifier.verify(good, nonce=nonce, now=time.time()).claims["family_name"] == "Nordmann"
    broken, _ = core.wallet.presentation(request, "kari-nordmann", (fault,))
    with pytest.raises(PresentationRefused) as refused:
        verifier.verify(broken, nonce=nonce, now=time.time())
    assert refused.value.check == EXPECTED_CHECK[fault]
    assert refused.value.error == "access_denied" and refused.value.step is not None and refused.value.step.number == 4


def test_a_presentation_without_key_binding_or_with_an_extra_disclosure_is_refused(wallet_idp: Any, live_wallet: Any) -> None:
    verifier = _verifier(wallet_idp)
    _server, core = live_wallet
    nonce = secrets.token_urlsafe(24)
    request = _request_of(verifier, nonce)
    good, _ = core.wallet.presentation(request, "kari-nordmann")
    without_kb = good[: good.rindex("~") + 1]
    with pytest.raises(PresentationRefused, match="no key-binding JWT"):
        verifier.verify(without_kb, nonce=nonce, now=time.time())
    parts = good.split("~")
    foreign = "WyJzYWx0IiwgImZhbWlseV9uYW1lIiwgIkltcG9zdG9yIl0"  # ["salt", "family_name", "Impostor"]
    with pytest.raises(PresentationRefused) as refused:
        verifier.verify("~".join([parts[0], foreign, *parts[1:]]), nonce=nonce, now=time.time())
    assert refused.value.check == "disclosures"


def test_a_pid_revoked_or_suspended_by_the_provider_is_refused_until_restored(wallet_idp: Any, live_wallet: Any) -> None:
    verifier = _verifier(wallet_idp)
    _server, core = live_wallet
    nonce = secrets.token_urlsafe(24)
    request = _request_of(verifier, nonce)
    presentation, _ = core.wallet.presentation(request, "ola-nordmann")
    try:
        core.set_pid_status("ola-nordmann", "suspended")
        with pytest.raises(PresentationRefused, match="suspended"):
            verifier.verify(presentation, nonce=nonce, now=time.time())
    finally:
        core.set_pid_status("ola-nordmann", "valid")
    assert verifier.verify(presentation, nonce=nonce, now=time.time()).status_index >= 0


def test_the_register_refuses_a_deceased_person_and_a_pid_without_a_national_number(wallet_idp: Any,
                                                                                  live_wallet: Any) -> None:
    server, _settings = wallet_idp
    wallet_server, _core = live_wallet
    outcomes = {}
    for person in ("per-gjenganger", "lukas-mueller"):
        browser = requests.Session()
        req = AuthRequest(acr_values=LOA_HIGH, login_hint=f"{person}@eudi-wallet")
        link = _start(browser, server.url, req, "same-device")
        answer = WalletClient(wallet_server.url).present(link, person)
        outcomes[person] = (answer["outcome"], _finish(browser, answer["redirect_uri"]))
    outcome, params = outcomes["per-gjenganger"]
    assert outcome == "sent" and params["error"] == "access_denied" and "deceased" in params["error_description"]
    outcome, params = outcomes["lukas-mueller"]  # a German PID has no personal administrative number
    assert outcome == "declined" and params["error"] == "access_denied"
    assert "personal_administrative_number" in params["error_description"]
