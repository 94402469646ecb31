"""One fingerprint format for every digest shown to people."""

from __future__ import annotations

import hashlib

import pytest

from shared.digests import algorithm_name, digest_fingerprint


def test_the_whole_digest_in_groups_of_eight_with_the_algorithm() -> None:
    digest = hashlib.sha256(b"test").digest()
    shown = digest_fingerprint(digest, "sha256")
    assert shown == "SHA-256 " + " ".join(digest.hex().upper()[i:i + 8] for i in range(0, 64, 8))
    # Every spelling of the algorithm gives the same text; a bare hash is named by its size.
    assert digest_fingerprint(digest, "2.16.840.1.101.3.4.2.1") == digest_fingerprint(digest, "SHA-256") == shown
    assert digest_fingerprint(digest) == shown
    assert digest_fingerprint(hashlib.sha512(b"x").digest()).startswith("SHA-512 ")


def test_a_mislabelled_digest_is_refused() -> None:
    with pytest.raises(ValueError, match="SHA-384 digest has 48 bytes"):
        digest_fingerprint(hashlib.sha256(b"x").digest(), "sha384")
    with pytest.raises(ValueError, match="unknown hash algorithm"):
        algorithm_name("md5")
