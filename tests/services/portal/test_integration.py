"""The portal with the real IdP, CA and signing service (SoftHSM) on loopback: the whole flow.

A headless browser (requests) drives steps 1-10: the portal's JSON API creates the request, the
browser follows the redirects through the signing service and the IdP (``login_hint`` logs in
headlessly), submits the signer's consent form, and lands back on the portal's callback.
"""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import pytest
import requests
from pydantic import SecretStr

from services.portal import create_app as create_portal
from services.portal.provision import provision as provision_portal
from services.portal.settings import PortalSettings
from services.signer.settings import SignerSettings
from shared.testing import LiveServer, free_port

pytestmark = pytest.mark.hsm

SAMPLES = Path(__file__).parents[3] / "services" / "portal" / "samples"
QES_HINT = "kari-nordmann@no-bankid"
ADES_HINT = "kari-nordmann@no-minid"


class Stack:
    """IdP, CA, signer and portal, each a real app on its own loopback port."""

    def __init__(self, tmp: Path, signer_settings: SignerSettings) -> None:
        from services.ca import create_app as create_ca
        from services.ca.provision import provision as provision_ca
        from services.ca.settings import CaSettings
        from services.idp import create_app as create_idp
        from services.idp.settings import IdpSettings
        from services.signer import create_app as create_signer
        from services.signer.provision import provision as provision_signer

        idp_port, ca_port, signer_port, portal_port = free_port(), free_port(), free_port(), free_port()
        idp_url, self.ca_url = f"http://127.0.0.1:{idp_port}", f"http://127.0.0.1:{ca_port}"
        signer_url, self.portal_url = f"http://127.0.0.1:{signer_port}", f"http://127.0.0.1:{portal_port}"
        idp_secret, portal_secret = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        idp_settings = IdpSettings(port=idp_port, data_dir=tmp / "idp", signer_client_secret=SecretStr(idp_secret),
                                   signer_redirect_uris=[f"{signer_url}/oauth2/idp-callback"],
                                   admin_token=SecretStr(secrets.token_urlsafe(16)), log_level="WARNING")
        ca_settings = CaSettings(port=ca_port, data_dir=tmp / "ca", idp_url=idp_url,
                                 signer_jwks_url=f"{signer_url}/.well-known/jwks.json",
                                 admin_token=SecretStr(secrets.token_urlsafe(16)), log_level="WARNING")
        provision_ca(ca_settings)
        self.signer_settings = signer_settings.model_copy(update={
            "port": signer_port, "state_dir": tmp / "signer-state", "idp_url": idp_url, "ca_url": self.ca_url,
            "idp_client_secret": SecretStr(idp_secret), "portal_client_secret": SecretStr(portal_secret),
            "portal_redirect_uris": [f"{self.portal_url}/sign/callback"], "log_level": "WARNING"})
        provision_signer(self.signer_settings)
        self.idp = LiveServer(create_idp(idp_settings), idp_port).start()
        self.ca = LiveServer(create_ca(ca_settings), ca_port).start()
        self.signer = LiveServer(create_signer(self.signer_settings), signer_port).start()
        portal_settings = PortalSettings(
            port=portal_port, data_dir=tmp / "portal", signer_url=signer_url, ca_url=self.ca_url, idp_url=idp_url,
            signer_client_secret=SecretStr(portal_secret), session_secret=SecretStr(secrets.token_urlsafe(32)),
            log_level="WARNING", transaction_ttl_seconds=300,
        )
        provision_portal(portal_settings)
        self.portal_app = create_portal(portal_settings)
        self.portal = LiveServer(self.portal_app, portal_port).start()

    def stop(self) -> None:
        for live in (self.portal, self.signer, self.ca, self.idp):
            live.stop()

    def sign(self, documents: list[dict[str, Any]], *, approve: bool = True, **options: Any) -> dict[str, Any]:
        """Create a request through the API, run the browser, return the transaction JSON."""
        created = requests.post(f"{self.portal_url}/api/v1/sign-requests", json={"documents": documents, **options}, timeout=60)
        assert created.status_code == 201, created.text
        body = created.json()
        browse(body["authorize_url"], self.portal_url, approve=approve)
        return requests.get(body["status_url"], timeout=30).json()


