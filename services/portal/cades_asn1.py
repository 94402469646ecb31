"""ASN.1 of the CAdES archive time-stamp (ETSI EN 319 122-1 §5.5.2-§5.5.3), registered with asn1crypto.

Importing this module teaches asn1crypto the two unsigned attributes, so any code reading a CAdES
B-LTA signature with asn1crypto (pyHanko's validation, ``.native``) parses them instead of failing:
``archive_time_stamp_v3`` (a time-stamp token, ``ContentInfo``) on the signature's SignerInfo and
``ats_hash_index_v3`` (:class:`ATSHashIndexV3`) on the time-stamp token's SignerInfo.
"""

from __future__ import annotations

from typing import ClassVar

from asn1crypto import algos, cms, core
from pyhanko.sign.ades.asn1_util import register_cms_attribute

__all__ = ["ARCHIVE_TIMESTAMP_V3", "ATS_HASH_INDEX_V3", "ATSHashIndexV3"]

ARCHIVE_TIMESTAMP_V3 = "archive_time_stamp_v3"
"""id-aa-ets-archiveTimestampV3, 0.4.0.1733.2.4: the unsigned attribute holding the archive time-stamp."""
ATS_HASH_INDEX_V3 = "ats_hash_index_v3"
"""id-aa-ATSHashIndex-v3, 0.4.0.19122.1.5: the unsigned attribute of the archive time-stamp token."""


class _OctetStrings(core.SequenceOf):
    _child_spec = core.OctetString


class ATSHashIndexV3(core.Sequence):
    """EN 319 122-1 §5.5.2 ``ATSHashIndexV3`` (the hash algorithm is always written)."""

    _fields: ClassVar[list] = [
        ("hash_ind_algorithm", algos.DigestAlgorithm),
        ("certificates_hash_index", _OctetStrings),
        ("crls_hash_index", _OctetStrings),
        ("unsigned_attr_values_hash_index", _OctetStrings),
    ]


def _register(dotted_oid: str, name: str, asn1_type: type) -> None:
    # pyHanko's registration, plus the reverse name → OID table when asn1crypto already built it:
    # resetting that table (as an earlier version did) made CMSAttributeType.unmap fail in every
    # later user of the process until an instance rebuilt it.
    register_cms_attribute(dotted_oid, name, asn1_type)
    reverse = cms.CMSAttributeType._reverse_map
    if reverse is not None:
        reverse[name] = dotted_oid


_register("0.4.0.1733.2.4", ARCHIVE_TIMESTAMP_V3, cms.ContentInfo)
_register("0.4.0.19122.1.5", ATS_HASH_INDEX_V3, ATSHashIndexV3)
