"""Adversarial tests against the real processes: each attack is refused, produces no signature and
leaves a record (the signer's hash-chained audit log, the CA's issuance log, or — for the IdP,
which keeps no audit log — the refusal in its JSON log).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from joserfc import jws, jwt
from joserfc.jwk import ECKey

from shared.client_assertion import CLIENT_ASSERTION_TYPE, create_client_assertion
from shared.identity import IdentityEvidenceError, verify_id_token
from signlab.load import BrowserAgent, partner_flow
from testkit.reliability_lab import Lab

pytestmark = [pytest.mark.processes, pytest.mark.hsm]

HINT = "kari-nordmann@no-bankid"
OTHER = "ola-nordmann@no-bankid"
SHA256 = "2.16.840.1.101.3.4.2.1"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _push(lab: Lab, digest: bytes, *, hint: str = HINT, label: str = "doc.txt") -> tuple[Any, str, str]:
    client = lab.eco.signer_client()
    verifier = secrets.token_urlsafe(48)
    pushed = client.push_authorization_request(
        redirect_uri=lab.eco.redirect_uri, state="st", code_challenge=_b64url(hashlib.sha256(verifier.encode()).digest()),
        qualifier="eu_eidas_qes", documents=[(digest, label)], login_hint=hint)
    return client, verifier, pushed.authorize_url


def _code(lab: Lab, authorize_url: str, browser: BrowserAgent | None = None) -> str:
    back = (browser or BrowserAgent(lab.eco)).walk(authorize_url, stop_at=lab.eco.redirect_uri)
    assert isinstance(back, str), back
    return parse_qs(urlsplit(back).query)["code"][0]


def _sad(lab: Lab, document: bytes, hint: str = HINT) -> tuple[str, bytes]:
    digest = hashlib.sha256(document).digest()
    client, verifier, url = _push(lab, digest, hint=hint)
    return client.exchange_code(_code(lab, url), lab.eco.redirect_uri, verifier).access_token, digest


def _refused(response: requests.Response, status: int, error: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert b"SignatureObject" not in response.content and b"signatures" not in response.content
    body = response.json() if "json" in response.headers.get("Content-Type", "") else {}
    if error is not None:
        assert body.get("error") == error, body
    return body


def _audited(lab: Lab, since: int, event: str, **match: Any) -> None:
    entries = lab.audit(since)
    assert any(e.event == event and all(e.data.get(k) == v for k, v in match.items()) for e in entries), \
        f"no {event} {match} in {[(e.event, e.data) for e in entries]}"
    assert not [e for e in entries if e.event == "signature.created"]


# ------------------------------------------------------------------ tokens, transactions, consent


def test_sad_of_one_transaction_cannot_sign_another_document(lab: Lab) -> None:
    """Signer A's consent (the SAD bound to A's digest) reused for signer B's document."""
    token, _ = _sad(lab, b"document of signer A")
    since = lab.audit_count()
    _refused(lab.sign_doc(token, hashlib.sha256(b"document of signer B").digest()), 400, "invalid_request")
    _audited(lab, since, "sad.refused")


class _AtConsent(Exception):
    """Stops a browser walk at the consent page (the form is not submitted)."""


def _consent_url(browser: BrowserAgent, url: str) -> str:
    """Walk ``url`` up to the consent page and return its URL, leaving the form unsubmitted."""
    seen: list[str] = []

    def stop(consent: str) -> None:
        seen.append(consent)
        raise _AtConsent

    with pytest.raises(_AtConsent):
        browser.walk(url, on_consent=stop)
    return seen[0]


