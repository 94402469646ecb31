"""Crash safety and outages against real processes: SIGKILL at chosen points, pauses, slow links.

How the chosen points are hit deterministically, without any test hook in the services:

* **signer between consent and signDoc** — the agent plays the partner and holds the SAD; the
  signer is killed before signDoc is sent.
* **signer during signDoc after key creation** — the CA is paused (SIGSTOP), so the signer's
  issuance call (step 7) blocks right after the one-time key was made; the test waits for the
  signer's own audit entry ``csr.sent`` of the transaction (written after ``key.created``) and
  kills the signer at that moment.
* **CA during issuance** — the CA is started with its signer-JWKS URL pointing at a
  :class:`FaultProxy` and a JWKS cache of 0 s, so every issuance fetches the signer's JWKS while
  it verifies the caller; the proxy holds that fetch, so the CA is provably inside an issuance
  (request parsed, caller verification running) when it is killed.
* **portal after sending the digests to signDoc** — the CA is paused, the portal's callback
  calls signDoc, the test waits for ``csr.sent`` and kills the portal, then resumes the CA.

The signer's outbound timeout is 2 s in this ecosystem (``SIGNLAB_SIGNER_HTTP_TIMEOUT_SECONDS``),
so "slow beyond the timeout" takes seconds, not minutes.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from shared.testing import confirm_review
from signlab.load import BrowserAgent, FlowFailed, partner_flow
from testkit.reliability_lab import Lab, start_lab

pytestmark = [pytest.mark.processes, pytest.mark.hsm]

HINT = "kari-nordmann@no-bankid"


@pytest.fixture(scope="module")
def crash_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lab = start_lab(
        tmp_path_factory.mktemp("crash") / "var",
        # The IdP's fault injection is on: the slow-IdP test uses a login_hint directive (!slow).
        {"SIGNLAB_SIGNER_HTTP_TIMEOUT_SECONDS": "2", "SIGNLAB_CA_JWKS_CACHE_SECONDS": "0",
         "SIGNLAB_IDP_ADMIN_API_ENABLED": "true"},
        proxies={"ca_jwks": ("signer", "SIGNLAB_CA_SIGNER_JWKS_URL"), "portal_ca": ("ca", "SIGNLAB_PORTAL_CA_URL")},
    )
    yield lab
    for name in ("ca", "idp", "signer", "portal"):  # never leave a paused process behind
        try:
            lab.resume(name)
        except (KeyError, ProcessLookupError):
            pass
    lab.runtime.down()
    for proxy in lab.proxies.values():
        proxy.close()


@pytest.fixture(autouse=True)
def _healthy_after(crash_lab: Lab) -> Iterator[None]:
    """Each test leaves every service running, unpaused, with no proxy rule."""
    yield
    for proxy in crash_lab.proxies.values():
        proxy.release()
    running = crash_lab.runtime.running()
    for name in ("idp", "ca", "signer", "portal"):
        if name in running:
            try:
                crash_lab.resume(name)
            except ProcessLookupError:
                pass
        else:
            crash_lab.restart(name)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _sad(lab: Lab, document: bytes, hint: str = HINT) -> tuple[Any, str, bytes]:
    """Run steps 2-5 as the partner; return (client, SAD, digest)."""
    client = lab.eco.signer_client(timeout=30)
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(document).digest()
    pushed = client.push_authorization_request(
        redirect_uri=lab.eco.redirect_uri, state="s1", code_challenge=_b64url(hashlib.sha256(verifier.encode()).digest()),
        qualifier="eu_eidas_qes", documents=[(digest, "doc.txt")], login_hint=hint)
    back = BrowserAgent(lab.eco).walk(pushed.authorize_url, stop_at=lab.eco.redirect_uri)
    assert isinstance(back, str), back
    code = parse_qs(urlsplit(back).query)["code"][0]
    token = client.exchange_code(code, lab.eco.redirect_uri, verifier)
    return client, token.access_token, digest


def _tx_of(lab: Lab, since: int, event: str = "sad.accepted") -> str:
    return str(lab.wait_audit(lambda e: e.event == event, since).data["transaction_id"])


def _token_objects(lab: Lab) -> int:
    """Key objects persisted on the token, seen from a separate process (session objects of a dead
    process cannot survive it; this proves no token object was left either)."""
    from services.registry import entry
    from services.signer.settings import SignerSettings

    settings = SignerSettings.from_env(lab.runtime.service_environment(entry("signer")))
    code = (
        "import sys, pkcs11, os\n"
        "from pkcs11 import Attribute, ObjectClass\n"
        f"os.environ['SOFTHSM2_CONF'] = {str((settings.data_dir / 'softhsm2.conf').resolve())!r}\n"
        f"lib = pkcs11.lib({str(settings.hsm_module)!r})\n"
        f"token = lib.get_token(token_label={settings.hsm_token_label!r})\n"
        "with token.open(user_pin=sys.stdin.read()) as s:\n"
        "    print(sum(1 for c in (ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY) for _ in s.get_objects({Attribute.CLASS: c})))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], input=settings.hsm_user_pin.get_secret_value(),
                          capture_output=True, text=True, timeout=60, check=True)
    return int(done.stdout.strip())


def _completed_before(lab: Lab) -> tuple[str, str]:
    """A flow completed before a crash: (signer transaction id, certificate serial)."""
    result, _ = partner_flow(lab.eco, b"completed before the crash " + secrets.token_bytes(4))
    assert result.signer_transaction_id and result.certificate_serial
    return result.signer_transaction_id, result.certificate_serial


def _survived(lab: Lab, transaction_id: str, serial: str, audit_before: int) -> None:
    """What must survive a crash: the completed transaction, its certificate, the audit entries."""
    assert lab.signer_transaction(transaction_id)["state"] == "completed"
    issued = requests.get(f"{lab.urls['ca']}/api/v1/certificates/{serial}", timeout=10)
    assert issued.status_code == 200 and issued.json()["transaction_id"] == transaction_id
    assert lab.audit_count() >= audit_before
    events = [e.event for e in lab.audit() if e.data.get("transaction_id") == transaction_id]
    assert {"key.created", "key.destroyed", "certificate.issued", "signature.created", "transaction.completed"} <= set(events)
    lab.chains_intact()


# ------------------------------------------------------------------------------------------ crashes


def test_signer_killed_between_consent_and_sign_doc(crash_lab: Lab) -> None:
    done_tx, serial = _completed_before(crash_lab)
    _, sad, digest = _sad(crash_lab, b"consented, never signed")
    since = crash_lab.audit_count()
    tx = next(e.data["transaction_id"] for e in reversed(crash_lab.audit()) if e.event == "token.issued")
    assert crash_lab.signer_transaction(tx)["state"] == "consented"

    crash_lab.kill("signer")
    crash_lab.restart("signer")

    answer = crash_lab.sign_doc(sad, digest)
    assert answer.status_code == 401 and answer.json()["error"] == "invalid_token"
    assert "SignatureObject" not in answer.text
    row = crash_lab.signer_transaction(tx)
    assert row["state"] == "expired" and "restarted" in row["error"]
    assert "id_token" not in row  # the identity evidence never reaches the database (#19 V7: memory only)
    expired = [e for e in crash_lab.audit(since) if e.event == "transaction.expired" and e.data["transaction_id"] == tx]
    assert expired and "restarted" in expired[0].data["reason"]
    assert not [e for e in crash_lab.audit(since) if e.event == "signature.created"]
    assert crash_lab.hsm_keys() == 0 and _token_objects(crash_lab) == 0
    _survived(crash_lab, done_tx, serial, since)


def test_signer_killed_during_sign_doc_after_key_creation(crash_lab: Lab) -> None:
    done_tx, serial = _completed_before(crash_lab)
    _, sad, digest = _sad(crash_lab, b"killed after key creation")
    since = crash_lab.audit_count()
    outcome: dict[str, Any] = {}

    def call() -> None:
        try:
            outcome["response"] = crash_lab.sign_doc(sad, digest)
        except requests.RequestException as exc:
            outcome["error"] = exc

    crash_lab.pause("ca")  # step 7 blocks: the key exists, the certificate does not
    worker = threading.Thread(target=call)
    worker.start()
    sent = crash_lab.wait_audit(lambda e: e.event == "csr.sent", since, timeout=10)
    tx = sent.data["transaction_id"]
    assert crash_lab.signer_transaction(tx)["state"] == "key_created"
    crash_lab.kill("signer")
    crash_lab.resume("ca")
    worker.join(30)

    # The caller got an error, never a signature.
    assert "response" not in outcome and isinstance(outcome.get("error"), requests.ConnectionError)
    crash_lab.restart("signer")
    row = crash_lab.signer_transaction(tx)
    assert row["state"] == "expired" and "restarted" in row["error"]
    entries = crash_lab.audit(since)
    key_id = next(e.data["key_id"] for e in entries if e.event == "key.created" and e.data["transaction_id"] == tx)
    assert any(e.event == "key.destroyed" and e.data["key_id"] == key_id for e in entries)
    assert not [e for e in entries if e.event in ("signature.created", "transaction.completed")]
    assert crash_lab.hsm_keys() == 0 and _token_objects(crash_lab) == 0
    # The SAD was spent on the attempt: a retry can never sign the half-done transaction.
    again = crash_lab.sign_doc(sad, digest)
    assert again.status_code in (400, 401) and "SignatureObject" not in again.text
    # No orphan: the CA issued the certificate once it was resumed; the restarted signer's first
    # sweep has it revoked (by transaction id: the signer never learned its serial).
    settled = crash_lab.wait_audit(lambda e: e.event.startswith("certificate.revo") and e.data["transaction_id"] == tx,
                                   since, timeout=30)
    issued = [e for e in crash_lab.ca_log() if e.event == "certificate.issued" and e.data["transaction_id"] == tx]
    if issued:
        assert settled.event == "certificate.revoked" and settled.data["serials"] == [issued[0].data["serial"]]
        status = requests.get(f"{crash_lab.urls['ca']}/api/v1/certificates/{issued[0].data['serial']}", timeout=10)
        assert status.json()["status"] == "revoked"
    else:
        assert settled.event == "certificate.revocation_unneeded"
    _survived(crash_lab, done_tx, serial, since)


def test_ca_killed_during_issuance(crash_lab: Lab) -> None:
    done_tx, serial = _completed_before(crash_lab)
    ca_before = len(crash_lab.ca_log())
    _, sad, digest = _sad(crash_lab, b"the CA dies while issuing")
    since = crash_lab.audit_count()
    proxy = crash_lab.proxies["ca_jwks"]
    proxy.set("/", "hold", 30)
    outcome: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: outcome.setdefault("response", crash_lab.sign_doc(sad, digest)))
    worker.start()
    assert proxy.arrived.wait(10), "the CA never started verifying the issuance request"
    crash_lab.kill("ca")
    worker.join(30)
    proxy.release()

    answer = outcome["response"]
    body = answer.json()
    assert answer.status_code == 503 and body["error"] == "temporarily_unavailable"
    assert "step 7" in body["error_description"] and "TSP" in body["error_description"]
    tx = _tx_of(crash_lab, since)
    row = crash_lab.signer_transaction(tx)
    assert row["state"] == "failed" and "TSP" in row["error"]
    entries = crash_lab.audit(since)
    assert [e.event for e in entries if e.event in ("key.created", "key.destroyed")] == ["key.created", "key.destroyed"]
    assert not [e for e in entries if e.event == "signature.created"]
    assert crash_lab.hsm_keys() == 0

    crash_lab.restart("ca")
    log = crash_lab.ca_log()
    assert len(log) >= ca_before
    assert not [e for e in log[ca_before:] if e.data.get("transaction_id") == tx and e.event.endswith("issued")]
    _survived(crash_lab, done_tx, serial, since)


def test_portal_killed_after_sending_digests_to_sign_doc(crash_lab: Lab) -> None:
    portal = crash_lab.urls["portal"]
    created = requests.post(f"{portal}/api/v1/sign-requests", auth=crash_lab.eco.partner_api, timeout=30, json={
        "documents": [{"name": "crash.txt", "content": base64.b64encode(b"portal crash").decode()}],
        "qualifier": "qes", "format": "cades", "level": "B-B", "login_hint": HINT}).json()
    since = crash_lab.audit_count()
    browser = BrowserAgent(crash_lab.eco)
    back = browser.walk(created["review_url"], stop_at=portal)
    assert isinstance(back, str) and "code=" in back
    outcome: dict[str, Any] = {}

    def callback() -> None:
        try:
            outcome["response"] = browser.session.get(back, timeout=30, allow_redirects=False)
        except requests.RequestException as exc:
            outcome["error"] = exc

    crash_lab.pause("ca")
    worker = threading.Thread(target=callback)
    worker.start()
    crash_lab.wait_audit(lambda e: e.event == "csr.sent", since, timeout=10)
    crash_lab.kill("portal")
    crash_lab.resume("ca")
    worker.join(30)
    assert "response" not in outcome  # the browser got no page, certainly no signed document
    crash_lab.restart("portal")

    status = requests.get(f"{portal}/api/v1/transactions/{created['transaction_id']}", auth=crash_lab.eco.partner_api, timeout=10).json()
    download = requests.get(f"{portal}/api/v1/transactions/{created['transaction_id']}/documents/0",
                            auth=crash_lab.eco.partner_api, timeout=10)
    assert download.status_code != 200
    assert crash_lab.hsm_keys() == 0
    crash_lab.chains_intact()
    assert status["state"] == "failed" and "restarted while completing" in status["error_description"]


def test_portal_restart_keeps_pending_transactions(crash_lab: Lab) -> None:
    """Killed after pushing the digests (PAR) but before the signer came back: the pending
    transaction (with its PKCE verifier) is durable, so the flow completes after the restart."""
    portal = crash_lab.urls["portal"]
    content = b"pending across a portal crash"
    created = requests.post(f"{portal}/api/v1/sign-requests", auth=crash_lab.eco.partner_api, timeout=30, json={
        "documents": [{"name": "pending.txt", "content": base64.b64encode(content).decode()}],
        "qualifier": "qes", "format": "cades", "level": "B-B", "login_hint": HINT}).json()
    browser = BrowserAgent(crash_lab.eco)
    authorize_url = confirm_review(created["review_url"], browser.session)  # the signer confirms: PAR pushed
    crash_lab.kill("portal")
    crash_lab.restart("portal")
    browser.walk(authorize_url)
    status = requests.get(f"{portal}/api/v1/transactions/{created['transaction_id']}", auth=crash_lab.eco.partner_api, timeout=10).json()
    assert status["state"] == "completed", status


def test_sqlite_wal_and_atomic_files(crash_lab: Lab) -> None:
    """Every service database is in WAL mode; audit and issuance logs end with a complete line."""
    data = crash_lab.runtime.data_dir
    databases = sorted(data.glob("*/*.sqlite3")) + sorted(data.glob("*/*/*.sqlite3"))
    assert {p.parent.name for p in databases} >= {"signer", "ca"}
    for path in databases:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal", path
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok", path
    for path in (crash_lab.eco.signer_audit, crash_lab.eco.ca_issuance_log):
        assert path.read_bytes().endswith(b"\n")
    crash_lab.chains_intact()


# ------------------------------------------------------------------------------------------ outages


def test_idp_slow_beyond_timeout_at_step_5(crash_lab: Lab) -> None:
    since = crash_lab.audit_count()
    with pytest.raises(FlowFailed) as caught:
        partner_flow(crash_lab.eco, b"slow idp", login_hint=f"{HINT}!slow=4")
    text = str(caught.value)
    assert "step 5" in text and "IPSP" in text and ("2 s" in text or "Timeout" in text), text
    entries = crash_lab.audit(since)
    assert not [e for e in entries if e.event == "key.created"]  # nothing was made for an unproven identity
    assert any(e.event == "authentication.refused" for e in entries)


def test_idp_down_at_step_5(crash_lab: Lab) -> None:
    client = crash_lab.eco.signer_client()
    verifier = secrets.token_urlsafe(48)
    pushed = client.push_authorization_request(
        redirect_uri=crash_lab.eco.redirect_uri, state="s", code_challenge=_b64url(hashlib.sha256(verifier.encode()).digest()),
        qualifier="eu_eidas_qes", documents=[(hashlib.sha256(b"x").digest(), "x")], login_hint=HINT)
    browser = BrowserAgent(crash_lab.eco)
    callback = browser.walk(pushed.authorize_url, stop_at=crash_lab.urls["signer"] + "/oauth2/idp-callback")
    assert isinstance(callback, str)
    since = crash_lab.audit_count()
    crash_lab.kill("idp")
    back = browser.walk(callback, stop_at=crash_lab.eco.redirect_uri)
    assert isinstance(back, str)
    params = parse_qs(urlsplit(back).query)
    assert params["error"] == ["temporarily_unavailable"]
    assert "step 5" in params["error_description"][0] and "IPSP" in params["error_description"][0]
    assert any(e.event == "authentication.refused" for e in crash_lab.audit(since))


def test_ca_down_at_step_7(crash_lab: Lab) -> None:
    _, sad, digest = _sad(crash_lab, b"ca down")
    since = crash_lab.audit_count()
    crash_lab.kill("ca")
    answer = crash_lab.sign_doc(sad, digest)
    body = answer.json()
    assert answer.status_code == 503 and body["error"] == "temporarily_unavailable"
    assert "step 7" in body["error_description"] and "TSP" in body["error_description"]
    entries = crash_lab.audit(since)
    assert [e.event for e in entries if e.event.startswith("key.")] == ["key.created", "key.destroyed"]
    assert sum(1 for e in entries if e.event == "csr.sent") == 1  # no retry of the issuance
    assert crash_lab.hsm_keys() == 0
    crash_lab.restart("ca")
    again = crash_lab.sign_doc(sad, digest)  # never re-signed: the SAD was spent
    assert again.status_code in (400, 401) and "SignatureObject" not in again.text


def test_ca_slow_beyond_timeout_at_step_7(crash_lab: Lab) -> None:
    _, sad, digest = _sad(crash_lab, b"ca slow")
    since = crash_lab.audit_count()
    proxy = crash_lab.proxies["ca_jwks"]
    proxy.set("/", "hold", 8)
    started = time.monotonic()
    answer = crash_lab.sign_doc(sad, digest)
    elapsed = time.monotonic() - started
    proxy.release()
    body = answer.json()
    assert answer.status_code == 503 and "step 7" in body["error_description"] and "2 s" in body["error_description"]
    assert elapsed < 6  # bounded by the signer's 2 s timeout, not by the CA
    entries = crash_lab.audit(since)
    assert [e.event for e in entries if e.event.startswith("key.")] == ["key.created", "key.destroyed"]
    assert not [e for e in entries if e.event == "signature.created"]
    assert crash_lab.hsm_keys() == 0


@pytest.mark.parametrize("fault", ["drop", "delay"])
def test_tsa_down_or_slow_for_b_t(crash_lab: Lab, fault: str) -> None:
    """The portal's TSA link fails after the signature exists: the transaction fails with a reason
    naming the time-stamp, nothing is kept, and the portal does not sign again."""
    proxy = crash_lab.proxies["portal_ca"]
    proxy.set("/tsa", fault, 12)
    since = crash_lab.audit_count()
    portal = crash_lab.urls["portal"]
    created = requests.post(f"{portal}/api/v1/sign-requests", auth=crash_lab.eco.partner_api, timeout=30, json={
        "documents": [{"name": "tsa.txt", "content": base64.b64encode(b"needs a time-stamp").decode()}],
        "qualifier": "qes", "format": "cades", "level": "B-T", "login_hint": HINT}).json()
    started = time.monotonic()
    BrowserAgent(crash_lab.eco, timeout=60).walk(created["review_url"])
    elapsed = time.monotonic() - started
    proxy.release()
    status = requests.get(f"{portal}/api/v1/transactions/{created['transaction_id']}", auth=crash_lab.eco.partner_api, timeout=10).json()
    assert status["state"] == "failed", status
    assert "time-stamp" in status["error_description"]
    assert elapsed < 30
    entries = crash_lab.audit(since)
    assert sum(1 for e in entries if e.event == "sad.accepted") == 1  # exactly one signDoc: never re-signed
    assert crash_lab.hsm_keys() == 0



def _through_the_portal(lab: Lab, document: bytes, hint: str = HINT) -> dict[str, Any]:
    """A request through the portal's API, the browser through review, eID login and consent; the
    transaction's status JSON afterwards."""
    portal = lab.urls["portal"]
    created = requests.post(f"{portal}/api/v1/sign-requests", auth=lab.eco.partner_api, timeout=30, json={
        "documents": [{"name": "outage.txt", "content": base64.b64encode(document).decode()}],
        "qualifier": "qes", "format": "cades", "level": "B-B", "login_hint": hint}).json()
    BrowserAgent(lab.eco, timeout=60).walk(created["review_url"])
    return dict(requests.get(created["status_url"], auth=lab.eco.partner_api, timeout=10).json())


def test_outages_keep_their_step_and_role_through_the_portal(crash_lab: Lab) -> None:
    """#25 mislabelled failures: an IdP timeout at step 5 is an outage of the IPSP (503
    temporarily_unavailable, not 403 access_denied); the CA down at step 7 reaches the portal's
    caller as the SSASP said it — "step 7 (SSASP → TSP)", 503 — not as "step 6 (SSASP → HSM) …
    502 server_error"."""
    idp = _through_the_portal(crash_lab, b"the IdP answers too late", hint=f"{HINT}!slow=4")
    assert idp["state"] == "failed" and idp["error"] == "temporarily_unavailable", idp
    assert idp["error_description"].startswith("step 5 (IPSP → SSASP)") and "IPSP is unavailable" in idp["error_description"]
    crash_lab.kill("ca")
    try:
        ca = _through_the_portal(crash_lab, b"the CA is down at step 7")
    finally:
        crash_lab.restart("ca")
    assert ca["state"] == "failed" and ca["error"] == "temporarily_unavailable", ca
    assert ca["error_description"].startswith("step 7 (SSASP → TSP): the TSP is unavailable"), ca
    assert "step 6" not in ca["error_description"] and crash_lab.hsm_keys() == 0
