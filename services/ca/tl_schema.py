"""The official ETSI TS 119 612 XML schemas of a trusted list, loaded offline, and the version rules
the schemas cannot express. No Flask.

The schemas are vendored under ``shared/schemas`` (source, commit and SHA-256 of each file in
the README there) and loaded offline by :mod:`shared.xml_schemas`: TS 119 612 V2.4.1 for list
version 6, V2.1.1 for version 5, each with its service-information-extension (``sie``) and
additional-types schemas, and the W3C XML / XMLDSig and ETSI XAdES (EN 319 132-1, namespace
v1.3.2) schemas they import.

What the XSD cannot check (it is the same for versions 5 and 6) is checked by
:func:`version_problems`: the ``TSLVersionIdentifier`` value, and for version 6 that the list's
XAdES signature names its signing certificate with ``SigningCertificateV2`` and uses no version-1
``SigningCertificate``, ``SignatureProductionPlace`` or ``SignerRole`` (a version 6 list is signed
as XAdES baseline B-B, EN 319 132-1).
"""

from __future__ import annotations

from typing import Literal

from lxml import etree

from shared.xml_schemas import combined_schema, errors_of, parse

__all__ = ["TL_VERSIONS", "TlVersion", "schema_errors", "trusted_list_schema", "version_problems"]

TlVersion = Literal[5, 6]
TL_VERSIONS: dict[int, str] = {6: "ts_119612v020401", 5: "ts_119612v020101"}
"""List version (``TSLVersionIdentifier``) → file-name stem of its TS 119 612 schemas (V2.4.1, V2.1.1)."""

_TSL = "http://uri.etsi.org/02231/v2#"
_SIE = "http://uri.etsi.org/TrstSvc/SvcInfoExt/eSigDir-1999-93-EC-TrustedList/#"
_ADDITIONAL = "http://uri.etsi.org/02231/v2/additionaltypes#"
_DS = "http://www.w3.org/2000/09/xmldsig#"
_XADES = "http://uri.etsi.org/01903/v1.3.2#"


def trusted_list_schema(version: TlVersion) -> etree.XMLSchema:
    """The XSD of a version ``version`` list: TS 119 612 main, ``sie`` and additional types together
    (so the qualification extensions inside ``ServiceInformationExtensions`` are checked too)."""
    stem = TL_VERSIONS[version]
    return combined_schema((_TSL, f"{stem}_xsd.xsd"), (_SIE, f"{stem}_sie_xsd.xsd"),
                           (_ADDITIONAL, f"{stem}_additionaltypes_xsd.xsd"))


def schema_errors(xml: bytes, version: TlVersion) -> list[str]:
    """The XSD errors of the trusted list ``xml`` (``line: message``; empty when valid)."""
    return errors_of(trusted_list_schema(version), xml)


def version_problems(xml: bytes, version: TlVersion) -> list[str]:
    """What makes ``xml`` not a version ``version`` list beyond its XSD (empty when nothing)."""
    root = parse(xml)
    problems = []
    declared = root.findtext(f"{{{_TSL}}}SchemeInformation/{{{_TSL}}}TSLVersionIdentifier")
    if declared != str(version):
        problems.append(f"TSLVersionIdentifier is {declared!r}, not {version}")
    signed = root.find(f"{{{_DS}}}Signature/{{{_DS}}}Object/{{{_XADES}}}QualifyingProperties/"
                       f"{{{_XADES}}}SignedProperties/{{{_XADES}}}SignedSignatureProperties")
    if signed is None:
        return [*problems, "no XAdES SignedSignatureProperties in the list's ds:Signature"]
    if version == 6:
        if signed.find(f"{{{_XADES}}}SigningCertificateV2") is None:
            problems.append("a version 6 list's signature must carry xades:SigningCertificateV2")
        for old in ("SigningCertificate", "SignatureProductionPlace", "SignerRole"):
            if signed.find(f"{{{_XADES}}}{old}") is not None:
                problems.append(f"xades:{old} is not allowed in a version 6 list's signature (use the V2 form)")
    return problems
