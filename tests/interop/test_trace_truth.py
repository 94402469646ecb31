"""What a class sees is what happened (design §6, the fidelity rule), checked in a real browser.

Debian's Chromium (Playwright, 1280 px wide) signs through the portal's pages, then reads what the
portal, the signing service and the trace show of that one signing:

* the document digest: the same fingerprint, named SHA-256, on the review page, in the trace at the
  PAR, at signDoc and in the signed attributes (step 8), and on the result page;
* the result page's diagram: every lane header inside the viewport, also (sticky) when the diagram
  is scrolled; the login hops of step 4 folded into one row that unfolds; a message in an overlay;
* page views are no transaction: after ten page views and two reloads of the result page the
  trainer dashboard's latest row and ``latest`` are still this signing, steps 1-10, same duration;
* a refused flow (Cancel at the eID provider): a page that names step 4 and the transaction, offers
  to start again with the same documents, and the transaction's own diagram with step 4 failed and
  5-10 not reached;
* the upload form disables what cannot go together.

Screenshots go to ``test-artifacts/screenshots/`` (gitignored): the result page, its diagram, the
dashboard and the refusal page.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from shared.tracing import TraceStore, build_transaction

pytestmark = pytest.mark.hsm

SAMPLE = Path(__file__).resolve().parents[2] / "services" / "portal" / "samples" / "employment-contract.pdf"
FINGERPRINT = re.compile(r"SHA-256( [0-9A-F]{8}){8}")


@pytest.fixture(scope="module")
def screenshots(artifacts: Path) -> Path:
    folder = artifacts / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def page(browser: Any) -> Any:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    context.close()


def _upload_and_review(page: Any, portal: str) -> str:
    """Step 1 in the browser: upload, QES PAdES B-B, Sign; return the review page's fingerprint."""
    page.goto(f"{portal}/")
    page.set_input_files('input[name="documents"]', str(SAMPLE))
    page.select_option('select[name="format"]', "pades")
    page.select_option('select[name="level"]', "B-B")
    page.click('button[type="submit"]:has-text("Sign")')
    page.wait_for_url(re.compile(re.escape(portal) + r"/review/"))
    fingerprint = page.locator("section.document code.fingerprint").first.inner_text().strip()
    assert FINGERPRINT.fullmatch(fingerprint), fingerprint
    page.click("#confirm")
    return fingerprint


def _log_in(page: Any, idp: str) -> None:
    """Step 4 at the IdP's real pages: Kari Nordmann, BankID, the test code."""
    page.wait_for_url(re.compile(re.escape(idp) + r"/login/"))
    page.select_option("#person", "kari-nordmann")
    page.click("#continue")
    page.check("#means-no-bankid")
    page.click("#continue")
    page.fill("#otp", page.locator("#test-otp").inner_text().strip())
    page.click("#confirm")


def _trace(page: Any, tx_id: str) -> dict[str, Any]:
    """The owner's view of the transaction's trace (the JSON the result page's diagram polls)."""
    return page.evaluate("url => fetch(url, {cache: 'no-store'}).then(r => r.json())", f"/transactions/{tx_id}/trace.json")


def _walk(value: Any, key: str) -> list[Any]:
    """Every value under ``key`` anywhere in a JSON document."""
    found = []
    if isinstance(value, dict):
        for name, item in value.items():
            if name == key:
                found.append(item)
            found += _walk(item, key)
    elif isinstance(value, list):
        for item in value:
            found += _walk(item, key)
    return found


def _lanes_inside(page: Any) -> list[dict[str, float]]:
    boxes = [head.bounding_box() for head in page.locator("#flow-diagram .sl-lane-head").all()]
    assert len(boxes) == 6 and all(boxes), boxes
    return boxes  # type: ignore[return-value]


