"""Checks of CAdES and JAdES archive time-stamps, written apart from the code that builds them.

The packaging modules (:mod:`services.portal.cades`, :mod:`services.portal.jades`) build B-LTA
with asn1crypto objects and the in-memory JWS. This module shares none of their functions: it
reads the signed file as it was delivered — the DER bytes of the ``.p7s`` through a small DER
reader of its own, the JSON text of the JAdES file — and recomputes the message imprint of each
archive time-stamp from the standards' concatenation rules:

* CAdES archive-time-stamp-v3 (ETSI EN 319 122-1 §5.5.3): SHA-256 (the token's imprint
  algorithm, which must be the ats-hash-index-v3's) over ``eContentType`` (DER) ‖ hash of the
  detached file ‖ the DER of the SignerInfo's ``version``, ``sid``, ``digestAlgorithm``,
  ``signedAttrs``, ``signatureAlgorithm``, ``signature`` ‖ the DER of the ATSHashIndexV3 value taken
  from the token's own unsigned attributes. The index itself is checked against §5.5.2: every
  hash names a certificate, revocation entry or unsigned-attribute value that is there, and every
  certificate, revocation entry and unsigned-attribute value present before the time-stamp is
  indexed.
* JAdES ``arcTst`` (ETSI TS 119 182-1 §5.3.6.3.1, base64url ``etsiU`` elements): SHA-256 over
  base64url(payload) ``.`` protected ``.`` signature ``.`` followed by every ``etsiU`` element
  before the ``arcTst`` one, as it appears in the file.

The time-stamp tokens' own signatures and TSA chains are validated by the caller with pyHanko
against the expected imprint computed here. Limits: detached signatures with one SignerInfo,
SHA-256/384/512 imprints, DER (definite-length) encodings.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, cast

__all__ = ["ArchiveCheck", "cades_archive_checks", "jades_archive_checks"]

_HASHES = {"2.16.840.1.101.3.4.2.1": "sha256", "2.16.840.1.101.3.4.2.2": "sha384", "2.16.840.1.101.3.4.2.3": "sha512"}


@dataclass
class ArchiveCheck:
    """One archive time-stamp as found in a signature.

    :ivar token: the time-stamp token (DER ContentInfo) to validate with its TSA chain.
    :ivar hash_algorithm: the token's message-imprint algorithm.
    :ivar expected_imprint: the imprint recomputed from the signature by the standard's rules.
    :ivar token_imprint: the imprint inside the token.
    :ivar problems: what does not match (empty: the token covers exactly this signature).
    """

    token: bytes
    hash_algorithm: str
    expected_imprint: bytes
    token_imprint: bytes
    problems: list[str] = field(default_factory=list)

    @property
    def imprint_matches(self) -> bool:
        """The token's imprint is the recomputed one and nothing else is wrong."""
        return not self.problems and self.expected_imprint == self.token_imprint


# --- a minimal DER reader -------------------------------------------------------------------------

@dataclass(frozen=True)
class _Tlv:
    tag: int
    start: int  # first byte of the tag
    value_start: int
    end: int  # one past the last value byte

    def raw(self, data: bytes) -> bytes:
        return data[self.start:self.end]

    def value(self, data: bytes) -> bytes:
        return data[self.value_start:self.end]


def _tlv(data: bytes, pos: int) -> _Tlv:
    """The element starting at ``pos`` (single-byte tags; definite lengths only, as DER has)."""
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise ValueError("multi-byte tags do not occur in CMS")
    length = data[pos + 1]
    header = 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4:
            raise ValueError("indefinite or oversized length")
        length = int.from_bytes(data[pos + 2:pos + 2 + count], "big")
        header += count
    end = pos + header + length
    if end > len(data):
        raise ValueError("element runs past the end of the data")
    return _Tlv(tag, pos, pos + header, end)


def _children(data: bytes, parent: _Tlv) -> list[_Tlv]:
    items, pos = [], parent.value_start
    while pos < parent.end:
        item = _tlv(data, pos)
        items.append(item)
        pos = item.end
    return items


