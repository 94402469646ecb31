"""#25 items 6 and 9 against real processes: the portal learns what the SSASP did when the answer
it was waiting for never came.

* **A signer restart while the signer is at the eID login** — the SSASP ends every transaction in
  flight at its start-up; the portal's follow-up (``SIGNLAB_PORTAL_SIGNER_POLL_SECONDS``, 1 s
  here) asks the SSASP's ``oauth2/transaction-status`` and ends its own waiting transaction with
  the SSASP's reason, long before the portal's own expiry (600 s).
* **signDoc's answer breaks off** — the portal reaches the SSASP through a :class:`FaultProxy`
  (the network, the only part stood in for) that forwards signDoc and sends back only half of the
  answer's body before closing the connection, as when the SSASP dies while sending it. Browsers
  go to the SSASP directly.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from shared.testing import confirm_review
from signlab.load import BrowserAgent
from testkit.reliability_lab import Lab, revoked_everywhere, start_lab

pytestmark = [pytest.mark.processes, pytest.mark.hsm]

HINT = "kari-nordmann@no-bankid"


@pytest.fixture(scope="module")
def lost_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lab = start_lab(tmp_path_factory.mktemp("lost") / "var", {"SIGNLAB_PORTAL_SIGNER_POLL_SECONDS": "1"},
                    proxies={"portal_signer": ("signer", "SIGNLAB_PORTAL_SIGNER_URL")},
                    links={"SIGNLAB_PORTAL_SIGNER_BROWSER_URL": "{signer}"})
    yield lab
    lab.runtime.down()
    for proxy in lab.proxies.values():
        proxy.close()


def _sign_request(lab: Lab, content: bytes) -> dict[str, Any]:
    """A partner application's signing request at the portal's API (CAdES B-B, QES)."""
    created = requests.post(f"{lab.urls['portal']}/api/v1/sign-requests", auth=lab.eco.partner_api, timeout=30, json={
        "documents": [{"name": "lost.txt", "content": base64.b64encode(content).decode()}],
        "qualifier": "qes", "format": "cades", "level": "B-B", "login_hint": HINT})
    assert created.status_code == 201, created.text
    return dict(created.json())


def _status(lab: Lab, created: dict[str, Any]) -> dict[str, Any]:
    return dict(requests.get(created["status_url"], auth=lab.eco.partner_api, timeout=10).json())


def test_a_signer_restart_ends_the_portals_waiting_transaction_with_the_signers_reason(lost_lab: Lab) -> None:
    lab = lost_lab
    created = _sign_request(lab, b"the signer restarts while the person is at the eID login")
    browser = BrowserAgent(lab.eco)
    confirm_review(created["review_url"], browser.session)  # PAR pushed: the portal waits (steps 3-5)
    assert _status(lab, created)["state"] == "pending"
    lab.kill("signer")
    lab.restart("signer")

    deadline = time.monotonic() + 60  # a bound for a loaded machine, ten times below the portal's 600 s expiry
    while (status := _status(lab, created))["state"] == "pending":
        assert time.monotonic() < deadline, "the portal still waits for a transaction the signer ended"
        time.sleep(0.2)
    assert status["state"] == "failed" and status["error"] == "expired_transaction", status
    description = status["error_description"]
    assert description.startswith("step 5 (IPSP → SSASP): the signing service ended its transaction "), description
    assert "the signing service restarted while the transaction was in flight" in description
    signer_tx = re.search(r"transaction (\S+) \(expired", description)
    assert signer_tx, description
    assert lab.signer_transaction(signer_tx.group(1))["state"] == "expired"  # the SSASP's own record agrees
    page = browser.session.get(created["review_url"], timeout=10)  # what the signer's browser shows now
    assert "restarted while the transaction was in flight" in page.text and "Nothing was signed" in page.text


def test_a_sign_doc_answer_that_breaks_off_is_reported_and_its_certificate_revoked(lost_lab: Lab) -> None:
    """The portal answers 502 naming step 10 and the SSASP (not a 500 "packaging failed
    unexpectedly"), keeps nothing, and reports the lost answer: the SSASP audits
    ``transaction.answer_lost`` and has the certificate of that undelivered signature revoked."""
    lab, proxy = lost_lab, lost_lab.proxies["portal_signer"]
    created = _sign_request(lab, b"its signature never reaches the portal")
    browser = BrowserAgent(lab.eco)
    back = browser.walk(created["review_url"], stop_at=lab.urls["portal"])  # review, eID login, consent
    assert isinstance(back, str) and "code=" in back
    since = lab.audit_count()
    proxy.set("/csc/v2/signatures/signDoc", "truncate")
    try:
        answer = browser.session.get(back, allow_redirects=False, timeout=60)
    finally:
        proxy.release()

    assert answer.status_code == 502, answer.text[:500]
    assert "step 10 (SSASP → SCASP)" in answer.text and "broke off" in answer.text
    status = _status(lab, created)
    assert status["state"] == "failed" and status["error"] == "server_error", status
    assert status["error_description"].startswith("step 10 (SSASP → SCASP): the answer of the SSASP broke off")
    assert "revoked the certificate of the signature that did not arrive" in status["error_description"]
    assert not any(d.get("download_url") for d in status["documents"])
    events = lab.audit(since)
    completed = next(e for e in events if e.event == "transaction.completed")  # the SSASP did sign
    transaction = completed.data["transaction_id"]
    assert transaction in status["error_description"]
    mine = [e.event for e in events if e.data.get("transaction_id") == transaction]
    assert mine.index("transaction.completed") < mine.index("transaction.answer_lost") < mine.index("certificate.revoked")
    [serial] = next(e for e in events if e.event == "certificate.revoked").data["serials"]
    issued = next(e for e in events if e.event == "certificate.issued" and e.data["transaction_id"] == transaction)
    assert int(str(issued.data["serial"]), 16) == int(serial, 16)
    revoked_everywhere(lab, serial)
    assert lab.signer_transaction(transaction)["certificate_revocation"] == "revoked"
    assert lab.hsm_keys() == 0

