"""Packaging and validation core: every format × level × QES/AdES, tampering, wrong root, revocation.

The SSASP and TSA here are the test fixtures of ``conftest.py`` (real pyHanko/cryptography, test
keys); the integration tests run the same paths against the real services.
"""

from __future__ import annotations

import asyncio
import hashlib
from io import BytesIO
from pathlib import Path

import pytest
from asn1crypto import cms
from asn1crypto import x509 as asn1_x509
from cryptography.x509.oid import NameOID
from pyhanko.sign import signers
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import async_validate_pdf_signature

from services.portal import cades, jades, pades
from services.portal.documents import Level, Qualifier
from services.portal.errors import PackagingFailed
from services.portal.ltv import ValidationMaterial, validation_context
from services.portal.settings import PortalSettings
from services.portal.validation import TrustSettings, load_registry, validate_document
from shared.cms_version import version_problems

SAMPLES = Path(__file__).parents[3] / "services" / "portal" / "samples"
PDF = (SAMPLES / "employment-contract.pdf").read_bytes()
JSON = (SAMPLES / "payment-order.json").read_bytes()


@pytest.fixture(scope="module")
def trust(pki) -> TrustSettings:
    return TrustSettings(pki.root_asn1, load_registry(pki.trusted_list()), pki.material(), "test list")


DEFAULT_RESERVATION = PortalSettings.model_fields["pdf_bytes_reserved"].default


def _signed_pdf(pki, sign_digest, level: Level, qualifier: str = "qes", visible: bool = False, pdf: bytes = PDF) -> bytes:
    """Signed at ``level`` with the portal's default /Contents reservation for that level."""
    prep = asyncio.run(pades.prepare_pdf(pdf, label="c.pdf", qualifier=Qualifier(qualifier), visible=visible,
                                         signer_name="Kari Nordmann",
                                         bytes_reserved=pades.contents_reservation(level, DEFAULT_RESERVATION)))
    sig = sign_digest(prep.digest, qualifier, "pades")
    return asyncio.run(pades.augment_pdf(prep, sig.signature, level=level, timestamper=pki.timestamper(),
                                         root=pki.root_asn1, material=sig.material))


@pytest.mark.parametrize("qualifier", ["qes", "ades"])
@pytest.mark.parametrize("level", list(Level))
def test_pades_every_level(pki, sign_digest, trust, level: Level, qualifier: str) -> None:
    signed = _signed_pdf(pki, sign_digest, level, qualifier)
    # pyHanko's own validator, independently of the report code
    reader = PdfFileReader(BytesIO(signed))
    status = asyncio.run(async_validate_pdf_signature(reader.embedded_regular_signatures[0],
                                                      validation_context(pki.root_asn1, pki.material(), revocation_mode="soft-fail")))
    assert status.bottom_line, status.summary()
    report = asyncio.run(validate_document("c.pdf", signed, trust))
    assert report.indication == "TOTAL_PASSED", report.to_dict()
    sig = report.signatures[0]
    assert sig.level == level.value
    assert sig.qualification == ("QES" if qualifier == "qes" else "AdES")
    assert sig.signer["serial_number"] == "PNONO-01017012345"
    if level is Level.B_LTA:
        assert len(reader.embedded_timestamp_signatures) == 1
    # The stored report is plain data (a pyHanko string object in it once made every copy deep-copy
    # the whole parsed PDF).
    assert _plain_types(report.to_dict()) <= {dict, list, str, int, bool, type(None)}


def _plain_types(value) -> set[type]:
    if isinstance(value, dict):
        return {dict}.union(*(_plain_types(v) for v in value.values()))
    if isinstance(value, list):
        return {list}.union(*(_plain_types(v) for v in value))
    return {type(value)}


def test_b_b_reserves_half_of_the_time_stamped_levels() -> None:
    assert pades.contents_reservation(Level.B_B, 20480) == 10240
    assert {pades.contents_reservation(level, 20480) for level in (Level.B_T, Level.B_LT, Level.B_LTA)} == {20480}
    # never below what the chain and the signature need (4 kB of DER)
    assert pades.contents_reservation(Level.B_B, 16384) == 8192


