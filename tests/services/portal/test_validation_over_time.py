"""Short-term certificates over time, with the real ecosystem: sign, move the lab clock, validate.

The services of ``stack`` run in this process and read one lab clock (``shared.clock``): moving it
a day ahead makes the CA publish CRLs dated then and the portal validate then — the machine's
clock is not touched and no test waits for an expiry. Each test puts the clock back.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from lxml import etree

from services.portal.etsi_report import ETSI_NAMESPACE, schema_problems
from shared.clock import LabClock, lab_clock

pytestmark = pytest.mark.hsm

SAMPLES = Path(__file__).parents[3] / "services" / "portal" / "samples"
QES_HINT = "kari-nordmann@no-bankid"
DAY = 86400


@pytest.fixture
def clock(stack: Any) -> Iterator[LabClock]:
    """The process's lab clock (the stack's services read it), put back after the test."""
    clock = lab_clock()
    before = clock.offset()
    try:
        yield clock
    finally:
        clock.set_offset(before) if before else clock.reset()


def _signed(stack: Any, level: str, fmt: str = "pades", sample: str = "employment-contract.pdf") -> tuple[bytes, bytes | None]:
    tx = stack.sign([{"sample": sample}], qualifier="qes", format=fmt, level=level, login_hint=QES_HINT)
    assert tx["state"] == "completed", tx
    signed = requests.get(tx["documents"][0]["download_url"], auth=stack.partner, timeout=30).content
    original = None if fmt == "pades" else (SAMPLES / sample).read_bytes()
    return signed, original


def _validate(stack: Any, signed: bytes, original: bytes | None = None, at: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"signed": base64.b64encode(signed).decode(), "name": "signed"}
    if original is not None:
        body["original"] = base64.b64encode(original).decode()
    if at is not None:
        body["at"] = at
    answer = requests.post(f"{stack.portal_url}/api/v1/validate", auth=stack.partner, json=body, timeout=120)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def _download(stack: Any, url: str) -> bytes:
    answer = requests.get(url, auth=stack.partner, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.content


def test_b_b_and_b_lta_a_day_after_signing(stack: Any, clock: LabClock) -> None:
    """The acceptance case: after expiry, B-B is INDETERMINATE / OUT_OF_BOUNDS_NO_POE (pyHanko's
    basic validation), B-LTA TOTAL_PASSED with the signature time-stamp named as the proof."""
    b_b, _ = _signed(stack, "B-B")
    b_lta, _ = _signed(stack, "B-LTA")
    now = {name: _validate(stack, pdf) for name, pdf in (("B-B", b_b), ("B-LTA", b_lta))}
    assert {k: (r["indication"], r["signatures"][0]["level"]) for k, r in now.items()} == {
        "B-B": ("TOTAL_PASSED", "B-B"), "B-LTA": ("TOTAL_PASSED", "B-LTA")}
    signer = now["B-B"]["signatures"][0]["signer"]

    clock.advance(DAY)
    later_b_b, later_b_lta = _validate(stack, b_b), _validate(stack, b_lta)

    assert later_b_b["validation_time"] > signer["not_after"]  # validated after the certificate expired
    assert (later_b_b["indication"], later_b_b["sub_indication"]) == ("INDETERMINATE", "OUT_OF_BOUNDS_NO_POE")
    assert later_b_b["signatures"][0]["proof_of_existence"] is None
    assert later_b_b["signatures"][0]["validation_process"] == "Basic"
    sig = later_b_lta["signatures"][0]
    assert (later_b_lta["indication"], sig["level"], sig["qualification"]) == ("TOTAL_PASSED", "B-LTA", "QES")
    assert sig["validation_process"] == "LTA"
    poe = sig["proof_of_existence"]
    assert poe["of"] == "signature" and poe["proof"].startswith("signature time-stamp by SignLab Time-Stamping Authority")
    assert poe["time"] == sig["best_signature_time"] == sig["timestamp"]["time"]
    assert signer["not_before"] <= poe["time"] <= sig["signer"]["not_after"]
    # The detailed report says the same, with the document time-stamp protecting the validation data.
    detailed = json.loads(_download(stack, later_b_lta["detailed_report_url"]))
    signature = detailed["signatures"][0]
    assert "signature time-stamp" in signature["decided_by"] and "document time-stamp" in signature["decided_by"]
    assert [p["proof"].split(" by ")[0] for p in signature["proof_of_existence"]] == ["signature time-stamp",
                                                                                       "document time-stamp"]
    # Validated "at" a time within the certificate's life, the B-B file passes again.
    at_signing = _validate(stack, b_b, at=signer["not_before"].replace("Z", "+00:00"))
    assert at_signing["indication"] == "TOTAL_PASSED"


def test_detailed_report_lists_each_certificate_of_a_b_lt_chain_with_its_revocation_data(stack: Any) -> None:
    signed, _ = _signed(stack, "B-LT")
    report = _validate(stack, signed)
    detailed = json.loads(_download(stack, report["detailed_report_url"]))
    signature = detailed["signatures"][0]
    chain = signature["certificate_chain"]
    assert [c["subject"].split("Common Name: ")[1].split(",")[0] for c in chain] == [
        "Kari Nordmann", "SignLab Short-Term Signing CA", "SignLab Root CA"]
    leaf, issuing, root = chain
    assert root["status"] == "trust anchor" and root["revocation"] == []
    assert leaf["status"] == issuing["status"] == "valid at the validation time"
    # The signer: the OCSP answer and the issuing CA's CRL embedded at signing time (DSS), and the
    # CRL the TSP publishes now; the issuing CA: the root's CRL, embedded and current.
    leaf_revocation = {(r["type"], r["source"].split(",")[0]) for r in leaf["revocation"]}
    assert leaf_revocation == {("OCSP", "the PDF's document security store (DSS)"),
                               ("CRL", "the PDF's document security store (DSS)"), ("CRL", "the TSP")}
    assert all(r["status"] in ("good", "not listed (not revoked)") and r["used"] for r in leaf["revocation"])
    assert {r["type"] for r in issuing["revocation"]} == {"CRL"} and len(issuing["revocation"]) == 2
    ids = {r["id"] for r in signature["revocation_data"]}
    assert {r["id"] for c in chain for r in c["revocation"]} <= ids
    assert signature["timestamps"][0]["type"] == "signature" and signature["timestamps"][0]["qualified"] is True


@pytest.mark.parametrize(("fmt", "sample", "level"), [("pades", "employment-contract.pdf", "B-LTA"),
                                                      ("cades", "meeting-minutes.txt", "B-LTA"),
                                                      ("jades", "payment-order.json", "B-T"),
                                                      ("pades", "loan-agreement.pdf", "B-B")])
def test_etsi_report_is_valid_against_the_ts_119_102_2_schema(stack: Any, clock: LabClock, fmt: str, sample: str,
                                                              level: str) -> None:
    signed, original = _signed(stack, level, fmt, sample)
    clock.advance(DAY)  # after expiry: B-B is INDETERMINATE, the others pass on their time-stamps
    report = _validate(stack, signed, original)
    xml = _download(stack, report["etsi_report_url"])
    assert schema_problems(xml) == []
    root = etree.fromstring(xml)
    ns = {"vr": ETSI_NAMESPACE}
    main = root.findtext("vr:SignatureValidationReport/vr:SignatureValidationStatus/vr:MainIndication", namespaces=ns)
    expected = "indeterminate" if level == "B-B" else "total-passed"
    assert main == f"urn:etsi:019102:mainindication:{expected}"
    assert root.findtext("vr:SignatureValidationReport/vr:ValidationTimeInfo/vr:ValidationTime", namespaces=ns) == \
        report["validation_time"]
    process = root.findtext("vr:SignatureValidationReport/vr:SignatureValidationProcess/vr:SignatureValidationProcessID",
                            namespaces=ns)
    assert process == f"urn:etsi:019102:validationprocess:{report['signatures'][0]['validation_process']}"
    objects = root.findall("vr:SignatureValidationObjects/vr:ValidationObject", namespaces=ns)
    types = {o.findtext("vr:ObjectType", namespaces=ns) for o in objects}
    assert "urn:etsi:019102:validationObject:certificate" in types
    if level != "B-B":
        assert "urn:etsi:019102:validationObject:timestamp" in types
        best = root.findtext("vr:SignatureValidationReport/vr:ValidationTimeInfo/vr:BestSignatureTime/vr:POETime",
                             namespaces=ns)
        assert best == report["signatures"][0]["best_signature_time"]
