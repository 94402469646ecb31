"""The wallet service's domain object (no Flask): the wallet, the PID provider it hosts, and the
lab API that changes a PID's status.

``create_app`` builds one :class:`WalletCore` per app; provisioning builds one to issue the PIDs.
"""

from __future__ import annotations

import datetime as dt
import hmac

from services.wallet.holder import Wallet
from services.wallet.pid_provider import PidProvider, Register, RegisterEntry, TrustMaterial
from services.wallet.settings import WalletSettings
from services.wallet.store import StatusStore, WalletStore
from shared.clients.idp import IdpClient
from shared.clients.verifier import VerifierClient
from shared.errors import InvalidRequest, InvalidToken, NotFound
from shared.status_list import Status

__all__ = ["PID_STATUS_NAMES", "WalletCore", "fetch_register"]

PID_STATUS_NAMES = {"valid": Status.VALID, "revoked": Status.INVALID, "suspended": Status.SUSPENDED}
"""The lab API's words for the Token Status List values."""


def fetch_register(settings: WalletSettings) -> Register:
    """The population register: the IdP's test persons (``GET {idp}/api/v1/persons``)."""
    client = IdpClient(settings.idp_url, timeout=settings.http_timeout_seconds)
    try:
        return Register(tuple(RegisterEntry.from_json(item) for item in client.persons()))
    finally:
        client.close()


class WalletCore:
    """Everything the wallet service knows and does, independent of HTTP."""

    def __init__(self, settings: WalletSettings) -> None:
        self.settings = settings
        data = settings.service_dir()
        self.trust = TrustMaterial.load_or_create(settings.service_dir("pid-provider"))
        self.status = StatusStore(data / "pid-provider.sqlite3")
        self.provider = PidProvider(self.trust, self.status, base_url=f"{settings.base_url}/pid-provider",
                                    validity_days=settings.pid_validity_days,
                                    status_ttl=settings.status_list_ttl_seconds)
        self.store = WalletStore(data / "wallet.sqlite3")
        self.wallet = Wallet(self.store, settings.service_dir("device-keys"), self.provider,
                             VerifierClient(timeout=settings.http_timeout_seconds))

    def close(self) -> None:
        """Release the databases."""
        self.status.close()
        self.store.close()

    # -- the lab API (guarded) ----------------------------------------------------------------------
    def check_admin(self, authorization: str | None) -> None:
        """Check the lab API's bearer token.

        :raises NotFound: the lab API is off.
        :raises InvalidToken: missing or wrong token.
        """
        if not self.settings.admin_api_enabled:
            raise NotFound("the PID provider's lab API is disabled; set SIGNLAB_WALLET_ADMIN_API_ENABLED=true "
                           "(signlab up --fault-injection)")
        scheme, _, token = (authorization or "").partition(" ")
        expected = self.settings.admin_token.get_secret_value().encode()
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected):
            raise InvalidToken("the lab API needs 'Authorization: Bearer <SIGNLAB_WALLET_ADMIN_TOKEN>'")

    def pid_statuses(self) -> list[dict[str, object]]:
        """Each held PID with its status index and current status."""
        names = {value: name for name, value in PID_STATUS_NAMES.items()}
        return [{"holder": c.holder, "status_index": c.status_index,
                 "status": names.get(Status(self.status.status_of(c.status_index) or 0), "valid"),
                 "expires": dt.datetime.fromtimestamp(c.expires_at, dt.UTC).date().isoformat()}
                for c in self.store.credentials()]

    def set_pid_status(self, holder: str, status: str) -> dict[str, object]:
        """Revoke, suspend or restore ``holder``'s PID in the provider's status list.

        :raises InvalidRequest: unknown status word.
        :raises NotFound: the wallet holds no PID for ``holder``.
        """
        if status not in PID_STATUS_NAMES:
            raise InvalidRequest(f"status must be one of {', '.join(PID_STATUS_NAMES)}, not {status!r}")
        held = self.store.credential(holder)
        if held is None:
            raise NotFound(f"no PID was issued to {holder!r}")
        self.provider.set_status(held.status_index, PID_STATUS_NAMES[status])
        return {"holder": holder, "status_index": held.status_index, "status": status}