@pytest.mark.parametrize("qualifier", ["qes", "ades"])
@pytest.mark.parametrize("level", list(Level))
def test_cades_and_jades_levels(pki, sign_digest, trust, level: Level, qualifier: str) -> None:
    sig = sign_digest(cades.digest(JSON), qualifier, "cades")
    p7s = asyncio.run(cades.augment_cades(sig.signature, level=level, timestamper=pki.timestamper(), material=sig.material,
                                          document_digest=cades.digest(JSON)))
    report = asyncio.run(validate_document("p.json.p7s", p7s, trust, original=JSON))
    assert (report.indication, report.signatures[0].level) == ("TOTAL_PASSED", level.value)
    assert report.signatures[0].qualification == ("QES" if qualifier == "qes" else "AdES")
    jsig = sign_digest(jades.digest(JSON), qualifier, "jades")
    jws = asyncio.run(jades.augment_jades(jsig.signature, level=level, timestamper=pki.timestamper(), material=jsig.material,
                                          payload=JSON))
    jreport = asyncio.run(validate_document("p.jades.json", jws, trust, original=JSON))
    assert (jreport.indication, jreport.signatures[0].level) == ("TOTAL_PASSED", level.value), jreport.to_dict()
    assert jreport.signatures[0].qualification == ("QES" if qualifier == "qes" else "AdES")


def test_visible_signature_shows_name_and_qualifier(pki, sign_digest, trust, tmp_path: Path) -> None:
    import subprocess

    signed = _signed_pdf(pki, sign_digest, Level.B_B, "qes", visible=True)
    path = tmp_path / "v.pdf"
    path.write_bytes(signed)
    # The stamp is an appearance stream, not page text: check the appearance contents via pyHanko.
    reader = PdfFileReader(BytesIO(signed))
    field = reader.embedded_regular_signatures[0].sig_field
    appearance = field["/AP"]["/N"].get_object().data
    assert b"Kari Nordmann" in appearance or b"Kari" in appearance
    assert b"QES" in appearance
    assert subprocess.run(["pdfinfo", str(path)], capture_output=True).returncode == 0


def test_second_signature_keeps_the_first_valid(pki, sign_digest, trust) -> None:
    first = _signed_pdf(pki, sign_digest, Level.B_T)
    second = _signed_pdf(pki, sign_digest, Level.B_T, "ades", pdf=first)
    report = asyncio.run(validate_document("twice.pdf", second, trust))
    assert [s.id for s in report.signatures] == ["Signature1", "Signature2"]
    assert all(s.indication == "TOTAL_PASSED" for s in report.signatures), report.to_dict()
    assert [s.qualification for s in report.signatures] == ["QES", "AdES"]


def test_tampered_pdf_is_total_failed_with_explanation(pki, sign_digest, trust) -> None:
    signed = bytearray(_signed_pdf(pki, sign_digest, Level.B_LTA))
    signed[signed.find(b"Salary") + 1] ^= 0x01
    report = asyncio.run(validate_document("t.pdf", bytes(signed), trust))
    assert report.indication == "TOTAL_FAILED"
    assert report.signatures[0].sub_indication == "HASH_FAILURE"
    assert "changed after it was signed" in report.signatures[0].explanations[0]
    assert report.signatures[0].qualification == "not qualified"


def test_wrong_root_is_indeterminate(other_sign_digest, trust) -> None:
    prep = asyncio.run(pades.prepare_pdf(PDF, label="c.pdf", qualifier=Qualifier.QES, visible=False, signer_name="", bytes_reserved=32768))
    sig = other_sign_digest(prep.digest, "qes", "pades")
    signed = asyncio.run(pades.finish_pdf(prep, sig.signature))
    report = asyncio.run(validate_document("c.pdf", signed, trust))
    assert (report.indication, report.sub_indication) == ("INDETERMINATE", "NO_CERTIFICATE_CHAIN_FOUND")
    assert "trust anchor" in report.signatures[0].explanations[0]


