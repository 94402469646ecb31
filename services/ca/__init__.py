"""The TSP: the CA for short-term certificates, OCSP, CRL, time-stamping and trusted list (flow step 7)."""

from __future__ import annotations

from flask import Flask

from services.ca.core import build_tsp, cross_check_installation, detached_qes_issuer
from services.ca.settings import CaSettings
from shared.flow import service
from shared.guard import SecretGuard
from shared.trainer_access import install_trainer_access
from shared.web import create_service_app, on_first_request

__all__ = ["CaSettings", "create_app", "cross_check_installation", "detached_qes_issuer"]
"""The public API: the app factory, and what ``signlab`` (audit, bench) needs without HTTP."""


def create_app(settings: CaSettings | None = None) -> Flask:
    """Build the ca app; settings default to the ``SIGNLAB_CA_*`` environment.

    Needs the provisioned state (``services.ca.provision.provision``) in the data directory. At
    start-up the issuance log and the certificate database are reconciled
    (:meth:`~services.ca.authority.CertificateAuthority.reconcile`).
    """
    settings = settings or CaSettings.from_env()
    provider = build_tsp(settings)
    # Before serving: close any gap a crash left between the issuance log and the database.
    provider.authority.reconcile()

    def hierarchy_check() -> str:
        root = provider.hierarchy.root.cert
        return f"{root.subject.rfc4514_string()} and issuing CA loaded"

    app = create_service_app(__name__, service("ca"), settings, health_checks={"hierarchy": hierarchy_check},
                             role_page_at="/role")
    app.extensions["signlab.ca"] = provider
    app.extensions["signlab.ca.admin_guard"] = SecretGuard(settings.admin_token, "the revoke API")
    # The issued certificates name their signers: their list is a trainer view (docs/design.md §6).
    install_trainer_access(app, settings.trainer_token, env_name=CaSettings.env_name("trainer_token"),
                           landing="/certificates")
    # From the first request on, fetch the callers' JWKS ahead, retrying while they start: the
    # first issuance must not wait for the signer's JWKS while the signer's own threads wait for it.
    on_first_request(app, lambda: (provider.issuance.signer_keys.prefetch(), provider.issuance.idp_keys.prefetch()))
    from services.ca.http import api, pages, pki

    app.register_blueprint(api)
    app.register_blueprint(pki)
    app.register_blueprint(pages)
    return app
