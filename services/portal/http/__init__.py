"""HTTP layer of the portal: pages (server-rendered) and the JSON API under ``/api/v1``, by area.

* :mod:`services.portal.http.signing` — choose and review documents, the SSASP's callback, the
  result page and downloads (steps 1, 2, 10), and the signing API for partner applications;
* :mod:`services.portal.http.validation` — the validation page, its three reports, the trust
  anchor for Acrobat, and the validation API;
* :mod:`services.portal.http.common` — what both share: who owns a request, CSRF, public URLs.

Views only parse requests, call :class:`~services.portal.signing.PortalCore` and render. Errors are
raised and rendered by the shared frame (JSON or an HTML page). The trainer views come from
:mod:`shared.tracing` (mounted in :func:`services.portal.create_app`).
"""

from __future__ import annotations

from flask import Blueprint, Flask

from services.portal.http import signing, validation
from services.portal.http.common import csrf_token
from services.portal.http.validation import report_urls
from services.portal.samples import sample

__all__ = ["BLUEPRINTS", "register"]

BLUEPRINTS: tuple[Blueprint, ...] = (signing.pages, signing.api, validation.pages, validation.api)
"""Every blueprint of the portal (the documentation tests read the routes from these)."""


def register(app: Flask) -> None:
    """Register the portal's blueprints and template helpers."""
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.jinja_env.globals["report_urls"] = report_urls
    app.jinja_env.globals["sample_info"] = sample
