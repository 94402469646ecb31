"""shared.xml_schemas: the vendored ETSI/W3C schemas, recorded and loadable offline."""

from __future__ import annotations

import hashlib
import re

from lxml import etree

from shared.xml_schemas import LOCAL_COPIES, SCHEMA_DIR, combined_schema, errors_of

ETSI_REPORT = "http://uri.etsi.org/19102/v1.2.1#"


def test_vendored_schemas_are_the_recorded_files() -> None:
    """The README names every vendored file with its SHA-256; the files on disk still match."""
    readme = (SCHEMA_DIR / "README.md").read_text("utf-8")
    recorded = dict((name, digest) for digest, name in re.findall(r"^([0-9a-f]{64})  (\S+\.xsd)$", readme, flags=re.M))
    on_disk = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in SCHEMA_DIR.glob("*.xsd")}
    assert recorded == on_disk


def test_every_remote_import_has_a_local_copy() -> None:
    xs = "{http://www.w3.org/2001/XMLSchema}"
    for path in SCHEMA_DIR.glob("*.xsd"):
        tree = etree.parse(str(path), etree.XMLParser(no_network=True, resolve_entities=False))
        for element in [*tree.iter(f"{xs}import"), *tree.iter(f"{xs}include")]:
            location = element.get("schemaLocation", "")
            if location.startswith("http"):
                assert location in LOCAL_COPIES, f"{path.name} imports {location}"
    assert all((SCHEMA_DIR / name).is_file() for name in LOCAL_COPIES.values())


def test_the_validation_report_schema_loads_offline_and_checks() -> None:
    schema = combined_schema((ETSI_REPORT, "TS119102-2-v122.xsd"))
    empty = f'<vr:ValidationReport xmlns:vr="{ETSI_REPORT}"/>'.encode()
    assert any("SignatureValidationReport" in e for e in errors_of(schema, empty))
    minimal = (f'<vr:ValidationReport xmlns:vr="{ETSI_REPORT}"><vr:SignatureValidationReport>'
               "<vr:SignatureValidationStatus><vr:MainIndication>urn:etsi:019102:mainindication:total-passed"
               "</vr:MainIndication></vr:SignatureValidationStatus></vr:SignatureValidationReport></vr:ValidationReport>")
    assert errors_of(schema, minimal.encode()) == []
    assert isinstance(schema, etree.XMLSchema)
