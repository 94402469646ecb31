"""PAdES validation (``validation_pades``): a changed PDF, another trust root, a revoked certificate."""

from __future__ import annotations

import asyncio
from pathlib import Path

from services.portal import pades
from services.portal.documents import Level, Qualifier
from services.portal.validation import TrustSettings, load_registry, validate_document

PDF = (Path(__file__).parents[3] / "services" / "portal" / "samples" / "employment-contract.pdf").read_bytes()


def test_tampered_pdf_is_total_failed_with_explanation(signed_pdf, trust) -> None:
    signed = bytearray(signed_pdf(Level.B_LTA))
    signed[signed.find(b"Salary") + 1] ^= 0x01
    report = asyncio.run(validate_document("t.pdf", bytes(signed), trust))
    assert report.indication == "TOTAL_FAILED"
    assert report.signatures[0].sub_indication == "HASH_FAILURE"
    assert "changed after it was signed" in report.signatures[0].explanations[0]
    assert report.signatures[0].qualification == "not qualified"


def test_wrong_root_is_indeterminate(other_sign_digest, trust) -> None:
    prep = asyncio.run(pades.prepare_pdf(PDF, label="c.pdf", qualifier=Qualifier.QES, visible=False, signer_name="",
                                         bytes_reserved=32768))
    sig = other_sign_digest(prep.digest, "qes", "pades")
    signed = asyncio.run(pades.finish_pdf(prep, sig.signature))
    report = asyncio.run(validate_document("c.pdf", signed, trust))
    assert (report.indication, report.sub_indication) == ("INDETERMINATE", "NO_CERTIFICATE_CHAIN_FOUND")
    assert "trust anchor" in report.signatures[0].explanations[0]


def test_revoked_b_b_signature_is_revoked_no_poe(pki, sign_digest) -> None:
    """EN 319 102-1 §5.3 as pyHanko runs it: a revoked certificate with no proof that the signature
    existed before the revocation (B-B) is INDETERMINATE / REVOKED_NO_POE."""
    prep = asyncio.run(pades.prepare_pdf(PDF, label="c.pdf", qualifier=Qualifier.QES, visible=False, signer_name="",
                                         bytes_reserved=32768))
    sig = sign_digest(prep.digest, "qes", "pades")
    signed = asyncio.run(pades.finish_pdf(prep, sig.signature))
    revoked_trust = TrustSettings(pki.root_asn1, load_registry(pki.trusted_list()),
                                  pki.material(revoked=[sig.leaf.serial_number]))
    report = asyncio.run(validate_document("c.pdf", signed, revoked_trust))
    assert (report.indication, report.sub_indication) == ("INDETERMINATE", "REVOKED_NO_POE")
    assert "revoked" in " ".join(c.detail for c in report.signatures[0].checks if c.name == "Revocation status")
