"""First-start provisioning of the idp service (run by ``signlab up`` before it starts; idempotent)."""

from __future__ import annotations

from services.idp.catalogue import load_catalogue
from services.idp.keys import KeyRing
from services.idp.provider import load_or_create_session_secret
from services.idp.settings import IdpSettings
from services.idp.store import IdpStore

__all__ = ["provision"]


def provision(settings: IdpSettings) -> list[str]:
    """Create the data directory, the first ID-token signing key, the session-cookie key and the
    state database; check the catalogues. Return what was done."""
    data = settings.service_dir()
    key = KeyRing(settings.service_dir("keys"), retain=settings.key_retention).ensure()
    load_or_create_session_secret(data / "session-secret")
    IdpStore(data / "idp.sqlite3").close()
    catalogue = load_catalogue()
    return [
        f"data directory {settings.data_dir}",
        f"ID-token signing key (ES256) kid {key.kid} under {settings.data_dir / 'keys'}",
        f"catalogue: {len(catalogue.persons)} test persons, {len(catalogue.means)} eID means",
    ]
