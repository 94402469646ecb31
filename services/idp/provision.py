"""First-start provisioning of the idp service (run by ``signlab up`` before it starts; idempotent)."""

from __future__ import annotations

from services.idp.settings import IdpSettings

__all__ = ["provision"]


def provision(settings: IdpSettings) -> list[str]:
    """Create the service's data directory (mode 0700); return what was done."""
    settings.service_dir()
    return [f"data directory {settings.data_dir}"]
