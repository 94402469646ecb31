"""Typed clients of the wallet service: the wallet itself (headless mode, lab API) and the PID
provider it hosts (status list, list of trusted PID providers).

:class:`PidProviderClient` is used by the IPSP at step 4 to check a presented PID; it follows the
URLs the PID and the IdP's settings name. :class:`WalletClient` is used by the scenario runner, the
tour and tests to act as the person holding the phone.
"""

from __future__ import annotations

from typing import Any

from shared.flow import Role, step
from shared.http_client import ServiceClient
from shared.status_list import MEDIA_TYPE

__all__ = ["PidProviderClient", "WalletClient"]


class PidProviderClient(ServiceClient):
    """Calls the PID provider at the absolute URLs the PID and the trust configuration give."""

    role = Role.PIDP

    def __init__(self, *, timeout: float = 10.0) -> None:
        super().__init__("", timeout=timeout)

    def status_list(self, uri: str) -> str:
        """``GET uri``: the Status List Token (JWT) a PID's ``status.status_list.uri`` names."""
        return self.request("GET", uri, step=step(4), headers={"Accept": MEDIA_TYPE}).text.strip()

    def trusted_providers(self, url: str) -> str:
        """``GET url``: the signed list of trusted PID providers (compact JWS)."""
        return self.request("GET", url, step=step(4), headers={"Accept": "application/jwt"}).text.strip()


class WalletClient(ServiceClient):
    """Calls the wallet service.

    :param admin_token: the lab API's token (``SIGNLAB_WALLET_ADMIN_TOKEN``), for :meth:`set_pid_status`.
    """

    role = Role.WALLET

    def __init__(self, base_url: str, *, timeout: float = 30.0, admin_token: str | None = None) -> None:
        super().__init__(base_url, timeout=timeout)
        self.admin_token = admin_token

    def present(self, request_url: str, holder: str, *, decision: str = "approve",
                faults: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
        """``POST /api/v1/presentations``: answer a verifier's request as ``holder`` (headless)."""
        body = {"request_url": request_url, "holder": holder, "decision": decision, "faults": list(faults)}
        result: dict[str, Any] = self.request("POST", "/api/v1/presentations", step=step(4), json=body).json()
        return result

    def holders(self) -> list[dict[str, Any]]:
        """``GET /api/v1/holders``: the PIDs the wallet holds."""
        result: list[dict[str, Any]] = self.request("GET", "/api/v1/holders").json()
        return result

    def faults(self) -> list[dict[str, Any]]:
        """``GET /api/v1/faults``: the named wallet faults."""
        result: list[dict[str, Any]] = self.request("GET", "/api/v1/faults").json()
        return result

    def set_pid_status(self, holder: str, status: str) -> dict[str, Any]:
        """``POST /admin/pid-status``: revoke, suspend or restore ``holder``'s PID (lab API)."""
        result: dict[str, Any] = self.request("POST", "/admin/pid-status", json={"holder": holder, "status": status},
                                              headers={"Authorization": f"Bearer {self.admin_token or ''}"}).json()
        return result
