"""The SSASP: the remote signing service on the CSC API, with one-time keys in SoftHSM2."""

from __future__ import annotations

from flask import Flask

from services.signer.hsm import Hsm
from services.signer.settings import SignerSettings
from shared.flow import service
from shared.web import create_service_app

__all__ = ["create_app"]


def create_app(settings: SignerSettings | None = None) -> Flask:
    """Build the signer app; settings default to the ``SIGNLAB_SIGNER_*`` environment."""
    settings = settings or SignerSettings.from_env()
    hsm = Hsm(settings)
    hsm.session()  # fail at start-up, naming the cause, when the token cannot be opened
    app = create_service_app(__name__, service("signer"), settings, health_checks={"hsm": hsm.health})
    app.extensions["signlab.hsm"] = hsm
    return app