def test_consent_page_of_another_browser_is_refused(lab: Lab) -> None:
    """Signer B's browser opening signer A's consent page (transaction id leaked): no cookie, refused."""
    _, _, url = _push(lab, hashlib.sha256(b"consent theft").digest())
    seen: list[str] = []
    victim = BrowserAgent(lab.eco)
    victim.walk(url, stop_at=lab.eco.redirect_uri, on_consent=seen.append, decision="decline")
    # Replay the victim's consent URL from another browser: the transaction is bound to the first.
    _, _, url2 = _push(lab, hashlib.sha256(b"consent theft 2").digest())
    consent_url = _consent_url(BrowserAgent(lab.eco), url2)
    since = lab.audit_count()
    attacker = requests.Session()
    page = attacker.get(consent_url, timeout=10, headers={"Accept": "application/json"})
    _refused(page, 403, "access_denied")
    posted = attacker.post(consent_url, data={"decision": "approve", "csrf_token": "x"}, timeout=10,
                           headers={"Accept": "application/json"}, allow_redirects=False)
    _refused(posted, 403, "access_denied")
    _audited(lab, since, "browser.refused")


def test_consent_form_csrf(lab: Lab) -> None:
    """The right browser but a forged form (no or a wrong CSRF token): refused, audited."""
    _, _, url = _push(lab, hashlib.sha256(b"csrf").digest())
    browser = BrowserAgent(lab.eco)
    consent_url = _consent_url(browser, url)
    since = lab.audit_count()
    for forged in ({"decision": "approve"}, {"decision": "approve", "csrf_token": "forged"}):
        answer = browser.session.post(consent_url, data=forged, timeout=10, allow_redirects=False,
                                      headers={"Accept": "application/json"})
        _refused(answer, 403, "access_denied")
    _audited(lab, since, "consent.refused")


def test_authorization_code_replay_revokes_the_sad(lab: Lab) -> None:
    digest = hashlib.sha256(b"code replay").digest()
    client, verifier, url = _push(lab, digest)
    code = _code(lab, url)
    token = client.exchange_code(code, lab.eco.redirect_uri, verifier).access_token
    since = lab.audit_count()
    replay = requests.post(f"{lab.urls['signer']}/oauth2/token", timeout=10,
                           data={"grant_type": "authorization_code", "code": code, "redirect_uri": lab.eco.redirect_uri,
                                 "code_verifier": verifier, **lab.eco.portal_authentication()})
    _refused(replay, 400, "invalid_grant")
    _audited(lab, since, "token.refused", reason="authorization code replayed")
    _refused(lab.sign_doc(token, digest), 401, "invalid_token")


