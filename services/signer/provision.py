"""First-start provisioning of the SSASP (run by ``signlab up`` before it starts; idempotent)."""

from __future__ import annotations

import os
import secrets

from services.signer.hsm import provision_token
from services.signer.settings import SignerSettings
from shared.jose_keys import load_or_create_ec_key

__all__ = ["provision", "pseudonym_key"]


def pseudonym_key(settings: SignerSettings) -> bytes:
    """The key that pseudonymises subject ids in the audit log; created (mode 0600) when missing."""
    path = settings.pseudonym_key_path
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(secrets.token_bytes(32))
    return path.read_bytes()


def provision(settings: SignerSettings) -> list[str]:
    """Create the data directory, the SoftHSM2 token, the client-assertion key and the pseudonym key."""
    settings.service_dir()
    done = [f"data directory {settings.data_dir}", provision_token(settings)]
    key = load_or_create_ec_key(settings.client_assertion_key_path)
    done.append(f"client-assertion key {key.kid} (JWKS at /.well-known/jwks.json)")
    pseudonym_key(settings)
    done.append(f"audit pseudonym key in {settings.pseudonym_key_path}")
    return done
