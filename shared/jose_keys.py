"""Private JOSE signing keys kept in files under a service's data directory.

Used for keys that sign JWTs (the IdP's ID-token keys, the signer's client assertions). The key is
created once (EC P-256 for ES256), stored as a PKCS#8 PEM file with mode 0600, and its ``kid`` is
the RFC 7638 thumbprint, so that the published JWKS and the token headers always agree.

Limits: keys are in software, on disk; this is a simulation, not a QTSP key ceremony.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc.jwk import ECKey

__all__ = ["load_ec_key", "load_or_create_ec_key", "public_jwks"]


def load_or_create_ec_key(path: Path) -> ECKey:
    """Load the P-256 private key at ``path``, creating it (mode 0600) when missing."""
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        private = ec.generate_private_key(ec.SECP256R1())
        pem = private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        # Create with 0600 from the start: the key is never readable by others, not even briefly.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
    return load_ec_key(path)


def load_ec_key(path: Path) -> ECKey:
    """Load the P-256 private key at ``path`` (another process made it; a tool reading a service's key).

    :raises FileNotFoundError: there is no key yet (the service was never provisioned).
    """
    key = ECKey.import_key(path.read_bytes(), parameters={"use": "sig", "alg": "ES256"})
    key.ensure_kid()
    return key


def public_jwks(*keys: ECKey) -> dict[str, Any]:
    """The public JWKS document (``{"keys": [...]}``) of ``keys``."""
    return {"keys": [key.as_dict(private=False) for key in keys]}
