"""The JAdES protected header: one shape for the SSASP and the SCASP."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime

from shared.jades import b64url, protected_header, signing_input


def test_header_names_the_certificate_and_the_detached_document() -> None:
    leaf, issuing = b"leaf-der", b"issuing-der"
    digest = hashlib.sha256(b"{}").digest()
    header = protected_header(alg="ES256", certificates=[leaf, issuing], document_digest=digest,
                              hash_algorithm="sha256", label="order 1.json",
                              signing_time=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert header["x5t#S256"] == b64url(hashlib.sha256(leaf).digest())
    assert header["x5c"] == [base64.b64encode(leaf).decode(), base64.b64encode(issuing).decode()]
    assert header["sigT"] == "2026-01-02T03:04:05Z" and header["crit"] == ["sigT", "sigD"]
    assert header["sigD"] == {"mId": "http://uri.etsi.org/19182/ObjectIdByURIHash", "pars": ["order%201.json"],
                              "hashM": "S256", "hashV": [b64url(digest)]}
    text = signing_input(header)
    assert text.endswith(".") and "=" not in text
    assert json.loads(base64.urlsafe_b64decode(text[:-1] + "=" * (-len(text[:-1]) % 4))) == header