def _oid_text(raw_value: bytes) -> str:
    arcs, number = [], 0
    for byte in raw_value:
        number = (number << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(number)
            number = 0
    first = min(arcs[0] // 40, 2)
    return ".".join(str(a) for a in (first, arcs[0] - 40 * first, *arcs[1:]))


def _signed_data(data: bytes) -> list[_Tlv]:
    """The children of the SignedData in a ContentInfo."""
    content_info = _tlv(data, 0)
    explicit = _children(data, content_info)[1]  # content [0] EXPLICIT
    return _children(data, _children(data, explicit)[0])


def _attributes(data: bytes, attrs: _Tlv) -> list[tuple[str, _Tlv, list[_Tlv]]]:
    """``(OID, attrType element, value elements)`` of each Attribute in a SET OF Attribute."""
    result = []
    for attribute in _children(data, attrs):
        attr_type, values = _children(data, attribute)
        result.append((_oid_text(attr_type.value(data)), attr_type, _children(data, values)))
    return result


def _token_imprint(token: bytes) -> tuple[str, bytes]:
    """``(hash algorithm, hashedMessage)`` of a time-stamp token's TSTInfo."""
    encap = _signed_data(token)[2]
    explicit = _children(token, encap)[1]
    octets = _children(token, explicit)[0]
    tst_info = _tlv(token, octets.value_start)
    message_imprint = _children(token, tst_info)[2]
    algorithm, hashed = _children(token, message_imprint)
    oid = _oid_text(_children(token, algorithm)[0].value(token))
    if oid not in _HASHES:
        raise ValueError(f"unsupported imprint algorithm {oid}")
    return _HASHES[oid], hashed.value(token)


# --- CAdES archive-time-stamp-v3 ------------------------------------------------------------------

_ARCHIVE_TIMESTAMP_V3 = "0.4.0.1733.2.4"
_ATS_HASH_INDEX_V3 = "0.4.0.19122.1.5"


def cades_archive_checks(p7s: bytes, signed_file: bytes | None) -> list[ArchiveCheck]:
    """Every archive-time-stamp-v3 of the first SignerInfo of ``p7s``, each checked against the
    signature and the signed data (EN 319 122-1 §5.5.2-§5.5.3).

    :param signed_file: the detached file; ``None`` for a signature that encapsulates its content
        (``eContent``, whose octets are then the signed data).
    :raises ValueError: ``p7s`` is not a DER CMS SignedData, or a detached one without ``signed_file``.
    """
    fields = _signed_data(p7s)
    encap = fields[2]
    content_type, *econtent = _children(p7s, encap)
    if signed_file is None:
        if not econtent:
            raise ValueError("a detached signature needs the signed file")
        signed_file = _children(p7s, econtent[0])[0].value(p7s)
    certificates = next((f for f in fields if f.tag == 0xA0), None)
    crls = next((f for f in fields if f.tag == 0xA1), None)
    signer_info = _children(p7s, fields[-1])[0]
    parts = _children(p7s, signer_info)
    unsigned = next((p for p in parts if p.tag == 0xA1), None)
    covered = b"".join(p.raw(p7s) for p in parts if p.tag != 0xA1)  # version … signature, in order
    attributes = _attributes(p7s, unsigned) if unsigned is not None else []
    positions = [i for i, (oid, _, _) in enumerate(attributes) if oid == _ARCHIVE_TIMESTAMP_V3]
    checks = []
    for position in positions:
        token = attributes[position][2][0].raw(p7s)
        earlier = [a_type.raw(p7s) + v.raw(p7s) for _, a_type, vals in attributes[:position] for v in vals]
        checks.append(_check_cades_token(
            token, signed_file, content_type.raw(p7s), covered,
            [c.raw(p7s) for c in _children(p7s, certificates)] if certificates else [],
            [r.raw(p7s) for r in _children(p7s, crls)] if crls else [], earlier,
            # Validation data may be added after an archive time-stamp for the next one; only the
            # latest must index every certificate and revocation entry the signature holds.
            latest=position == positions[-1]))
    return checks


def _check_cades_token(token: bytes, signed_file: bytes, content_type: bytes, covered: bytes,
                       certificates: list[bytes], revocation: list[bytes], earlier_values: list[bytes], *,
                       latest: bool) -> ArchiveCheck:
    algorithm, token_imprint = _token_imprint(token)
    token_signer = _children(token, _signed_data(token)[-1])[0]
    token_unsigned = next((p for p in _children(token, token_signer) if p.tag == 0xA1), None)
    index = next((values[0] for oid, _, values in (_attributes(token, token_unsigned) if token_unsigned else [])
                  if oid == _ATS_HASH_INDEX_V3), None)
    if index is None:
        return ArchiveCheck(token, algorithm, b"", token_imprint, ["the archive time-stamp token has no ats-hash-index-v3"])
    problems = []
    members = _children(token, index)
    if len(members) == 4:
        index_algorithm = _HASHES.get(_oid_text(_children(token, members[0])[0].value(token)), "?")
        members = members[1:]
    else:
        index_algorithm = "sha256"  # the ASN.1 DEFAULT
    if index_algorithm != algorithm:
        problems.append(f"the ats-hash-index-v3 uses {index_algorithm}, the time-stamp imprint {algorithm} (must be equal)")

    def digest(data: bytes) -> bytes:
        return hashlib.new(algorithm, data).digest()

    for label, member, present in (("certificate", members[0], certificates), ("revocation entry", members[1], revocation),
                                   ("unsigned attribute value", members[2], earlier_values)):
        listed = [h.value(token) for h in _children(token, member)]
        available = [digest(item) for item in present]
        dangling = [h for h in listed if h not in available]
        missing = [h for h in available if h not in listed] if latest or present is earlier_values else []
        if dangling:
            problems.append(f"the ats-hash-index-v3 names {len(dangling)} {label}(s) the signature does not hold")
        if missing:
            problems.append(f"{len(missing)} {label}(s) of the signature are not in the ats-hash-index-v3")
    expected = digest(content_type + digest(signed_file) + covered + index.raw(token))
    if expected != token_imprint:
        problems.append("the archive time-stamp's message imprint does not match the signature (EN 319 122-1 §5.5.3)")
    return ArchiveCheck(token, algorithm, expected, token_imprint, problems)


# --- JAdES arcTst ---------------------------------------------------------------------------------

def _b64url_text(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _decoded_member(element: object) -> dict[str, object]:
    if not isinstance(element, str):
        raise ValueError("etsiU elements in clear JSON need a canonicalization this validator does not do")
    text = base64.urlsafe_b64decode(element + "=" * (-len(element) % 4))
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError("an etsiU element is not a JSON object")
    return value


def jades_archive_checks(jades_json: bytes, payload: bytes | None) -> list[ArchiveCheck]:
    """Every ``arcTst`` in the ``etsiU`` of a flattened JAdES JSON file, each checked against the
    file as serialized and the payload (TS 119 182-1 §5.3.6.3.1).

    :param payload: the detached payload (``sigD``); ``None`` when the JWS carries its payload
        (its base64url text is then used as it appears).
    :raises ValueError: not a flattened JWS JSON with base64url ``etsiU`` elements, or a detached
        one without ``payload``.
    """
    document = json.loads(jades_json)
    protected, signature = str(document["protected"]), str(document["signature"])
    if document.get("payload"):
        encoded_payload = str(document["payload"])
    elif payload is not None:
        encoded_payload = _b64url_text(payload)
    else:
        raise ValueError("a detached JAdES signature needs its payload")
    elements = list(document.get("header", {}).get("etsiU", []))
    checks = []
    for position, element in enumerate(elements):
        member = _decoded_member(element)
        if "arcTst" not in member:
            continue
        tokens = member["arcTst"]["tstTokens"]  # type: ignore[index]
        token = base64.b64decode(tokens[0]["val"])
        algorithm, token_imprint = _token_imprint(token)
        covered = f"{encoded_payload}.{protected}.{signature}." + "".join(elements[:position])
        expected = hashlib.new(algorithm, covered.encode("ascii")).digest()
        problems = [] if expected == token_imprint else [
            "the arcTst message imprint does not match the signature (TS 119 182-1 §5.3.6.3)"]
        if cast(dict[str, Any], member["arcTst"]).get("timeStamped", "all") != "all":
            problems.append("only arcTst with timeStamped 'all' is supported")
        checks.append(ArchiveCheck(token, algorithm, expected, token_imprint, problems))
    return checks
