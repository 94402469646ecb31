"""Settings of the TSP (CA, OCSP, TSA, trusted list), from ``SIGNLAB_CA_*``."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field

from shared.settings import ServiceSettings

__all__ = ["CaSettings"]


class CaSettings(ServiceSettings):
    """Settings of the TSP."""

    env_prefix: ClassVar[str] = "SIGNLAB_CA_"

    port: int = Field(8002, ge=1, le=65535, description="TCP port the service listens on.")
    data_dir: Path = Field(Path("var/ca"), description="Directory for the CA keys (mode 0600), databases and logs.")
    idp_url: str = Field("http://127.0.0.1:8001", description="Base URL of the IPSP, whose JWKS verifies identity evidence.")
