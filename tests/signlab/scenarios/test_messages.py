"""Decoding and redaction of protocol messages; the consent-form parser."""

from __future__ import annotations

import base64
import json

from signlab.scenarios.messages import decode_jwt, error_page, parse_forms, redact, summarize_body, summarize_url


def _jwt(claims: dict[str, object]) -> str:
    enc = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()  # noqa: E731 - a one-line helper inside the test
    return f"{enc({'alg': 'ES256', 'kid': 'k1'})}.{enc(claims)}.c2lnbmF0dXJlc2lnbmF0dXJl"


def test_jwts_are_decoded_and_secrets_masked() -> None:
    token = _jwt({"iss": "http://idp", "acr": "http://eidas.europa.eu/LoA/high"})
    assert decode_jwt(token)["claims"]["acr"].endswith("high")  # type: ignore[index]
    assert decode_jwt("not.a.jwt") is None
    out = redact({"id_token": token, "client_secret": "s3cr3t-value", "code": "abcdefghijklmnop",
                  "authorization_details": '[{"type": "credential"}]', "nested": [{"password": "x"}]})
    assert out["id_token"]["jwt"]["header"]["kid"] == "k1" and "s3cr3t" not in json.dumps(out)
    assert out["client_secret"] == "***" and out["nested"][0]["password"] == "***"
    assert out["code"].startswith("abcdef…") and out["authorization_details"] == [{"type": "credential"}]


def test_urls_and_bodies() -> None:
    summary = summarize_url("http://h/cb?code=abcdefghijklmnopq&state=xyz&error=access_denied")
    assert summary["url"] == "http://h/cb" and summary["params"]["error"] == "access_denied"
    assert summarize_body("application/x-www-form-urlencoded", b"code_verifier=v&grant_type=authorization_code") == {
        "code_verifier": "***", "grant_type": "authorization_code"}
    assert summarize_body("application/pdf", b"%PDF-1.7") == "(application/pdf, 8 bytes)"


CONSENT = """<html><head><title>Consent</title></head><body>
<form method="post" action="/oauth2/consent/t1">
  <input type="hidden" name="csrf_token" value="tok&amp;en">
  <input type="checkbox" name="remember" value="1">
  <button type="submit" name="decision" value="approve">Sign</button>
  <button type="submit" name="decision" value="decline">Decline</button>
</form></body></html>"""


def test_consent_form_is_parsed_with_its_csrf_token() -> None:
    [form] = parse_forms(CONSENT)
    assert form["method"] == "post" and form["action"] == "/oauth2/consent/t1"
    assert form["fields"] == [("csrf_token", "tok&en")]
    assert form["buttons"] == [("decision", "approve"), ("decision", "decline")]


def test_error_pages_are_read() -> None:
    page = '<section class="card error"><h1>400 · <code>invalid_request</code></h1><p>step 2 (SCASP → SSASP): bad</p></section>'
    assert error_page(page) == ("invalid_request", "step 2 (SCASP → SSASP): bad")
    assert error_page("<p>fine</p>") is None
