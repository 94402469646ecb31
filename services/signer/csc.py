"""Parsing of CSC and RAR inputs: digests, hash algorithms, authorization details, field spellings.

Rules (``reference/csc-api.md`` §2, DESIGN §3): JSON carries standard base64, query parameters carry
base64url; both alphabets are accepted, padded or not, and digests are compared as raw bytes.
v1 and v2 spellings are both accepted (``hash``/``hashes``, ``hashAlgo``/``hashAlgorithmOID``,
``AdES-B-B``/``Ades-B-B``, RAR type ``credential`` and its URI form).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

from services.signer.errors import UnsupportedAlgorithm, WholeDocumentRefused
from services.signer.hsm import DIGEST_SIZES
from services.signer.settings import QUALIFIERS
from services.signer.signing import HASH_OIDS
from shared.errors import InvalidRequest
from shared.flow import FlowStep

__all__ = [
    "CONFORMANCE_LEVELS",
    "RAR_TYPES",
    "SIGNATURE_FORMATS",
    "AuthorizationDetail",
    "DocumentDigest",
    "decode_digest",
    "first",
    "hash_algorithm",
    "key_algorithms",
    "parse_authorization_details",
    "parse_digest_list",
    "refuse_documents",
]

RAR_TYPES = ("credential", "https://cloudsignatureconsortium.org/2025/credential")
"""Accepted ``authorization_details`` types (the short form and the CSC URI form)."""
SIGNATURE_FORMATS = ("C", "P", "J")
"""Supported ``signature_format`` values (CAdES, PAdES, JAdES; XAdES is not offered)."""
CONFORMANCE_LEVELS = ("ades-b-b", "ades-b-t", "ades-b-lt", "ades-b-lta", "ades-b", "ades-t", "ades-lt", "ades-lta")
"""Accepted ``conformance_level`` values, lower-cased (the service returns B-B objects; the portal adds the rest)."""

_B64 = re.compile(r"^[A-Za-z0-9+/_-]+={0,2}$")


def first(body: dict[str, Any], *names: str) -> Any:
    """The value of the first of ``names`` present in ``body`` (v1/v2 spellings), or ``None``."""
    for name in names:
        if name in body and body[name] is not None:
            return body[name]
    return None


def hash_algorithm(oid: Any, *, step: FlowStep | None = None, required: bool = True) -> str | None:
    """The hash algorithm name (``sha256`` …) of a CSC hash OID.

    :raises UnsupportedAlgorithm: an unknown or weak algorithm.
    :raises InvalidRequest: missing when ``required``.
    """
    if oid is None or oid == "":
        if required:
            raise InvalidRequest("hashAlgorithmOID (hashAlgo) is required", step=step)
        return None
    if not isinstance(oid, str) or oid not in HASH_OIDS:
        raise UnsupportedAlgorithm(
            f"unsupported hash algorithm {str(oid)[:64]!r}; supported: {', '.join(HASH_OIDS)} (SHA-256/384/512)",
            step=step)
    return HASH_OIDS[oid]


def decode_digest(text: Any, algorithm: str | None, *, step: FlowStep | None = None) -> bytes:
    """Decode one digest given in base64 or base64url (padded or not) and check its length.

    :raises InvalidRequest: not a string, not base64, or the wrong length for ``algorithm``.
    """
    if not isinstance(text, str) or not text or len(text) > 200 or not _B64.match(text):
        raise InvalidRequest("invalid base64 in a hash value", step=step)
    normalized = text.replace("-", "+").replace("_", "/").rstrip("=")
    try:
        raw = base64.b64decode(normalized + "=" * (-len(normalized) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest("invalid base64 in a hash value", step=step) from None
    if algorithm is not None and len(raw) != DIGEST_SIZES[algorithm]:
        raise InvalidRequest(
            f"Invalid digest value length: {algorithm} needs {DIGEST_SIZES[algorithm]} bytes, got {len(raw)}", step=step)
    if algorithm is None and len(raw) not in DIGEST_SIZES.values():
        raise InvalidRequest(f"Invalid digest value length: {len(raw)} bytes", step=step)
    return raw


def parse_digest_list(value: Any, algorithm: str | None, *, step: FlowStep | None = None,
                      max_count: int = 100) -> list[bytes]:
    """A JSON list of base64 digests, or a comma-separated base64url string (query form)."""
    if isinstance(value, str):
        value = [v for v in value.split(",") if v]
    if not isinstance(value, list) or not value:
        raise InvalidRequest("hash values are required (a non-empty list)", step=step)
    if len(value) > max_count:
        raise InvalidRequest(f"at most {max_count} hash values are allowed, got {len(value)}", step=step)
    return [decode_digest(v, algorithm, step=step) for v in value]


def refuse_documents(body: dict[str, Any], *, step: FlowStep | None = None) -> None:
    """Refuse a request that carries whole documents (the service accepts digests only)."""
    if first(body, "documents", "document", "Documents") is not None:
        raise WholeDocumentRefused(step=step)


@dataclass(frozen=True)
class DocumentDigest:
    """One authorized document digest (raw bytes) and its label."""

    digest: bytes
    label: str


@dataclass(frozen=True)
class AuthorizationDetail:
    """A parsed RAR ``authorization_details`` entry of type ``credential``.

    :ivar qualifier: ``eu_eidas_qes`` or ``eu_eidas_aes`` (``None`` when a credentialID is named).
    :ivar credential_id: an existing credential (certificate-first flow), or ``None``.
    :ivar hash_algorithm: ``sha256`` …
    :ivar documents: the digests with labels (their count is the number of signatures).
    :ivar raw: the entry as received (echoed in the token response).
    """

    qualifier: str | None
    credential_id: str | None
    hash_algorithm: str
    documents: tuple[DocumentDigest, ...]
    raw: dict[str, Any]


def parse_authorization_details(text: Any, *, step: FlowStep | None = None, max_documents: int = 20) -> list[AuthorizationDetail]:
    """Parse the JSON ``authorization_details`` parameter (RFC 9396) into credential entries.

    :raises InvalidRequest: not JSON, not a list of objects, an unknown type, a bad qualifier,
        missing or malformed digests, too many documents.
    """
    if isinstance(text, str):
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            raise InvalidRequest("authorization_details is not valid JSON", step=step) from None
    else:
        value = text
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, dict) for v in value):
        raise InvalidRequest("authorization_details must be a JSON array of objects", step=step)
    details = []
    for entry in value:
        if entry.get("type") not in RAR_TYPES:
            raise InvalidRequest(
                f"unsupported authorization_details type {str(entry.get('type'))[:80]!r}; expected 'credential'",
                step=step)
        refuse_documents(entry, step=step)
        qualifier = entry.get("signatureQualifier")
        credential_id = entry.get("credentialID")
        if qualifier is None and credential_id is None:
            raise InvalidRequest("authorization_details needs signatureQualifier or credentialID", step=step)
        if qualifier is not None and qualifier not in QUALIFIERS:
            raise InvalidRequest(f"unsupported signatureQualifier {str(qualifier)[:40]!r}; "
                                 f"supported: {', '.join(QUALIFIERS)}", step=step)
        algorithm = hash_algorithm(first(entry, "hashAlgorithmOID", "hashAlgo"), step=step)
        assert algorithm is not None
        digests = entry.get("documentDigests")
        if not isinstance(digests, list) or not digests:
            raise InvalidRequest("authorization_details.documentDigests must be a non-empty list", step=step)
        if len(digests) > max_documents:
            raise InvalidRequest(f"at most {max_documents} documents per transaction, got {len(digests)}", step=step)
        documents = []
        for item in digests:
            if not isinstance(item, dict):
                raise InvalidRequest("each documentDigests entry must be an object {hash, label}", step=step)
            refuse_documents(item, step=step)
            label = item.get("label", "")
            if not isinstance(label, str) or len(label) > 200:
                raise InvalidRequest("a document label must be a string of at most 200 characters", step=step)
            documents.append(DocumentDigest(decode_digest(item.get("hash"), algorithm, step=step), label))
        if len({d.digest for d in documents}) != len(documents):
            raise InvalidRequest("documentDigests contains the same digest twice", step=step)
        number = entry.get("numSignatures")
        if number is not None and number != len(documents):
            raise InvalidRequest(f"numSignatures {number!r} differs from the number of documentDigests "
                                 f"({len(documents)})", step=step)
        details.append(AuthorizationDetail(qualifier, credential_id, algorithm, tuple(documents), entry))
    if len(details) != 1:
        raise InvalidRequest("exactly one authorization_details entry of type credential is supported", step=step)
    return details


def key_algorithms(is_ec: bool) -> list[str]:
    """``key.algo`` of a credential: the key OID and the combined signature OIDs pyHanko looks for."""
    if is_ec:
        return ["1.2.840.10045.2.1", "1.2.840.10045.4.3.2", "1.2.840.10045.4.3.3", "1.2.840.10045.4.3.4"]
    return ["1.2.840.113549.1.1.1", "1.2.840.113549.1.1.11", "1.2.840.113549.1.1.12", "1.2.840.113549.1.1.13"]


SIGN_ALGO_HASH: dict[str, str | None] = {
    "1.2.840.10045.2.1": None, "1.2.840.10045.4.3.2": "sha256", "1.2.840.10045.4.3.3": "sha384",
    "1.2.840.10045.4.3.4": "sha512", "1.2.840.113549.1.1.1": None, "1.2.840.113549.1.1.11": "sha256",
    "1.2.840.113549.1.1.12": "sha384", "1.2.840.113549.1.1.13": "sha512",
}
"""The hash a combined ``signAlgo`` implies (``None``: the bare key OID; ``hashAlgo`` then decides)."""
