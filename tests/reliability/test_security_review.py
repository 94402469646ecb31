"""The findings of the outside security review (issue 19), each replayed against real processes.

One test per finding (V1-V8, and the weaknesses on the portal, IdP, SSASP and admin APIs); each
failed on the code before the fix. The SSASP's findings are at the end of this file.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import pytest
import requests

from shared.errors import SignLabError
from shared.testing import confirm_review
from signlab.load import BrowserAgent, portal_flow
from testkit.reliability_lab import Lab, start_lab

pytestmark = [pytest.mark.processes, pytest.mark.hsm]

OTHER_APP = ("other-partner", "other-partner-secret-0123456789")
"""A second partner application registered at the review lab's portal."""
TEXT = {"name": "contract.txt", "content": base64.b64encode(b"I agree to the terms.\n").decode()}


@pytest.fixture(scope="module")
def review_lab(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A default ecosystem (no fault injection) whose portal knows a second partner application."""
    started = start_lab(tmp_path_factory.mktemp("review") / "var", {
        "SIGNLAB_PORTAL_API_APPLICATIONS": f'[{{"client_id": "{OTHER_APP[0]}", "client_secret": "{OTHER_APP[1]}"}}]'})
    yield started
    started.runtime.down()


def _partner(lab: Lab) -> tuple[str, str]:
    return lab.eco.partner_api


def _completed_by_partner(lab: Lab) -> str:
    """A transaction the lab's partner application created and its signer completed."""
    return str(portal_flow(lab.eco, b"owned by the lab's partner application\n").transaction_id)


def _browser_signing(lab: Lab, session: requests.Session) -> tuple[str, str]:
    """A transaction created in ``session`` through the portal's form, completed; (tx id, report id)."""
    portal = lab.urls["portal"]
    page = session.get(f"{portal}/", timeout=10)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    started = session.post(f"{portal}/sign", allow_redirects=False, timeout=60, data={
        "csrf_token": csrf, "samples": "meeting-minutes.txt", "qualifier": "qes", "format": "cades", "level": "B-B",
        "login_hint": "kari-nordmann@no-bankid"})
    assert started.status_code == 303, started.text[:300]
    authorize = confirm_review(urljoin(portal, started.headers["Location"]), session)
    agent = BrowserAgent(lab.eco)
    agent.session = session
    final = agent.walk(authorize)
    assert isinstance(final, requests.Response) and "/transactions/tx-" in final.url, final
    tx_id = final.url.rsplit("/", 1)[1]
    signed = session.get(f"{portal}/transactions/{tx_id}/documents/0", timeout=10).content
    report = session.post(f"{portal}/validate", timeout=60, data={"csrf_token": csrf},
                          files={"signed": ("minutes.p7s", signed)})
    report_id = re.search(r"/reports/([0-9a-f]+)\.json", report.text).group(1)  # type: ignore[union-attr]
    return tx_id, report_id


# ------------------------------------------------------------------ V1, V2: ownership


def test_v1_another_partners_or_anonymous_requests_for_a_transaction_get_nothing(review_lab: Lab) -> None:
    """V1: status, downloads, trace and the listing of a partner's transaction answer only that partner."""
    portal = review_lab.urls["portal"]
    tx_id = _completed_by_partner(review_lab)
    api = f"{portal}/api/v1/transactions/{tx_id}"
    owned = requests.get(api, auth=_partner(review_lab), timeout=10)
    assert owned.status_code == 200 and owned.json()["state"] == "completed"
    assert "authorize_url" not in owned.json()
    for path in ("", "/documents/0", "/trace"):
        anonymous = requests.get(api + path, timeout=10, headers={"Accept": "application/json"})
        assert anonymous.status_code == 401, (path, anonymous.status_code)
        assert anonymous.headers["WWW-Authenticate"].startswith("Basic "), anonymous.headers
        foreign = requests.get(api + path, auth=OTHER_APP, timeout=10, headers={"Accept": "application/json"})
        assert foreign.status_code == 404 and foreign.json()["error"] == "not_found", (path, foreign.text[:200])
    # The pages of the transaction: no browser owns it, so every browser gets the same 404.
    for path in (f"/transactions/{tx_id}", f"/transactions/{tx_id}/documents/0", f"/transactions/{tx_id}/trace.json"):
        assert requests.get(portal + path, timeout=10).status_code == 404, path
    # The trainer's listing of every transaction id needs the trainer token.
    listing = requests.get(f"{portal}/trainer/api/transactions", timeout=10)
    assert listing.status_code == 401 and tx_id not in listing.text


def test_v1_a_browser_sessions_transaction_and_report_answer_only_that_session(review_lab: Lab) -> None:
    """V1 for the portal's own pages: result page, download, trace and validation report."""
    portal = review_lab.urls["portal"]
    owner = requests.Session()
    tx_id, report_id = _browser_signing(review_lab, owner)
    paths = (f"/transactions/{tx_id}", f"/transactions/{tx_id}/documents/0", f"/transactions/{tx_id}/trace.json",
             f"/reports/{report_id}.json")
    for path in paths:
        assert owner.get(portal + path, timeout=10).status_code == 200, path
    stranger = requests.Session()
    stranger.get(f"{portal}/", timeout=10)  # a session of its own
    unknown = stranger.get(f"{portal}/transactions/tx-{'0' * 16}", timeout=10, headers={"Accept": "application/json"})
    for path in paths:
        answer = stranger.get(portal + path, timeout=10, headers={"Accept": "application/json"})
        assert answer.status_code == 404, path
        # No oracle: a foreign id is answered like one that never existed.
        assert answer.json()["error"] == unknown.json()["error"] == "not_found"
    assert requests.get(f"{portal}/api/v1/transactions/{tx_id}", auth=_partner(review_lab), timeout=10).status_code == 404


def test_v2_anonymous_callers_cannot_create_sign_requests_or_use_the_api(review_lab: Lab) -> None:
    """V2: the API is the partner's; no credentials or a wrong secret is a 401 with the Basic challenge."""
    portal = review_lab.urls["portal"]
    body = {"documents": [TEXT], "qualifier": "qes", "format": "cades", "level": "B-B"}
    for auth in (None, (_partner(review_lab)[0], "wrong-secret"), ("nobody", "x" * 20)):
        answer = requests.post(f"{portal}/api/v1/sign-requests", json=body, auth=auth, timeout=10)
        assert answer.status_code == 401, answer.text[:200]
        assert answer.json()["error"] == "invalid_client"
        assert answer.headers["WWW-Authenticate"] == 'Basic realm="signlab-portal-api", charset="UTF-8"'
        assert "review_url" not in answer.text and "authorize_url" not in answer.text
    for path in ("/api/v1/validate", "/api/v1/samples"):
        assert requests.request("POST" if "validate" in path else "GET", portal + path, timeout=10).status_code == 401


def test_v2_a_partners_request_cannot_be_completed_into_anyone_elses_download(review_lab: Lab) -> None:
    """The signer completes a partner's request; only that partner downloads the result."""
    portal = review_lab.urls["portal"]
    created = requests.post(f"{portal}/api/v1/sign-requests", auth=_partner(review_lab), timeout=30, json={
        "documents": [TEXT], "qualifier": "qes", "format": "cades", "level": "B-B",
        "login_hint": "kari-nordmann@no-bankid"}).json()
    signer_browser = requests.Session()
    agent = BrowserAgent(review_lab.eco)
    agent.session = signer_browser
    final = agent.walk(created["review_url"])
    # The signer's browser lands on the review link: the outcome, no document, no download link.
    assert isinstance(final, requests.Response) and final.status_code == 200
    assert "has the signed document" in final.text and "/documents/" not in final.text
    tx_id = created["transaction_id"]
    download = f"{portal}/api/v1/transactions/{tx_id}/documents/0"
    assert requests.get(download, auth=_partner(review_lab), timeout=10).status_code == 200
    assert requests.get(download, auth=OTHER_APP, timeout=10).status_code == 404
    assert requests.get(download, timeout=10).status_code == 401
    assert signer_browser.get(download, timeout=10).status_code == 401
    assert signer_browser.get(f"{portal}/transactions/{tx_id}/documents/0", timeout=10).status_code == 404


# ------------------------------------------------------------------ V3: trainer views


@pytest.mark.parametrize(("service", "path"), [
    ("portal", "/trainer/"), ("portal", "/trainer/api/transactions"), ("portal", "/trainer/api/transactions/latest"),
    ("portal", "/trainer/api/status"), ("idp", "/debugger"), ("ca", "/certificates"),
])
def test_v3_trainer_and_debugger_views_need_the_trainer_token(review_lab: Lab, service: str, path: str) -> None:
    url = review_lab.urls[service] + path
    anonymous = requests.get(url, timeout=10, headers={"Accept": "application/json"})
    assert anonymous.status_code == 401, anonymous.text[:200]
    assert anonymous.headers["WWW-Authenticate"] == 'Bearer realm="signlab-trainer"'
    wrong = requests.get(url, timeout=10, headers={"Authorization": "Bearer wrong", "Accept": "application/json"})
    assert wrong.status_code == 401 and 'error="invalid_token"' in wrong.headers["WWW-Authenticate"]
    token = review_lab.secrets["SIGNLAB_PORTAL_TRAINER_TOKEN"]
    trainer = requests.get(url, timeout=30, headers={"Authorization": f"Bearer {token}"})
    assert trainer.status_code in (200, 404), trainer.text[:200]  # 404: "latest" before any flow
    # A browser signs in once with the link 'signlab up' prints; the token leaves the address bar.
    browser = requests.Session()
    sign_in = browser.get(f"{review_lab.urls[service]}/trainer/sign-in?{urlencode({'token': token, 'next': path})}",
                          timeout=10, allow_redirects=False)
    assert sign_in.status_code == 303 and sign_in.headers["Location"] == path
    cookie = sign_in.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and token not in cookie
    assert browser.get(url, timeout=30).status_code in (200, 404)


def test_v3_the_cas_certificate_pages_and_lookup_mask_the_signers_identifier(review_lab: Lab) -> None:
    serial = portal_flow(review_lab.eco, b"certificate subject masking\n").certificate_serial
    token = review_lab.secrets["SIGNLAB_PORTAL_TRAINER_TOKEN"]
    ca = review_lab.urls["ca"]
    assert requests.get(f"{ca}/certificates/{serial}", timeout=10).status_code == 401
    bearer = {"Authorization": f"Bearer {token}"}
    for page in (requests.get(f"{ca}/certificates", headers=bearer, timeout=10),
                 requests.get(f"{ca}/certificates/{serial}", headers=bearer, timeout=10),
                 requests.get(f"{ca}/api/v1/certificates/{serial}", timeout=10)):
        assert page.status_code == 200
        text = page.text if "json" not in page.headers["Content-Type"] else str(page.json())
        at = text.find("14838540105")
        assert at < 0 and "PNONO-•••••••••05" in text, text[max(0, at - 200):at + 50]


# ------------------------------------------------------------------ V4, V7 and the IdP's weaknesses


def _idp_app(tmp_path: Path, **settings: Any) -> Any:
    """An IdP app with default settings (fault injection off) and the signer as its client."""
    from services.idp import create_app
    from services.idp.provision import provision
    from services.idp.settings import IdpSettings
    from shared.testing import random_secrets

    values = {**random_secrets(IdpSettings), "data_dir": tmp_path / "idp",
              "signer_redirect_uris": ["http://127.0.0.1:9/cb"], **settings}
    idp_settings = IdpSettings(**values)
    provision(idp_settings)
    return create_app(idp_settings), idp_settings


def _authorize(client: Any, **extra: str) -> Any:
    verifier = "v" * 43
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    params = {"client_id": "signlab-signer", "redirect_uri": "http://127.0.0.1:9/cb", "response_type": "code",
              "scope": "openid", "nonce": "n-" + "x" * 20, "state": "s-" + "y" * 20, "code_challenge": challenge,
              "code_challenge_method": "S256", **extra}
    return client.get("/authorize?" + urlencode(params))


def test_v4_login_hint_failure_directives_are_refused_unless_fault_injection_is_on(tmp_path: Path) -> None:
    """V4: with fault injection off, ``…!slow=30`` (and every other directive) is an invalid hint."""
    app, _ = _idp_app(tmp_path)
    client = app.test_client()
    for hint in ("kari-nordmann@no-bankid!slow=30", "kari-nordmann@no-bankid!unavailable", "!cancel"):
        answer = _authorize(client, login_hint=hint)
        assert answer.status_code == 302, answer.get_data(as_text=True)[:200]
        params = parse_qs(urlsplit(answer.headers["Location"]).query)
        assert params["error"] == ["invalid_request"] and "code" not in params, params
        assert "fault injection" in params["error_description"][0]
    # The same hint without the directive logs in headlessly as before.
    plain = parse_qs(urlsplit(_authorize(client, login_hint="kari-nordmann@no-bankid").headers["Location"]).query)
    assert "code" in plain, plain


def test_v7_authorization_codes_and_access_tokens_are_hashed_at_rest(tmp_path: Path) -> None:
    """V7 (IdP): the database and its WAL hold no redeemable code or access token."""
    app, settings = _idp_app(tmp_path)
    client = app.test_client()
    location = _authorize(client, login_hint="kari-nordmann@no-bankid").headers["Location"]
    code = parse_qs(urlsplit(location).query)["code"][0]
    files = list((settings.data_dir).glob("idp.sqlite3*"))
    stored = b"".join(path.read_bytes() for path in files)
    assert code.encode() not in stored
    assert hashlib.sha256(code.encode()).hexdigest().encode() in stored
    token = client.post("/token", data={"grant_type": "authorization_code", "code": code, "code_verifier": "v" * 43,
                                        "redirect_uri": "http://127.0.0.1:9/cb"},
                        auth=("signlab-signer", settings.signer_client_secret.get_secret_value()))
    assert token.status_code == 200, token.get_data(as_text=True)
    access = token.get_json()["access_token"]
    stored = b"".join(path.read_bytes() for path in settings.data_dir.glob("idp.sqlite3*"))
    assert access.encode() not in stored
    assert client.get("/userinfo", headers={"Authorization": f"Bearer {access}"}).status_code == 200
    with sqlite3.connect(settings.data_dir / "idp.sqlite3") as db:
        assert db.execute("SELECT COUNT(*) FROM codes").fetchone()[0] == 0  # redeemed once, gone


def test_idp_answers_request_not_supported_for_request_objects(tmp_path: Path) -> None:
    app, _ = _idp_app(tmp_path)
    client = app.test_client()
    for parameter, error in (("request", "request_not_supported"), ("request_uri", "request_uri_not_supported")):
        answer = _authorize(client, login_hint="kari-nordmann@no-bankid", **{parameter: "eyJhbGciOiJub25lIn0.e30."})
        params = parse_qs(urlsplit(answer.headers["Location"]).query)
        assert params["error"] == [error] and "code" not in params, params
    assert app.test_client().get("/.well-known/openid-configuration").get_json()["request_parameter_supported"] is False


# ------------------------------------------------------------------ the portal's weaknesses


def test_host_header_is_not_reflected_in_the_apis_urls(review_lab: Lab) -> None:
    portal = review_lab.urls["portal"]
    created = requests.post(f"{portal}/api/v1/sign-requests", auth=_partner(review_lab), timeout=30,
                            headers={"Host": "evil.example"},
                            json={"documents": [TEXT], "qualifier": "qes", "format": "cades", "level": "B-B"})
    assert created.status_code == 201, created.text[:200]
    body = created.json()
    for key in ("status_url", "review_url"):
        assert body[key].startswith(portal + "/"), body
    status = requests.get(body["status_url"], auth=_partner(review_lab), headers={"Host": "evil.example"}, timeout=10)
    assert "evil.example" not in status.text


def test_oversized_request_is_a_clean_error_and_is_traced(review_lab: Lab) -> None:
    portal = review_lab.urls["portal"]
    answer = requests.post(f"{portal}/api/v1/sign-requests", auth=_partner(review_lab), timeout=60,
                           data=b"{" + b" " * (40 * 1024 * 1024) + b"}",
                           headers={"Content-Type": "application/json", "Accept": "application/json"})
    assert answer.status_code == 413 and answer.json()["error"] == "invalid_request"
    request_id = answer.headers["X-Request-ID"]
    log = review_lab.runtime.log_file("portal").read_text()
    lines = [line for line in log.splitlines() if request_id in line]
    assert lines and not any("Traceback" in line for line in lines), lines
    traces = "".join(p.read_text() for p in (review_lab.runtime.data_dir / "traces").rglob("*.jsonl"))
    assert "over the size limit, not read" in traces


# ------------------------------------------------------------------ admin-token guessing


def test_admin_token_guessing_is_throttled(tmp_path: Path) -> None:
    """Ten wrong admin tokens from one address lock it (429, Retry-After) — even for the right
    token, so the lock tells nothing; another address is not affected."""
    app, settings = _idp_app(tmp_path, admin_api_enabled=True)
    client = app.test_client()
    right = {"Authorization": f"Bearer {settings.admin_token.get_secret_value()}"}
    guesser = {"REMOTE_ADDR": "10.0.0.66"}
    for attempt in range(10):
        answer = client.get("/admin/failures", headers={"Authorization": f"Bearer guess-{attempt}"}, environ_base=guesser)
        assert answer.status_code == 401
    locked = client.get("/admin/failures", headers={"Authorization": "Bearer guess-11"}, environ_base=guesser)
    assert locked.status_code == 429 and int(locked.headers["Retry-After"]) > 0
    assert locked.get_json()["error"] == "too_many_attempts"
    assert client.get("/admin/failures", headers=right, environ_base=guesser).status_code == 429
    assert client.get("/admin/failures", headers=right, environ_base={"REMOTE_ADDR": "10.0.0.7"}).status_code == 200


def test_the_cas_revoke_and_the_fault_admin_apis_share_the_throttle(review_lab: Lab) -> None:
    from shared.faults import FaultBoard
    from shared.guard import TooManyAttempts

    class Recorder:
        def append(self, event: str, **data: Any) -> None:
            return None

    board = FaultBoard([], __import__("pydantic").SecretStr("the-right-admin-token"), Recorder())
    for _ in range(10):
        with pytest.raises(Exception, match="admin API"):
            board.check_token("Bearer wrong", "10.1.1.1")
    with pytest.raises(TooManyAttempts):
        board.check_token("Bearer the-right-admin-token", "10.1.1.1")
    # The CA's revoke API over HTTP, from this test's address (the lab serves only this module).
    revoke = f"{review_lab.urls['ca']}/api/v1/certificates/ab12/revoke"
    statuses = [requests.post(revoke, headers={"Authorization": f"Bearer wrong-{i}"}, timeout=10).status_code
                for i in range(11)]
    assert statuses[:10] == [401] * 10 and statuses[10] == 429, statuses


# ------------------------------------------------------------------ the SSASP's findings


def test_v5_wrong_secrets_for_the_portals_client_id_do_not_lock_the_portal_out(review_lab: Lab) -> None:
    """V5: the portal authenticates with private_key_jwt; secrets guessed for its client id from
    the lab's shared loopback address are refused (and audited) but lock nothing, so the portal's
    next signing request goes through."""
    signer, portal_id = review_lab.urls["signer"], review_lab.eco.portal_client_id
    since = review_lab.audit_count()
    for attempt in range(8):
        guess = requests.post(f"{signer}/oauth2/par", auth=(portal_id, f"guess-{attempt}"), timeout=10,
                              data={"response_type": "code", "client_id": portal_id})
        assert guess.status_code == 401 and guess.json()["error"] == "invalid_client", guess.text
        assert "private_key_jwt" in guess.json()["error_description"]
    assert portal_flow(review_lab.eco, b"the portal is not locked out\n").certificate_serial
    events = [e.event for e in review_lab.audit(since)]
    assert events.count("client.refused") == 8 and "client.locked" not in events
    metadata = requests.get(f"{signer}/.well-known/oauth-authorization-server", timeout=10).json()
    assert metadata["token_endpoint_auth_methods_supported"] == ["private_key_jwt"]
    jwks = requests.get(f"{review_lab.urls['portal']}/.well-known/jwks.json", timeout=10).json()
    assert jwks["keys"][0]["kty"] == "EC" and "d" not in jwks["keys"][0]


def _timestamp(lab: Lab, token: str) -> requests.Response:
    return requests.post(f"{lab.urls['signer']}/csc/v2/signatures/timestamp", timeout=30,
                         headers={"Authorization": f"Bearer {token}"},
                         json={"hash": base64.b64encode(hashlib.sha256(b"stamp me").digest()).decode(),
                               "hashAlgorithmOID": "2.16.840.1.101.3.4.2.1"})


def test_v6_timestamp_refuses_a_used_sad_and_a_revoked_token(review_lab: Lab) -> None:
    """V6: signatures/timestamp is no free TSA for whoever holds a spent SAD or a revoked token."""
    sad, digest = review_lab.authorize(b"a SAD that will be spent\n")
    assert _timestamp(review_lab, sad).status_code == 200  # live: a time-stamp is fine
    assert review_lab.sign_doc(sad, digest).status_code == 200
    since = review_lab.audit_count()
    spent = _timestamp(review_lab, sad)
    assert spent.status_code == 401 and spent.json()["error"] == "invalid_token", spent.text
    assert "already used" in spent.json()["error_description"]
    revoked_sad, _ = review_lab.authorize(b"a SAD that will be revoked\n")
    client = review_lab.eco.signer_client()
    client.revoke(revoked_sad)
    client.close()
    revoked = _timestamp(review_lab, revoked_sad)
    assert revoked.status_code == 401 and revoked.json()["error"] == "invalid_token", revoked.text
    assert [e.event for e in review_lab.audit(since)].count("token.refused") == 2


def test_v7_the_signer_database_never_holds_a_signed_id_token(review_lab: Lab) -> None:
    """V7 (SSASP): the verified ID token waits for step 7 in memory; neither during nor after a
    flow do the database or its WAL hold a JWS (header.payload.signature, base64url JSON), while
    the audit keeps the pseudonymised facts of the authentication."""
    database = review_lab.eco.signer_audit.parent
    jws = re.compile(rb"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{40,}")

    def stored() -> list[bytes]:
        return jws.findall(b"".join(path.read_bytes() for path in database.glob("signer.sqlite3*")))

    sad, digest = review_lab.authorize(b"no ID token at rest\n")
    assert stored() == []  # consented, step 7 still ahead
    answer = review_lab.sign_doc(sad, digest)
    assert answer.status_code == 200, answer.text
    assert stored() == []
    transaction = answer.json()["transactionID"]
    verified = next(e for e in review_lab.audit() if e.event == "authentication.verified"
                    and e.data["transaction_id"] == transaction)
    assert verified.data["subject"].startswith("ps-") and verified.data["loa"] and verified.data["eid"]
    assert "14838540105" not in json.dumps(verified.data)


def test_v8_the_token_endpoint_requires_the_redirect_uri_the_authorization_request_had(review_lab: Lab) -> None:
    """V8: RFC 6749 §4.1.3 — a code issued for a request with redirect_uri is not redeemed without it."""
    eco = review_lab.eco
    client = eco.signer_client()
    verifier = "v" * 43
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    digest = hashlib.sha256(b"redirect_uri at the token endpoint\n").digest()
    pushed = client.push_authorization_request(redirect_uri=eco.redirect_uri, state="s", code_challenge=challenge,
                                               qualifier="eu_eidas_qes", documents=[(digest, "v8.txt")],
                                               login_hint="kari-nordmann@no-bankid")
    client.close()
    back = BrowserAgent(eco).walk(pushed.authorize_url, stop_at=eco.redirect_uri)
    code = parse_qs(urlsplit(str(back)).query)["code"][0]
    since = review_lab.audit_count()
    answer = requests.post(f"{review_lab.urls['signer']}/oauth2/token", timeout=10, data={
        "grant_type": "authorization_code", "code": code, "code_verifier": verifier, **eco.portal_authentication()})
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant", answer.text
    assert "redirect_uri is required" in answer.json()["error_description"]
    refused = [e for e in review_lab.audit(since) if e.event == "token.refused"]
    assert refused and "redirect_uri is required" in refused[0].data["reason"]


def _partner_token(lab: Lab, client: Any, **par: Any) -> Any:
    """Steps 2-5 as the partner with the portal's client (PAR → eID login → consent → token)."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    pushed = client.push_authorization_request(redirect_uri=lab.eco.redirect_uri, state="s", code_challenge=challenge,
                                               login_hint="kari-nordmann@no-bankid", **par)
    back = BrowserAgent(lab.eco).walk(pushed.authorize_url, stop_at=lab.eco.redirect_uri)
    return client.exchange_code(parse_qs(urlsplit(str(back)).query)["code"][0], lab.eco.redirect_uri, verifier)


def test_certificate_first_is_scal2_the_person_approves_the_exact_hashes(review_lab: Lab) -> None:
    """Weakness (certificate first was SCAL 1): the partner can no longer sign hashes the person
    never saw. credentials/info says SCAL 2 and oauth2code; credentials/authorize issues nothing;
    a SAD comes only from the person's consent to the listed hashes, and any other hash is refused
    at step 6 and audited."""
    client = review_lab.eco.signer_client()
    service = _partner_token(review_lab, client, qualifier="eu_eidas_qes", scope="service", num_signatures=1)
    info = client.credentials_info(service.access_token, service.credential_id)
    assert (info.scal, info.raw["authMode"]) == ("2", "oauth2code")
    unseen = hashlib.sha256(b"a DTBS/R the person never saw").digest()
    with pytest.raises(SignLabError) as refused:
        client.credentials_authorize(service.access_token, service.credential_id, [unseen])
    assert "SCAL 2" in refused.value.error_description
    approved = hashlib.sha256(b"the DTBS/R the person approves").digest()
    sad = _partner_token(review_lab, client, documents=[(approved, "contract.pdf")],
                         credential_id=service.credential_id)
    since = review_lab.audit_count()
    with pytest.raises(SignLabError) as other:
        client.sign_hash(service.access_token, service.credential_id, sad.access_token, [unseen], "1.2.840.10045.4.3.2")
    assert "step 6" in other.value.error_description
    [audited] = [e for e in review_lab.audit(since) if e.event == "sad.refused"]
    assert audited.step == 6 and audited.data["digests"] == [unseen.hex()]
    [signature] = client.sign_hash(service.access_token, service.credential_id, sad.access_token, [approved],
                                   "1.2.840.10045.4.3.2")
    assert signature[0] == 0x30
    client.close()
