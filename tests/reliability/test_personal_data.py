"""No national identifier or birth date of a test person appears unmasked after a default run.

A default ecosystem (``signlab up`` settings, no fault injection) runs signing flows for persons of
four countries — through the partner API and through the portal's own pages — and a validation.
Then every page and API answer the run produced, every trainer and debugger view (with the
trainer token), the CA's certificate pages and lookups, every log file and every trace file are
searched for each test person's identifier (in every written form the IdP accepts) and birth date
(ISO, compact and dotted forms). The IdP's catalogue of synthetic test persons (``/persons``) is
the published test-data sheet and is the one page not searched.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urljoin

import pytest
import requests

from services.idp.catalogue import load_catalogue
from services.idp.identifiers import identifier_aliases
from shared.testing import confirm_review
from signlab.load import BrowserAgent, portal_flow
from testkit.reliability_lab import Lab, start_lab

pytestmark = [pytest.mark.processes, pytest.mark.hsm]

SIGNERS = ("kari-nordmann@no-bankid", "astrid-svensson@se-bankid", "aino-virtanen@fi-bank", "lukas-mueller@de-eidas")
"""Persons with NO, SE and FI national numbers and a German identity card with an eIDAS identifier."""


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A default ecosystem."""
    lab = start_lab(tmp_path_factory.mktemp("personal-data") / "var")
    yield lab
    lab.runtime.down()


def _forbidden() -> dict[str, str]:
    """Every unmasked form of every test person's identifier and birth date → whose it is."""
    found: dict[str, str] = {}
    for person in load_catalogue().persons:
        pid = person.person_id
        for form in {pid.value, pid.etsi_serial_number, *identifier_aliases(pid.country, pid.semantics, pid.value)}:
            if len(re.sub(r"\D", "", form)) >= 6:
                found[form] = f"{person.id}'s identifier"
        if person.eidas_person_identifier:
            found[person.eidas_person_identifier.rsplit("/", 1)[1]] = f"{person.id}'s eIDAS identifier"
        day = person.birthdate
        for form in (day.isoformat(), day.strftime("%Y%m%d"), day.strftime("%d.%m.%Y")):
            found[form] = f"{person.id}'s birth date"
    return found


def _run(lab: Lab) -> list[tuple[str, str]]:
    """Signing flows and a validation; returns (where, text) of every answer the run received."""
    seen: list[tuple[str, str]] = []
    portal, partner = lab.urls["portal"], lab.eco.partner_api
    for index, hint in enumerate(SIGNERS):
        qualifier = "ades" if hint.startswith("astrid") else "qes"
        result = portal_flow(lab.eco, f"personal data sweep {index}\n".encode(), login_hint=hint, qualifier=qualifier)
        status = requests.get(f"{portal}/api/v1/transactions/{result.transaction_id}", auth=partner, timeout=10)
        seen.append((f"status of {hint}", status.text))
        trace = requests.get(f"{portal}/api/v1/transactions/{result.transaction_id}/trace", auth=partner, timeout=30)
        seen.append((f"API trace of {hint}", trace.text))
        seen.append((f"CA lookup for {hint}",
                     requests.get(f"{lab.urls['ca']}/api/v1/certificates/{result.certificate_serial}", timeout=10).text))
    # A browser signs a PDF through the portal's pages, reads its result page and validates.
    browser = requests.Session()
    agent = BrowserAgent(lab.eco)
    agent.session = browser
    page = browser.get(f"{portal}/", timeout=10)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    started = browser.post(f"{portal}/sign", allow_redirects=False, timeout=60, data={
        "csrf_token": csrf, "samples": "employment-contract.pdf", "qualifier": "qes", "format": "pades",
        "level": "B-T", "visible": "on", "login_hint": SIGNERS[0]})
    review_url = urljoin(portal, started.headers["Location"])
    seen.append(("review page", browser.get(review_url, timeout=10).text))
    final = agent.walk(confirm_review(review_url, browser))
    assert isinstance(final, requests.Response) and final.status_code == 200, final
    seen.append(("result page", final.text))
    tx_id = final.url.rsplit("/", 1)[1]
    seen.append(("owner trace", browser.get(f"{portal}/transactions/{tx_id}/trace.json", timeout=30).text))
    signed = browser.get(f"{portal}/transactions/{tx_id}/documents/0", timeout=10).content
    report = browser.post(f"{portal}/validate", data={"csrf_token": csrf}, files={"signed": ("s.pdf", signed)}, timeout=60)
    seen.append(("validation page", report.text))
    api_report = requests.post(f"{portal}/api/v1/validate", auth=partner, files={"signed": ("s.pdf", signed)}, timeout=60)
    seen.append(("API validation", api_report.text))
    seen.append(("API report", requests.get(api_report.json()["download_url"], auth=partner, timeout=10).text))
    return seen