def test_revoked_b_b_signature_is_revoked_no_poe(pki, sign_digest) -> None:
    """EN 319 102-1 §5.3 as pyHanko runs it: a revoked certificate with no proof that the signature
    existed before the revocation (B-B) is INDETERMINATE / REVOKED_NO_POE."""
    prep = asyncio.run(pades.prepare_pdf(PDF, label="c.pdf", qualifier=Qualifier.QES, visible=False, signer_name="", bytes_reserved=32768))
    sig = sign_digest(prep.digest, "qes", "pades")
    signed = asyncio.run(pades.finish_pdf(prep, sig.signature))
    revoked_trust = TrustSettings(pki.root_asn1, load_registry(pki.trusted_list()), pki.material(revoked=[sig.leaf.serial_number]))
    report = asyncio.run(validate_document("c.pdf", signed, revoked_trust))
    assert (report.indication, report.sub_indication) == ("INDETERMINATE", "REVOKED_NO_POE")
    assert "revoked" in " ".join(c.detail for c in report.signatures[0].checks if c.name == "Revocation status")


def test_detached_payload_changed_or_missing(pki, sign_digest, trust) -> None:
    changed = JSON.replace(b"12500", b"92500")
    sig = sign_digest(cades.digest(JSON), "qes", "cades")
    assert asyncio.run(validate_document("x.p7s", sig.signature, trust, original=changed)).sub_indication == "HASH_FAILURE"
    missing = asyncio.run(validate_document("x.p7s", sig.signature, trust))
    assert (missing.indication, missing.sub_indication) == ("INDETERMINATE", "SIGNED_DATA_NOT_FOUND")
    jsig = sign_digest(jades.digest(JSON), "qes", "jades")
    assert asyncio.run(validate_document("x.json", jsig.signature, trust, original=changed)).sub_indication == "HASH_FAILURE"


def test_garbage_is_format_failure(trust) -> None:
    for junk in (b"%PDF-1.7 garbage", b"\x30\x03\x02\x01\x01", b"{\"protected\": 1}"):
        report = asyncio.run(validate_document("junk", junk, trust, original=b"x"))
        assert report.indication in ("TOTAL_FAILED", "INDETERMINATE")
        assert report.sub_indication in ("FORMAT_FAILURE",), report.to_dict()


def test_small_reservation_fails_clearly(pki, sign_digest) -> None:
    prep = asyncio.run(pades.prepare_pdf(PDF, label="c.pdf", qualifier=Qualifier.QES, visible=False, signer_name="", bytes_reserved=1024))
    sig = sign_digest(prep.digest, "qes", "pades")
    with pytest.raises(PackagingFailed, match="does not fit"):
        asyncio.run(pades.finish_pdf(prep, sig.signature))


def test_lt_without_revocation_data_fails_clearly(pki, sign_digest) -> None:
    sig = sign_digest(cades.digest(JSON), "qes", "cades")
    with pytest.raises(PackagingFailed, match="revocation"):
        asyncio.run(cades.augment_cades(sig.signature, level=Level.B_LT, timestamper=pki.timestamper(), material=ValidationMaterial()))
    prep = asyncio.run(pades.prepare_pdf(PDF, label="c.pdf", qualifier=Qualifier.QES, visible=False, signer_name="", bytes_reserved=32768))
    psig = sign_digest(prep.digest, "qes", "pades")
    with pytest.raises(PackagingFailed, match="B-LT"):
        asyncio.run(pades.augment_pdf(prep, psig.signature, level=Level.B_LT, timestamper=pki.timestamper(),
                                      root=pki.root_asn1, material=ValidationMaterial(certificates=psig.material.certificates)))


def test_not_a_cms_from_the_signer_fails_clearly(pki) -> None:
    prep = asyncio.run(pades.prepare_pdf(PDF, label="c.pdf", qualifier=Qualifier.QES, visible=False, signer_name="", bytes_reserved=32768))
    with pytest.raises(PackagingFailed, match="not a CMS"):
        asyncio.run(pades.augment_pdf(prep, b"nonsense", level=Level.B_B, timestamper=None, root=pki.root_asn1, material=ValidationMaterial()))


