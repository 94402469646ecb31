"""The IPSP: the mock eID OpenID Connect provider (flow steps 3-5)."""

from __future__ import annotations

from flask import Flask

from services.idp.settings import IdpSettings
from shared.flow import service
from shared.web import create_service_app

__all__ = ["create_app"]


def create_app(settings: IdpSettings | None = None) -> Flask:
    """Build the idp app; settings default to the ``SIGNLAB_IDP_*`` environment."""
    settings = settings or IdpSettings.from_env()
    return create_service_app(__name__, service("idp"), settings)
