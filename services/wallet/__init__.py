"""The EUDI Wallet emulator: the signer's phone (not a provider), and the simulated PID provider.

``create_app`` builds the Flask app: the shared frame (errors, health, role page), the domain object
(:class:`services.wallet.service.WalletCore`: credentials, device keys, the PID provider's keys
and status list) and the views (:mod:`services.wallet.http`).
"""

from __future__ import annotations

from flask import Flask

from services.wallet.service import WalletCore
from services.wallet.settings import WalletSettings
from shared.flow import service
from shared.web import create_service_app

__all__ = ["create_app"]


def create_app(settings: WalletSettings | None = None) -> Flask:
    """Build the wallet app; settings default to the ``SIGNLAB_WALLET_*`` environment."""
    settings = settings or WalletSettings.from_env()
    core = WalletCore(settings)
    app = create_service_app(
        __name__, service("wallet"), settings, role_page_at="/role",
        health_checks={
            "credentials": lambda: f"{len(core.store.credentials())} PIDs held",
            "PID provider": lambda: f"signing certificate {core.trust.provider.cert.serial_number:x}"[:60],
        },
    )
    app.secret_key = settings.session_secret.get_secret_value()
    app.extensions["signlab.wallet"] = core
    from services.wallet.http import bp  # the views need the app's extensions, registered just above

    app.register_blueprint(bp)
    return app
