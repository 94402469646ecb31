"""The IPSP: the mock eID OpenID Connect provider (flow steps 3-5).

``create_app`` builds the Flask app: the shared frame (errors, health, role page), the domain core
(:class:`services.idp.provider.IdpCore`: catalogue, key ring, SQLite state, the lab clock), the
login state machine (:mod:`services.idp.login`), authlib's authorization server
(:mod:`services.idp.authorization_server` running the grants of :mod:`services.idp.oauth2`) and the
views (:mod:`services.idp.http`, :mod:`services.idp.openid4vp_http`).
"""

from __future__ import annotations

from flask import Flask

from services.idp.authorization_server import build_server
from services.idp.login import LoginCore
from services.idp.provider import IdpCore, load_or_create_session_secret
from services.idp.settings import IdpSettings
from shared.flow import service
from shared.trainer_access import install_trainer_access
from shared.web import create_service_app

__all__ = ["create_app"]


def create_app(settings: IdpSettings | None = None) -> Flask:
    """Build the idp app; settings default to the ``SIGNLAB_IDP_*`` environment."""
    settings = settings or IdpSettings.from_env()
    provider = IdpCore(settings)
    app = create_service_app(
        __name__, service("idp"), settings,
        health_checks={
            "signing key": lambda: f"ES256 kid {provider.keys.active().kid}",
            "catalogue": lambda: f"{len(provider.catalogue.persons)} test persons, {len(provider.catalogue.means)} eID means",
        },
    )
    app.secret_key = load_or_create_session_secret(settings.service_dir() / "session-secret")
    # All SignLab services share the host 127.0.0.1 and cookies ignore ports: give ours its own name.
    app.config.update(SESSION_COOKIE_NAME="signlab_idp_session", SESSION_COOKIE_SAMESITE="Lax",
                      SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SECURE=settings.browser_base_url.startswith("https://"))
    # The debugger shows other people's logins and decoded tokens: a trainer view (docs/design.md §6).
    install_trainer_access(app, settings.trainer_token, env_name=IdpSettings.env_name("trainer_token"),
                           landing="/debugger")
    app.extensions["signlab.idp"] = provider
    app.extensions["signlab.idp.server"] = build_server(app, provider)
    app.extensions["signlab.idp.login"] = LoginCore(provider)
    from services.idp.http import bp  # the views need the app's extensions, registered just above
    from services.idp.openid4vp_http import register_wallet_login

    app.register_blueprint(bp)
    register_wallet_login(app, provider)
    return app
