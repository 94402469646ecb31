"""The SCASP: the partner document portal (flow steps 1, 2 and 10)."""

from __future__ import annotations

from flask import Flask
from joserfc.jwk import ECKey

from services.portal.partners import PartnerApplications
from services.portal.settings import PortalSettings
from services.portal.signer_api import SignerApi
from services.portal.signing import PortalCore
from services.portal.store import TransactionStore
from services.portal.trust import TrustStore, TspSource
from shared.clients.ca import CaClient
from shared.clients.signer import SignerClient
from shared.flow import service
from shared.jose_keys import load_or_create_ec_key
from shared.periodic import run_periodically
from shared.tracing import trainer_blueprint
from shared.trainer_access import install_trainer_access, require_trainer
from shared.web import create_service_app

__all__ = ["create_app"]


def _signer_client(settings: PortalSettings, assertion_key: ECKey) -> SignerApi:
    """The SSASP client: back channel to ``signer_url`` with ``private_key_jwt``; browsers are sent to
    ``signer_browser_base_url``."""
    return SignerClient(
        settings.signer_url, client_id=settings.signer_client_id, assertion_key=assertion_key,
        timeout=settings.http_timeout_seconds, browser_url=settings.signer_browser_url or None,
    )


def create_app(
    settings: PortalSettings | None = None,
    *,
    signer: SignerApi | None = None,
    tsp: TspSource | None = None,
    trust: TrustStore | None = None,
) -> Flask:
    """Build the portal app; settings default to the ``SIGNLAB_PORTAL_*`` environment.

    :param signer: the SSASP client (default: ``shared.clients.signer.SignerClient`` from settings).
    :param tsp: the TSP client (default: ``shared.clients.ca.CaClient`` from settings).
    :param trust: a ready trust store (tests); default: built from settings and ``tsp``.
    """
    settings = settings or PortalSettings.from_env()
    from services.portal import http

    # The key of the portal's client assertions to the SSASP; its public half is served as JWKS.
    assertion_key = load_or_create_ec_key(settings.client_assertion_key_path)

    store = TransactionStore(settings.service_dir() / "portal.sqlite3")
    interrupted = store.fail_interrupted()
    if trust is None:
        trust = TrustStore(
            settings.trust_root_path(), settings.trusted_list_path(),
            tsp if tsp is not None else CaClient(settings.ca_url, timeout=settings.http_timeout_seconds),
            settings.tsa_url,
        )
    core = PortalCore(
        store, trust, signer if signer is not None else _signer_client(settings, assertion_key), callback_url=settings.callback_url,
        bytes_reserved=settings.pdf_bytes_reserved, ttl_seconds=settings.transaction_ttl_seconds,
    )
    app = create_service_app(__name__, service("portal"), settings, health_checks={"store": store.health},
                             role_page_at="/role")
    app.secret_key = settings.session_secret.get_secret_value()
    # The session cookie names the browser's transactions: HttpOnly, SameSite=Lax (the SSASP's
    # redirect back is a top-level GET, which Lax allows), and Secure whenever the portal is
    # reached over https. The lab itself runs on http://127.0.0.1, where a Secure cookie would
    # never come back, so Secure follows the configured public URL instead of being forced.
    app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
                      SESSION_COOKIE_SECURE=settings.base_url.startswith("https://"))
    app.extensions["signlab.portal"] = core
    app.extensions["signlab.portal.partners"] = PartnerApplications(settings)
    app.extensions["signlab.portal.assertion_key"] = assertion_key
    if interrupted:
        app.logger.warning("%d transaction(s) interrupted by a restart were marked failed", interrupted)
    if settings.signer_poll_seconds > 0 and core.signer is not None:
        # Transactions the SSASP ended while the signer was away (its restart, an expiry) end here
        # too, with its reason, instead of waiting for the portal's own expiry.
        poll = settings.signer_poll_seconds
        run_periodically("portal-signer-follow-up", poll, lambda: core.follow_up.follow_up_pending(poll), at_once=False)
    http.register(app)
    # The trainer dashboard and the live sequence diagrams of every flow: trainer token only
    # (a result page embeds its own flow through the owner's routes in services.portal.http).
    install_trainer_access(app, settings.trainer_token, env_name=PortalSettings.env_name("trainer_token"),
                           landing="/trainer/")
    app.register_blueprint(trainer_blueprint(guard=require_trainer))
    return app
