"""A real browser through the whole flow: Playwright (sync API) driving Debian's Chromium.

The user uploads a PDF at the portal, chooses QES PAdES B-T and signs; the portal's review page
shows the PDF exactly as it will be signed (rendered pages) and the digest, the user confirms; the
browser goes to the signer, to the IdP's interactive login pages (person → eID means → one-time code; no login_hint),
back to the signer's consent page, and to the portal's result page with the validation report.
The signed PDF is downloaded through the browser and validated independently with pyHanko, then
uploaded again on the portal's validation page. A second test logs in with the EUDI Wallet instead. A screenshot of every step goes to
``test-artifacts/browser/`` (gitignored).

Chromium is ``/usr/bin/chromium`` (``make`` installs Debian's package; never ``playwright
install``), launched headless with the flags that keep it off the network. The test skips, with
the reason, only when Chromium cannot be launched.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import async_validate_pdf_signature

pytestmark = pytest.mark.hsm

SAMPLE = Path(__file__).resolve().parents[2] / "services" / "portal" / "samples" / "employment-contract.pdf"
QCP_N_QSCD = "0.4.0.194112.1.2"


@pytest.fixture
def shots(artifacts: Path) -> Iterator[Any]:
    """``shot(page, name)`` saves ``test-artifacts/browser/NN-name.png`` (full page)."""
    folder = artifacts / "browser"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    taken: list[Path] = []

    def shot(page: Any, name: str, element: Any = None) -> Path:
        path = folder / f"{len(taken) + 1:02d}-{name}.png"
        if element is not None:
            element.screenshot(path=str(path))
        else:
            page.screenshot(path=str(path), full_page=True)
        taken.append(path)
        return path

    shot.taken = taken  # type: ignore[attr-defined]
    return shot


def test_qes_pades_b_t_through_the_portal_ui(browser: Any, ecosystem: Any, shots: Any, artifacts: Path) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    outside: list[str] = []  # every request must stay on the loopback services
    page.on("request", lambda r: None if r.url.startswith(("http://127.0.0.1:", "data:", "blob:"))
            else outside.append(r.url))
    try:
        # Step 1: the portal's upload form.
        page.goto(f"{ecosystem.portal_url}/")
        expect(page.locator("h1")).to_contain_text("Sign documents")
        page.set_input_files('input[name="documents"]', str(SAMPLE))
        page.select_option('select[name="qualifier"]', "qes")
        page.select_option('select[name="format"]', "pades")
        page.select_option('select[name="level"]', "B-T")
        page.select_option('select[name="flow"]', "person-signing")
        shots(page, "portal-upload")
        page.click('button[type="submit"]:has-text("Sign")')

        # What you see is what you sign: the portal shows the prepared PDF and the digest to be signed.
        page.wait_for_url(re.compile(re.escape(ecosystem.portal_url) + r"/review/"))
        document = page.locator("section.document").first
        expect(document.locator(".label")).to_have_text("employment-contract.pdf")
        fingerprint = document.locator("code.fingerprint").inner_text().strip()
        assert re.fullmatch(r"SHA-256( [0-9A-F]{8}){8}", fingerprint), fingerprint
        first_page = document.locator("img.page").first
        first_page.scroll_into_view_if_needed()
        expect(first_page).to_be_visible()
        page.wait_for_function("img => img.complete && img.naturalWidth > 100", arg=first_page.element_handle())
        shots(page, "portal-review")
        page.click("#confirm")

        # Steps 2-4: PAR → signer → the IdP's interactive login (no login_hint from the UI).
        page.wait_for_url(re.compile(re.escape(ecosystem.idp_url) + r"/login/"))
        expect(page.locator("#required-loa")).to_contain_text("high")
        shots(page, "idp-person")
        page.select_option("#person", "kari-nordmann")
        page.click("#continue")
        expect(page.locator("#means-form")).to_be_visible()
        expect(page.locator("#means-no-minid")).to_be_disabled()  # substantial < high: cannot be chosen
        page.check("#means-no-bankid")
        shots(page, "idp-means")
        page.click("#continue")
        otp = page.locator("#test-otp").inner_text().strip()
        assert re.fullmatch(r"\d{6}", otp), otp
        page.fill("#otp", otp)
        shots(page, "idp-otp")
        page.click("#confirm")

        # Step 5: consent at the signer.
        page.wait_for_url(re.compile(re.escape(ecosystem.signer_url) + r"/oauth2/consent/"))
        expect(page.locator("#signer-name")).to_contain_text("Kari Nordmann")
        expect(page.locator("#qualifier")).to_contain_text("Qualified electronic signature (QES)")
        expect(page.locator("table.documents .label")).to_contain_text("employment-contract.pdf")
        # The same label and the same digest fingerprint, character for character, as on the
        # portal's review page (one format: shared.digests).
        consent_digest = page.locator("table.documents code.fingerprint").first.inner_text().strip()
        assert consent_digest == fingerprint, (consent_digest, fingerprint)
        shots(page, "signer-consent")
        page.click('button[name="decision"][value="approve"]')

        # Steps 6-10 happen behind the portal's callback; the result page with the report.
        page.wait_for_url(re.compile(re.escape(ecosystem.portal_url) + r"/transactions/tx-"))
        expect(page.locator("h1")).to_contain_text("completed")
        verdict = page.locator(".verdict").first
        expect(verdict).to_contain_text("TOTAL_PASSED")
        signature = page.locator(".sig").first
        expect(signature.locator(".pill-q")).to_have_text("QES")
        expect(signature).to_contain_text("B-T")
        # The signer's national identifier is masked on the page (docs/design.md §6), its type and country kept.
        expect(signature).to_contain_text("PNONO-•••••••••05")
        assert "14838540105" not in page.content()
        shots(page, "portal-result-report")

        # The flow diagram, when the tracing work has filled the slot (#flow-diagram).
        diagram = page.locator("#flow-diagram")
        expect(diagram).to_be_visible()
        drawn = diagram.locator("svg, .mermaid, img, pre.mermaid")
        if drawn.count():
            expect(drawn.first).to_be_visible()
            assert drawn.first.bounding_box()["height"] > 20
        shots(page, "portal-flow-diagram", element=diagram)

        # Download the signed PDF through the browser.
        with page.expect_download() as info:
            page.click("a.button:has-text('Download')")
        download = info.value
        target = artifacts / "browser" / download.suggested_filename
        download.save_as(str(target))
        assert download.suggested_filename == "employment-contract-signed.pdf"
        signed = target.read_bytes()

        # Open the report on the portal's validation page for the downloaded bytes.
        page.goto(f"{ecosystem.portal_url}/validate")
        page.set_input_files('input[name="signed"]', str(target))
        shots(page, "portal-validate-upload")
        page.click('form button[type="submit"]')
        expect(page.locator(".verdict").first).to_contain_text("TOTAL_PASSED")
        expect(page.locator(".sig .pill-q").first).to_have_text("QES")
        shots(page, "portal-validation-report")
    finally:
        context.close()

    assert outside == [], f"the browser left the loopback services: {outside}"
    assert len(shots.taken) >= 9
    assert all(p.stat().st_size > 2_000 for p in shots.taken)

    # Independent validation of the downloaded file with pyHanko: SignLab root, revocation required.
    [embedded, *rest] = PdfFileReader(BytesIO(signed)).embedded_signatures
    assert rest == []
    # Playwright's sync API keeps an event loop running in this thread: validate in another one.
    with ThreadPoolExecutor(1) as pool:
        status = pool.submit(lambda: asyncio.run(
            async_validate_pdf_signature(embedded, ecosystem.validation_context()))).result()
    assert status.intact and status.valid and status.trusted and status.bottom_line, status.pretty_print_details()
    assert QCP_N_QSCD in {p["policy_identifier"].dotted for p in status.signing_cert.certificate_policies_value}
    assert status.signing_cert.subject.native["serial_number"] == "PNONO-14838540105"
    assert status.timestamp_validity is not None and status.timestamp_validity.valid  # B-T
    assert status.timestamp_validity.trusted


def test_qes_after_a_same_device_wallet_login(browser: Any, ecosystem: Any, artifacts: Path) -> None:
    """The EUDI Wallet login (step 4) in a real browser: the IdP's login page, "Log in with the EUDI
    Wallet", "on this device", the wallet's page showing the request in plain words (who asks, what
    for, which claims it will and will not receive), Share, back to the IdP with the response code,
    the signer's consent page, and a QES for the person of the PID at the portal. Screenshots go to
    ``test-artifacts/browser-wallet/``."""
    from playwright.sync_api import expect

    folder = artifacts / "browser-wallet"
    folder.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    outside: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(("http://127.0.0.1:", "data:", "blob:"))
            else outside.append(r.url))
    try:
        page.goto(f"{ecosystem.portal_url}/")
        page.set_input_files('input[name="documents"]', str(SAMPLE))
        page.select_option('select[name="qualifier"]', "qes")
        page.select_option('select[name="format"]', "pades")
        page.select_option('select[name="level"]', "B-B")
        page.click('button[type="submit"]:has-text("Sign")')

        # The portal's review page (what you see is what you sign), then on to the SSASP.
        page.wait_for_url(re.compile(re.escape(ecosystem.portal_url) + r"/review/"))
        page.click("#confirm")

        # Step 4 at the IdP: the EUDI Wallet, on this device.
        page.wait_for_url(re.compile(re.escape(ecosystem.idp_url) + r"/login/"))
        page.click("#eudi-wallet")
        page.wait_for_url(re.compile(re.escape(ecosystem.idp_url) + r"/openid4vp/login/"))
        expect(page.locator("#purpose")).to_contain_text("Sign 1 document")
        page.screenshot(path=str(folder / "01-idp-wallet-choice.png"), full_page=True)
        page.click("#same-device")

        # The wallet (the phone): the request in plain words.
        page.wait_for_url(re.compile(re.escape(ecosystem.wallet_url) + r"/authorize"))
        expect(page.locator("#verifier-name")).to_contain_text("SignLab eID provider")
        page.select_option("#holder", "kari-nordmann")
        page.wait_for_load_state()
        disclosed = page.locator("#disclosed li")
        expect(disclosed).to_have_count(6)
        expect(page.locator('#disclosed [data-claim="personal_administrative_number"]')).to_contain_text("14838540105")
        expect(page.locator('#withheld [data-claim="issuing_authority"]')).to_be_visible()
        page.screenshot(path=str(folder / "02-wallet-consent.png"), full_page=True)
        page.click("#approve")

        # Back at the IdP with the response code, then the signer's consent page (step 5).
        page.wait_for_url(re.compile(re.escape(ecosystem.signer_url) + r"/oauth2/consent/"))
        expect(page.locator("#signer-name")).to_contain_text("Kari Nordmann")
        page.screenshot(path=str(folder / "03-signer-consent.png"), full_page=True)
        page.click('button[name="decision"][value="approve"]')

        page.wait_for_url(re.compile(re.escape(ecosystem.portal_url) + r"/transactions/tx-"))
        expect(page.locator(".verdict").first).to_contain_text("TOTAL_PASSED")
        signature = page.locator(".sig").first
        expect(signature.locator(".pill-q")).to_have_text("QES")
        expect(signature).to_contain_text("PNONO-•••••••••05")
        page.screenshot(path=str(folder / "04-portal-result.png"), full_page=True)
    finally:
        context.close()
    assert outside == [], f"the browser left the loopback services: {outside}"