def test_one_signing_seen_truthfully_at_1280_px(page: Any, ecosystem: Any, screenshots: Path) -> None:
    from playwright.sync_api import expect

    fingerprint = _upload_and_review(page, ecosystem.portal_url)
    _log_in(page, ecosystem.idp_url)
    page.wait_for_url(re.compile(re.escape(ecosystem.signer_url) + r"/oauth2/consent/"))
    page.click('button[name="decision"][value="approve"]')
    page.wait_for_url(re.compile(re.escape(ecosystem.portal_url) + r"/transactions/tx-"))
    tx_id = page.url.rsplit("/", 1)[1].split("#")[0]
    expect(page.locator("h1")).to_contain_text("completed")

    # One fingerprint, named SHA-256: review page = result page = PAR = signDoc = signed attributes.
    expect(page.locator("section.document code.fingerprint").first).to_have_text(fingerprint)
    trace = _trace(page, tx_id)
    exchanges = {e["message"]: e for e in trace["exchanges"]}
    par = exchanges["pushed authorization request (PAR)"]["summary"]
    assert _walk(par, "hash") == [fingerprint]
    assert _walk(exchanges["CSC signDoc (digests + SAD)"]["summary"], "hashes") == [[fingerprint]]
    assert _walk(exchanges["CMS signed attributes"]["summary"], "message_digest") == [fingerprint]
    assert "SHA-384" not in str(trace) and "SHA-512" not in str(trace)

    # The diagram at 1280 px: every lane header on screen, and still on screen (sticky) when the
    # diagram scrolls; the login hops folded; a message opens in an overlay.
    diagram = page.locator("#flow-diagram")
    diagram.scroll_into_view_if_needed()
    expect(page.locator("#flow-diagram svg g.sl-fold")).to_have_count(1)
    for box in _lanes_inside(page):
        assert box["x"] >= 0 and box["x"] + box["width"] <= 1280, box
    for lane in page.locator("#flow-diagram svg g.sl-lane").all():
        box = lane.bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= 1280, box
    states = [li.get_attribute("class") for li in page.locator("#flow-diagram .sl-steps li").all()]
    assert states == ["sl-step-state-done"] * 10, states
    page.screenshot(path=str(screenshots / "result-page.png"), full_page=True)
    scroller = page.locator("#flow-diagram .sl-diagram-box")
    scroller.evaluate("box => { box.scrollTop = box.scrollHeight / 2; }")
    page.wait_for_timeout(200)
    top = scroller.bounding_box()
    for box in _lanes_inside(page):
        assert box["x"] >= 0 and box["x"] + box["width"] <= 1280, box
        assert box["y"] >= 0 and box["y"] + box["height"] <= 900 and box["y"] >= top["y"] - 1, box
    arrows = page.locator("#flow-diagram svg g.sl-arrow").count()
    page.locator("#flow-diagram svg g.sl-fold").click()
    expect(page.locator("#flow-diagram svg g.sl-fold")).to_have_count(0)
    assert page.locator("#flow-diagram svg g.sl-arrow").count() > arrows + 3
    page.locator("#flow-diagram svg g.sl-arrow.step-2").first.click()
    panel = page.locator("#flow-diagram .sl-panel")
    expect(panel).to_be_visible()
    expect(panel.locator("pre")).to_contain_text("Step 2")
    diagram.screenshot(path=str(screenshots / "result-diagram.png"))

    # Page views are no transaction; reloads and downloads never extend the signing.
    before = _trace(page, tx_id)
    for path in ("/", "/validate", "/trust", "/role", f"/transactions/{tx_id}", "/", "/validate", "/trust", "/role", "/"):
        page.goto(f"{ecosystem.portal_url}{path}")
    for _ in range(2):
        page.goto(f"{ecosystem.portal_url}/transactions/{tx_id}")
        page.reload()
    after = _trace(page, tx_id)
    assert after["duration_ms"] == before["duration_ms"] and after["steps"] == list(range(1, 11))
    assert after["outcome"] == "completed" and after["later_views"] > before["later_views"]
    latest = build_transaction(TraceStore(ecosystem.trace_dir).find("latest"))  # type: ignore[arg-type]
    assert tx_id in latest.transaction_ids and latest.duration_ms == before["duration_ms"]

    # The trainer dashboard: its latest row is this signing, with person, qualifier, format, level.
    page.goto(f"{ecosystem.portal_url}/trainer/sign-in?token={ecosystem.settings_of('portal').trainer_token.get_secret_value()}")
    page.goto(f"{ecosystem.portal_url}/trainer/")
    first = page.locator("table.sl-transactions tbody tr").first
    expect(first).to_contain_text(tx_id)
    expect(first).to_contain_text("Kari Nordmann (PNONO-•••••••••05)")
    for text in ("QES", "PAdES", "B-B", "completed"):
        expect(first).to_contain_text(text)
    expect(page.locator(".signlab-trace-live .sl-status")).to_contain_text(tx_id)
    page.screenshot(path=str(screenshots / "dashboard.png"), full_page=True)


