"""The SCASP: the partner document portal (flow steps 1, 2 and 10)."""

from __future__ import annotations

from flask import Flask

from services.portal.settings import PortalSettings
from shared.flow import service
from shared.web import create_service_app

__all__ = ["create_app"]


def create_app(settings: PortalSettings | None = None) -> Flask:
    """Build the portal app; settings default to the ``SIGNLAB_PORTAL_*`` environment."""
    settings = settings or PortalSettings.from_env()
    return create_service_app(__name__, service("portal"), settings)
