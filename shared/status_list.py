"""Token Status List (IETF draft-ietf-oauth-status-list): the compressed status array, both ways.

The PID provider of the wallet service encodes its list into a Status List Token; the IPSP decodes
it to check a presented PID. Both sides use this module, so the bit layout lives in one place.

Layout (draft §4.1): each Referenced Token has an index ``i``; its status takes ``bits`` bits (1, 2,
4 or 8) starting at bit offset ``i * bits`` of a byte array, the blocks packed into each byte from
the least significant bit upwards; the array is DEFLATE-compressed in the ZLIB format and carried
base64url-encoded (no padding) in ``{"bits": …, "lst": …}`` (§4.2). Status values (§7.1): 0 VALID,
1 INVALID (revoked), 2 SUSPENDED.

Limits: JSON form only (no CBOR); no aggregation; a list is rebuilt whole on every change (the lab's
lists hold hundreds of entries, not millions).
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Sequence
from enum import IntEnum
from typing import Any

__all__ = ["ALLOWED_BITS", "MEDIA_TYPE", "TOKEN_TYPE", "Status", "StatusListError", "decode_list", "encode_list",
           "status_at"]

ALLOWED_BITS = (1, 2, 4, 8)
TOKEN_TYPE = "statuslist+jwt"  # noqa: S105 - a JWT typ header value, not a secret
"""The ``typ`` header of a Status List Token in JWT format (draft §5.1)."""
MEDIA_TYPE = "application/statuslist+jwt"
"""The content type a Status Provider serves the token with (draft §8.1)."""
_MAX_DECOMPRESSED = 1 << 20
"""Largest decompressed list accepted (1 MiB: 8 million one-bit entries), against zip bombs (§11.1)."""


class Status(IntEnum):
    """The registered status types (draft §7.1)."""

    VALID = 0
    INVALID = 1
    """Revoked, annulled, taken back."""
    SUSPENDED = 2
    """Temporarily invalid."""


class StatusListError(ValueError):
    """A status list that cannot be decoded, or an index outside it (draft §8.3: reject)."""


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def encode_list(statuses: Sequence[int], bits: int) -> dict[str, Any]:
    """``{"bits": bits, "lst": …}`` for the statuses of indexes 0 … n-1.

    :raises ValueError: ``bits`` is not 1, 2, 4 or 8, or a status does not fit into ``bits``.
    """
    if bits not in ALLOWED_BITS:
        raise ValueError(f"bits must be one of {ALLOWED_BITS}, not {bits}")
    per_byte = 8 // bits
    packed = bytearray((len(statuses) + per_byte - 1) // per_byte)
    for index, value in enumerate(statuses):
        if not 0 <= value < (1 << bits):
            raise ValueError(f"status {value} at index {index} does not fit into {bits} bit(s)")
        packed[index // per_byte] |= value << ((index % per_byte) * bits)
    return {"bits": bits, "lst": _b64url(zlib.compress(bytes(packed), 9))}


def decode_list(status_list: Any) -> tuple[int, bytes]:
    """``(bits, uncompressed byte array)`` of a ``status_list`` claim.

    :raises StatusListError: not an object with valid ``bits`` and ``lst``, or ``lst`` is not
        base64url-encoded ZLIB data.
    """
    if not isinstance(status_list, dict):
        raise StatusListError("the status_list claim is not a JSON object")
    bits, lst = status_list.get("bits"), status_list.get("lst")
    if bits not in ALLOWED_BITS or isinstance(bits, bool):
        raise StatusListError(f"status_list.bits must be one of {ALLOWED_BITS}, not {bits!r}")
    if not isinstance(lst, str) or not lst:
        raise StatusListError("status_list.lst is missing")
    try:
        compressed = base64.urlsafe_b64decode(lst + "=" * (-len(lst) % 4))
        inflater = zlib.decompressobj()
        raw = inflater.decompress(compressed, _MAX_DECOMPRESSED)
    except (ValueError, zlib.error) as exc:
        raise StatusListError(f"status_list.lst is not base64url ZLIB data ({exc})") from None
    if inflater.unconsumed_tail:
        raise StatusListError(f"the status list is larger than {_MAX_DECOMPRESSED} bytes")
    return int(bits), raw


def status_at(status_list: Any, index: int) -> int:
    """The status value at ``index`` of a ``status_list`` claim.

    :raises StatusListError: the list does not decode, or ``index`` is outside it (draft §8.3).
    """
    bits, raw = decode_list(status_list)
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise StatusListError(f"the status index must be a non-negative integer, not {index!r}")
    per_byte = 8 // bits
    if index // per_byte >= len(raw):
        raise StatusListError(f"index {index} is outside the status list ({len(raw) * per_byte} entries)")
    return (raw[index // per_byte] >> ((index % per_byte) * bits)) & ((1 << bits) - 1)
