"""What every view of the portal shares: the core, who owns a request, CSRF, public URLs, masking.

Ownership: every transaction and validation report belongs to the browser session (a random id
in the signed session cookie, :func:`browser_owner`) or to the partner application that created
it (HTTP Basic, :func:`authenticate_partner` before every ``/api/v1`` call). Its status, result
page, downloads, report and trace answer only that owner (:func:`owned`); anyone else gets the
same 404 as for an id that never existed. Forms carry a per-session CSRF token
(:func:`csrf_token`, :func:`check_csrf`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

from flask import current_app, request, session, url_for

from services.portal.partners import PartnerApplications
from services.portal.settings import PortalSettings
from services.portal.signing import PortalCore
from services.portal.store import Transaction
from shared.errors import InvalidRequest
from shared.personal_data import mask_personal_data

API_PREFIX = "/api/v1"
"""Where the JSON API for partner applications lives (HTTP Basic, no cookies)."""


def portal_core() -> PortalCore:
    return current_app.extensions["signlab.portal"]


def portal_settings() -> PortalSettings:
    return current_app.extensions["signlab.settings"]


def browser_owner(create: bool = False) -> str | None:
    """The owner key of this browser session (``browser:<hash>``); made on first use when ``create``."""
    token = session.get("owner")
    if not token:
        if not create:
            return None
        token = session["owner"] = secrets.token_urlsafe(32)
    return "browser:" + hashlib.sha256(str(token).encode()).hexdigest()[:32]


def api_owner() -> str:
    """The owner key of the authenticated partner application (``app:<id>``).

    :raises services.portal.partners.PartnerAuthRequired: 401 with the Basic challenge.
    """
    auth = request.authorization
    partners: PartnerApplications = current_app.extensions["signlab.portal.partners"]
    if auth is None or auth.type != "basic":
        return partners.authenticate(None, None, request.remote_addr)
    return partners.authenticate(auth.username, auth.password, request.remote_addr)


def owned(tx_id: str, owner: str | None) -> Transaction:
    return portal_core().get(tx_id, owner or "")


def public_url(endpoint: str, **values: Any) -> str:
    """An absolute URL of this portal from its configured public URL (never from the request's
    ``Host`` header, which the caller chooses)."""
    return portal_settings().base_url + url_for(endpoint, **values)


def shown(value: Any) -> Any:
    """Personal data (the signer's identifier in a report) masked unless the lab shows it."""
    return mask_personal_data(value, show=portal_settings().show_personal_data)


def csrf_token() -> str:
    """The session's CSRF token (created on first use)."""
    token = session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return str(token)


def check_csrf() -> None:
    sent = request.form.get("csrf_token", "")
    expected = session.get("csrf", "")
    if not expected or not hmac.compare_digest(str(sent), str(expected)):
        raise InvalidRequest("the form's CSRF token is missing or stale; reload the page and submit again", status=403)


def authenticate_partner() -> None:
    """Every API call needs a partner application's credentials (401 with the Basic challenge)."""
    request.environ["signlab.portal.owner"] = api_owner()


def api_caller() -> str:
    return str(request.environ["signlab.portal.owner"])

