"""Settings of the IPSP (mock eID OpenID Connect provider), from ``SIGNLAB_IDP_*``."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field

from shared.settings import ServiceSettings

__all__ = ["IdpSettings"]


class IdpSettings(ServiceSettings):
    """Settings of the IPSP."""

    env_prefix: ClassVar[str] = "SIGNLAB_IDP_"

    port: int = Field(8001, ge=1, le=65535, description="TCP port the service listens on.")
    data_dir: Path = Field(Path("var/idp"), description="Directory for the IdP's keys and state.")
