"""The official ETSI and W3C XML schemas SignLab checks its XML against, loaded offline. No Flask.

The schemas are vendored under ``shared/schemas`` (source, commit and SHA-256 of each file in the
README there): ETSI TS 119 612 (trusted lists, used by the CA) and ETSI TS 119 102-2 (signature
validation reports, used by the portal), with the W3C XML / XMLDSig and ETSI XAdES schemas they
import. Every ``schemaLocation`` they name on the Internet is answered from the local copy; the
parser never uses the network.
"""

from __future__ import annotations

import functools
from pathlib import Path

from lxml import etree

__all__ = ["SCHEMA_DIR", "LocalSchemas", "combined_schema", "errors_of", "parse"]

SCHEMA_DIR = Path(__file__).parent / "schemas"
"""The vendored XSD files."""

LOCAL_COPIES = {
    "http://www.w3.org/2001/xml.xsd": "xml.xsd",
    "http://www.w3.org/TR/2008/REC-xmldsig-core-20080610/xmldsig-core-schema.xsd": "xmldsig-core-schema.xsd",
    "http://www.w3.org/TR/2002/REC-xmldsig-core-20020212/xmldsig-core-schema.xsd": "xmldsig-core-schema.xsd",
    "https://uri.etsi.org/01903/v1.3.2/XAdES01903v132-201601.xsd": "XAdES01903v132-201601.xsd",
    # Older URL of the same XAdES namespace (TS 119 612 V2.1.1, TS 119 102-2 V1.2.2); the EN 319 132-1
    # edition is its current text.
    "http://uri.etsi.org/01903/v1.3.2/XAdES.xsd": "XAdES01903v132-201601.xsd",
    "https://forge.etsi.org/rep/esi/x19_612_trusted_lists/-/raw/v2.4.1/19612_xsd.xsd": "ts_119612v020401_xsd.xsd",
    "http://uri.etsi.org/19612/v1.2.1/tsl.xsd": "ts_119612v020101_xsd.xsd",
    # TS 119 102-2 V1.2.2 imports the trusted-list namespace by the V2.2.1 URL; as the EU DSS project
    # does, the V2.1.1 schema (same namespace) answers it.
    "http://uri.etsi.org/19612/v2.2.1/ts_119612v020201_201601xsd.xsd": "ts_119612v020101_xsd.xsd",
}
"""Every remote ``schemaLocation`` in the vendored schemas → its local file."""


class LocalSchemas(etree.Resolver):
    """Answers the schemas' remote imports from the vendored files; anything else stays unresolved
    (and fails, as the parser has no network)."""

    def resolve(self, system_url: str, public_id: str, context: object) -> object:
        name = LOCAL_COPIES.get(system_url)
        return self.resolve_filename(str(SCHEMA_DIR / name), context) if name else None


def parse(xml: bytes) -> etree._Element:
    """Parse untrusted XML without network access or entity expansion."""
    return etree.fromstring(xml, etree.XMLParser(no_network=True, resolve_entities=False))


@functools.cache
def combined_schema(*imports: tuple[str, str]) -> etree.XMLSchema:
    """One schema made of several vendored files: ``imports`` are ``(namespace, file name)`` pairs
    (so, for instance, the qualification extensions inside a trusted list are checked too)."""
    parser = etree.XMLParser(no_network=True, resolve_entities=False)
    parser.resolvers.add(LocalSchemas())
    body = "".join(f'<xsd:import namespace="{namespace}" schemaLocation="{(SCHEMA_DIR / name).as_uri()}"/>'
                   for namespace, name in imports)
    driver = (f'<xsd:schema xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
              f'targetNamespace="urn:signlab:schemas">{body}</xsd:schema>')
    return etree.XMLSchema(etree.ElementTree(etree.fromstring(driver.encode("ascii"), parser)))


def errors_of(schema: etree.XMLSchema, xml: bytes) -> list[str]:
    """The XSD errors of ``xml`` (``line: message``; empty when valid)."""
    if schema.validate(parse(xml)):
        return []
    return [f"{error.line}: {error.message}" for error in schema.error_log]
