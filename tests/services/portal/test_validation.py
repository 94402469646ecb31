"""The validation entry (``validation``): format detection and what an unreadable upload gets."""

from __future__ import annotations

import asyncio

from services.portal.documents import SignatureFormat
from services.portal.validation import detect_format, validate_document


def test_garbage_is_format_failure(trust) -> None:
    for junk in (b"%PDF-1.7 garbage", b"\x30\x03\x02\x01\x01", b"{\"protected\": 1}"):
        report = asyncio.run(validate_document("junk", junk, trust, original=b"x"))
        assert report.indication in ("TOTAL_FAILED", "INDETERMINATE")
        assert report.sub_indication in ("FORMAT_FAILURE",), report.to_dict()


def test_format_is_detected_from_the_content() -> None:
    assert detect_format(b"  %PDF-1.7 ...") is SignatureFormat.PADES
    assert detect_format(b"\x30\x82\x01\x00") is SignatureFormat.CADES
    assert detect_format(b'{"payload": "x"}') is SignatureFormat.JADES  # JSON that is not a JWS is still read as JAdES
    assert detect_format(b"not json at all") is SignatureFormat.CADES
