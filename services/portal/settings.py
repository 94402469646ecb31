"""Settings of the SCASP (partner document portal), from ``SIGNLAB_PORTAL_*``."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field, SecretStr

from shared.settings import ServiceSettings

__all__ = ["PortalSettings"]


class PortalSettings(ServiceSettings):
    """Settings of the SCASP."""

    env_prefix: ClassVar[str] = "SIGNLAB_PORTAL_"

    port: int = Field(8000, ge=1, le=65535, description="TCP port the service listens on.")
    data_dir: Path = Field(Path("var/portal"), description="Directory for the portal's documents and transactions.")
    max_body_bytes: int = Field(
        32 * 1024 * 1024, ge=1024,
        description="Largest request body accepted (all uploaded documents together), in bytes; larger bodies get HTTP 413.",
    )
    signer_url: str = Field("http://127.0.0.1:8003", description="Base URL of the SSASP (CSC API and OAuth2).")
    signer_browser_url: str = Field(
        "", description="Base URL browsers use for the SSASP's authorize endpoint when it differs from SIGNER_URL "
        "(e.g. in docker compose); empty means SIGNER_URL."
    )
    ca_url: str = Field("http://127.0.0.1:8002", description="Base URL of the TSP (TSA, CRL, OCSP, trusted list).")
    idp_url: str = Field("http://127.0.0.1:8001", description="Base URL of the IPSP (shown on pages; the portal never calls it).")
    signer_client_id: str = Field("signlab-portal", description="The portal's OAuth2 client id at the SSASP.")
    signer_client_secret: SecretStr = Field(
        description="The portal's OAuth2 client secret at the SSASP (must equal SIGNLAB_SIGNER_PORTAL_CLIENT_SECRET)."
    )
    session_secret: SecretStr = Field(description="Key that signs the portal's browser session cookie (CSRF tokens).")
    max_document_bytes: int = Field(
        10 * 1024 * 1024, ge=1, description="Largest single document accepted for signing or validation, in bytes."
    )
    max_documents: int = Field(10, ge=1, le=50, description="Most documents in one signing request (one authorization).")
    pdf_bytes_reserved: int = Field(
        20480, ge=16384, multiple_of=4,
        description="Hex characters reserved in a PDF's /Contents for the CMS at B-T and above (DER capacity is "
        "half of it); must hold the certificate chain, the signature and a signature time-stamp. B-B reserves "
        "half as much (no time-stamp); validators read the whole reservation, so bigger is slower.",
    )
    transaction_ttl_seconds: int = Field(
        600, ge=1, description="How long a signing transaction may wait for the signer's return (eID login and "
        "consent) before it expires; an expired transaction redeems nothing and keeps nothing as signed."
    )
    trust_root_file: Path | None = Field(
        None, description="DER or PEM file with the root certificate the validator trusts; "
        "empty means <data_dir>/trust/signlab-root.der (fetched from the CA at provisioning)."
    )
    trusted_list_file: Path | None = Field(
        None, description="ETSI TS 119 612 trusted list used to decide QES/AdES; "
        "empty means <data_dir>/trust/trusted-list.xml (fetched from the CA at provisioning, refreshed when validating)."
    )

    @property
    def tsa_url(self) -> str:
        """The RFC 3161 time-stamping endpoint of the TSP."""
        return f"{self.ca_url.rstrip('/')}/tsa"

    @property
    def callback_url(self) -> str:
        """The OAuth2 redirect URI registered at the SSASP."""
        return f"{self.base_url}/sign/callback"

    def trust_root_path(self) -> Path:
        """Where the trusted root certificate is read from."""
        return self.trust_root_file or self.data_dir / "trust" / "signlab-root.der"

    def trusted_list_path(self) -> Path:
        """Where the trusted list is read from (and cached to)."""
        return self.trusted_list_file or self.data_dir / "trust" / "trusted-list.xml"