def browse(url: str, portal_url: str, *, approve: bool = True) -> requests.Response:
    """Follow redirects like a browser and submit consent, until the portal answers."""
    session = requests.Session()
    for _ in range(15):
        answer = session.get(url, allow_redirects=False, timeout=60)
        if answer.status_code in (302, 303):
            url = urljoin(url, answer.headers["Location"])
            continue
        if url.startswith(portal_url):
            return answer
        assert answer.status_code == 200, (url, answer.status_code, answer.text[:300])
        token = re.search(r'name="csrf_token" value="([^"]+)"', answer.text)
        action = re.search(r'<form method="post" action="([^"]+)"', answer.text)
        assert token and action, answer.text[:500]
        posted = session.post(urljoin(url, action.group(1)), allow_redirects=False, timeout=60,
                              data={"csrf_token": token.group(1), "decision": "approve" if approve else "decline"})
        assert posted.status_code == 303, posted.text[:300]
        url = urljoin(url, posted.headers["Location"])
    raise AssertionError("too many redirects")


@pytest.fixture(scope="module")
def stack(signer_settings: SignerSettings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = Stack(tmp_path_factory.mktemp("stack"), signer_settings.model_copy(update={"sweep_interval_seconds": 0}))
    try:
        yield env
    finally:
        env.stop()


@pytest.mark.parametrize(("qualifier", "hint", "expected"), [("qes", QES_HINT, "QES"), ("ades", ADES_HINT, "AdES")])
def test_pades_b_lta_end_to_end(stack: Stack, qualifier: str, hint: str, expected: str) -> None:
    tx = stack.sign([{"sample": "employment-contract.pdf"}], qualifier=qualifier, format="pades", level="B-LTA",
                    visible=True, signer_name="Kari Nordmann", login_hint=hint)
    assert tx["state"] == "completed", tx
    report = tx["documents"][0]["report"]
    assert report["indication"] == "TOTAL_PASSED", report
    assert report["signatures"][0]["level"] == "B-LTA"
    assert report["signatures"][0]["qualification"] == expected
    pdf = requests.get(tx["documents"][0]["download_url"], timeout=30).content
    # Independent re-validation through the API of the uploaded bytes, then one changed byte.
    again = requests.post(f"{stack.portal_url}/api/v1/validate", json={"signed": base64.b64encode(pdf).decode()}, timeout=60).json()
    assert (again["indication"], again["signatures"][0]["qualification"]) == ("TOTAL_PASSED", expected)
    tampered = bytearray(pdf)
    tampered[tampered.find(b"Salary") + 1] ^= 1
    bad = requests.post(f"{stack.portal_url}/api/v1/validate", json={"signed": base64.b64encode(bytes(tampered)).decode()}, timeout=60).json()
    assert (bad["indication"], bad["sub_indication"]) == ("TOTAL_FAILED", "HASH_FAILURE")


@pytest.mark.parametrize("fmt", ["pades", "cades", "jades"])
@pytest.mark.parametrize("level", ["B-B", "B-T", "B-LT"])
def test_formats_and_levels_end_to_end(stack: Stack, fmt: str, level: str) -> None:
    doc = {"pades": "loan-agreement.pdf", "cades": "meeting-minutes.txt", "jades": "payment-order.json"}[fmt]
    tx = stack.sign([{"sample": doc}], qualifier="qes", format=fmt, level=level, login_hint=QES_HINT)
    assert tx["state"] == "completed", tx
    sig = tx["documents"][0]["report"]["signatures"][0]
    assert (sig["indication"], sig["level"], sig["qualification"]) == ("TOTAL_PASSED", level, "QES"), sig


def test_batch_shares_one_authorization_and_signer_never_sees_documents(stack: Stack) -> None:
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


def test_declined_consent_and_low_loa_qes_are_clear_and_nothing_is_signed(stack: Stack) -> None:
    created = requests.post(f"{stack.portal_url}/api/v1/sign-requests", timeout=60, json={
        "documents": [{"sample": "employment-contract.pdf"}], "qualifier": "qes", "login_hint": QES_HINT}).json()
    page = browse(created["authorize_url"], stack.portal_url, approve=False)
    assert page.status_code == 403
    tx = requests.get(created["status_url"], timeout=30).json()
    assert tx["state"] == "failed" and tx["error"] == "access_denied"
    assert all("download_url" not in d for d in tx["documents"])
    # QES requested, eID at LoA substantial/low: refused, never silently downgraded.
    created = requests.post(f"{stack.portal_url}/api/v1/sign-requests", timeout=60, json={
        "documents": [{"sample": "employment-contract.pdf"}], "qualifier": "qes", "login_hint": ADES_HINT}).json()
    page = browse(created["authorize_url"], stack.portal_url)
    assert page.status_code == 403
    tx = requests.get(created["status_url"], timeout=30).json()
    assert tx["state"] == "failed" and tx["error"] == "access_denied", tx
    # A replayed callback for a finished transaction is refused.
    assert requests.get(f"{stack.portal_url}/sign/callback?state=nope&code=x", timeout=30).status_code == 400