def test_another_client_cannot_redeem_the_code(lab: Lab) -> None:
    """Client B (unregistered, or without the portal's key) redeeming client A's code."""
    digest = hashlib.sha256(b"stolen code").digest()
    _, verifier, url = _push(lab, digest)
    code = _code(lab, url)
    since = lab.audit_count()
    for auth in (("client-b", "secret-b"), (lab.eco.portal_client_id, "guessed")):
        answer = requests.post(f"{lab.urls['signer']}/oauth2/token", timeout=10, auth=auth, data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": lab.eco.redirect_uri, "code_verifier": verifier})
        _refused(answer, 401, "invalid_client")
    _audited(lab, since, "client.refused")


def test_service_scope_token_cannot_sign_documents(lab: Lab) -> None:
    client = lab.eco.signer_client()
    verifier = secrets.token_urlsafe(48)
    pushed = client.push_authorization_request(
        redirect_uri=lab.eco.redirect_uri, state="s", code_challenge=_b64url(hashlib.sha256(verifier.encode()).digest()),
        qualifier="eu_eidas_qes", scope="service", num_signatures=1, login_hint=HINT)
    service_token = client.exchange_code(_code(lab, pushed.authorize_url), lab.eco.redirect_uri, verifier).access_token
    since = lab.audit_count()
    _refused(lab.sign_doc(service_token, hashlib.sha256(b"x").digest()), 401, "invalid_token")
    _audited(lab, since, "token.refused")
    # Revoking the service token ends the one-time credential at once: its key is destroyed.
    assert lab.hsm_keys() == 2
    client.revoke(service_token)
    assert lab.hsm_keys() == 0
    _audited(lab, since, "key.destroyed")


def test_transaction_ids_cannot_be_guessed_or_enumerated(lab: Lab) -> None:
    since = lab.audit_count()
    for guess in ("tx-000000000000000000000001", "tx-" + secrets.token_hex(12), "../../etc/passwd"):
        page = requests.get(f"{lab.urls['signer']}/oauth2/consent/{guess}", timeout=10, headers={"Accept": "application/json"})
        assert page.status_code in (403, 404)
        assert page.json()["error"] in ("not_found", "access_denied")
    portal = requests.get(f"{lab.urls['portal']}/api/v1/transactions/tx-{secrets.token_hex(8)}", timeout=10,
                          auth=lab.eco.partner_api)
    assert portal.status_code == 404
    _audited(lab, since, "consent.refused")
    # Ids are long random values: 96 bits at the signer, 64 bits at the portal.
    result, _ = partner_flow(lab.eco, b"id entropy")
    assert len(result.signer_transaction_id or "") == len("tx-") + 24


# ------------------------------------------------------------------ redirects, framing, injection


def test_open_redirect_through_redirect_uri_is_refused(lab: Lab) -> None:
    evil = "https://evil.example/steal"
    since = lab.audit_count()
    par = requests.post(f"{lab.urls['signer']}/oauth2/par", timeout=10, data={
                            **lab.eco.portal_authentication(), "response_type": "code", "redirect_uri": evil,
                            "state": "s", "code_challenge": "a" * 43, "code_challenge_method": "S256",
                            "authorization_details": json.dumps([{"type": "credential", "signatureQualifier": "eu_eidas_qes",
                                                                  "documentDigests": [{"hash": base64.b64encode(b"\0" * 32).decode(),
                                                                                       "label": "x"}],
                                                                  "hashAlgorithmOID": SHA256}])})
    _refused(par, 400, "invalid_request")
    _audited(lab, since, "par.refused")
    direct = requests.get(f"{lab.urls['signer']}/oauth2/authorize?" + urlencode({
        "client_id": lab.eco.portal_client_id, "redirect_uri": evil, "response_type": "code", "scope": "service",
        "code_challenge": "a" * 43, "code_challenge_method": "S256"}), timeout=10, allow_redirects=False)
    assert direct.status_code == 400 and "evil.example" not in direct.headers.get("Location", "")
    idp = requests.get(f"{lab.urls['idp']}/authorize?" + urlencode({
        "client_id": "signlab-signer", "redirect_uri": evil, "response_type": "code", "scope": "openid",
        "nonce": "n", "code_challenge": "a" * 43, "code_challenge_method": "S256"}), timeout=10, allow_redirects=False)
    assert idp.status_code in (400, 401) and "Location" not in idp.headers


def test_login_and_consent_pages_cannot_be_framed(lab: Lab) -> None:
    _, _, url = _push(lab, hashlib.sha256(b"framing").digest(), hint="")
    browser = BrowserAgent(lab.eco)
    login = browser.walk(url)  # no person in the hint: the IdP shows its login page
    assert login.status_code == 200 and "csrf_token" in login.text
    pages = [login]
    _, _, url2 = _push(lab, hashlib.sha256(b"framing 2").digest())
    pages.append(BrowserAgent(lab.eco).walk(url2, on_consent=lambda u: pages.append(requests.get(u, timeout=5))))
    for name in ("portal", "signer", "ca", "idp"):
        pages.append(requests.get(lab.urls[name] + "/", timeout=10))
    for page in pages:
        assert page.headers.get("X-Frame-Options") == "DENY", page.url
        assert "frame-ancestors 'none'" in page.headers.get("Content-Security-Policy", ""), page.url


def test_idp_login_form_csrf(lab: Lab) -> None:
    _, _, url = _push(lab, hashlib.sha256(b"idp csrf").digest(), hint="")
    browser = BrowserAgent(lab.eco)
    login = browser.walk(url)
    assert login.status_code == 200
    for forged in ({"action": "person", "person": "kari-nordmann"},
                   {"action": "person", "person": "kari-nordmann", "csrf_token": "forged"}):
        answer = browser.session.post(login.url, data=forged, timeout=10, allow_redirects=False,
                                      headers={"Accept": "application/json"})
        assert answer.status_code == 400 and answer.json()["error"] == "invalid_request"
        assert "CSRF" in answer.json()["error_description"]
    # A login started in one browser cannot be finished in another.
    stranger = requests.post(login.url, data={"action": "cancel"}, timeout=10, headers={"Accept": "application/json"})
    assert stranger.status_code in (400, 404)


def test_brute_force_of_the_one_time_code_ends_the_login(lab: Lab) -> None:
    _, _, url = _push(lab, hashlib.sha256(b"brute force").digest(), hint="")
    since = lab.audit_count()
    browser = BrowserAgent(lab.eco)
    page = browser.walk(url)
    csrf = _csrf(page.text)
    step = browser.session.post(page.url, data={"csrf_token": csrf, "action": "person", "person": "kari-nordmann"}, timeout=10)
    step = browser.session.post(step.url, data={"csrf_token": csrf, "action": "means", "means": "no-bankid"}, timeout=10)
    answer = None
    for attempt in range(3):
        answer = browser.session.post(step.url, data={"csrf_token": csrf, "action": "otp", "otp": "wrong"}, timeout=10,
                                      allow_redirects=False)
        if attempt < 2:
            assert answer.status_code == 400 and "attempt(s) left" in answer.text
    assert answer is not None and answer.status_code in (302, 303)
    back = browser.walk(answer.headers["Location"], stop_at=lab.eco.redirect_uri)
    params = parse_qs(urlsplit(back).query)  # type: ignore[arg-type]
    assert params["error"] == ["access_denied"] and "3 times" in params["error_description"][0]
    _audited(lab, since, "authentication.refused")
    # The login request is spent: a fourth guess is refused outright.
    late = browser.session.post(step.url, data={"csrf_token": csrf, "action": "otp", "otp": "000000"}, timeout=10,
                                headers={"Accept": "application/json"}, allow_redirects=False)
    assert late.status_code in (400, 404)


def _csrf(page: str) -> str:
    import re

    match = re.search(r'name="csrf_token"\s+value="([^"]+)"', page)
    assert match, page[:500]
    return match.group(1)


def test_script_injection_is_escaped_everywhere(lab: Lab) -> None:
    script = "<script>alert(1)</script>"
    # Document label on the signer's consent page.
    _, _, url = _push(lab, hashlib.sha256(b"xss").digest(), label=f"{script}.pdf")
    pages: list[requests.Response] = []
    BrowserAgent(lab.eco).walk(url, on_consent=lambda u: pages.append(requests.get(u, timeout=5)), decision="decline")
    # File name and a clientData-like field at the portal; the review page, the outcome page and the API.
    created = requests.post(f"{lab.urls['portal']}/api/v1/sign-requests", timeout=30, auth=lab.eco.partner_api, json={
        "documents": [{"name": f"{script}.txt", "content": base64.b64encode(b"x").decode()}],
        "qualifier": "qes", "format": "cades", "level": "B-B", "login_hint": HINT,
        "signer_name": script, "clientData": script}).json()
    pages.append(requests.get(created["review_url"], timeout=10))
    pages.append(BrowserAgent(lab.eco).walk(created["review_url"]))  # type: ignore[arg-type]
    # A typed "national identifier" echoed on the IdP login page.
    _, _, url3 = _push(lab, hashlib.sha256(b"xss idp").digest(), hint="")
    browser = BrowserAgent(lab.eco)
    login = browser.walk(url3)
    pages.append(browser.session.post(login.url, data={"csrf_token": _csrf(login.text), "action": "person",
                                                       "identifier": script}, timeout=10))
    # An error page that echoes a parameter.
    pages.append(requests.get(f"{lab.urls['signer']}/oauth2/authorize", params={"client_id": script}, timeout=10,
                              headers={"Accept": "text/html"}))
    for page in pages:
        assert script not in page.text, page.url
    assert any("&lt;script&gt;" in p.text for p in pages)


def test_path_traversal_in_uploaded_file_names(lab: Lab) -> None:
    name = "../../../../etc/passwd.txt"
    created = requests.post(f"{lab.urls['portal']}/api/v1/sign-requests", timeout=30, auth=lab.eco.partner_api, json={
        "documents": [{"name": name, "content": base64.b64encode(b"traversal").decode()}],
        "qualifier": "qes", "format": "cades", "level": "B-B", "login_hint": HINT}).json()
    BrowserAgent(lab.eco).walk(created["review_url"])
    status = requests.get(f"{lab.urls['portal']}/api/v1/transactions/{created['transaction_id']}", timeout=10,
                          auth=lab.eco.partner_api).json()
    document = status["documents"][0]
    assert "/" not in document["label"] and ".." not in document["label"].strip(".")
    download = requests.get(f"{lab.urls['portal']}/api/v1/transactions/{created['transaction_id']}/documents/0", timeout=10,
                            auth=lab.eco.partner_api)
    assert "/" not in download.headers.get("Content-Disposition", "").split("filename", 1)[-1]
    assert not list(lab.runtime.data_dir.rglob("passwd*"))


# ------------------------------------------------------------------ bodies


@pytest.mark.parametrize(("service", "path"), [("signer", "/csc/v2/signatures/signDoc"), ("signer", "/oauth2/par"),
                                          ("ca", "/api/v1/certificates"), ("portal", "/api/v1/sign-requests"),
                                          ("idp", "/token")])
def test_oversized_bodies_are_refused(lab: Lab, service: str, path: str) -> None:
    body = b"{" + b" " * (40 * 1024 * 1024) + b"}"
    auth = lab.eco.partner_api if service == "portal" else None  # the portal's API answers anonymous callers 401 first
    try:
        answer = requests.post(lab.urls[service] + path, data=body, timeout=30, auth=auth,
                               headers={"Content-Type": "application/json", "Accept": "application/json"})
    except requests.ConnectionError:
        return  # the server closed the connection on the oversized body: refused, nothing processed
    # The CSC API checks the bearer token before it reads a body (401 before 400, #19): an
    # anonymous oversized signDoc is refused unread with 401 — or 413 if the body is read first.
    refused = {401, 413} if path.startswith("/csc/") else {413}
    assert answer.status_code in refused, answer.text[:200]


@pytest.mark.parametrize(("service", "path"), [("signer", "/csc/v2/signatures/signDoc"), ("signer", "/csc/v1/credentials/info"),
                                          ("ca", "/api/v1/certificates"), ("portal", "/api/v1/sign-requests"),
                                          ("portal", "/api/v1/validate")])
def test_deeply_nested_json_is_a_clear_400(lab: Lab, service: str, path: str) -> None:
    depth = 100_000
    body = b"[" * depth + b"]" * depth
    answer = requests.post(lab.urls[service] + path, data=body, timeout=30,
                           auth=lab.eco.partner_api if service == "portal" else None,
                           headers={"Content-Type": "application/json", "Accept": "application/json",
                                    **({} if service == "portal" else {"Authorization": "Bearer x"})})
    assert answer.status_code in (400, 401, 413), answer.text[:300]
    assert answer.json()["error"] in ("invalid_request", "invalid_token")


# ------------------------------------------------------------------ malformed JWTs


def _forge(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    def enc(value: Any) -> str:
        return _b64url(json.dumps(value).encode())

    return f"{enc(header)}.{enc(claims)}.{_b64url(signature)}"


def _hs256_with_public_key(header: dict[str, Any], claims: dict[str, Any], public_pem: bytes) -> str:
    """The classic key-confusion forgery: HMAC-SHA256 keyed with the verifier's public key."""
    import hmac

    signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64url(signature)}"


def _public_pem(jwks_url: str) -> tuple[str, bytes]:
    from cryptography.hazmat.primitives import serialization

    key = requests.get(jwks_url, timeout=10).json()["keys"][0]
    pem = ECKey.import_key(key).as_pem(private=False)
    der = serialization.load_pem_public_key(pem)
    return key["kid"], der.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def _forgeries(kid: str, pem: bytes, claims: dict[str, Any]) -> dict[str, str]:
    rogue = ECKey.generate_key("P-256")
    return {
        "alg none": _forge({"alg": "none", "typ": "JWT"}, claims),
        "alg none with kid": _forge({"alg": "none", "kid": kid}, claims),
        "HS256 keyed with the public key": _hs256_with_public_key({"alg": "HS256", "kid": kid}, claims, pem),
        "HS256 keyed with the public key without kid": _hs256_with_public_key({"alg": "HS256"}, claims, pem),
        "wrong kid (rogue key)": jwt.encode({"alg": "ES256", "kid": "rogue-" + kid[:8]}, claims, rogue),
        "known kid, rogue key": jwt.encode({"alg": "ES256", "kid": kid}, claims, rogue),
        "garbage": "not.a.jwt",
    }


def test_forged_id_tokens_are_refused_by_the_verifier_the_signer_and_ca_use(lab: Lab) -> None:
    """ID tokens: the signer (step 5) and the CA (step 7) verify with shared.identity.verify_id_token."""
    from shared.clients.idp import IdpClient

    idp = IdpClient(lab.urls["idp"])
    discovery = idp.discovery()
    kid, pem = _public_pem(discovery.jwks_uri)
    now = int(time.time())
    claims = {"iss": discovery.issuer, "sub": "x", "aud": "signlab-signer", "iat": now, "exp": now + 300,
              "auth_time": now, "nonce": "n", "acr": "http://eidas.europa.eu/LoA/high"}
    for name, token in _forgeries(kid, pem, claims).items():
        with pytest.raises(IdentityEvidenceError):
            verify_id_token(token, idp.jwks(), issuer=discovery.issuer, audience="signlab-signer", nonce="n")
        assert name


def test_forged_client_assertions_and_id_tokens_at_the_ca(lab: Lab) -> None:
    """Client assertions (caller authentication) and ID tokens (evidence) at the CA's issuance API."""
    from asn1crypto import csr as acsr
    from asn1crypto import keys as akeys
    from cryptography import x509 as cx509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec as cec

    private = cec.generate_private_key(cec.SECP256R1())
    csr = cx509.CertificateSigningRequestBuilder().subject_name(cx509.Name([])).sign(private, hashes.SHA256())
    csr_b64 = base64.b64encode(csr.public_bytes(serialization.Encoding.DER)).decode()
    issuance = f"{lab.urls['ca']}/api/v1/certificates"
    kid, pem = _public_pem(f"{lab.urls['signer']}/.well-known/jwks.json")
    now = int(time.time())
    assertion_claims = {"iss": "signlab-signer", "sub": "signlab-signer", "aud": issuance, "iat": now, "exp": now + 60,
                        "jti": secrets.token_hex(8)}
    before = len(lab.ca_log())
    for name, assertion in _forgeries(kid, pem, assertion_claims).items():
        answer = requests.post(issuance, timeout=10, json={
            "csr": csr_b64, "profile": "qes", "id_token": "x.y.z", "transaction_id": "tx-forged",
            "client_assertion_type": CLIENT_ASSERTION_TYPE, "client_assertion": assertion})
        assert answer.status_code == 401 and answer.json()["error"] == "invalid_client", (name, answer.text)
    # A genuine caller (the signer's real key) with a forged ID token: policy refusal at step 7.
    from services.registry import entry
    from services.signer.settings import SignerSettings
    from shared.jose_keys import load_or_create_ec_key

    signer = SignerSettings.from_env(lab.runtime.service_environment(entry("signer")))
    key = load_or_create_ec_key(signer.client_assertion_key_path)
    idp_kid, idp_pem = _public_pem(requests.get(f"{lab.urls['idp']}/.well-known/openid-configuration", timeout=10).json()["jwks_uri"])
    evidence = {"iss": lab.urls["idp"], "sub": "x", "aud": "signlab-signer", "iat": now, "exp": now + 300,
                "auth_time": now, "acr": "http://eidas.europa.eu/LoA/high"}
    for name, id_token in _forgeries(idp_kid, idp_pem, evidence).items():
        answer = requests.post(issuance, timeout=10, json={
            "csr": csr_b64, "profile": "qes", "id_token": id_token, "transaction_id": "tx-forged",
            "client_assertion_type": CLIENT_ASSERTION_TYPE,
            "client_assertion": create_client_assertion(key, client_id="signlab-signer", audience=issuance)})
        assert answer.status_code in (400, 403) and "certificate" not in answer.json(), (name, answer.text)
    refusals = [e for e in lab.ca_log()[before:] if "refus" in e.event]
    assert len(refusals) >= 2 * 6
    assert not [e for e in lab.ca_log()[before:] if e.event.endswith("issued")]
    _ = (acsr, akeys, jws)


def test_forged_sads_are_refused(lab: Lab) -> None:
    """The SAD is an opaque random token bound in the signer's database, never a JWT it would parse:
    JWT-shaped forgeries are unknown tokens."""
    kid, pem = _public_pem(f"{lab.urls['signer']}/.well-known/jwks.json")
    since = lab.audit_count()
    claims = {"sub": "x", "digests": ["00" * 32], "exp": int(time.time()) + 60}
    digest = hashlib.sha256(b"forged sad").digest()
    for token in _forgeries(kid, pem, claims).values():
        _refused(lab.sign_doc(token, digest), 401, "invalid_token")
        sign_hash = requests.post(f"{lab.urls['signer']}/csc/v1/signatures/signHash", timeout=10,
                                  headers={"Authorization": f"Bearer {token}"},
                                  json={"credentialID": "cred-x", "SAD": token, "hash": [base64.b64encode(digest).decode()],
                                        "signAlgo": "1.2.840.10045.4.3.2"})
        _refused(sign_hash, 401, "invalid_token")
    _audited(lab, since, "token.refused")


# ------------------------------------------------------------------ admin and fault injection


def test_admin_and_fault_injection_endpoints_need_authentication(lab: Lab) -> None:
    failures = f"{lab.urls['idp']}/admin/failures"
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic eDp5"}):
        answer = requests.post(failures, json={"name": "wrong-nonce"}, headers=headers, timeout=10)
        assert answer.status_code == 401 and answer.json()["error"] == "invalid_token"
        assert requests.post(f"{lab.urls['idp']}/admin/keys/rotate", headers=headers, timeout=10).status_code == 401
    token = lab.secrets["SIGNLAB_IDP_ADMIN_TOKEN"]
    ok = requests.get(failures, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert ok.status_code == 200
    serial = partner_flow(lab.eco, b"revocation target")[0].certificate_serial
    revoke = f"{lab.urls['ca']}/api/v1/certificates/{serial}/revoke"
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        answer = requests.post(revoke, json={"reason": "keyCompromise"}, headers=headers, timeout=10)
        assert answer.status_code == 401
    assert requests.get(f"{lab.urls['ca']}/api/v1/certificates/{serial}", timeout=10).json()["status"] == "valid"


def test_idp_admin_api_is_absent_unless_enabled(tmp_path: Any) -> None:
    """A separate IdP app with the default settings: /admin/* does not exist (404), even with the token."""
    from services.idp import create_app
    from services.idp.settings import IdpSettings
    from shared.testing import LiveServer, random_secrets

    settings = IdpSettings(data_dir=tmp_path, **random_secrets(IdpSettings))
    assert settings.admin_api_enabled is False
    from services.idp.provision import provision

    provision(settings)
    with LiveServer(create_app(settings)) as server:
        token = settings.admin_token.get_secret_value()
        for method, path in (("GET", "/admin/failures"), ("POST", "/admin/failures"), ("POST", "/admin/keys/rotate")):
            answer = requests.request(method, server.url + path, headers={"Authorization": f"Bearer {token}"}, timeout=10)
            assert answer.status_code == 404


def test_signer_and_ca_fault_injection_is_absent_in_a_default_deployment(lab: Lab) -> None:
    """The lab runs the signer and the CA with default settings: their ``/admin/faults`` do not
    exist (404), even with the right admin token; nothing is armed, nothing is audited."""
    since, ca_before = lab.audit_count(), len(lab.ca_log())
    for service, variable in (("signer", "SIGNLAB_SIGNER_ADMIN_TOKEN"), ("ca", "SIGNLAB_CA_ADMIN_TOKEN")):
        for token in (lab.secrets[variable], "wrong", None):
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            for method, path in (("GET", "/admin/faults"), ("POST", "/admin/faults"), ("DELETE", "/admin/faults"),
                                 ("DELETE", "/admin/faults/1")):
                answer = requests.request(method, f"{lab.urls[service]}{path}", json={"name": "hsm-sign", "count": None},
                                          headers=headers, timeout=10)
                assert answer.status_code == 404, (service, method, path, answer.text[:200])
                assert answer.json()["error"] == "not_found"
    assert not [e for e in lab.audit(since) if e.event.startswith("fault.")]
    assert not [e for e in lab.ca_log()[ca_before:] if e.event.startswith("fault.")]
    # and the flow is untouched: a signature is made as usual
    assert partner_flow(lab.eco, b"no faults here")[0].certificate_serial


def test_signer_and_ca_fault_apis_need_the_admin_token_when_enabled(tmp_path: Any, signer_settings: Any) -> None:
    """Enabled (as by ``signlab up --fault-injection``), every ``/admin/faults`` call without the
    exact bearer token is a 401 ``invalid_token`` and arms nothing."""
    from services.ca import create_app as create_ca
    from services.ca.provision import provision as provision_ca
    from services.ca.settings import CaSettings
    from services.signer import create_app as create_signer
    from shared.testing import random_secrets

    ca_settings = CaSettings(data_dir=tmp_path / "ca", faults_enabled=True, **random_secrets(CaSettings))
    provision_ca(ca_settings)
    signer = signer_settings.model_copy(update={"state_dir": tmp_path / "signer", "faults_enabled": True,
                                                "sweep_interval_seconds": 0})
    apps = {"ca": (create_ca(ca_settings), ca_settings.admin_token.get_secret_value(), "wrong-key"),
            "signer": (create_signer(signer), signer.admin_token.get_secret_value(), "hsm-sign")}
    for service, (app, token, fault) in apps.items():
        client = app.test_client()
        for index, header in enumerate((None, "Bearer wrong", f"Bearer {token}x", f"Basic {token}", token,
                                        f"Bearer {token[:-1]}")):
            headers = {"Authorization": header} if header else {}
            # One address per variant: wrong tokens are throttled per address (shared.guard).
            caller = {"REMOTE_ADDR": f"10.9.0.{index + 1}"}
            for method, path in (("GET", "/admin/faults"), ("POST", "/admin/faults"), ("DELETE", "/admin/faults"),
                                 ("DELETE", "/admin/faults/1")):
                answer = client.open(path, method=method, json={"name": fault}, headers=headers, environ_base=caller)
                assert answer.status_code == 401 and answer.get_json()["error"] == "invalid_token", (service, header)
        good = {"Authorization": f"Bearer {token}"}
        assert client.get("/admin/faults", headers=good).get_json()["armed"] == []  # the refused calls armed nothing
        assert client.post("/admin/faults", json={"name": fault}, headers=good).status_code == 201
        assert client.delete("/admin/faults", headers=good).get_json() == {"removed": 1}
