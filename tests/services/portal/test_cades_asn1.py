"""services.portal.cades_asn1: registering the CAdES archive attributes must not disturb asn1crypto.

The registration runs in a fresh interpreter where asn1crypto has already built its reverse name →
OID table (as any earlier CMS work in a process does): mapping names back to OIDs must keep working
for the attributes asn1crypto knew and for the two new ones (an earlier version reset the table and
broke every later CMS builder of the process).
"""

from __future__ import annotations

import subprocess
import sys

CHECK = """
from asn1crypto import cms
cms.CMSAttributeType("signing_time")
import services.portal.cades_asn1 as registered
assert cms.CMSAttributeType.unmap("content_type") == "1.2.840.113549.1.9.3"
assert cms.CMSAttributeType.unmap(registered.ARCHIVE_TIMESTAMP_V3) == "0.4.0.1733.2.4"
assert cms.CMSAttributeType.unmap(registered.ATS_HASH_INDEX_V3) == "0.4.0.19122.1.5"
assert cms.CMSAttributeType("0.4.0.19122.1.5").native == registered.ATS_HASH_INDEX_V3
attribute = cms.CMSAttribute({"type": "content_type", "values": ["data"]})
assert attribute.dump() and cms.CMSAttribute.load(attribute.dump())["type"].dotted == "1.2.840.113549.1.9.3"
print("ok")
"""


def test_registration_keeps_the_reverse_table_of_a_process_that_already_used_it() -> None:
    result = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
