"""Packaging (``pades``, ``cades``, ``jades`` and ``packaging``): every format × level × QES/AdES.

The SSASP and TSA here are the test fixtures of ``conftest.py`` (real pyHanko/cryptography, test
keys); the integration tests run the same paths against the real services.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from io import BytesIO
from pathlib import Path

import pytest
from asn1crypto import cms
from asn1crypto import x509 as asn1_x509
from cryptography.x509.oid import NameOID
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import signers
from pyhanko.sign.validation import async_validate_pdf_signature

from services.portal import cades, jades, pades
from services.portal.documents import Level, Qualifier, SignatureFormat, SigningOptions
from services.portal.errors import PackagingFailed
from services.portal.ltv import ValidationMaterial, validation_context
from services.portal.packaging import package_signature, sign_doc_validation_material, signed_file_name
from services.portal.store import StoredDocument
from services.portal.validation import validate_document
from shared.cms_version import version_problems

SAMPLES = Path(__file__).parents[3] / "services" / "portal" / "samples"
PDF = (SAMPLES / "employment-contract.pdf").read_bytes()
JSON = (SAMPLES / "payment-order.json").read_bytes()


@pytest.mark.parametrize("qualifier", ["qes", "ades"])
@pytest.mark.parametrize("level", list(Level))
def test_pades_every_level(pki, signed_pdf, trust, level: Level, qualifier: str) -> None:
    signed = signed_pdf(level, qualifier)
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


def test_visible_signature_shows_name_and_qualifier(signed_pdf, tmp_path: Path) -> None:
    import subprocess

    signed = signed_pdf(Level.B_B, "qes", visible=True)
    path = tmp_path / "v.pdf"
    path.write_bytes(signed)
    # The stamp is an appearance stream, not page text: check the appearance contents via pyHanko.
    reader = PdfFileReader(BytesIO(signed))
    field = reader.embedded_regular_signatures[0].sig_field
    appearance = field["/AP"]["/N"].get_object().data
    assert b"Kari Nordmann" in appearance or b"Kari" in appearance
    assert b"QES" in appearance
    assert subprocess.run(["pdfinfo", str(path)], capture_output=True, check=False).returncode == 0


def test_second_signature_keeps_the_first_valid(signed_pdf, trust) -> None:
    first = signed_pdf(Level.B_T)
    second = signed_pdf(Level.B_T, "ades", pdf=first)
    report = asyncio.run(validate_document("twice.pdf", second, trust))
    assert [s.id for s in report.signatures] == ["Signature1", "Signature2"]
    assert all(s.indication == "TOTAL_PASSED" for s in report.signatures), report.to_dict()
    assert [s.qualification for s in report.signatures] == ["QES", "AdES"]


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
        asyncio.run(pades.augment_pdf(prep, b"nonsense", level=Level.B_B, timestamper=None, root=pki.root_asn1,
                                      material=ValidationMaterial()))


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
def test_dss_vri_key_is_upper_case_sha1_of_the_signature_bytes(signed_pdf, level: Level) -> None:
    """ISO 32000-2 §12.8.4.4: the /VRI key of a signature is the upper-case hex SHA-1 of its bytes —
    the /Contents string decoded from the gap of the /ByteRange, read here straight from the file."""
    signed = signed_pdf(level)
    reader = PdfFileReader(BytesIO(signed))
    keys = {str(k)[1:] for k in reader.root["/DSS"]["/VRI"]}
    signature = reader.embedded_regular_signatures[0]
    _start, gap_start, gap_end, _ = (int(v) for v in signature.sig_object["/ByteRange"])
    assert signed[gap_start:gap_start + 1] == b"<" and signed[gap_end - 1:gap_end] == b">"
    contents = bytes.fromhex(signed[gap_start + 1:gap_end - 1].decode("ascii"))
    expected = hashlib.sha1(contents, usedforsecurity=False).hexdigest().upper()  # the key ISO 32000-2 defines
    assert expected in keys, (expected, keys)
    assert all(k == k.upper() for k in keys)
    lower_hex_text_key = hashlib.sha1(contents.hex().encode("ascii"), usedforsecurity=False).hexdigest().upper()
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


def test_signed_files_are_named_after_the_document() -> None:
    assert signed_file_name("contract.pdf", SignatureFormat.PADES) == "contract-signed.pdf"
    assert signed_file_name("order.json", SignatureFormat.CADES) == "order.json.p7s"
    assert signed_file_name("order.json", SignatureFormat.JADES) == "order.jades.json"
    assert signed_file_name("README", SignatureFormat.PADES) == "README-signed.pdf"


def test_sign_doc_validation_material_reads_certificates_and_revocation_data(pki, sign_digest) -> None:
    sig = sign_digest(cades.digest(JSON), "qes", "cades")
    leaf, crl = sig.material.certificates[0], sig.material.crls[0]

    class Answer:  # the fields of a signDoc answer the portal reads (shared.clients.signer)
        certificates = [base64.b64encode(leaf).decode()]
        validation_info = {"crl": [base64.b64encode(crl).decode(), "not base64!"], "ocsp": [b"raw-der"]}

    material = sign_doc_validation_material(Answer())
    assert (material.certificates, material.crls, material.ocsps) == ([leaf], [crl], [b"raw-der"])


@pytest.mark.parametrize("encoded", [False, True])
def test_package_signature_takes_a_jws_as_text_or_as_base64(pki, sign_digest, trust, encoded: bool) -> None:
    """signDoc's JAdES object is the JWS text; some SSASPs send it base64-encoded: both are packaged."""
    jsig = sign_digest(jades.digest(JSON), "qes", "jades")
    signature = base64.b64encode(jsig.signature) if encoded else jsig.signature
    doc = StoredDocument(0, "order.json", "application/json", JSON, jades.digest(JSON))
    options = SigningOptions.parse({"format": "jades", "level": "B-T"})
    signed = asyncio.run(package_signature(doc, signature, None, options, jsig.material, pki.timestamper(), pki.root_asn1))
    report = asyncio.run(validate_document("order.jades.json", signed, trust, original=JSON))
    assert (report.indication, report.signatures[0].level) == ("TOTAL_PASSED", "B-T"), report.to_dict()
