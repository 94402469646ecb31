"""Settings of the SSASP (CSC signing service with SoftHSM2), from ``SIGNLAB_SIGNER_*``."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from shared.settings import ServiceSettings

__all__ = ["QUALIFIERS", "SecretPartner", "SignerSettings"]

QUALIFIERS = ("eu_eidas_qes", "eu_eidas_aes")
"""The signature qualifiers this service offers (CSC ``signatureQualifier``)."""

Qualifier = Literal["eu_eidas_qes", "eu_eidas_aes"]


class SecretPartner(BaseModel):
    """A further partner that authenticates with a client secret (``SIGNLAB_SIGNER_PARTNER_CLIENTS``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    client_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$", description="Its client id.")
    client_secret: SecretStr = Field(min_length=16, description="Its secret; at least 16 characters.")
    name: str = Field(min_length=1, max_length=100, description="The name the consent page shows.")
    redirect_uris: list[str] = Field(min_length=1, description="Its redirect URIs (compared exactly).")
    qualifiers: list[Qualifier] = Field(["eu_eidas_qes", "eu_eidas_aes"], description="Qualifiers it may ask for.")


class SignerSettings(ServiceSettings):
    """Settings of the SSASP."""

    env_prefix: ClassVar[str] = "SIGNLAB_SIGNER_"

    port: int = Field(8003, ge=1, le=65535, description="TCP port the service listens on.")
    data_dir: Path = Field(Path("var/signer"), description="Directory for the HSM token, transactions and audit log.")
    state_dir: Path | None = Field(
        None, description="Directory for the transaction database and the audit log; empty means DATA_DIR."
    )
    idp_url: str = Field("http://127.0.0.1:8001", description="Base URL of the IPSP (OpenID Connect issuer).")
    idp_client_id: str = Field("signlab-signer", description="The signer's OIDC client id at the IPSP.")
    idp_client_secret: SecretStr = Field(
        description="The signer's OIDC client secret at the IPSP (secret; equals SIGNLAB_IDP_SIGNER_CLIENT_SECRET)."
    )
    idp_scope: str = Field("openid profile", description="Scopes the signer requests from the IPSP (step 3).")
    ca_url: str = Field("http://127.0.0.1:8002", description="Base URL of the TSP (certificate issuance, TSA).")
    ca_client_id: str = Field(
        "signlab-signer", description="Client id in the signer's RFC 7523 client assertions to the TSP (step 7)."
    )
    portal_client_id: str = Field("signlab-portal", description="OAuth2 client id of the partner portal (SCASP).")
    portal_jwks_url: str = Field(
        "http://127.0.0.1:8000/.well-known/jwks.json",
        description="JWKS of the partner portal: it authenticates with private_key_jwt (RFC 7523 client assertions "
        "signed by its key), never with a shared secret.",
    )
    portal_redirect_uris: list[str] = Field(
        ["http://127.0.0.1:8000/sign/callback"],
        description="Registered redirect URIs of the partner portal (JSON list; compared exactly).",
    )
    portal_name: str = Field("SignLab Demo Partner", description="Partner name shown to the signer on the consent page.")
    portal_qualifiers: list[Qualifier] = Field(
        ["eu_eidas_qes", "eu_eidas_aes"],
        description="Signature qualifiers the partner portal may request (JSON list).",
    )
    partner_clients: list[SecretPartner] = Field(
        [], description="Further partners that authenticate with a client secret (client_secret_basic or "
        "client_secret_post): JSON list of {client_id, client_secret, name, redirect_uris, qualifiers}.",
    )
    key_algorithm: Literal["ec-p256", "rsa-3072"] = Field(
        "ec-p256", description="Algorithm of the one-time keys: ec-p256 (ECDSA P-256) or rsa-3072."
    )
    sad_lifetime_seconds: int = Field(
        300, ge=10, le=300, description="Lifetime of a SAD / credential token (at most 300 s); single use."
    )
    par_lifetime_seconds: int = Field(90, ge=10, le=600, description="Lifetime of a pushed authorization request_uri.")
    code_lifetime_seconds: int = Field(60, ge=5, le=600, description="Lifetime of an authorization code (single use).")
    login_timeout_seconds: int = Field(
        600, ge=30, le=3600, description="Time a signer has for eID login and consent before the transaction expires."
    )
    service_token_lifetime_seconds: int = Field(
        600, ge=30, le=3600, description="Lifetime of a service-scope access token and its one-time credential."
    )
    clock_leeway_seconds: int = Field(30, ge=0, le=300, description="Clock skew tolerated when checking ID tokens.")
    max_documents: int = Field(20, ge=1, le=100, description="Most documents (digests) one transaction may sign.")
    client_lockout_failures: int = Field(
        5, ge=1, le=1000,
        description="Wrong client secrets (one secret-authenticated client, one address) that lock the pair; a client "
        "that authenticates with private_key_jwt is never locked by wrong secrets.",
    )
    client_lockout_seconds: int = Field(
        60, ge=1, le=86400, description="Window that counts wrong client secrets, and how long the lock lasts."
    )
    sweep_interval_seconds: float = Field(
        15.0, ge=0, description="How often expired transactions are swept (keys destroyed); 0 disables the timer."
    )
    hsm_module: Path = Field(
        Path("/usr/lib/softhsm/libsofthsm2.so"), description="PKCS#11 library of the HSM (SoftHSM2 by default)."
    )
    hsm_token_label: str = Field("signlab-signer", min_length=1, max_length=32, description="Label of the HSM token.")
    hsm_user_pin: SecretStr = Field(description="User PIN of the HSM token (secret; generated by signlab up).")
    hsm_so_pin: SecretStr = Field(description="Security-officer PIN of the HSM token (secret; generated by signlab up).")
    faults_enabled: bool = Field(
        False, description="Enable the fault-injection admin API (/admin/faults: HSM failures at steps 6 and 9); "
        "off by default, never on in a real deployment ('signlab up --fault-injection' turns it on)."
    )
    admin_token: SecretStr = Field(
        description="Bearer token of the fault-injection admin API (secret; generated by signlab up)."
    )
    trainer_token: SecretStr = Field(
        description="Trainer token guarding the read-only view of the audit log and its chain status (the same "
        "value as SIGNLAB_PORTAL_TRAINER_TOKEN; generated by signlab up)."
    )

    @property
    def state_path(self) -> Path:
        """Directory of the database and audit log (created when missing)."""
        path = self.state_dir or self.data_dir
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        return path

    @property
    def database_path(self) -> Path:
        """The SQLite transaction database."""
        return self.state_path / "signer.sqlite3"

    @property
    def audit_path(self) -> Path:
        """The hash-chained audit log (JSON lines); ``signlab audit verify`` checks it."""
        return self.state_path / "audit.jsonl"

    @property
    def pseudonym_key_path(self) -> Path:
        """The key that pseudonymises subject ids in the audit log (created at provisioning)."""
        return self.state_path / "audit-pseudonym.key"

    @property
    def client_assertion_key_path(self) -> Path:
        """The EC key whose public half is served at ``/.well-known/jwks.json`` (client assertions to the CA)."""
        return self.data_dir / "client-assertion-key.pem"
