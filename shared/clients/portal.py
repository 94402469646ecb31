"""Typed client of the portal's validation API (SCASP), for the CLI (``signlab validate``) and tests.

The portal's JSON API is for partner applications: every call carries the application's HTTP
Basic credentials (``SIGNLAB_PORTAL_API_CLIENT_ID`` / ``SIGNLAB_PORTAL_API_CLIENT_SECRET``).
"""

from __future__ import annotations

import base64
from typing import Any

from shared.flow import Role
from shared.http_client import ServiceClient

__all__ = ["PortalClient"]


class PortalClient(ServiceClient):
    """Calls the portal's ``/api/v1`` validation endpoints as a partner application."""

    role = Role.SCASP

    def __init__(self, base_url: str, *, client_id: str, client_secret: str, timeout: float = 120.0) -> None:
        super().__init__(base_url, timeout=timeout)
        self.session.auth = (client_id, client_secret)

    def validate(self, signed: bytes, *, name: str = "signed", original: bytes | None = None,
                 at: str | None = None) -> dict[str, Any]:
        """``POST /api/v1/validate``: the simple report, with ``report_id`` and the report URLs.

        :param at: the validation time as the API takes it (ISO 8601, ``+1d``, ``now-2h``); None: now.
        """
        body: dict[str, Any] = {"name": name, "signed": base64.b64encode(signed).decode("ascii")}
        if original is not None:
            body["original"] = base64.b64encode(original).decode("ascii")
        if at:
            body["at"] = at
        result: dict[str, Any] = self.request_json("POST", "/api/v1/validate", json=body,
                                                   headers={"Accept": "application/json"})
        return result

    def report(self, report_id: str, part: str = "simple") -> bytes:
        """``GET /api/v1/reports/<id>[/detailed|/etsi]``: one report of a stored validation, as served."""
        suffix = {"simple": "", "detailed": "/detailed", "etsi": "/etsi"}[part]
        return self.request("GET", f"/api/v1/reports/{report_id}{suffix}").content
