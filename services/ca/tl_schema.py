"""The official ETSI TS 119 612 XML schemas of a trusted list, loaded offline, and the version rules
the schemas cannot express. No Flask.

The schemas are vendored under ``services/ca/schemas`` (source, commit and SHA-256 of each file in
the README there): TS 119 612 V2.4.1 for list version 6, V2.1.1 for version 5, each with its
service-information-extension (``sie``) and additional-types schemas, and the W3C XML / XMLDSig
and ETSI XAdES (EN 319 132-1, namespace v1.3.2) schemas they import. Every ``schemaLocation``
they name on the Internet is answered from the local copy; the parser never uses the network.

What the XSD cannot check (it is the same for versions 5 and 6) is checked by
:func:`version_problems`: the ``TSLVersionIdentifier`` value, and for version 6 that the list's
XAdES signature names its signing certificate with ``SigningCertificateV2`` and uses no version-1
``SigningCertificate``, ``SignatureProductionPlace`` or ``SignerRole`` (a version 6 list is signed
as XAdES baseline B-B, EN 319 132-1).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

from lxml import etree

__all__ = ["SCHEMA_DIR", "TL_VERSIONS", "TlVersion", "schema_errors", "trusted_list_schema", "version_problems"]

SCHEMA_DIR = Path(__file__).parent / "schemas"
"""The vendored XSD files."""

TlVersion = Literal[5, 6]
TL_VERSIONS: dict[int, str] = {6: "ts_119612v020401", 5: "ts_119612v020101"}
"""List version (``TSLVersionIdentifier``) → file-name stem of its TS 119 612 schemas (V2.4.1, V2.1.1)."""

_TSL = "http://uri.etsi.org/02231/v2#"
_SIE = "http://uri.etsi.org/TrstSvc/SvcInfoExt/eSigDir-1999-93-EC-TrustedList/#"
_ADDITIONAL = "http://uri.etsi.org/02231/v2/additionaltypes#"
_DS = "http://www.w3.org/2000/09/xmldsig#"
_XADES = "http://uri.etsi.org/01903/v1.3.2#"

_LOCAL_COPIES = {
    "http://www.w3.org/2001/xml.xsd": "xml.xsd",
    "http://www.w3.org/TR/2008/REC-xmldsig-core-20080610/xmldsig-core-schema.xsd": "xmldsig-core-schema.xsd",
    "http://www.w3.org/TR/2002/REC-xmldsig-core-20020212/xmldsig-core-schema.xsd": "xmldsig-core-schema.xsd",
    "https://uri.etsi.org/01903/v1.3.2/XAdES01903v132-201601.xsd": "XAdES01903v132-201601.xsd",
    # V2.1.1 names the namespace's schema by its older URL; the EN 319 132-1 edition is its current text.
    "http://uri.etsi.org/01903/v1.3.2/XAdES.xsd": "XAdES01903v132-201601.xsd",
    "https://forge.etsi.org/rep/esi/x19_612_trusted_lists/-/raw/v2.4.1/19612_xsd.xsd": "ts_119612v020401_xsd.xsd",
    "http://uri.etsi.org/19612/v1.2.1/tsl.xsd": "ts_119612v020101_xsd.xsd",
}
"""Every remote ``schemaLocation`` in the vendored schemas → its local file."""


class _LocalSchemas(etree.Resolver):
    """Answers the schemas' remote imports from the vendored files; anything else stays unresolved
    (and fails, as the parser has no network)."""

    def resolve(self, system_url: str, public_id: str, context: object) -> object:
        name = _LOCAL_COPIES.get(system_url)
        return self.resolve_filename(str(SCHEMA_DIR / name), context) if name else None


@functools.cache
def trusted_list_schema(version: TlVersion) -> etree.XMLSchema:
    """The XSD of a version ``version`` list: TS 119 612 main, ``sie`` and additional types together
    (so the qualification extensions inside ``ServiceInformationExtensions`` are checked too)."""
    stem = TL_VERSIONS[version]
    parser = etree.XMLParser(no_network=True, resolve_entities=False)
    parser.resolvers.add(_LocalSchemas())
    imports = "".join(
        f'<xsd:import namespace="{namespace}" schemaLocation="{(SCHEMA_DIR / f"{stem}{suffix}.xsd").as_uri()}"/>'
        for namespace, suffix in ((_TSL, "_xsd"), (_SIE, "_sie_xsd"), (_ADDITIONAL, "_additionaltypes_xsd")))
    driver = (f'<xsd:schema xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
              f'targetNamespace="urn:signlab:trusted-list-schemas">{imports}</xsd:schema>')
    return etree.XMLSchema(etree.ElementTree(etree.fromstring(driver.encode("ascii"), parser)))


def schema_errors(xml: bytes, version: TlVersion) -> list[str]:
    """The XSD errors of the trusted list ``xml`` (``line: message``; empty when valid)."""
    schema = trusted_list_schema(version)
    document = etree.fromstring(xml, etree.XMLParser(no_network=True, resolve_entities=False))
    if schema.validate(document):
        return []
    return [f"{error.line}: {error.message}" for error in schema.error_log]


def version_problems(xml: bytes, version: TlVersion) -> list[str]:
    """What makes ``xml`` not a version ``version`` list beyond its XSD (empty when nothing)."""
    root = etree.fromstring(xml, etree.XMLParser(no_network=True, resolve_entities=False))
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
