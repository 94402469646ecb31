"""First-start provisioning of the portal service (run by ``signlab up`` before it starts; idempotent).

Creates the data directory and the key of the portal's client assertions to the SSASP
(``private_key_jwt``), and fetches the SignLab root certificate and trusted list from the CA into
``<data_dir>/trust/`` — the validator's trust anchor is this configured copy, never a root found
inside a document. The CA is provisioned and started before the portal.
"""

from __future__ import annotations

from services.portal.settings import PortalSettings
from shared.errors import SignLabError
from shared.http_client import ServiceClient
from shared.jose_keys import load_or_create_ec_key

__all__ = ["provision"]


def _fetch(settings: PortalSettings, path: str) -> bytes:
    try:
        from shared.clients.ca import CaClient

        client: ServiceClient = CaClient(settings.ca_url, timeout=settings.http_timeout_seconds)
    except ImportError:
        client = ServiceClient(settings.ca_url, timeout=settings.http_timeout_seconds)
    try:
        return client.request("GET", path).content
    finally:
        client.close()


def provision(settings: PortalSettings) -> list[str]:
    """Create the data directory and the client-assertion key, fetch the trust anchor + trusted
    list; return what was done."""
    done = [f"data directory {settings.service_dir()}"]
    key = load_or_create_ec_key(settings.client_assertion_key_path)
    done.append(f"client-assertion key {key.kid} for the SSASP (JWKS at /.well-known/jwks.json)")
    root_path = settings.trust_root_path()
    if not root_path.exists():
        root_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            root_path.write_bytes(_fetch(settings, "/certs/root.crt"))
            done.append(f"trust anchor {root_path} from {settings.ca_url}")
        except SignLabError as exc:
            done.append(f"trust anchor NOT fetched ({exc.error_description}); validation needs {root_path}")
    tl_path = settings.trusted_list_path()
    try:
        tl_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tl_path.write_bytes(_fetch(settings, "/tl/trusted-list.xml"))
        done.append(f"trusted list {tl_path}")
    except SignLabError as exc:
        done.append(f"trusted list NOT fetched ({exc.error_description})")
    return done
