"""The version numbers RFC 5652 prescribes for a CMS ``SignedData`` and its ``SignerInfo``s.

RFC 5652 §5.1 derives ``SignedData.version`` from what the structure holds, in this order:

* 5 — ``certificates`` holds an ``other`` certificate format, or ``crls`` holds an ``other``
  revocation format (e.g. an OCSP response as ``id-ri-ocsp-response``, RFC 5940, which CAdES
  B-LT and B-LTA embed);
* 4 — ``certificates`` holds a version 2 attribute certificate;
* 3 — ``certificates`` holds a version 1 attribute certificate, a ``SignerInfo`` is version 3,
  or the encapsulated content type is not ``id-data`` (a time-stamp token's ``id-ct-TSTInfo``);
* 1 — otherwise.

RFC 5652 §5.3: a ``SignerInfo`` is version 1 when it names its certificate by issuer and serial
number, version 3 when by subject key identifier.

Every CMS the project assembles itself (the SSASP's signatures, the TSA's tokens, the portal's
CAdES levels) takes its versions from here or is checked against these functions in tests.
"""

from __future__ import annotations

from asn1crypto import cms, core

__all__ = ["signed_data_version", "signer_info_version", "version_problems"]


def _choices(values: cms.CertificateSet | cms.RevocationInfoChoices) -> list[str]:
    """The CHOICE alternatives used in an optional SET (none when it is absent)."""
    if isinstance(values, core.Void) or values.native is None:
        return []
    return [choice.name for choice in values]


def signer_info_version(signer_info: cms.SignerInfo) -> str:
    """``v1`` (issuerAndSerialNumber) or ``v3`` (subjectKeyIdentifier), RFC 5652 §5.3."""
    return "v3" if signer_info["sid"].name == "subject_key_identifier" else "v1"


def signed_data_version(signed_data: cms.SignedData) -> str:
    """The ``SignedData.version`` RFC 5652 §5.1 requires for this content (``v1`` … ``v5``)."""
    certificates = _choices(signed_data["certificates"])
    crls = _choices(signed_data["crls"])
    if "other" in certificates or "other" in crls:
        return "v5"
    if "v2_attr_cert" in certificates:
        return "v4"
    if ("v1_attr_cert" in certificates
            or any(signer_info_version(si) == "v3" for si in signed_data["signer_infos"])
            or signed_data["encap_content_info"]["content_type"].native != "data"):
        return "v3"
    return "v1"


def version_problems(content_info: cms.ContentInfo) -> list[str]:
    """Every version field of a ``ContentInfo(SignedData)`` that differs from RFC 5652 (empty: all right)."""
    signed_data = content_info["content"]
    problems = []
    expected = signed_data_version(signed_data)
    if signed_data["version"].native != expected:
        problems.append(f"SignedData.version is {signed_data['version'].native}, RFC 5652 §5.1 requires {expected}")
    for index, signer_info in enumerate(signed_data["signer_infos"]):
        wanted = signer_info_version(signer_info)
        if signer_info["version"].native != wanted:
            problems.append(f"SignerInfo[{index}].version is {signer_info['version'].native}, "
                            f"RFC 5652 §5.3 requires {wanted}")
    return problems
