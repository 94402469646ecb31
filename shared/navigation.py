"""The navigation bar every service's pages share: one link to each service, and the trainer dashboard.

A class moves between the portal, the signing service, the eID provider, the CA (and the EUDI
Wallet) while it follows one signing; each page therefore shows the same bar (``shared/templates/signlab_base.html``)
with the service it belongs to marked. The links are the services' *browser* URLs: ``signlab up``
sets them in ``SIGNLAB_LAB_URLS`` for every service (the ports it chose); without it each service
is assumed at ``http://127.0.0.1:<its default port>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from pydantic import Field

from shared.flow import SERVICES, ServiceInfo
from shared.settings import EnvSettings

__all__ = ["LabSettings", "NavLink", "nav_links"]


class LabSettings(EnvSettings):
    """What every service knows about the lab as a whole."""

    env_prefix: ClassVar[str] = "SIGNLAB_LAB_"
    error_label: ClassVar[str] = "invalid lab settings"

    urls: dict[str, str] = Field(
        default_factory=dict,
        description="The browser URL of each service by name (portal, idp, ca, signer, wallet) for the navigation bar of "
        "every page; a service not named is linked at http://127.0.0.1:<its default port>.",
    )


@dataclass(frozen=True)
class NavLink:
    """One link of the bar."""

    role: str
    title: str
    url: str
    current: bool


TRAINER_PATH = "/trainer/"
"""The trainer dashboard, under the portal."""


def nav_links(current: ServiceInfo, settings: LabSettings | None = None) -> list[NavLink]:
    """The bar for a page of ``current``: each service's home, in the order of the diagrams' lanes
    (portal, signing service, eID provider, wallet, CA), then the trainer dashboard."""
    urls = (settings or LabSettings.from_env()).urls
    base = {info.name: urls.get(info.name, f"http://127.0.0.1:{info.default_port}").rstrip("/") for info in SERVICES}
    from shared.tracing.model import LANE_TITLES, WALLET_LANES, lanes_for  # the diagrams' names and order

    order = lanes_for(set(WALLET_LANES))
    ordered = sorted(SERVICES, key=lambda info: order.index(info.role) if info.role in order else len(order))
    links = [NavLink(str(info.role), LANE_TITLES.get(info.role, info.title), base[info.name] + "/",
                     info.name == current.name) for info in ordered]
    links.append(NavLink("Trainer", "dashboard", base["portal"] + TRAINER_PATH, False))
    return links
