"""First-start provisioning of the portal service (run by ``signlab up`` before it starts; idempotent)."""

from __future__ import annotations

from services.portal.settings import PortalSettings

__all__ = ["provision"]


def provision(settings: PortalSettings) -> list[str]:
    """Create the service's data directory (mode 0700); return what was done."""
    settings.service_dir()
    return [f"data directory {settings.data_dir}"]
