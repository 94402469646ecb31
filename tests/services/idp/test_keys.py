"""The ID-token key ring: creation, rotation, retention, rogue key."""

from __future__ import annotations

from pathlib import Path

from services.idp.keys import KeyRing


def test_rotation_keeps_retained_keys_published(tmp_path: Path) -> None:
    ring = KeyRing(tmp_path / "keys", retain=1)
    first = ring.ensure()
    assert (tmp_path / "keys" / "idtoken-000001.pem").stat().st_mode & 0o777 == 0o600
    assert [k["kid"] for k in ring.jwks()["keys"]] == [first.kid]
    second = ring.rotate()
    assert ring.active().kid == second.kid != first.kid
    assert [k["kid"] for k in ring.jwks()["keys"]] == [second.kid, first.kid]
    third = ring.rotate()
    assert [k["kid"] for k in ring.jwks()["keys"]] == [third.kid, second.kid]
    # Another ring over the same directory (another process) sees the same active key.
    assert KeyRing(tmp_path / "keys").active().kid == third.kid
    assert all("d" not in k for k in ring.jwks()["keys"]), "private parts never published"


def test_rogue_key_is_never_published(tmp_path: Path) -> None:
    ring = KeyRing(tmp_path / "keys")
    assert ring.rogue.kid not in {k["kid"] for k in ring.jwks()["keys"]}
