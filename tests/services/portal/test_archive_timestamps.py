"""The archive time-stamp checks of the validation report (``services/portal/archive_timestamps.py``):
they agree with EU DSS on DSS-made CAdES/JAdES B-LTA files (good and broken), accept what the
portal builds, and catch a signature changed after its archive time-stamp."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

from asn1crypto import cms

from services.portal import cades, jades
from services.portal.archive_timestamps import cades_archive_checks, jades_archive_checks
from services.portal.documents import Level
from services.portal.validation import validate_document
from shared.jades import b64url

FIXTURES = Path(__file__).parent / "fixtures" / "dss"
SAMPLES = Path(__file__).parents[3] / "services" / "portal" / "samples"
JSON = (SAMPLES / "payment-order.json").read_bytes()


def test_agrees_with_dss_on_a_cades_b_lta() -> None:
    checks = cades_archive_checks((FIXTURES / "cades-lta.p7m").read_bytes(), None)
    assert len(checks) == 1 and checks[0].imprint_matches, checks[0].problems


def test_catches_the_ats_hash_index_dss_made_wrong() -> None:
    [check] = cades_archive_checks((FIXTURES / "cades-ats-v3-wrong-cert.p7m").read_bytes(), None)
    assert not check.imprint_matches
    assert "the ats-hash-index-v3 names 1 certificate(s) the signature does not hold" in check.problems


def test_agrees_with_dss_on_a_jades_b_lta_and_its_broken_twin() -> None:
    [good] = jades_archive_checks((FIXTURES / "jades-lta.json").read_bytes(), None)
    assert good.imprint_matches and good.hash_algorithm == "sha256"
    [broken] = jades_archive_checks((FIXTURES / "jades-lta-broken-arcTst.json").read_bytes(), None)
    assert not broken.imprint_matches
    assert broken.problems == ["the arcTst message imprint does not match the signature (TS 119 182-1 §5.3.6.3)"]


def _cades_lta(pki, sign_digest) -> bytes:
    sig = sign_digest(cades.digest(JSON), "qes", "cades")
    return asyncio.run(cades.augment_cades(sig.signature, level=Level.B_LTA, timestamper=pki.timestamper(),
                                           material=sig.material, document_digest=cades.digest(JSON)))


def test_portal_cades_b_lta_is_covered_exactly(pki, sign_digest, trust) -> None:
    p7s = _cades_lta(pki, sign_digest)
    [check] = cades_archive_checks(p7s, JSON)
    assert check.imprint_matches, check.problems
    # Another file: the imprint (which covers the file's hash) no longer matches.
    [other] = cades_archive_checks(p7s, JSON + b" ")
    assert "does not match the signature" in other.problems[-1]
    # A certificate taken out of SignedData after the archive time-stamp: its index names it.
    content_info = cms.ContentInfo.load(p7s)
    signed_data = content_info["content"]
    signed_data["certificates"] = cms.CertificateSet(list(signed_data["certificates"])[1:])
    stripped = cms.ContentInfo({"content_type": "signed_data", "content": signed_data}).dump(force=True)
    [after] = cades_archive_checks(stripped, JSON)
    assert "the ats-hash-index-v3 names 1 certificate(s) the signature does not hold" in after.problems
    report = asyncio.run(validate_document("p.json.p7s", stripped, trust, original=JSON))
    archive = next(c for c in report.signatures[0].checks if c.name.startswith("Archive time-stamp"))
    assert archive.outcome == "failed" and report.signatures[0].level != "B-LTA"


def test_portal_jades_b_lta_is_covered_exactly(pki, sign_digest, trust) -> None:
    jsig = sign_digest(jades.digest(JSON), "qes", "jades")
    signed = asyncio.run(jades.augment_jades(jsig.signature, level=Level.B_LTA, timestamper=pki.timestamper(),
                                             material=jsig.material, payload=JSON))
    [check] = jades_archive_checks(signed, JSON)
    assert check.imprint_matches, check.problems
    # The etsiU elements are base64url JSON objects: sigTst, xVals, rVals, then arcTst.
    elements = json.loads(signed)["header"]["etsiU"]
    names = [next(iter(json.loads(base64.urlsafe_b64decode(e + "=" * (-len(e) % 4))))) for e in elements]
    assert names == ["sigTst", "xVals", "rVals", "arcTst"]
    # An rVals element swapped for another one after the archive time-stamp is caught.
    document = json.loads(signed)
    document["header"]["etsiU"][2] = b64url(b'{"rVals":{"crlVals":[],"ocspVals":[]}}')
    [tampered] = jades_archive_checks(json.dumps(document).encode(), JSON)
    assert not tampered.imprint_matches
    report = asyncio.run(validate_document("p.jades.json", json.dumps(document).encode(), trust, original=JSON))
    assert report.signatures[0].level != "B-LTA"
