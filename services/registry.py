"""The services as the runtime sees them: info, settings class, provisioning hook, WSGI target."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from services.ca.provision import provision as provision_ca
from services.ca.settings import LAB_HOST as CA_LAB_HOST
from services.ca.settings import CaSettings
from services.idp.provision import provision as provision_idp
from services.idp.settings import IdpSettings
from services.portal.provision import provision as provision_portal
from services.portal.settings import PortalSettings
from services.signer.provision import provision as provision_signer
from services.signer.settings import SignerSettings
from services.wallet.provision import provision as provision_wallet
from services.wallet.settings import WalletSettings
from shared.flow import ServiceInfo, service
from shared.settings import ServiceSettings

__all__ = ["LAB_HOSTS", "LINKED_SECRETS", "REGISTRY", "URL_LINKS", "CaSettings", "IdpSettings", "PortalSettings",
           "ServiceEntry", "SignerSettings", "WalletSettings", "entry", "lab_url"]
"""Also each service's settings class, typed, for the CLI's commands that read a service's settings."""


@dataclass(frozen=True)
class ServiceEntry:
    """What the runtime needs to provision and start one service.

    :ivar info: the service and its role.
    :ivar settings_class: its settings model (read from the environment in the service process).
    :ivar provision: the idempotent first-start hook; returns lines describing what it did.
    """

    info: ServiceInfo
    settings_class: type[ServiceSettings]
    provision: Callable[[Any], list[str]]

    @property
    def wsgi_target(self) -> str:
        """The gunicorn application spec of the service's factory."""
        return f"services.{self.info.name}:create_app()"


REGISTRY: tuple[ServiceEntry, ...] = (
    ServiceEntry(service("idp"), IdpSettings, provision_idp),
    ServiceEntry(service("wallet"), WalletSettings, provision_wallet),
    ServiceEntry(service("ca"), CaSettings, provision_ca),
    ServiceEntry(service("signer"), SignerSettings, provision_signer),
    ServiceEntry(service("portal"), PortalSettings, provision_portal),
)
"""In start order: the IdP first, the wallet (its PID provider issues PIDs to the IdP's test persons
at provisioning), the CA, the signer (which calls the IdP and the CA), the portal last."""


def entry(name: str) -> ServiceEntry:
    """The registry entry of service ``name``."""
    for item in REGISTRY:
        if item.info.name == name:
            return item
    raise KeyError(f"unknown service {name!r}; known: {', '.join(e.info.name for e in REGISTRY)}")


URL_LINKS: dict[str, str] = {
    "SIGNLAB_IDP_SIGNER_REDIRECT_URIS": '["{signer}/oauth2/idp-callback"]',
    "SIGNLAB_CA_IDP_URL": "{idp}",
    "SIGNLAB_CA_SIGNER_JWKS_URL": "{signer}/.well-known/jwks.json",
    "SIGNLAB_SIGNER_IDP_URL": "{idp}",
    "SIGNLAB_SIGNER_CA_URL": "{ca}",
    "SIGNLAB_SIGNER_PORTAL_REDIRECT_URIS": '["{portal}/sign/callback"]',
    "SIGNLAB_SIGNER_PORTAL_JWKS_URL": "{portal}/.well-known/jwks.json",
    "SIGNLAB_PORTAL_SIGNER_URL": "{signer}",
    "SIGNLAB_PORTAL_CA_URL": "{ca}",
    "SIGNLAB_PORTAL_IDP_URL": "{idp}",
    "SIGNLAB_IDP_WALLET_URL": "{wallet}",
    "SIGNLAB_IDP_WALLET_TRUSTED_LIST_URL": "{wallet}/pid-provider/trusted-providers",
    "SIGNLAB_WALLET_IDP_URL": "{idp}",
    "SIGNLAB_CA_PUBLIC_CERT_BASE": "{ca_public}",
}
"""How the services find each other: settings whose value is built from the other services'
base URLs (``{idp}``, ``{ca}``, ``{signer}``, ``{portal}``, ``{wallet}``) or from a service's
lab-host URL (``{ca_public}``, see :data:`LAB_HOSTS`). The runtime fills in each one whose field
exists in the service's settings class, unless the environment already sets it; compose sets the
same variables with the container host names (back channel) or the host-published ports
(browsers, validators)."""

LAB_HOSTS: dict[str, str] = {"ca": CA_LAB_HOST}
"""Host names written into signed documents for outside validators to fetch (``{<service>_public}``
in :data:`URL_LINKS`): ``http://<name>:<port where the lab machine reaches the service>``. The
name resolves to 127.0.0.1 through ``/etc/hosts`` (``signlab hosts``) and, in docker compose, to
the container through a network alias."""


def lab_url(name: str, port: int | str) -> str:
    """``http://<lab host of service name>:<port>`` (the ``{<name>_public}`` value of :data:`URL_LINKS`)."""
    return f"http://{LAB_HOSTS[name]}:{port}"


LINKED_SECRETS: tuple[tuple[str, ...], ...] = (
    ("SIGNLAB_IDP_SIGNER_CLIENT_SECRET", "SIGNLAB_SIGNER_IDP_CLIENT_SECRET"),
    # One trainer token for every trainer and debugger view (docs/design.md §6).
    ("SIGNLAB_PORTAL_TRAINER_TOKEN", "SIGNLAB_IDP_TRAINER_TOKEN", "SIGNLAB_CA_TRAINER_TOKEN",
     "SIGNLAB_SIGNER_TRAINER_TOKEN"),
)
"""Secrets several services must share (a client secret known to the client and its server, the
trainer token): each group gets one generated value."""
