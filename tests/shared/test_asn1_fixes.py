"""shared.asn1_fixes: asn1crypto's indefinite-length test no longer misfires on definite lengths."""

from __future__ import annotations

import pytest
from asn1crypto import core

from shared.asn1_fixes import ends_with_indefinite_length, fix_indefinite_length_check


class _Pair(core.Sequence):
    _fields = [("a", core.OctetString), ("b", core.Integer)]


@pytest.mark.parametrize(("header", "indefinite"), [
    (b"\x30\x80", True),                       # SEQUENCE, indefinite
    (b"\x30\x82\x12\x80", False),              # SEQUENCE, 4736 bytes: ends in 0x80, definite
    (b"\x30\x81\x80", False),                  # 128 bytes
    (b"\xa0\x82\x12\x80\x30\x80", True),       # [0] EXPLICIT around an indefinite SEQUENCE
    (b"\xa0\x80\x30\x82\x01\x80", False),      # indefinite wrapper, definite inner value: the inner one counts
    (b"\x1f\x81\x00\x80", True),               # high tag number (128), indefinite
    (b"\x04\x05", False),
])
def test_ends_with_indefinite_length(header: bytes, indefinite: bool) -> None:
    assert ends_with_indefinite_length(header) is indefinite


def _calls_to_set_contents(value: core.Sequence) -> int:
    calls = 0
    original = core.Sequence._set_contents

    def counting(self: core.Sequence, force: bool = False) -> None:
        nonlocal calls
        calls += 1
        original(self, force)

    core.Sequence._set_contents = counting  # type: ignore[method-assign]
    try:
        value.dump()
    finally:
        core.Sequence._set_contents = original  # type: ignore[method-assign]
    return calls


def test_a_definite_length_ending_in_0x80_is_not_re_encoded() -> None:
    fix_indefinite_length_check()
    der = _Pair({"a": b"x" * 123, "b": 5}).dump()  # contents: 2 + 123 (octet string) + 3 (integer) = 128 bytes
    assert der[:3] == b"\x30\x81\x80"  # a long-form definite length whose last byte is 0x80
    parsed = _Pair.load(der)
    parsed["a"]  # children parsed, nothing changed
    assert _calls_to_set_contents(parsed) == 0
    assert parsed.dump() == der


def test_a_genuine_indefinite_length_is_still_re_encoded_to_der() -> None:
    fix_indefinite_length_check()
    ber = b"\x30\x80" + core.OctetString(b"ab").dump() + core.Integer(5).dump() + b"\x00\x00"
    parsed = _Pair.load(ber)
    assert parsed.dump() == _Pair({"a": b"ab", "b": 5}).dump()  # definite-length DER


def test_the_fix_is_applied_once() -> None:
    fix_indefinite_length_check()
    first = core.Sequence.dump
    fix_indefinite_length_check()
    assert core.Sequence.dump is first and first.signlab_guarded  # type: ignore[attr-defined]
