"""CAdES detached (``.p7s``) for any file: digest, embed, raise the level.

The DTBS/R is the SHA-256 of the file (docs/design.md step 2); the SSASP returns a detached CMS
``SignedData`` over it (step 10). B-T adds a signature time-stamp (unsigned attribute, pyHanko's
``TSTProvider``); B-LT puts every certificate and CRL/OCSP response needed for validation into
``SignedData.certificates`` / ``SignedData.crls`` (OCSP as ``RevocationInfoChoice`` *other*,
``id-ri-ocsp-response``), as ETSI EN 319 122-1 baseline B-LT does.

B-LTA adds an **archive-time-stamp-v3** (EN 319 122-1 §5.5.3, ``id-aa-ets-archiveTimestampV3``)
over the B-LT signature. Its time-stamp token carries, as an unsigned attribute of its own
SignerInfo, the **ats-hash-index-v3** (§5.5.2): the SHA-256 of every ``CertificateChoices`` in
``SignedData.certificates``, of every ``RevocationInfoChoice`` in ``SignedData.crls`` (DER, the
``[1]`` tag of an *other* choice included), and of ``attrType ‖ attrValue`` for every value of every
unsigned attribute already present. The token's message imprint is the SHA-256 of the
concatenation of: the DER ``eContentType`` OID; the SHA-256 of the signed (detached) file; the DER
of the SignerInfo fields ``version``, ``sid``, ``digestAlgorithm``, ``signedAttrs``,
``signatureAlgorithm``, ``signature``; the DER of the ATSHashIndexV3 value.

The validation report checks all of that again with code of its own
(:mod:`services.portal.archive_timestamps`, a DER reader sharing nothing with this builder).
"""

from __future__ import annotations

import hashlib

from asn1crypto import algos, cms
from pyhanko.sign.timestamps import TimeStamper

from services.portal.cades_asn1 import ARCHIVE_TIMESTAMP_V3, ATS_HASH_INDEX_V3, ATSHashIndexV3
from services.portal.documents import Level
from services.portal.errors import PackagingFailed, TimeStampingFailed
from services.portal.ltv import ValidationMaterial, add_signature_timestamp, replace_fields
from shared.cms_version import signed_data_version

__all__ = ["ats_hash_index_v3", "augment_cades", "digest"]

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
    signature: bytes, *, level: Level, timestamper: TimeStamper | None, material: ValidationMaterial,
    document_digest: bytes | None = None,
) -> bytes:
    """Raise a detached CMS to ``level``; return the DER of the ``.p7s``.

    :param document_digest: SHA-256 of the signed file (needed for B-LTA's archive time-stamp).
    """
    content_info = load_signed_data(signature)
    if level.rank >= Level.B_T.rank:
        if timestamper is None:
            raise PackagingFailed(f"{level} needs a time-stamping authority, and none is configured")
        try:
            content_info = await add_signature_timestamp(content_info, timestamper)
        except Exception as exc:  # the TSA client raises several unrelated types
            raise TimeStampingFailed(f"the time-stamping authority did not time-stamp the signature ({exc})") from None
    if level.rank >= Level.B_LT.rank:
        content_info = _with_validation_data(content_info, material)
    if level is Level.B_LTA:
        if document_digest is None:  # pragma: no cover - the portal always passes it
            raise PackagingFailed("B-LTA needs the digest of the signed file for the archive time-stamp")
        if timestamper is None:
            raise PackagingFailed(f"{level} needs a time-stamping authority, and none is configured")
        content_info = await _with_archive_timestamp(content_info, document_digest, timestamper)
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


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def ats_hash_index_v3(signed_data: cms.SignedData) -> ATSHashIndexV3:
    """The ats-hash-index-v3 of ``signed_data``'s first SignerInfo as it is now (EN 319 122-1 §5.5.2)."""
    signer_info = signed_data["signer_infos"][0]
    certificates = [c.dump() for c in signed_data["certificates"]] if signed_data["certificates"].native else []
    revocation = [r.dump() for r in signed_data["crls"]] if signed_data["crls"].native else []
    values = []
    for attribute in signer_info["unsigned_attrs"] if signer_info["unsigned_attrs"].native else []:
        values += [attribute["type"].dump() + value.dump() for value in attribute["values"]]
    return ATSHashIndexV3({
        "hash_ind_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
        "certificates_hash_index": [_sha256(c) for c in certificates],
        "crls_hash_index": [_sha256(r) for r in revocation],
        "unsigned_attr_values_hash_index": [_sha256(v) for v in values],
    })


async def _with_archive_timestamp(content_info: cms.ContentInfo, document_digest: bytes,
                                  timestamper: TimeStamper) -> cms.ContentInfo:
    """Add an archive-time-stamp-v3 to the first SignerInfo (EN 319 122-1 §5.5.3)."""
    signed_data = content_info["content"]
    signer_info = signed_data["signer_infos"][0]
    index = ats_hash_index_v3(signed_data)
    covered = b"".join(signer_info[name].dump() for name in (
        "version", "sid", "digest_algorithm", "signed_attrs", "signature_algorithm", "signature"))
    imprint = _sha256(signed_data["encap_content_info"]["content_type"].dump() + document_digest + covered
                      + index.dump())
    try:
        token = await timestamper.async_timestamp(imprint, "sha256")
    except Exception as exc:  # the TSA client raises several unrelated types
        raise TimeStampingFailed(f"the time-stamping authority did not make the archive time-stamp ({exc})") from None
    token_data = token["content"]
    token_signer = token_data["signer_infos"][0]
    token_attrs = list(token_signer["unsigned_attrs"]) if token_signer["unsigned_attrs"].native else []
    index_attribute = cms.CMSAttribute({"type": ATS_HASH_INDEX_V3, "values": [index]})
    token_signer = replace_fields(token_signer, unsigned_attrs=cms.CMSAttributes([*token_attrs, index_attribute]))
    token = cms.ContentInfo({"content_type": "signed_data", "content": replace_fields(
        token_data, signer_infos=cms.SignerInfos([token_signer]))})
    existing = list(signer_info["unsigned_attrs"]) if signer_info["unsigned_attrs"].native else []
    archive = cms.CMSAttribute({"type": ARCHIVE_TIMESTAMP_V3, "values": [token]})
    new_signer_info = replace_fields(signer_info, unsigned_attrs=cms.CMSAttributes([*existing, archive]))
    new_signed_data = replace_fields(signed_data, signer_infos=cms.SignerInfos(
        [new_signer_info, *list(signed_data["signer_infos"])[1:]]))
    return cms.ContentInfo.load(cms.ContentInfo({"content_type": "signed_data", "content": new_signed_data}).dump())
