"""First-start provisioning of the wallet service (run by ``signlab up`` before it starts; idempotent).

Creates the PID provider's trust anchor, signing certificate, the unlisted provider (for the
``untrusted-provider`` fault) and the list operator's key, then issues a PID to every test person
the IdP's catalogue (the lab's population register) lists, each bound to a fresh device key. The
IdP is provisioned and started before the wallet.
"""

from __future__ import annotations

from services.wallet.service import WalletCore, fetch_register
from services.wallet.settings import WalletSettings
from shared.errors import SignLabError

__all__ = ["provision"]


def provision(settings: WalletSettings) -> list[str]:
    """Create the keys and certificates and issue the missing PIDs; return what was done."""
    service = WalletCore(settings)
    try:
        done = [f"data directory {settings.data_dir}",
                f"PID provider trust anchor and signing certificate under {settings.data_dir / 'pid-provider'}"]
        try:
            register = fetch_register(settings)
        except SignLabError as exc:
            done.append(f"PIDs NOT issued: the register at {settings.idp_url} cannot be read ({exc.error_description})")
            return done
        issued = service.wallet.provision(register)
        done.append(f"PIDs: {len(issued)} issued, {len(register.entries) - len(issued)} already held")
        return done
    finally:
        service.close()
