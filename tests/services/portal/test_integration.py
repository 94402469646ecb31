"""The portal with the real IdP, CA and signing service (SoftHSM) on loopback: the person-signing flow.

A headless browser (requests) drives steps 1-10: the portal's JSON API creates the request, the
browser follows the redirects through the signing service and the IdP (``login_hint`` logs in
headlessly), submits the signer's consent form, and lands back on the portal's callback. The
ecosystem (``stack``) is the session-wide fixture of ``conftest.py``.
"""

from __future__ import annotations

import base64
import secrets
from pathlib import Path
from typing import Any

import pytest
import requests

pytestmark = pytest.mark.hsm

SAMPLES = Path(__file__).parents[3] / "services" / "portal" / "samples"
QES_HINT = "kari-nordmann@no-bankid"
ADES_HINT = "kari-nordmann@no-minid"


@pytest.mark.parametrize(("qualifier", "hint", "expected"), [("qes", QES_HINT, "QES"), ("ades", ADES_HINT, "AdES")])
def test_pades_b_lta_end_to_end(stack: Any, qualifier: str, hint: str, expected: str) -> None:
    tx = stack.sign([{"sample": "employment-contract.pdf"}], qualifier=qualifier, format="pades", level="B-LTA",
                    visible=True, signer_name="Kari Nordmann", login_hint=hint)
    assert tx["state"] == "completed", tx
    report = tx["documents"][0]["report"]
    assert report["indication"] == "TOTAL_PASSED", report
    assert report["signatures"][0]["level"] == "B-LTA"
    assert report["signatures"][0]["qualification"] == expected
    pdf = requests.get(tx["documents"][0]["download_url"], auth=stack.partner, timeout=30).content
    # Independent re-validation through the API of the uploaded bytes, then one changed byte.
    again = requests.post(f"{stack.portal_url}/api/v1/validate", auth=stack.partner,
                          json={"signed": base64.b64encode(pdf).decode()}, timeout=60).json()
    assert (again["indication"], again["signatures"][0]["qualification"]) == ("TOTAL_PASSED", expected)
    tampered = bytearray(pdf)
    tampered[tampered.find(b"Salary") + 1] ^= 1
    bad = requests.post(f"{stack.portal_url}/api/v1/validate", auth=stack.partner,
                        json={"signed": base64.b64encode(bytes(tampered)).decode()}, timeout=60).json()
    assert (bad["indication"], bad["sub_indication"]) == ("TOTAL_FAILED", "HASH_FAILURE")


@pytest.mark.parametrize("fmt", ["pades", "cades", "jades"])
@pytest.mark.parametrize("level", ["B-B", "B-T", "B-LT"])
def test_formats_and_levels_end_to_end(stack: Any, fmt: str, level: str) -> None:
    doc = {"pades": "loan-agreement.pdf", "cades": "meeting-minutes.txt", "jades": "payment-order.json"}[fmt]
    tx = stack.sign([{"sample": doc}], qualifier="qes", format=fmt, level=level, login_hint=QES_HINT)
    assert tx["state"] == "completed", tx
    sig = tx["documents"][0]["report"]["signatures"][0]
    assert (sig["indication"], sig["level"], sig["qualification"]) == ("TOTAL_PASSED", level, "QES"), sig


def test_batch_shares_one_authorization_and_signer_never_sees_documents(stack: Any) -> None:
    marker = b"SIGNLAB-CONFIDENTIAL-" + secrets.token_hex(8).encode()
    upload = base64.b64encode(b"Board resolution " + marker).decode()
    tx = stack.sign([{"sample": "employment-contract.pdf"}, {"sample": "loan-agreement.pdf"}],
                    qualifier="qes", format="pades", level="B-T", login_hint=QES_HINT)
    assert tx["state"] == "completed" and len(tx["documents"]) == 2
    assert all(d["report"]["indication"] == "TOTAL_PASSED" for d in tx["documents"])
    serials = {d["report"]["signatures"][0]["signer"]["certificate_serial"] for d in tx["documents"]}
    assert len(serials) == 1  # one eID login, one consent, one one-time certificate for both
    tx2 = stack.sign([{"name": "resolution.txt", "content": upload}], qualifier="ades", format="cades", level="B-B",
                     login_hint=ADES_HINT)
    assert tx2["state"] == "completed"
    # Everything the signing service stored (database, audit log) holds digests, never document bytes.
    state_dir = stack.signer_settings.state_dir
    assert state_dir is not None
    stored = b"".join(p.read_bytes() for p in Path(state_dir).rglob("*") if p.is_file())
    assert stored, "the signer stored nothing?"
    assert marker not in stored
    assert b"Salary: NOK" not in stored
    assert b"Board resolution" not in stored


def test_declined_consent_and_low_loa_qes_are_clear_and_nothing_is_signed(stack: Any) -> None:
    created = requests.post(f"{stack.portal_url}/api/v1/sign-requests", auth=stack.partner, timeout=60, json={
        "documents": [{"sample": "employment-contract.pdf"}], "qualifier": "qes", "login_hint": QES_HINT}).json()
    page = stack.browse(created["review_url"], approve=False)
    assert page.status_code == 403
    tx = requests.get(created["status_url"], auth=stack.partner, timeout=30).json()
    assert tx["state"] == "failed" and tx["error"] == "access_denied"
    assert all("download_url" not in d for d in tx["documents"])
    # QES requested, eID at LoA substantial/low: refused, never silently downgraded.
    created = requests.post(f"{stack.portal_url}/api/v1/sign-requests", auth=stack.partner, timeout=60, json={
        "documents": [{"sample": "employment-contract.pdf"}], "qualifier": "qes", "login_hint": ADES_HINT}).json()
    page = stack.browse(created["review_url"])
    assert page.status_code == 403
    tx = requests.get(created["status_url"], auth=stack.partner, timeout=30).json()
    assert tx["state"] == "failed" and tx["error"] == "access_denied", tx
    # A replayed callback for a finished transaction is refused.
    assert requests.get(f"{stack.portal_url}/sign/callback?state=nope&code=x", timeout=30).status_code == 400
