"""The portal's pages and JSON API that need no signing service: upload checks, CSRF, validation, trust page."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from pydantic import SecretStr

from services.portal import create_app, pades
from services.portal.documents import Level, Qualifier
from services.portal.settings import PortalSettings
from services.portal.trust import TrustStore
from shared.digests import digest_fingerprint
from shared.testing import free_port

SAMPLES = Path(__file__).parents[3] / "services" / "portal" / "samples"


@pytest.fixture
def app(tmp_path: Path, pki, pki_tsp) -> Iterator[Flask]:
    trust_dir = tmp_path / "trust"
    trust_dir.mkdir()
    (trust_dir / "root.der").write_bytes(pki.der(pki.root))
    (trust_dir / "tl.xml").write_text(pki.trusted_list())
    settings = PortalSettings(
        data_dir=tmp_path, session_secret=SecretStr("k" * 32), trainer_token=SecretStr("trainer-token-of-the-tests"),
            api_client_secret=SecretStr("api-secret-of-the-tests"),
        trust_root_file=trust_dir / "root.der", trusted_list_file=trust_dir / "tl.xml", max_document_bytes=200_000,
        signer_url=f"http://127.0.0.1:{free_port()}", http_timeout_seconds=2,
    )
    trust = TrustStore(settings.trust_root_path(), settings.trusted_list_path(), pki_tsp, None, timestamper=pki.timestamper())
    yield create_app(settings, trust=trust)


PARTNER_BASIC = "Basic " + base64.b64encode(b"signlab-lab:api-secret-of-the-tests").decode()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A client that is both a browser and the lab's partner application (HTTP Basic on every call)."""
    test_client = app.test_client()
    test_client.environ_base["HTTP_AUTHORIZATION"] = PARTNER_BASIC
    return test_client


def _csrf(client: FlaskClient, path: str = "/") -> str:
    page = client.get(path, headers={"Accept": "text/html"}).get_data(as_text=True)
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match
    return match.group(1)


def test_index_lists_samples_and_options(client: FlaskClient) -> None:
    page = client.get("/", headers={"Accept": "text/html"}).get_data(as_text=True)
    assert "employment-contract.pdf" in page and "B-LTA" in page and "certificate-first" in page
    assert "http://" not in page.split("</head>")[0].replace("http://www.w3.org", "")  # no CDN in the head


def test_sign_form_without_csrf_is_refused(client: FlaskClient) -> None:
    response = client.post("/sign", data={"samples": "employment-contract.pdf"}, headers={"Accept": "application/json"})
    assert response.status_code == 403
    assert "CSRF" in response.get_json()["error_description"]


@pytest.mark.parametrize(
    ("name", "content", "fmt", "status", "needle"),
    [
        ("empty.pdf", b"", "pades", 400, "empty"),
        ("notes.pdf", b"hello, I am text", "pades", 400, "not a PDF"),
        ("broken.pdf", b"%PDF-1.7\n1 0 obj <<", "pades", 400, "damaged"),
        ("big.pdf", b"%PDF-1.7\n" + b"0" * 300_000, "pades", 413, "limit"),
        ("data.json", b"{not json", "jades", 400, "JSON"),
    ],
)
def test_bad_uploads_are_refused_at_step_1(client: FlaskClient, name: str, content: bytes, fmt: str, status: int, needle: str) -> None:
    body = {"format": fmt, "documents": [{"name": name, "content": base64.b64encode(content).decode()}]}
    response = client.post("/api/v1/sign-requests", json=body)
    assert response.status_code == status, response.get_data(as_text=True)
    assert needle in response.get_json()["error_description"]
    assert response.get_json()["error_description"].startswith("step 1")


def test_encrypted_pdf_is_refused(client: FlaskClient) -> None:
    from io import BytesIO

    from pyhanko.pdf_utils.crypt import StandardSecurityHandler
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.pdf_utils.writer import copy_into_new_writer

    writer = copy_into_new_writer(PdfFileReader(BytesIO((SAMPLES / "employment-contract.pdf").read_bytes())))
    writer.encrypt = None
    handler = StandardSecurityHandler.build_from_pw("secret", "secret")
    writer._assign_security_handler(handler)
    out = BytesIO()
    writer.write(out)
    body = {"format": "pades", "documents": [{"name": "locked.pdf", "content": base64.b64encode(out.getvalue()).decode()}]}
    response = client.post("/api/v1/sign-requests", json=body)
    assert response.status_code == 400
    assert "encrypted" in response.get_json()["error_description"]


