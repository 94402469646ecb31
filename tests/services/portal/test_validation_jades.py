"""JAdES validation (``validation_jades``): the payload changed or missing."""

from __future__ import annotations

import asyncio
from pathlib import Path

from services.portal import jades
from services.portal.validation import validate_document

JSON = (Path(__file__).parents[3] / "services" / "portal" / "samples" / "payment-order.json").read_bytes()


def test_detached_payload_changed_or_missing(sign_digest, trust) -> None:
    changed = JSON.replace(b"12500", b"92500")
    jsig = sign_digest(jades.digest(JSON), "qes", "jades")
    assert asyncio.run(validate_document("x.json", jsig.signature, trust, original=changed)).sub_indication == "HASH_FAILURE"
    missing = asyncio.run(validate_document("x.json", jsig.signature, trust))
    assert (missing.indication, missing.sub_indication) == ("INDETERMINATE", "SIGNED_DATA_NOT_FOUND")
