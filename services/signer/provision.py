"""First-start provisioning of the SSASP (run by ``signlab up`` before it starts; idempotent)."""

from __future__ import annotations

from services.signer.hsm import provision_token
from services.signer.settings import SignerSettings

__all__ = ["provision"]


def provision(settings: SignerSettings) -> list[str]:
    """Create the data directory and the SoftHSM2 token; return what was done."""
    settings.service_dir()
    return [f"data directory {settings.data_dir}", provision_token(settings)]