@pytest.mark.parametrize(("field", "value"), [("format", "xades"), ("level", "B-LTAA"), ("qualifier", "qualified")])
def test_unknown_options_are_refused(client: FlaskClient, field: str, value: str) -> None:
    body = {field: value, "documents": [{"sample": "employment-contract.pdf"}]}
    response = client.post("/api/v1/sign-requests", json=body)
    assert response.status_code == 400
    assert value in response.get_json()["error_description"]


def test_validate_api_reports_valid_and_tampered_pdf(client: FlaskClient, pki, sign_digest) -> None:
    pdf = (SAMPLES / "employment-contract.pdf").read_bytes()
    prep = asyncio.run(pades.prepare_pdf(pdf, label="c.pdf", qualifier=Qualifier.QES, visible=False, signer_name="K", bytes_reserved=32768))
    sig = sign_digest(prep.digest, "qes", "pades")
    signed = asyncio.run(pades.augment_pdf(prep, sig.signature, level=Level.B_T, timestamper=pki.timestamper(), root=pki.root_asn1, material=sig.material))
    ok = client.post("/api/v1/validate", json={"name": "c.pdf", "signed": base64.b64encode(signed).decode()}).get_json()
    assert ok["indication"] == "TOTAL_PASSED"
    assert ok["signatures"][0]["qualification"] == "QES"
    assert ok["signatures"][0]["level"] == "B-T"
    assert client.get(ok["download_url"].replace("http://127.0.0.1:8000", "")).get_json()["indication"] == "TOTAL_PASSED"
    tampered = bytearray(signed)
    tampered[tampered.find(b"Salary") + 1] ^= 1
    bad = client.post("/api/v1/validate", json={"signed": base64.b64encode(bytes(tampered)).decode()}).get_json()
    assert bad["indication"] == "TOTAL_FAILED" and bad["sub_indication"] == "HASH_FAILURE"
    assert "changed after it was signed" in " ".join(bad["explanations"])


def test_validate_page_renders_report_escaped(client: FlaskClient) -> None:
    token = _csrf(client, "/validate")
    from io import BytesIO

    response = client.post(
        "/validate", headers={"Accept": "text/html"},
        data={"csrf_token": token, "signed": (BytesIO(b"<script>alert(1)</script>"), "<b>x</b>.p7s")},
        content_type="multipart/form-data",
    )
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "TOTAL_FAILED" in page and "<script>alert(1)</script>" not in page and "<b>x</b>" not in page


def test_trust_page_and_root_download(client: FlaskClient, pki) -> None:
    page = client.get("/trust", headers={"Accept": "text/html"}).get_data(as_text=True)
    assert "Trusted Certificates" in page and "SHA-256" in page
    der = client.get("/trust/signlab-root.cer").data
    assert der == pki.der(pki.root)


def test_unknown_transaction_is_404(client: FlaskClient) -> None:
    response = client.get("/api/v1/transactions/tx-nope")
    assert response.status_code == 404
    assert client.get("/sign/callback?state=nope&code=x").status_code == 400


def test_unreachable_signing_service_is_a_clear_error_and_nothing_is_pending(client: FlaskClient, app: Flask) -> None:
    # The default signer URL points at a port nothing listens on in tests (the real one is 8003).
    created = client.post("/api/v1/sign-requests", json={"documents": [{"sample": "employment-contract.pdf"}]})
    assert created.status_code == 201, created.get_json()  # step 1 only: nothing sent before the review
    review = created.get_json()["review_url"].replace("http://127.0.0.1:8000", "")
    response = client.post(review, data={"csrf_token": _csrf(client, review), "decision": "confirm"},
                           headers={"Accept": "application/json"})
    assert response.status_code == 503, response.get_json()
    assert "step 2" in response.get_json()["error_description"]
    status = client.get(created.get_json()["status_url"].replace("http://127.0.0.1:8000", "")).get_json()
    assert status["state"] == "failed" and status["error"] == "temporarily_unavailable", status