def test_a_refused_flow_explains_its_step_and_draws_its_own_diagram(page: Any, ecosystem: Any,
                                                                     screenshots: Path) -> None:
    from playwright.sync_api import expect

    _upload_and_review(page, ecosystem.portal_url)
    page.wait_for_url(re.compile(re.escape(ecosystem.idp_url) + r"/login/"))
    page.click("#cancel")
    page.wait_for_url(re.compile(re.escape(ecosystem.portal_url) + r"/sign/callback"))
    refusal = page.locator("#refusal")
    expect(refusal).to_contain_text("Step 4 — eID login (Signer → IPSP)")
    expect(refusal).to_contain_text("cancelled")
    tx_id = refusal.locator("h1 code").inner_text()
    assert tx_id.startswith("tx-")
    page.screenshot(path=str(screenshots / "error-page.png"), full_page=True)

    # Its own diagram: refused at step 4, the one failed step; 5-10 not reached.
    page.click("text=See where it stopped")
    page.wait_for_url(re.compile(re.escape(f"{ecosystem.portal_url}/transactions/{tx_id}")))
    states = {li.get_attribute("data-step"): li.get_attribute("class")
              for li in page.locator("#flow-diagram .sl-steps li").all()}
    assert states["4"] == "sl-step-state-failed"
    assert [states[str(n)] for n in range(5, 11)] == ["sl-step-state-not-reached"] * 6
    assert [v for v in states.values() if v == "sl-step-state-failed"] == ["sl-step-state-failed"]
    origin = page.locator("#flow-diagram svg g.sl-origin")
    expect(origin).to_have_count(1)
    assert origin.get_attribute("data-step") == "4"
    expect(page.locator("#flow-diagram .sl-status")).to_contain_text("refused at step 4")

    # Start again: a new transaction with the same document, shown for review.
    page.click("#start-again")
    page.wait_for_url(re.compile(re.escape(ecosystem.portal_url) + r"/review/"))
    expect(page.locator("section.document .label")).to_have_text("employment-contract.pdf")


def test_the_form_disables_what_cannot_go_together(page: Any, ecosystem: Any) -> None:
    from playwright.sync_api import expect

    page.goto(f"{ecosystem.portal_url}/")
    page.select_option("#format", "jades")
    expect(page.locator('input[name="visible"]')).to_be_disabled()
    expect(page.locator('input[name="samples"][value="employment-contract.pdf"]')).to_be_disabled()
    expect(page.locator('input[name="samples"][value="payment-order.json"]')).to_be_enabled()
    page.select_option("#format", "pades")
    page.select_option("#flow", "certificate-first")
    expect(page.locator('input[name="visible"]')).to_be_enabled()
    expect(page.locator('input[name="signer_name"]')).to_be_disabled()


def test_the_consent_page_shows_the_review_pages_fingerprint_as_it_is(page: Any, ecosystem: Any) -> None:
    fingerprint = _upload_and_review(page, ecosystem.portal_url)
    _log_in(page, ecosystem.idp_url)
    page.wait_for_url(re.compile(re.escape(ecosystem.signer_url) + r"/oauth2/consent/"))
    shown = page.locator("table.documents code.fingerprint").first.inner_text().strip()
    page.click('button[name="decision"][value="decline"]')
    assert shown == fingerprint
