"""Secrets hygiene: seeded PINs, client secrets and admin tokens — and private key material — never
appear in any log, trace, audit file, page or error message.

The shared ecosystem (:func:`lab`) was started with known secret values (``seeded-…``, see
:func:`testkit.reliability_lab.seeded_secrets`). By the time this module runs (files run in name order),
the adversarial and load tests have driven hundreds of flows and every refusal path through it;
this test adds a representative set of its own (every format and level, IdP failures, declined
consent, wrong client secrets, admin calls with the real tokens) and then searches:

* every file under the data directory — service logs, ``traces/``, audit and issuance logs,
  SQLite databases, reports — except the secret store itself (``secrets.env``), the HSM token
  (encrypted objects) and the private-key files (mode 0600; their content is what we search for);
* every page and error message the agent received.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from signlab.load import BrowserAgent, FlowFailed, partner_flow
from testkit.reliability_lab import Lab

pytestmark = [pytest.mark.processes, pytest.mark.hsm]

HINT = "kari-nordmann@no-bankid"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _drive(lab: Lab) -> list[str]:
    """Success and failure paths with the real secrets in play; every page and error text."""
    seen: list[str] = []
    portal = lab.urls["portal"]
    samples = requests.get(f"{portal}/api/v1/samples", auth=lab.eco.partner_api, timeout=10).json()
    pdf = next(s["name"] for s in (samples if isinstance(samples, list) else samples["samples"]) if str(s["name"]).endswith(".pdf"))
    requests_ = [
        {"documents": [{"sample": pdf}], "qualifier": "qes", "format": "pades", "level": "B-LTA"},
        {"documents": [{"name": "a.json", "content": base64.b64encode(b'{"a": 1}').decode()}],
         "qualifier": "ades", "format": "jades", "level": "B-LT", "login_hint": "siri-substans@no-minid"},
        {"documents": [{"name": "c.txt", "content": base64.b64encode(b"c").decode()}], "format": "cades", "level": "B-T"},
    ]
    hints = [HINT, "siri-substans@no-minid", HINT, f"{HINT}!wrong-nonce", f"{HINT}!cancel", f"{HINT}!unknown-key",
             "siri-substans@no-minid"]  # the last: QES refused for a substantial eID
    for index, hint in enumerate(hints):
        body = dict(requests_[index % len(requests_)])
        body.setdefault("login_hint", hint)
        if index >= 3:
            body["login_hint"] = hint
            body["qualifier"] = "qes"
        created = requests.post(f"{portal}/api/v1/sign-requests", auth=lab.eco.partner_api, json=body, timeout=60)
        seen.append(created.text)
        if created.status_code != 201:
            continue
        final = BrowserAgent(lab.eco).walk(created.json()["review_url"])
        seen.append(final.text if isinstance(final, requests.Response) else final)
        tx = created.json()["transaction_id"]
        seen.append(requests.get(f"{portal}/api/v1/transactions/{tx}", auth=lab.eco.partner_api, timeout=10).text)
        seen.append(requests.get(f"{portal}/transactions/{tx}", timeout=10).text)
    # Declined consent, wrong client secrets, admin calls with the real and wrong tokens.
    client = lab.eco.signer_client()
    verifier = secrets.token_urlsafe(48)
    pushed = client.push_authorization_request(
        redirect_uri=lab.eco.redirect_uri, state="s", code_challenge=_b64url(hashlib.sha256(verifier.encode()).digest()),
        qualifier="eu_eidas_qes", documents=[(hashlib.sha256(b"declined").digest(), "d.txt")], login_hint=HINT)
    seen.append(str(BrowserAgent(lab.eco).walk(pushed.authorize_url, stop_at=lab.eco.redirect_uri, decision="decline")))
    for secret in (lab.secrets["SIGNLAB_PORTAL_API_CLIENT_SECRET"], ""):
        seen.append(requests.post(f"{lab.urls['signer']}/oauth2/par", auth=(lab.eco.portal_client_id, secret),
                                  data={"response_type": "code"}, timeout=10).text)
    admin = lab.secrets["SIGNLAB_IDP_ADMIN_TOKEN"]
    seen.append(requests.get(f"{lab.urls['idp']}/admin/failures", headers={"Authorization": f"Bearer {admin}"}, timeout=10).text)
    seen.append(requests.post(f"{lab.urls['idp']}/admin/failures", json={"name": "wrong-audience", "count": 1},
                              headers={"Authorization": f"Bearer {admin}"}, timeout=10).text)
    try:
        partner_flow(lab.eco, b"armed failure")
    except FlowFailed as exc:
        seen.append(str(exc))
    serial = partner_flow(lab.eco, b"to revoke")[0].certificate_serial
    seen.append(requests.post(f"{lab.urls['ca']}/api/v1/certificates/{serial}/revoke", json={"reason": "superseded"},
                              headers={"Authorization": f"Bearer {lab.secrets['SIGNLAB_CA_ADMIN_TOKEN']}"}, timeout=10).text)
    seen.append(requests.post(f"{lab.urls['ca']}/api/v1/certificates/{serial}/revoke", json={"reason": "superseded"},
                              headers={"Authorization": f"Bearer {lab.secrets['SIGNLAB_CA_ADMIN_TOKEN']}x"}, timeout=10).text)
    for name in ("idp", "ca", "signer", "portal"):
        for path in ("/", "/role", "/healthz", "/no-such-page"):
            seen.append(requests.get(lab.urls[name] + path, timeout=10).text)
    seen.append(requests.get(f"{lab.urls['idp']}/debugger", timeout=10).text)
    seen.append(requests.get(f"{lab.urls['ca']}/issuance-log", timeout=10).text)
    return seen


def _private_key_fingerprints(data_dir: Path) -> dict[str, list[str]]:
    """For each private key file: its scalar / exponent in the textual forms a leak would take."""
    found: dict[str, list[str]] = {}
    for path in data_dir.rglob("*"):
        if not path.is_file() or path.stat().st_size > 20_000:
            continue
        try:
            raw = path.read_bytes()
        except OSError:
            continue
        if b"PRIVATE KEY-----" not in raw:
            continue
        key = serialization.load_pem_private_key(raw, password=None)
        if isinstance(key, ec.EllipticCurvePrivateKey):
            value = key.private_numbers().private_value
        elif isinstance(key, rsa.RSAPrivateKey):
            value = key.private_numbers().d
        else:
            continue
        size = (value.bit_length() + 7) // 8
        as_bytes = value.to_bytes(size, "big")
        found[str(path)] = [format(value, "x"), _b64url(as_bytes), base64.b64encode(as_bytes).decode(), str(value)]
    return found


def test_no_secret_or_private_key_anywhere(lab: Lab) -> None:
    pages = _drive(lab)
    data_dir = lab.runtime.data_dir
    needles: dict[str, str] = {}
    for variable, value in lab.secrets.items():
        needles[variable] = value
    basic = base64.b64encode(f"{lab.eco.partner_api[0]}:{lab.eco.partner_api[1]}".encode()).decode()
    needles["partner API Basic header"] = basic
    keys = _private_key_fingerprints(data_dir)
    assert len(keys) >= 3, keys.keys()  # CA keys, IdP signing key, signer assertion key at least
    key_needles = {f"{path} ({form})": text for path, forms in keys.items() for form, text in
                   zip(("hex", "b64url", "b64", "decimal"), forms, strict=True) if len(text) >= 16}

    skipped = {data_dir / "secrets.env"}
    hits: list[str] = []
    searched = 0
    for path in sorted(data_dir.rglob("*")):
        if not path.is_file() or path in skipped or "hsm-tokens" in path.parts or str(path) in keys:
            continue
        content = path.read_bytes()
        searched += 1
        for label, needle in {**needles, **key_needles}.items():
            if needle.encode() in content:
                hits.append(f"{label} found in {path.relative_to(data_dir)}")
        if b"PRIVATE KEY-----" in content:
            hits.append(f"a PEM private key in {path.relative_to(data_dir)}")
    for index, page in enumerate(pages):
        for label, needle in {**needles, **key_needles}.items():
            if needle in page:
                hits.append(f"{label} found in page/error #{index}")
        if "PRIVATE KEY-----" in page:
            hits.append(f"a PEM private key in page/error #{index}")
    assert not hits, "\n".join(hits)
    # The search really covered what it claims.
    logs = {p.name for p in (data_dir / "logs").glob("*.log")}
    assert logs >= {"idp.log", "ca.log", "signer.log", "portal.log"}
    assert all((data_dir / "logs" / name).stat().st_size > 0 for name in logs)
    assert lab.eco.signer_audit.exists() and lab.eco.ca_issuance_log.exists()
    assert searched >= 10
    if (data_dir / "traces").exists():
        assert any((data_dir / "traces").rglob("*")), "the trace store is empty"