def _trainer_views(lab: Lab) -> list[tuple[str, str]]:
    """Every trainer and debugger view, with the trainer token."""
    bearer = {"Authorization": f"Bearer {lab.secrets['SIGNLAB_PORTAL_TRAINER_TOKEN']}"}
    portal, ca = lab.urls["portal"], lab.urls["ca"]
    views = [(path, requests.get(portal + path, headers=bearer, timeout=60).text)
             for path in ("/trainer/", "/trainer/api/transactions")]
    for row in requests.get(f"{portal}/trainer/api/transactions", headers=bearer, timeout=60).json():
        for suffix in ("", ".svg", ".mmd"):
            path = f"/trainer/api/transactions/{row['id']}{suffix}"
            views.append((path, requests.get(portal + path, headers=bearer, timeout=60).text))
        views.append((f"trainer view {row['id']}",
                      requests.get(f"{portal}/trainer/transactions/{row['id']}", headers=bearer, timeout=60).text))
    views.append(("IdP debugger", requests.get(f"{lab.urls['idp']}/debugger", headers=bearer, timeout=10).text))
    listing = requests.get(f"{ca}/certificates", headers=bearer, timeout=10)
    views.append(("CA certificates", listing.text))
    for serial in re.findall(r"/certificates/([0-9a-f]{16,})", listing.text):
        views.append((f"CA certificate {serial}", requests.get(f"{ca}/certificates/{serial}", headers=bearer, timeout=10).text))
    views.append(("CA overview", requests.get(f"{ca}/", timeout=10).text))
    return views


def test_no_identifier_or_birth_date_is_unmasked_after_a_default_run(default_run: Lab) -> None:
    answers = _run(default_run)
    views = _trainer_views(default_run)
    assert any("•••••••••05" in text for _, text in views), "the trainer views show no masked identifier at all"
    files = [(str(path), path.read_text(errors="replace"))
             for folder in (default_run.runtime.logs_dir, default_run.runtime.data_dir / "traces")
             for path in sorted(folder.rglob("*")) if path.is_file()]
    assert any("traces" in name for name, _ in files) and any(name.endswith(".log") for name, _ in files)
    forbidden = _forbidden()
    leaks: list[str] = []
    for where, text in [*answers, *views, *files]:
        for form, whose in forbidden.items():
            if form in text:
                leaks.append(f"{whose} ({form}) in {where}")
    assert leaks == [], "\n".join(leaks[:40])


def test_the_lab_setting_shows_personal_data_to_trainers(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """With ``SIGNLAB_CA_SHOW_PERSONAL_DATA`` (a lab setting) the CA's trainer page shows the number."""
    from pathlib import Path

    from services.ca import create_app
    from services.ca.provision import provision
    from services.ca.settings import CaSettings
    from shared.testing import random_secrets

    secrets = random_secrets(CaSettings)
    data_dir: Path = tmp_path_factory.mktemp("ca-show")
    for show, expected in ((False, "PNONO-•••••••••05"), (True, "PNONO-14838540105")):
        settings = CaSettings(data_dir=data_dir, show_personal_data=show, **secrets)
        provision(settings)
        app = create_app(settings)
        template = app.jinja_env.from_string("{{ mask(subject) }}")
        with app.test_request_context(headers={"Authorization": f"Bearer {secrets['trainer_token'].get_secret_value()}"}):
            from services.ca.http import _mask

            assert template.render(mask=_mask, subject="serialNumber=PNONO-14838540105") == f"serialNumber={expected}"
