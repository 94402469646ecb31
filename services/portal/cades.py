"""CAdES detached (``.p7s``) for any file: digest, embed, raise the level.

The DTBS/R is the SHA-256 of the file (DESIGN.md step 2); the SSASP returns a detached CMS
``SignedData`` over it (step 10). B-T adds a signature time-stamp (unsigned attribute, pyHanko's
``TSTProvider``); B-LT puts every certificate and CRL/OCSP response needed for validation into
``SignedData.certificates`` / ``SignedData.crls`` (OCSP as ``RevocationInfoChoice`` *other*,
``id-ri-ocsp-response``), as ETSI EN 319 122-1 baseline B-LT does.

Limit: B-LTA (archive-time-stamp-v3 with ats-hash-index-v3) is not implemented for CAdES; the
portal refuses that combination at step 1 instead of producing something half-right.
"""

from __future__ import annotations

import hashlib

from asn1crypto import cms
from pyhanko.sign.timestamps import TimeStamper

from services.portal.documents import Level
from services.portal.errors import PackagingFailed
from services.portal.ltv import ValidationMaterial, add_signature_timestamp, replace_fields
from shared.cms_version import signed_data_version

__all__ = ["SUPPORTED_LEVELS", "augment_cades", "digest"]

SUPPORTED_LEVELS = (Level.B_B, Level.B_T, Level.B_LT)


def digest(content: bytes) -> bytes:
    """The DTBS/R of a file for CAdES detached: its SHA-256."""
    return hashlib.sha256(content).digest()


def load_signed_data(signature: bytes) -> cms.ContentInfo:
    """Parse a CMS ContentInfo(SignedData); :class:`PackagingFailed` when it is not one."""
    try:
        content_info = cms.ContentInfo.load(signature)
        if content_info["content_type"].native != "signed_data":
            raise ValueError("not signed data")
        _ = content_info["content"]["signer_infos"][0]["signature"].native
    except (ValueError, TypeError, KeyError, IndexError):
        raise PackagingFailed("the signing service returned something that is not a CMS SignedData") from None
    return content_info


async def augment_cades(
    signature: bytes, *, level: Level, timestamper: TimeStamper | None, material: ValidationMaterial
) -> bytes:
    """Raise a detached CMS to ``level``; return the DER of the ``.p7s``."""
    if level not in SUPPORTED_LEVELS:
        raise PackagingFailed(f"CAdES {level} is not supported by this portal")
    content_info = load_signed_data(signature)
    if level.rank >= Level.B_T.rank:
        if timestamper is None:
            raise PackagingFailed(f"{level} needs a time-stamping authority, and none is configured")
        try:
            content_info = await add_signature_timestamp(content_info, timestamper)
        except Exception as exc:  # the TSA client raises several unrelated types
            raise PackagingFailed(f"the time-stamping authority did not time-stamp the signature ({exc})") from None
    if level.rank >= Level.B_LT.rank:
        content_info = _with_validation_data(content_info, material)
    return content_info.dump()


def _with_validation_data(content_info: cms.ContentInfo, material: ValidationMaterial) -> cms.ContentInfo:
    if not material.crls and not material.ocsps:
        raise PackagingFailed("B-LT needs revocation data (CRL or OCSP) for the signer's certificate, and none was available")
    signed_data = content_info["content"]
    present = {c.chosen.dump() for c in signed_data["certificates"]} if signed_data["certificates"].native else set()
    certificates = list(signed_data["certificates"]) if signed_data["certificates"].native else []
    for cert in material.asn1_certificates():
        if cert.dump() not in present:
            certificates.append(cms.CertificateChoices(name="certificate", value=cert))
            present.add(cert.dump())
    revocation: list[cms.RevocationInfoChoice] = list(signed_data["crls"]) if signed_data["crls"].native else []
    for item in material.asn1_crls():
        revocation.append(cms.RevocationInfoChoice(name="crl", value=item))
    for response in material.asn1_ocsps():
        revocation.append(
            cms.RevocationInfoChoice(
                name="other",
                value=cms.OtherRevocationInfoFormat(
                    {"other_rev_info_format": "ocsp_response", "other_rev_info": response}
                ),
            )
        )
    new_signed_data = replace_fields(
        signed_data, certificates=cms.CertificateSet(certificates), crls=cms.RevocationInfoChoices(revocation)
    )
    # An OCSP response in ``crls`` (``other``) makes the SignedData version 5 (RFC 5652 §5.1).
    new_signed_data["version"] = signed_data_version(new_signed_data)
    return cms.ContentInfo.load(cms.ContentInfo({"content_type": "signed_data", "content": new_signed_data}).dump())
