"""The SSASP: the remote signing service on the CSC API, with one-time keys in SoftHSM2."""

from __future__ import annotations

from flask import Flask

from services.signer.hsm import Hsm
from services.signer.provision import pseudonym_key
from services.signer.settings import SignerSettings
from shared.audit import AuditLog
from shared.flow import service as service_info
from shared.jose_keys import load_or_create_ec_key
from shared.periodic import run_periodically
from shared.trainer_access import install_trainer_access
from shared.web import create_service_app, on_first_request

__all__ = ["create_app"]


def create_app(settings: SignerSettings | None = None) -> Flask:
    """Build the signer app; settings default to the ``SIGNLAB_SIGNER_*`` environment.

    At start-up the HSM is opened (failing fast with the cause), leftover key objects are
    destroyed and every transaction still in flight ends as expired (both recorded in the audit
    log); a daemon thread then sweeps at once and every ``SWEEP_INTERVAL_SECONDS``: expired
    transactions, and the revocation of certificates whose flows did not complete.
    """
    # Imported here: the HTTP layer pulls in the typed clients of the other roles.
    from services.signer.http import csc_blueprint, oauth_blueprint, trainer_blueprint
    from services.signer.service import SignerCore
    from services.signer.store import Store
    from services.signer.upstream import CertificateGateway, IdentityGateway

    settings = settings or SignerSettings.from_env()
    hsm = Hsm(settings)
    hsm.session()  # fail at start-up, naming the cause, when the token cannot be opened
    # The disk guard measures where the signer writes: its state directory (database, audit log).
    app = create_service_app(__name__, service_info("signer"), settings, health_checks={"hsm": hsm.health},
                             state_dir=settings.state_path)
    assertion_key = load_or_create_ec_key(settings.client_assertion_key_path)
    core = SignerCore(
        settings, hsm, Store(settings.database_path), AuditLog(settings.audit_path),
        IdentityGateway(settings, f"{settings.base_url}/oauth2/idp-callback"),
        CertificateGateway(settings, assertion_key), pseudonym_key(settings),
    )
    core.startup()
    app.extensions["signlab.hsm"] = hsm
    app.extensions["signlab.signer"] = core
    app.extensions["signlab.signer_assertion_key"] = assertion_key
    app.register_blueprint(oauth_blueprint)
    app.register_blueprint(csc_blueprint)
    # The audit log's read-only view, for trainers (the same token as the other trainer views).
    install_trainer_access(app, settings.trainer_token, env_name=SignerSettings.env_name("trainer_token"),
                           landing="/trainer/audit")
    app.register_blueprint(trainer_blueprint)
    portal_jwks = core.clients.portal_jwks
    if portal_jwks is not None:
        # The portal's JWKS ahead, from the first request on (retried while the portal starts): the
        # portal's threads wait on this service during PAR, and one of them must serve the JWKS.
        on_first_request(app, portal_jwks.prefetch)
    if settings.sweep_interval_seconds > 0:
        # At once (the certificate revocations the start-up marked), then every interval.
        run_periodically("signer-sweeper", settings.sweep_interval_seconds, core.sweep)
    return app
