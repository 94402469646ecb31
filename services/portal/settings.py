"""Settings of the SCASP (partner document portal), from ``SIGNLAB_PORTAL_*``."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field

from shared.settings import ServiceSettings

__all__ = ["PortalSettings"]


class PortalSettings(ServiceSettings):
    """Settings of the SCASP."""

    env_prefix: ClassVar[str] = "SIGNLAB_PORTAL_"

    port: int = Field(8000, ge=1, le=65535, description="TCP port the service listens on.")
    data_dir: Path = Field(Path("var/portal"), description="Directory for the portal's documents and transactions.")
    signer_url: str = Field("http://127.0.0.1:8003", description="Base URL of the SSASP (CSC API and OAuth2).")
    ca_url: str = Field("http://127.0.0.1:8002", description="Base URL of the TSP (TSA, CRL, OCSP, trusted list).")
