"""ASN.1 of the CAdES archive time-stamp (ETSI EN 319 122-1 §5.5.2-§5.5.3), registered with asn1crypto.

Importing this module teaches asn1crypto the two unsigned attributes, so any code reading a CAdES
B-LTA signature with asn1crypto (pyHanko's validation, ``.native``) parses them instead of failing:
``archive_time_stamp_v3`` (a time-stamp token, ``ContentInfo``) on the signature's SignerInfo and
``ats_hash_index_v3`` (:class:`ATSHashIndexV3`) on the time-stamp token's SignerInfo.
"""

from __future__ import annotations

from typing import ClassVar

from asn1crypto import algos, cms, core

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


class _SetOfATSHashIndexV3(core.SetOf):
    _child_spec = ATSHashIndexV3


cms.CMSAttributeType._map["0.4.0.1733.2.4"] = ARCHIVE_TIMESTAMP_V3
cms.CMSAttributeType._map["0.4.0.19122.1.5"] = ATS_HASH_INDEX_V3
cms.CMSAttributeType._reverse_map = None  # rebuilt from _map on next use
cms.CMSAttribute._oid_specs[ARCHIVE_TIMESTAMP_V3] = cms.SetOfContentInfo
cms.CMSAttribute._oid_specs[ATS_HASH_INDEX_V3] = _SetOfATSHashIndexV3
