"""CAdES validation (``validation_cades``): the signed file changed or missing."""

from __future__ import annotations

import asyncio
from pathlib import Path

from services.portal import cades
from services.portal.validation import validate_document

JSON = (Path(__file__).parents[3] / "services" / "portal" / "samples" / "payment-order.json").read_bytes()


def test_detached_file_changed_or_missing(sign_digest, trust) -> None:
    changed = JSON.replace(b"12500", b"92500")
    sig = sign_digest(cades.digest(JSON), "qes", "cades")
    assert asyncio.run(validate_document("x.p7s", sig.signature, trust, original=changed)).sub_indication == "HASH_FAILURE"
    missing = asyncio.run(validate_document("x.p7s", sig.signature, trust))
    assert (missing.indication, missing.sub_indication) == ("INDETERMINATE", "SIGNED_DATA_NOT_FOUND")
