"""Certificate-first flow (design §2, second flow; CSC v1 signHash).

Core tests: the DTBS/R over the signed attributes with a known certificate and the assembly of the
returned value, with the test PKI of ``conftest.py`` (a local key stands in for the SSASP's HSM).
Integration tests: the whole flow through the real IdP, CA and signer (SoftHSM) — the service
authorization (a browser round trip), ``credentials/info``, the person's approval of the exact
DTBS/R hashes (a second round trip: the SAD is bound to them, SCAL 2), ``signHash``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
from io import BytesIO
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import pytest
import requests
from asn1crypto import cms
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils
from pyhanko.pdf_utils.reader import PdfFileReader

from services.portal import cades, certificate_first, jades, pades
from services.portal.documents import Flow, Level, Qualifier, SignatureFormat, SigningOptions
from services.portal.errors import CredentialUnsuitable, PackagingFailed
from services.portal.store import StoredDocument
from services.portal.validation import TrustSettings, validate_document
from shared.clients.signer import CredentialInfo
from shared.digests import digest_fingerprint
from shared.testing import browse_until, confirm_review

SAMPLES = Path(__file__).parents[3] / "services" / "portal" / "samples"
QES_HINT = "kari-nordmann@no-bankid"
ADES_HINT = "kari-nordmann@no-minid"
EC_ALGOS = ["1.2.840.10045.2.1", "1.2.840.10045.4.3.2", "1.2.840.10045.4.3.3", "1.2.840.10045.4.3.4"]
FILES = {SignatureFormat.PADES: "employment-contract.pdf", SignatureFormat.CADES: "meeting-minutes.txt",
         SignatureFormat.JADES: "payment-order.json"}


# ---------------------------------------------------------------- core (test PKI, no services)


def _info(pki: Any, leaf: Any, **changes: Any) -> CredentialInfo:
    values: dict[str, Any] = {"key_status": "enabled", "key_algorithms": EC_ALGOS, "key_length": 256,
                              "certificates": [pki.der(leaf), pki.der(pki.issuing), pki.der(pki.root)], "scal": "2",
                              "multisign": 1, "qualifier": "eu_eidas_qes", "raw": {}}
    values.update(changes)
    return CredentialInfo(**values)


@pytest.mark.parametrize("fmt", list(SignatureFormat))
def test_dtbsr_is_over_the_signed_attributes_with_the_real_certificate(pki: Any, trust: TrustSettings,
                                                                       fmt: SignatureFormat) -> None:
    key, leaf = pki.issue_leaf("qes")
    credential = certificate_first.OneTimeCredential.from_info("cred-1", _info(pki, leaf), needed=1,
                                                               qualifier="eu_eidas_qes")
    assert credential.sign_algo == "1.2.840.10045.4.3.2"
    content = (SAMPLES / FILES[fmt]).read_bytes()
    doc = StoredDocument(0, FILES[fmt], "application/octet-stream", content, hashlib.sha256(content).digest())
    options = SigningOptions(qualifier=Qualifier.QES, format=fmt, level=Level.B_T, flow=Flow.CERTIFICATE_FIRST,
                             visible=fmt is SignatureFormat.PADES)
    pending = asyncio.run(certificate_first.compute_dtbsr(doc, options, credential, bytes_reserved=32768))
    if fmt is SignatureFormat.JADES:
        assert pending.protected is not None
        assert pending.dtbsr == hashlib.sha256(f"{pending.protected}.".encode()).digest()
        header = json.loads(jades.b64url_decode(pending.protected))
        assert header["x5t#S256"] == base64.urlsafe_b64encode(hashlib.sha256(pki.der(leaf)).digest()).rstrip(b"=").decode()
        assert header["sigD"]["hashV"] == [base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=").decode()]
    else:
        assert pending.signed_attrs is not None
        assert pending.dtbsr == hashlib.sha256(pending.signed_attrs.dump()).digest()
        attrs = {a["type"].native: a["values"][0] for a in pending.signed_attrs}
        # ESS signing-certificate-v2 names the real one-time certificate (PAdES/CAdES baseline B-B).
        ess = attrs["signing_certificate_v2"]["certs"][0]["cert_hash"].native
        assert ess == hashlib.sha256(pki.der(leaf)).digest()
        assert ("signing_time" in attrs) == (fmt is SignatureFormat.CADES)  # PAdES forbids it, CAdES needs it
        expected = pades_digest = pending.prepared.digest if pending.prepared else cades.digest(content)
        assert attrs["message_digest"].native == expected, pades_digest
    # The HSM's part (signHash over the DTBS/R), done here with the test key.
    value = key.sign(pending.dtbsr, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    with pytest.raises(PackagingFailed, match="does not verify"):
        asyncio.run(certificate_first.assemble(pending, credential, key.sign(b"other", ec.ECDSA(hashes.SHA256()))))
    obj = asyncio.run(certificate_first.assemble(pending, credential, value))
    material = pki.material(leaf)
    if fmt is SignatureFormat.PADES:
        assert pending.prepared is not None
        signed = asyncio.run(pades.augment_pdf(pending.prepared, obj, level=Level.B_T, timestamper=pki.timestamper(),
                                               root=pki.root_asn1, material=material))
        name = PdfFileReader(BytesIO(signed)).embedded_regular_signatures[0].sig_object.get("/Name")
        assert name == "Kari Nordmann"  # the certificate's common name, not what the form said
        report = asyncio.run(validate_document("c.pdf", signed, trust))
    elif fmt is SignatureFormat.CADES:
        assert pki.der(leaf) in {c.chosen.dump() for c in cms.ContentInfo.load(obj)["content"]["certificates"]}
        signed = asyncio.run(cades.augment_cades(obj, level=Level.B_T, timestamper=pki.timestamper(), material=material))
        report = asyncio.run(validate_document("m.txt.p7s", signed, trust, original=content))
    else:
        signed = asyncio.run(jades.augment_jades(obj, level=Level.B_T, timestamper=pki.timestamper(), material=material))
        report = asyncio.run(validate_document("p.jades.json", signed, trust, original=content))
    assert report.indication == "TOTAL_PASSED", report.to_dict()
    assert (report.signatures[0].level, report.signatures[0].qualification) == ("B-T", "QES")


@pytest.mark.parametrize(("changes", "needle"), [
    ({"scal": "1"}, "SCAL 1"),
    ({"multisign": 1}, "allows 1 signature"),
    ({"key_status": "disabled"}, "disabled"),
    ({"qualifier": "eu_eidas_aes"}, "eu_eidas_aes"),
    ({"key_algorithms": ["1.2.840.10045.2.1"]}, "no SHA-256 signature algorithm"),
    ({"certificates": []}, "no usable signer certificate"),
])
def test_unsuitable_credentials_are_refused(pki: Any, changes: dict[str, Any], needle: str) -> None:
    _key, leaf = pki.issue_leaf("qes")
    info = _info(pki, leaf, **{"multisign": 2, **changes})
    with pytest.raises(CredentialUnsuitable, match=needle) as caught:
        certificate_first.OneTimeCredential.from_info("cred-1", info, needed=2, qualifier="eu_eidas_qes")
    assert caught.value.status == 502 and "step 7" in caught.value.error_description


def test_jades_es256_value_is_raw_r_s_over_the_signing_input(pki: Any) -> None:
    key, leaf = pki.issue_leaf("ades")
    credential = certificate_first.OneTimeCredential.from_info("c", _info(pki, leaf, qualifier=None), needed=1,
                                                               qualifier="eu_eidas_aes")
    doc = StoredDocument(0, "order.json", "application/json", b'{"a": 1}', b"")
    options = SigningOptions(format=SignatureFormat.JADES, flow=Flow.CERTIFICATE_FIRST)
    pending = asyncio.run(certificate_first.compute_dtbsr(doc, options, credential, bytes_reserved=32768))
    jws = asyncio.run(certificate_first.assemble(
        pending, credential, key.sign(pending.dtbsr, ec.ECDSA(utils.Prehashed(hashes.SHA256()))))).decode()
    protected, payload, signature = jws.split(".")
    raw = jades.b64url_decode(signature)
    assert payload == "" and len(raw) == 64  # ES256 r||s (RFC 7518 §3.4), not DER
    der = utils.encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    leaf.public_key().verify(der, f"{protected}.".encode(), ec.ECDSA(hashes.SHA256()))  # raises when wrong
    assert json.loads(jades.b64url_decode(protected))["alg"] == "ES256"


# ---------------------------------------------------------------- integration (the real four services)


def _audit(stack: Any) -> list[dict[str, Any]]:
    path = Path(stack.signer_settings.state_dir) / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _events(stack: Any, credential_id: str) -> list[dict[str, Any]]:
    entries = _audit(stack)
    tx_ids = {e.get("data", e).get("transaction_id") for e in entries
              if e.get("data", e).get("credential_id") == credential_id}
    return [e for e in entries if e.get("data", e).get("transaction_id") in tx_ids]


def _name(entry: dict[str, Any]) -> str:
    return str(entry.get("event") or entry.get("type"))


@pytest.mark.hsm
def test_certificate_first_pades_b_t_qes_validates_as_qes(stack: Any) -> None:
    tx = stack.sign([{"sample": "employment-contract.pdf"}], qualifier="qes", format="pades", level="B-T",
                    flow="certificate-first", visible=True, login_hint=QES_HINT)
    assert tx["state"] == "completed", tx
    assert tx["signer"]["flow"] == "certificate-first" and tx["signer"]["credential_id"]
    report = tx["documents"][0]["report"]
    assert report["indication"] == "TOTAL_PASSED", report
    sig = report["signatures"][0]
    assert (sig["level"], sig["qualification"]) == ("B-T", "QES")
    assert sig["signer"]["serial_number"].startswith("PNONO-")  # the eID person's ETSI identifier
    assert sig["signer"]["certificate_serial"].lower().lstrip("0") == tx["signer"]["certificate_serial"].lstrip("0")
    # The signer signed exactly the DTBS/R the portal computed (hash of the signed attributes).
    pdf = requests.get(tx["documents"][0]["download_url"], auth=stack.partner, timeout=30).content
    embedded = PdfFileReader(BytesIO(pdf)).embedded_regular_signatures[0]
    attrs = embedded.signer_info["signed_attrs"]
    dtbsr = hashlib.sha256(attrs.untag().dump()).digest()  # DER SET OF, not the [0] IMPLICIT field
    assert tx["signer"]["dtbsr_sha256_b64"] == [base64.b64encode(dtbsr).decode()]
    events = _events(stack, tx["signer"]["credential_id"])
    signed = [e for e in events if _name(e) == "signature.created"]
    assert [e.get("data", e)["dtbsr_digest"] for e in signed] == [dtbsr.hex()]
    assert "key.destroyed" in {_name(e) for e in events}
    assert stack.hsm_key_objects() == []
    # Independent re-validation of the downloaded bytes.
    again = requests.post(f"{stack.portal_url}/api/v1/validate", auth=stack.partner, json={"signed": base64.b64encode(pdf).decode()},
                          timeout=60).json()
    assert (again["indication"], again["signatures"][0]["qualification"]) == ("TOTAL_PASSED", "QES")


@pytest.mark.hsm
def test_certificate_first_batch_of_three_shares_one_credential_and_one_approval(stack: Any) -> None:
    copy = base64.b64encode((SAMPLES / "employment-contract.pdf").read_bytes()).decode()
    tx = stack.sign([{"sample": "employment-contract.pdf"}, {"sample": "loan-agreement.pdf"},
                     {"name": "contract-copy.pdf", "content": copy}],
                    qualifier="qes", format="pades", level="B-LT", flow="certificate-first", login_hint=QES_HINT)
    assert tx["state"] == "completed", tx
    assert len(tx["documents"]) == 3
    assert all(d["report"]["indication"] == "TOTAL_PASSED" for d in tx["documents"]), tx
    assert {d["report"]["signatures"][0]["level"] for d in tx["documents"]} == {"B-LT"}
    serials = {d["report"]["signatures"][0]["signer"]["certificate_serial"] for d in tx["documents"]}
    assert len(serials) == 1  # one one-time certificate for the three documents
    events = _events(stack, tx["signer"]["credential_id"])
    names = [_name(e) for e in events]
    # Two logins and consents: the credential, then the person's approval of the three hashes (SCAL 2).
    assert names.count("authentication.verified") == 2 and names.count("consent.given") == 2
    dtbsr = sorted(base64.b64decode(h).hex() for h in tx["signer"]["dtbsr_sha256_b64"])
    approvals = [e.get("data", e) for e in events if _name(e) == "consent.given" and e.get("data", e)["digests"]]
    assert len(approvals) == 1 and sorted(base64.b64decode(h).hex() for h in approvals[0]["digests"]) == dtbsr
    sads = [e.get("data", e) for e in events if _name(e) == "token.issued" and e.get("data", e)["kind"] == "credential"]
    assert len(sads) == 1 and sorted(sads[0]["digests"]) == dtbsr  # ONE SAD bound to the three DTBS/R hashes
    assert "sad.issued" not in names  # no SAD the person did not approve
    assert names.count("signature.created") == 3 and names.count("key.destroyed") == 1
    assert stack.hsm_key_objects() == []


@pytest.mark.hsm
@pytest.mark.parametrize("fmt", ["cades", "jades"])
def test_certificate_first_cades_and_jades(stack: Any, fmt: str) -> None:
    doc = {"cades": "meeting-minutes.txt", "jades": "payment-order.json"}[fmt]
    tx = stack.sign([{"sample": doc}], qualifier="ades", format=fmt, level="B-LT", flow="certificate-first",
                    login_hint=ADES_HINT)
    assert tx["state"] == "completed", tx
    sig = tx["documents"][0]["report"]["signatures"][0]
    assert (sig["indication"], sig["level"], sig["qualification"]) == ("TOTAL_PASSED", "B-LT", "AdES"), sig


@pytest.mark.hsm
@pytest.mark.parametrize(("fmt", "level"), [
    ("pades", "B-B"), ("pades", "B-T"), ("pades", "B-LT"), ("pades", "B-LTA"),
    ("cades", "B-B"), ("cades", "B-T"), ("cades", "B-LT"),
    ("jades", "B-T"),
])
def test_ades_formats_and_levels_person_signing(stack: Any, fmt: str, level: str) -> None:
    tx = stack.sign([{"sample": FILES[SignatureFormat(fmt)]}], qualifier="ades", format=fmt, level=level,
                    login_hint=ADES_HINT)
    assert tx["state"] == "completed", tx
    sig = tx["documents"][0]["report"]["signatures"][0]
    assert (sig["indication"], sig["level"], sig["qualification"]) == ("TOTAL_PASSED", level, "AdES"), sig


@pytest.mark.hsm
@pytest.mark.parametrize(("flow", "step_number"), [("certificate-first", 5), ("person-signing", 10)])
def test_expired_transaction_is_refused_and_nothing_is_signed(stack: Any, flow: str, step_number: int) -> None:
    portal = stack.short_ttl_portal_url  # SIGNLAB_PORTAL_TRANSACTION_TTL_SECONDS=2
    created = stack.create([{"sample": "employment-contract.pdf"}], portal_url=portal, qualifier="qes",
                           format="pades", level="B-T", flow=flow, login_hint=QES_HINT)
    keys_before = stack.hsm_key_objects()
    # The signer confirms at once, then comes back from the SSASP too late. A browser gets an
    # HTML page naming the step; the API client JSON.
    page = stack.browse(created["review_url"], headers={"Accept": "text/html"}, pause=2.5)
    assert page.status_code == 410, page.text[:300]
    assert "expired" in page.text and f"step {step_number}" in page.text
    tx = requests.get(created["status_url"], auth=stack.partner, timeout=30).json()
    assert tx["state"] == "expired" and tx["error"] == "expired_transaction", tx
    assert all("download_url" not in d for d in tx["documents"])
    download = f"{portal}/api/v1/transactions/{created['transaction_id']}/documents/0"
    assert requests.get(download, auth=stack.partner, timeout=30).status_code == 404
    # The portal never redeemed the code: no one-time key or certificate was made for it.
    assert stack.hsm_key_objects() == keys_before == []
    again = requests.get(f"{portal}/api/v1/transactions/{created['transaction_id']}", auth=stack.partner, timeout=30,
                         headers={"Accept": "application/json"}).json()
    assert again["state"] == "expired" and "nothing was signed" in again["error_description"]


@pytest.mark.hsm
def test_ui_offers_and_starts_the_certificate_first_flow(stack: Any) -> None:
    browser = requests.Session()
    page = browser.get(f"{stack.portal_url}/", headers={"Accept": "text/html"}, timeout=30)
    assert 'value="certificate-first"' in page.text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token
    started = browser.post(f"{stack.portal_url}/sign", allow_redirects=False, timeout=60, data={
        "csrf_token": token.group(1), "samples": "loan-agreement.pdf", "qualifier": "ades", "format": "pades",
        "level": "B-B", "flow": "certificate-first", "login_hint": ADES_HINT})
    # Step 1: the review page; after the confirmation step 2 (service-scope PAR accepted by the
    # real signer) and the browser goes to the signer.
    assert started.status_code == 303 and "/review/" in started.headers["Location"], started.text[:300]
    authorize_url = confirm_review(urljoin(stack.portal_url, started.headers["Location"]), browser)
    assert authorize_url.startswith(f"{stack.signer_url}/oauth2/authorize?client_id=signlab-portal&request_uri=")
    # The first return sends the browser on to approve the hashes at the signer; a finished
    # certificate-first transaction's page (this browser's own) names the credential and the
    # authorized DTBS/R.
    callback = browse_until(authorize_url, f"{stack.portal_url}/sign/callback", session=browser)
    approval = browser.get(callback, headers={"Accept": "text/html"}, allow_redirects=False, timeout=120)
    assert approval.status_code == 303 and approval.headers["Location"].startswith(f"{stack.signer_url}/oauth2/")
    callback = browse_until(approval.headers["Location"], f"{stack.portal_url}/sign/callback", session=browser)
    result = browser.get(callback, headers={"Accept": "text/html"}, timeout=120)
    assert result.status_code == 200 and "/transactions/tx-" in result.url, result.text[:300]
    tx_id = result.url.rsplit("/", 1)[1]
    meta = stack.portal_app.extensions["signlab.portal"].store.get(tx_id).meta
    assert meta["credential_id"] in result.text and meta["dtbsr_sha256_b64"][0] in result.text


@pytest.mark.hsm
@pytest.mark.parametrize(("hint", "approve", "where"), [
    (QES_HINT, False, "step 5: the signer declined"), (ADES_HINT, True, "step 4 (Signer → IPSP)")],
    ids=["declined", "loa-too-low"])
def test_certificate_first_refusals_make_no_key_and_keep_nothing(stack: Any, hint: str, approve: bool,
                                                                 where: str) -> None:
    created = stack.create([{"sample": "employment-contract.pdf"}], qualifier="qes", format="pades", level="B-T",
                           flow="certificate-first", login_hint=hint)
    page = stack.browse(created["review_url"], approve=approve)
    assert page.status_code == 403, page.text[:300]
    # The SSASP's own words, naming the step where it ended (the eID login, or the consent).
    assert page.json()["error"] == "access_denied" and where in page.json()["error_description"], page.json()
    tx = requests.get(created["status_url"], auth=stack.partner, timeout=30).json()
    assert tx["state"] == "failed" and tx["error"] == "access_denied", tx
    assert all("download_url" not in d for d in tx["documents"])
    assert stack.hsm_key_objects() == []


@pytest.mark.hsm
def test_the_signer_approves_or_declines_the_exact_hashes_at_the_ssasp(stack: Any) -> None:
    """SCAL 2: after the credential exists, the SSASP's consent page lists each document's label
    with its DTBS/R; declining there ends the transaction, signs nothing and destroys the key."""
    created = stack.create([{"sample": "employment-contract.pdf"}, {"sample": "loan-agreement.pdf"}],
                           qualifier="qes", format="pades", level="B-B", flow="certificate-first", login_hint=QES_HINT)
    session, pages = requests.Session(), []
    session.hooks["response"].append(lambda r, *_a, **_k: pages.append(r.text) if "/oauth2/consent/" in r.url
                                     and r.request.method == "GET" else None)
    first = browse_until(confirm_review(created["review_url"], session), stack.portal_url, session=session)
    onwards = session.get(first, allow_redirects=False, timeout=120)
    assert onwards.status_code == 303 and onwards.headers["Location"].startswith(stack.signer_url), onwards.text[:300]
    assert len(stack.hsm_key_objects()) == 2  # the credential's key waits for the approval
    pending = stack.portal_app.extensions["signlab.portal"].store.get(created["transaction_id"])
    assert pending.state == "pending" and pending.awaiting_hash_approval
    back = browse_until(onwards.headers["Location"], stack.portal_url, session=session, approve=False)
    answer = session.get(back, allow_redirects=False, headers={"Accept": "application/json"}, timeout=60)
    assert answer.status_code == 403 and answer.json()["error"] == "access_denied", answer.text[:300]
    approval_page = pages[-1]
    for doc in pending.documents:
        dtbsr = base64.b64decode(doc.pending_signature["dtbsr"])
        assert doc.label in approval_page and digest_fingerprint(dtbsr, "sha256") in approval_page
    tx = requests.get(created["status_url"], auth=stack.partner, timeout=30).json()
    assert tx["state"] == "failed" and all("download_url" not in d for d in tx["documents"]), tx
    assert stack.hsm_key_objects() == []  # the service token was revoked: the key is gone
    assert stack.portal_app.extensions["signlab.portal"].store.get(created["transaction_id"]).signer_token is None