def test_the_review_page_shows_each_document_and_its_digest_to_its_session_only(client: FlaskClient, app: Flask) -> None:
    token = _csrf(client)
    started = client.post("/sign", data={"csrf_token": token, "samples": ["employment-contract.pdf", "meeting-minutes.txt"],
                                         "format": "cades", "level": "B-B"})
    assert started.status_code == 303 and "/review/" in started.headers["Location"]
    review = started.headers["Location"].replace("http://127.0.0.1:8000", "")
    page = client.get(review, headers={"Accept": "text/html"}).get_data(as_text=True)
    store = app.extensions["signlab.portal"].store
    tx = store.by_review_key(hashlib.sha256(review.rsplit("/", 1)[1].encode()).hexdigest())
    for doc in tx.documents:  # the digests that the PAR will carry, in the one shared format
        assert digest_fingerprint(doc.digest, "sha256") in page
    assert 'class="page"' in page and 'class="document-text"' in page  # the PDF rendered, the text as text
    image = client.get(f"{review}/documents/0/pages/1.png")
    assert image.status_code == 200 and image.data.startswith(b"\x89PNG")
    assert client.get(f"{review}/documents/0/pages/2.png").status_code == 404
    # Another browser session: the same 404 as for a link that never existed.
    stranger = app.test_client()
    assert stranger.get(review, headers={"Accept": "application/json"}).status_code == 404
    assert stranger.get(f"/transactions/{tx.id}", headers={"Accept": "application/json"}).status_code == 404
    # Declining ends it; nothing was sent to the signing service.
    declined = client.post(review, data={"csrf_token": token, "decision": "decline"})
    assert declined.status_code == 303
    assert store.get(tx.id).state == "failed" and "declined" in store.get(tx.id).error_description


def _signed_b_t(pki, sign_digest) -> bytes:  # type: ignore[no-untyped-def]
    pdf = (SAMPLES / "employment-contract.pdf").read_bytes()
    prep = asyncio.run(pades.prepare_pdf(pdf, label="c.pdf", qualifier=Qualifier.QES, visible=False, signer_name="K", bytes_reserved=32768))
    sig = sign_digest(prep.digest, "qes", "pades")
    return asyncio.run(pades.augment_pdf(prep, sig.signature, level=Level.B_T, timestamper=pki.timestamper(), root=pki.root_asn1, material=sig.material))


def test_validation_page_takes_a_time_and_offers_the_three_reports(app: Flask, client: FlaskClient, pki, sign_digest) -> None:
    from io import BytesIO

    signed = _signed_b_t(pki, sign_digest)
    token = _csrf(client, "/validate")
    page = client.post("/validate", headers={"Accept": "text/html"}, content_type="multipart/form-data",
                       data={"csrf_token": token, "at": "now-1m", "signed": (BytesIO(signed), "c.pdf")}).get_data(as_text=True)
    assert "TOTAL_PASSED" in page and "Validation time" in page
    links = re.findall(r'href="(/reports/[0-9a-f]+\.(?:json|detailed\.json|etsi\.xml))"', page)
    assert [link.split(".", 1)[1] for link in links] == ["json", "detailed.json", "etsi.xml"]
    simple, detailed, etsi = (client.get(link) for link in links)
    assert simple.get_json()["signatures"][0]["level"] == "B-T"
    assert detailed.get_json()["signatures"][0]["timestamps"][0]["type"] == "signature"
    assert etsi.mimetype == "application/xml" and b"urn:etsi:019102:mainindication:total-passed" in etsi.data
    other_browser = app.test_client()  # another session: the same 404 as for a report that never existed
    assert {other_browser.get(link).status_code for link in links} == {404}
    bad = client.post("/validate", headers={"Accept": "text/html"}, content_type="multipart/form-data",
                      data={"csrf_token": token, "at": "last tuesday", "signed": (BytesIO(signed), "c.pdf")})
    assert bad.status_code == 400 and "is not a time" in bad.get_data(as_text=True)


def test_validation_api_at_a_time_and_report_urls(client: FlaskClient, pki, sign_digest) -> None:
    signed = base64.b64encode(_signed_b_t(pki, sign_digest)).decode()
    answer = client.post("/api/v1/validate", json={"signed": signed, "at": "+2h"}).get_json()
    signer = answer["signatures"][0]["signer"]
    assert answer["validation_time"] > signer["not_after"]
    # two hours on, the 15-minute test certificate has expired: the time-stamp's proof of existence decides
    sig = answer["signatures"][0]
    assert (answer["indication"], sig["validation_process"]) == ("TOTAL_PASSED", "LTVM")
    assert sig["proof_of_existence"]["proof"].startswith("signature time-stamp")
    for key in ("download_url", "detailed_report_url", "etsi_report_url"):
        assert client.get(answer[key].replace("http://127.0.0.1:8000", "")).status_code == 200
    refused = client.post("/api/v1/validate", json={"signed": signed, "at": "soon"})
    assert refused.status_code == 400 and refused.get_json()["error"] == "invalid_request"
