"""The JAdES-B-B protected header for a detached payload (ETSI TS 119 182-1), built in one place.

The SSASP builds it in the person-signing flow (steps 8-9, ``signDoc`` with ``signature_format=J``)
and the SCASP in the certificate-first flow (its DTBS/R is the hash of the JWS signing input), so
both produce exactly the same shape: ``alg``, ``x5t#S256`` and ``x5c`` naming the signing
certificate (the JAdES counterpart of ESS signing-certificate-v2), ``sigT``, and ``sigD`` with the
document digest (``ObjectIdByURIHash``), all critical.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

__all__ = ["JADES_HASH_METHODS", "b64url", "protected_header", "signing_input"]

JADES_HASH_METHODS = {"sha256": "S256", "sha384": "S384", "sha512": "S512"}
"""``sigD.hashM`` values per hash algorithm."""


def b64url(data: bytes) -> str:
    """Unpadded base64url (JOSE)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def protected_header(*, alg: str, certificates: Sequence[bytes], document_digest: bytes, hash_algorithm: str,
                     label: str, signing_time: datetime) -> dict[str, Any]:
    """The protected header of a detached JAdES-B-B signature over one document.

    :param alg: the JWS algorithm (``ES256``, ``RS256``).
    :param certificates: DER certificates, the signing certificate first, then its chain.
    :param document_digest: the digest of the detached document (``sigD.hashV``).
    :param label: the document's name (``sigD.pars``).
    """
    return {
        "alg": alg,
        "x5t#S256": b64url(hashlib.sha256(certificates[0]).digest()),
        "x5c": [base64.b64encode(der).decode("ascii") for der in certificates],
        "sigT": signing_time.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "sigD": {
            "mId": "http://uri.etsi.org/19182/ObjectIdByURIHash",
            "pars": [quote(label or "document", safe="")],
            "hashM": JADES_HASH_METHODS[hash_algorithm],
            "hashV": [b64url(document_digest)],
        },
        "crit": ["sigT", "sigD"],
    }


def signing_input(header: dict[str, Any]) -> str:
    """``b64url(protected header) + "."``: the JWS signing input of a detached, empty payload."""
    return b64url(json.dumps(header, separators=(",", ":")).encode("utf-8")) + "."
