"""Redaction of payload summaries: known secret values never survive, decoded facts do."""

from __future__ import annotations

import base64
import json
import secrets

from joserfc import jwt
from joserfc.jwk import ECKey

from shared.tracing.instrument import sanitize_url
from shared.tracing.redact import Scrubber, summarize, summarize_authorization_header, to_json


def test_secrets_tokens_and_links_are_masked() -> None:
    secret, pin, code, verifier, handle = (secrets.token_urlsafe(24) for _ in range(5))
    key = ECKey.generate_key("P-256", parameters={"kid": "k1"})
    id_token = jwt.encode({"alg": "ES256", "kid": "k1"}, {"iss": "https://idp", "acr": "high", "nonce": "n-123456789"}, key)
    body = {
        "client_secret": secret, "hsm_user_pin": pin, "code": code, "code_verifier": verifier,
        "authorize_url": f"http://127.0.0.1:1/oauth2/authorize?client_id=p&request_uri=urn:x:{handle}",
        "id_token": id_token, "nested": {"password": "hunter2hunter2", "access_token": handle},
        "documents": [{"name": "a.pdf", "content": base64.b64encode(b"%PDF secret document").decode()}],
    }
    text = to_json(summarize(body))
    for value in (secret, pin, code, verifier, handle, id_token, "hunter2hunter2", "secret document",
                  base64.b64encode(b"%PDF secret document").decode()):
        assert value not in text
    decoded = json.loads(text)
    assert decoded["id_token"]["claims"]["acr"] == "high" and decoded["id_token"]["header"]["kid"] == "k1"
    assert decoded["authorize_url"].startswith("http://127.0.0.1:1/oauth2/authorize?client_id=p&request_uri=••••")
    assert decoded["documents"][0]["content"].startswith("20 bytes (sha256:")


def test_basic_and_bearer_headers() -> None:
    secret = secrets.token_urlsafe(16)
    basic = summarize_authorization_header("Basic " + base64.b64encode(f"signlab-portal:{secret}".encode()).decode())
    assert basic["client_id"] == "signlab-portal" and secret not in json.dumps(basic)
    token = secrets.token_urlsafe(32)
    assert token not in json.dumps(summarize_authorization_header(f"Bearer {token}"))


def test_scrubber_hides_known_values_and_their_url_encodings() -> None:
    scrub = Scrubber(["a+b/c=secret-value", "short"])
    assert scrub("x a+b/c=secret-value y a%2Bb%2Fc%3Dsecret-value z short") == \
        "x •••• (masked secret) y •••• (masked secret) z short"


def test_stored_urls_keep_only_harmless_query_values() -> None:
    assert sanitize_url("/sign/callback?code=abc&state=xyz&error=access_denied") == \
        "/sign/callback?code=…&state=…&error=access_denied"
    assert sanitize_url("/healthz") == "/healthz"


def test_digests_and_algorithms_are_readable() -> None:
    digest = base64.b64encode(bytes(range(32))).decode()
    summary = summarize({"hashes": [digest], "hashAlgorithmOID": "2.16.840.1.101.3.4.2.1"})
    assert summary == {"hashes": ["SHA-256 00010203 04050607 08090A0B 0C0D0E0F 10111213 14151617 18191A1B 1C1D1E1F"],
                       "hashAlgorithmOID": "2.16.840.1.101.3.4.2.1 (SHA-256)"}