@pytest.mark.parametrize("level", list(Level))
def test_cades_signed_data_versions_follow_rfc_5652(pki, sign_digest, level: Level) -> None:
    """RFC 5652 §5.1: with the OCSP response in ``crls`` as ``otherRevocationInfoFormat`` (B-LT and
    up) the SignedData is version 5; below, version 1 (id-data, signer by issuer and serial)."""
    sig = sign_digest(cades.digest(JSON), "qes", "cades")
    assert sig.material.ocsps, "the test SSASP hands out an OCSP response for the leaf"
    p7s = cms.ContentInfo.load(asyncio.run(cades.augment_cades(sig.signature, level=level, timestamper=pki.timestamper(),
                                                               material=sig.material, document_digest=cades.digest(JSON))))
    signed_data = p7s["content"]
    others = [c for c in signed_data["crls"] if c.name == "other"] if signed_data["crls"].native else []
    assert bool(others) == (level.rank >= Level.B_LT.rank)
    assert signed_data["version"].native == ("v5" if others else "v1")
    assert version_problems(p7s) == []


@pytest.mark.parametrize("level", [Level.B_LT, Level.B_LTA])
def test_dss_vri_key_is_upper_case_sha1_of_the_signature_bytes(pki, sign_digest, level: Level) -> None:
    """ISO 32000-2 §12.8.4.4: the /VRI key of a signature is the upper-case hex SHA-1 of its bytes —
    the /Contents string decoded from the gap of the /ByteRange, read here straight from the file."""
    signed = _signed_pdf(pki, sign_digest, level)
    reader = PdfFileReader(BytesIO(signed))
    keys = {str(k)[1:] for k in reader.root["/DSS"]["/VRI"]}
    signature = reader.embedded_regular_signatures[0]
    start, gap_start, gap_end, _ = (int(v) for v in signature.sig_object["/ByteRange"])
    assert signed[gap_start:gap_start + 1] == b"<" and signed[gap_end - 1:gap_end] == b">"
    contents = bytes.fromhex(signed[gap_start + 1:gap_end - 1].decode("ascii"))
    expected = hashlib.sha1(contents).hexdigest().upper()
    assert expected in keys, (expected, keys)
    assert all(k == k.upper() for k in keys)
    lower_hex_text_key = hashlib.sha1(contents.hex().encode("ascii")).hexdigest().upper()
    assert lower_hex_text_key not in keys


def test_signature_name_is_never_the_placeholder(pki, sign_digest) -> None:
    """ISO 32000-2 Table 255 /Name: the signer's name from the certificate (certificate first), or
    absent while the certificate does not exist yet (person signing) — never a placeholder text."""
    person_signing = asyncio.run(pades.prepare_pdf(PDF, label="c.pdf", qualifier=Qualifier.QES, visible=True,
                                                   signer_name="", bytes_reserved=32768))
    sig_object = _signature_dictionary(person_signing.prepared)
    assert "/Name" not in sig_object, sig_object.get("/Name")
    _key, leaf = pki.issue_leaf("qes")
    external = signers.ExternalSigner(signing_cert=asn1_x509.Certificate.load(pki.der(leaf)), cert_registry=None,
                                      signature_value=512)
    certificate_first = asyncio.run(pades.prepare_pdf(PDF, label="c.pdf", qualifier=Qualifier.QES, visible=True,
                                                      signer_name="Someone Typed This", bytes_reserved=32768,
                                                      external=external))
    common_name = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert str(_signature_dictionary(certificate_first.prepared)["/Name"]) == common_name == "Kari Nordmann"


def _signature_dictionary(pdf: bytes):
    reader = PdfFileReader(BytesIO(pdf))
    field = next(f for f in reader.root["/AcroForm"]["/Fields"] if f.get_object().get("/FT") == "/Sig")
    return field.get_object()["/V"].get_object()
