"""The TSP: the CA for short-term certificates, OCSP, CRL, time-stamping and trusted list (flow step 7)."""

from __future__ import annotations

from flask import Flask

from services.ca.settings import CaSettings
from shared.flow import service
from shared.web import create_service_app

__all__ = ["create_app"]


def create_app(settings: CaSettings | None = None) -> Flask:
    """Build the ca app; settings default to the ``SIGNLAB_CA_*`` environment."""
    settings = settings or CaSettings.from_env()
    return create_service_app(__name__, service("ca"), settings)
