"""The Token Status List encoding against the draft's own examples, and its refusals."""

from __future__ import annotations

import base64
import zlib

import pytest

from shared.status_list import Status, StatusListError, decode_list, encode_list, status_at

# draft-ietf-oauth-status-list §4.1: the two worked examples (statuses, bits, compressed hex).
ONE_BIT = [1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 1, 0, 1]
TWO_BITS = [1, 2, 0, 3, 0, 1, 0, 1, 1, 2, 3, 3]


def _raw(status_list: dict[str, object]) -> bytes:
    return decode_list(status_list)[1]


@pytest.mark.parametrize(("statuses", "bits", "packed"), [(ONE_BIT, 1, "b9a3"), (TWO_BITS, 2, "c944f9")])
def test_the_drafts_examples_pack_as_printed(statuses: list[int], bits: int, packed: str) -> None:
    encoded = encode_list(statuses, bits)
    assert encoded["bits"] == bits
    assert _raw(encoded).hex() == packed
    # The draft's compressed bytes decode to the same array (zlib output itself may differ by level).
    printed = {1: "78dadbb918000217015d", 2: "78da3be9f2130003df0207"}[bits]
    assert zlib.decompress(bytes.fromhex(printed)).hex() == packed
    lst = base64.urlsafe_b64encode(bytes.fromhex(printed)).rstrip(b"=").decode()
    assert [status_at({"bits": bits, "lst": lst}, i) for i in range(len(statuses))] == statuses


def test_every_index_round_trips_for_every_width() -> None:
    for bits in (1, 2, 4, 8):
        statuses = [(i * 7 + 3) % (1 << bits) for i in range(50)]
        encoded = encode_list(statuses, bits)
        assert [status_at(encoded, i) for i in range(50)] == statuses


def test_status_values_are_the_registered_ones() -> None:
    assert (Status.VALID, Status.INVALID, Status.SUSPENDED) == (0, 1, 2)


def test_out_of_range_and_malformed_lists_are_refused() -> None:
    encoded = encode_list([0] * 8, 1)  # one byte: indexes 0-7
    with pytest.raises(StatusListError, match="outside the status list"):
        status_at(encoded, 8)
    with pytest.raises(StatusListError, match="non-negative"):
        status_at(encoded, -1)
    with pytest.raises(StatusListError, match="bits"):
        status_at({"bits": 3, "lst": encoded["lst"]}, 0)
    with pytest.raises(StatusListError, match="ZLIB"):
        status_at({"bits": 1, "lst": "bm90LXpsaWI"}, 0)
    with pytest.raises(ValueError, match="does not fit"):
        encode_list([2], 1)
