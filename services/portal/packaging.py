"""Step 10, format by format: a signature object raised to the chosen level as PAdES, CAdES or JAdES.

:func:`package_signature` turns the B-B object the SSASP returned (a CMS for PAdES/CAdES, a JWS
for JAdES) into the signed file at the transaction's level (time-stamp, validation data, archive
time-stamp; :mod:`services.portal.pades`, :mod:`~services.portal.cades`,
:mod:`~services.portal.jades`); :func:`signed_file_name` names that file after the document.
:func:`sign_doc_validation_material` reads the certificates and revocation data a ``signDoc``
answer carries, which B-LT and B-LTA embed. :class:`~services.portal.signing.PortalCore` calls
these for both flows.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from asn1crypto import x509

from services.portal import cades, jades, pades
from services.portal.documents import SignatureFormat, SigningOptions
from services.portal.errors import PackagingFailed
from services.portal.ltv import ValidationMaterial
from services.portal.store import StoredDocument

__all__ = ["package_signature", "prepared_pdf_of", "sign_doc_validation_material", "signed_file_name"]


def signed_file_name(label: str, fmt: SignatureFormat) -> str:
    """The download name of a signed document: ``contract-signed.pdf``, ``order.json.p7s``, ``order.jades.json``."""
    stem = label.rsplit(".", 1)[0] if "." in label else label
    if fmt is SignatureFormat.PADES:
        return f"{stem}-signed.pdf"
    if fmt is SignatureFormat.CADES:
        return f"{label}.p7s"
    return f"{stem}.jades.json"


def sign_doc_validation_material(result: Any) -> ValidationMaterial:
    """The certificates, CRLs and OCSP responses of a ``signDoc`` answer (its ``certificates`` and
    ``validation_info``); values that are not standard base64 are left out."""
    material = ValidationMaterial()
    info = getattr(result, "validation_info", None) or {}
    material.certificates.extend(_decoded(getattr(result, "certificates", None)))
    material.certificates.extend(_decoded(info.get("certificates")))
    material.crls.extend(_decoded(info.get("crl") or info.get("crls")))
    material.ocsps.extend(_decoded(info.get("ocsp") or info.get("ocsps")))
    return material


def _decoded(values: Any) -> list[bytes]:
    out = []
    for value in values or []:
        if isinstance(value, bytes):
            out.append(value)
        else:
            try:
                out.append(base64.b64decode(str(value), validate=True))
            except binascii.Error:
                continue
    return out


def prepared_pdf_of(doc: StoredDocument) -> pades.PreparedPdf:
    """The prepared PDF kept for a PAdES document at step 1 (its /ByteRange digest is what was signed).

    :raises PackagingFailed: the document was stored without its prepared PDF.
    """
    if doc.prepared is None or doc.reserved_start is None or doc.reserved_end is None:
        raise PackagingFailed(f"document {doc.label!r} has no prepared PDF to put the signature in")
    return pades.PreparedPdf(doc.prepared, doc.digest, doc.reserved_start, doc.reserved_end, doc.field_name or "Signature1")


async def package_signature(doc: StoredDocument, signature: bytes, prepared: pades.PreparedPdf | None,
                            options: SigningOptions, material: ValidationMaterial, timestamper: Any,
                            root: x509.Certificate) -> bytes:
    """The signed file of ``doc`` at ``options.level`` in ``options.format``.

    :param prepared: the prepared PDF (PAdES only).
    :param root: the trust anchor (PAdES B-LT/B-LTA validate the chain into the DSS).
    """
    if options.format is SignatureFormat.PADES:
        if prepared is None:
            raise PackagingFailed(f"document {doc.label!r} has no prepared PDF to put the signature in")
        return await pades.augment_pdf(prepared, signature, level=options.level, timestamper=timestamper,
                                       root=root, material=material)
    if options.format is SignatureFormat.CADES:
        return await cades.augment_cades(signature, level=options.level, timestamper=timestamper, material=material,
                                         document_digest=cades.digest(doc.original))
    return await jades.augment_jades(_jws_bytes(signature), level=options.level, timestamper=timestamper,
                                     material=material, payload=doc.original)


def _jws_bytes(signature: bytes) -> bytes:
    """The JWS from a signDoc object: the compact/JSON text itself, or base64 of it."""
    text = signature.strip()
    if text.startswith(b"{") or text.count(b".") == 2:
        return text
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        return text
