"""How a document digest is shown to people: one format everywhere (docs/design.md §6, fidelity rule).

The portal's review page, the SSASP's consent page, the result page and the trace show a digest as
:func:`digest_fingerprint` formats it — the hash algorithm's name and the whole digest in upper-case
hex, in groups of eight — so a person (and a trainer) can compare two screens character by
character. Example::

    SHA-256 9F86D081 884C7D65 9A2FEAA0 C55AD015 A3BF4F1B 2B0B822C D15D6C15 B0F00A08
"""

from __future__ import annotations

__all__ = ["HASH_ALGORITHM_NAMES", "algorithm_name", "digest_fingerprint"]

HASH_ALGORITHM_NAMES: dict[str, tuple[str, int]] = {
    "sha256": ("SHA-256", 32), "sha-256": ("SHA-256", 32), "2.16.840.1.101.3.4.2.1": ("SHA-256", 32),
    "sha384": ("SHA-384", 48), "sha-384": ("SHA-384", 48), "2.16.840.1.101.3.4.2.2": ("SHA-384", 48),
    "sha512": ("SHA-512", 64), "sha-512": ("SHA-512", 64), "2.16.840.1.101.3.4.2.3": ("SHA-512", 64),
}
"""Spellings of a hash algorithm (hashlib name, RFC name, OID) → its display name and digest size."""

_BY_SIZE = {size: name for name, size in HASH_ALGORITHM_NAMES.values()}


def algorithm_name(algorithm: str) -> str:
    """The display name (``SHA-256``) of a hashlib name, RFC name or OID.

    :raises ValueError: an algorithm SignLab does not use.
    """
    try:
        return HASH_ALGORITHM_NAMES[algorithm.strip().lower()][0]
    except KeyError:
        raise ValueError(f"unknown hash algorithm {algorithm!r}; known: SHA-256, SHA-384, SHA-512") from None


def digest_fingerprint(digest: bytes, algorithm: str | None = None) -> str:
    """``"SHA-256 9F86D081 …"``: the algorithm and the whole digest, grouped for reading aloud.

    :param algorithm: hashlib name, RFC name or OID; None: named by the digest's size (what a
        trace knows of a bare hash value).
    :raises ValueError: the digest's size does not fit the algorithm (a mislabelled digest must not
        be shown under a wrong name).
    """
    if algorithm is None:
        name = _BY_SIZE.get(len(digest), f"{len(digest)}-byte digest")
    else:
        name = algorithm_name(algorithm)
        expected = HASH_ALGORITHM_NAMES[algorithm.strip().lower()][1]
        if len(digest) != expected:
            raise ValueError(f"a {name} digest has {expected} bytes, not {len(digest)}")
    text = digest.hex().upper()
    return f"{name} {' '.join(text[i:i + 8] for i in range(0, len(text), 8))}"
