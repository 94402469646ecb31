"""A correction to asn1crypto 1.5.1 that SignLab needs: its test for "indefinite length" misfires.

asn1crypto re-encodes a value from scratch (``force=True``, every child again, recursively) when
it believes the value was read with a BER indefinite length, and it believes so when the last byte
of the value's header is ``0x80``. A definite long-form length can end in that byte too: a
SignedData of 4,736 bytes has the header ``30 82 12 80``. Such a value — one in 256 lengths, a
matter of chance with ECDSA signatures and random serials — was re-encoded again at every level
of every ``dump()``: packaging one PAdES B-T signature took 30 to 100 s for those time-stamp
tokens, long enough for the web server to kill the worker (upstream: wbond/asn1crypto issue 249,
still open in 1.5.1, the latest release).

:func:`fix_indefinite_length_check` wraps the five ``dump`` methods that make the test: when the
header's last length is in fact definite, the cached header is dropped and recomputed (the same
bytes for DER) instead of re-encoding the whole value. Genuine indefinite lengths keep the
library's behaviour. Applied once per process (idempotent) where parsed CMS structures are dumped
again: the portal's pyHanko layer (``services/portal/ltv.py``), i.e. packaging and validation.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from asn1crypto import core

__all__ = ["ends_with_indefinite_length", "fix_indefinite_length_check"]

_PATCHED = (core.Asn1Value, core.Choice, core.Primitive, core.Sequence, core.SequenceOf)
"""The classes whose own ``dump`` makes the test (asn1crypto 1.5.1)."""


def ends_with_indefinite_length(header: bytes) -> bool:
    """Whether the last length in an asn1crypto header (one or more identifier+length octet runs,
    explicit tags first) is the indefinite form: the single length octet ``0x80``."""
    position, indefinite = 0, False
    while position < len(header):
        identifier = header[position]
        position += 1
        if identifier & 0x1F == 0x1F:  # high tag number: base-128 octets, the last without bit 8
            while position < len(header) and header[position] & 0x80:
                position += 1
            position += 1
        if position >= len(header):
            return False
        first = header[position]
        position += 1
        indefinite = first == 0x80
        if first & 0x80 and not indefinite:
            position += first & 0x7F
    return indefinite


def _guarded(original: Callable[..., bytes]) -> Callable[..., bytes]:
    @functools.wraps(original)
    def dump(self: Any, force: bool = False) -> bytes:
        header = self._header
        if header is not None and header[-1:] == b"\x80" and not ends_with_indefinite_length(header):
            self._header = None  # recomputed from the contents: no forced re-encoding of every child
        return original(self, force)

    dump.signlab_guarded = True  # type: ignore[attr-defined]
    return dump


def fix_indefinite_length_check() -> None:
    """Correct asn1crypto's indefinite-length test in every ``dump`` that makes it (idempotent)."""
    for cls in _PATCHED:
        method = cls.__dict__["dump"]
        if not getattr(method, "signlab_guarded", False):
            cls.dump = _guarded(method)  # type: ignore[method-assign]
