"""The IdP's ID-token signing keys: a key ring under ``<data_dir>/keys`` with rotation.

Each key is an EC P-256 (ES256) PEM file ``idtoken-NNNNNN.pem`` created by
:func:`shared.jose_keys.load_or_create_ec_key`; its ``kid`` is the RFC 7638 thumbprint. The key with
the highest number signs; the JWKS publishes it and the ``retain`` previous keys, so tokens signed
just before a rotation still verify. :meth:`KeyRing.rotate` adds a key and prunes the oldest.

The ring rereads the directory listing on each use (cheap), so a rotation made by another
process (``signlab``, an admin call in another worker) is seen at once.

The *rogue* key is a fresh in-memory key that is never published: the ``unknown-key`` failure
signs with it.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

from joserfc.jwk import ECKey, KeySet

from shared.jose_keys import load_or_create_ec_key, public_jwks

__all__ = ["KeyRing"]

_NAME = re.compile(r"^idtoken-(\d{6})\.pem$")


class KeyRing:
    """The signing keys in ``directory``.

    :param retain: how many previous keys stay published after a rotation.
    """

    def __init__(self, directory: Path, *, retain: int = 2) -> None:
        self.directory = directory
        self.retain = retain
        self._cache: dict[str, ECKey] = {}
        self._lock = threading.Lock()
        self._rogue = ECKey.generate_key("P-256", parameters={"use": "sig", "alg": "ES256"}, private=True)
        self._rogue.ensure_kid()

    def _files(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return sorted(p for p in self.directory.iterdir() if _NAME.match(p.name))

    def _load(self, path: Path) -> ECKey:
        key = self._cache.get(path.name)
        if key is None:
            key = load_or_create_ec_key(path)
            self._cache[path.name] = key
        return key

    def ensure(self) -> ECKey:
        """The active key, creating the first one when the ring is empty."""
        with self._lock:
            files = self._files()
            if not files:
                self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
                return self._load(self.directory / "idtoken-000001.pem")
            return self._load(files[-1])

    def active(self) -> ECKey:
        """The key that signs new ID tokens."""
        return self.ensure()

    def published(self) -> list[ECKey]:
        """The keys in the JWKS: the active one and the retained previous ones, newest first."""
        self.ensure()
        with self._lock:
            return [self._load(p) for p in reversed(self._files())]

    def jwks(self) -> dict[str, Any]:
        """The public JWKS document."""
        return public_jwks(*self.published())

    def public_keyset(self) -> KeySet:
        """The published keys as a joserfc key set (public parts only)."""
        return KeySet([ECKey.import_key(key.as_dict(private=False)) for key in self.published()])

    def rotate(self) -> ECKey:
        """Create a new active key and drop keys older than the retained ones; return the new key."""
        self.ensure()
        with self._lock:
            files = self._files()
            number = int(_NAME.match(files[-1].name).group(1)) + 1 if files else 1  # type: ignore[union-attr]
            key = self._load(self.directory / f"idtoken-{number:06d}.pem")
            for old in self._files()[: -(self.retain + 1)]:
                old.unlink(missing_ok=True)
                self._cache.pop(old.name, None)
            return key

    @property
    def rogue(self) -> ECKey:
        """A key that is never published (for the ``unknown-key`` failure)."""
        return self._rogue
