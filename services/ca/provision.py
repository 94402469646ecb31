"""First-start provisioning of the TSP (run by ``signlab up`` before it starts; idempotent).

Creates under the data directory (mode 0700): the CA hierarchy (``pki/``: root and issuing CA
EC P-384, TSA, OCSP responder and trusted-list signer; private keys mode 0600), the
pseudonymisation key of the issuance log (mode 0600), the certificate database, and the empty
issuance log. Existing keys and certificates are kept.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from services.ca.pki import CA_NAMES, create_hierarchy
from services.ca.settings import CaSettings
from services.ca.store import CertificateStore

__all__ = ["PSEUDONYM_KEY_FILE", "load_pseudonym_key", "provision"]

PSEUDONYM_KEY_FILE = "pseudonym.key"


def load_pseudonym_key(data_dir: Path, *, create: bool = False) -> bytes:
    """The HMAC key that pseudonymises subjects in the issuance log (created 0600 when asked)."""
    path = data_dir / PSEUDONYM_KEY_FILE
    if not path.exists():
        if not create:
            raise FileNotFoundError(f"{path} is missing: run the CA provisioning (signlab up)")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(secrets.token_bytes(32))
    return path.read_bytes()


def provision(settings: CaSettings) -> list[str]:
    """Create whatever is missing of the TSP's state; return what exists afterwards."""
    data_dir = settings.service_dir()
    existed = {name for name in CA_NAMES if (data_dir / "pki" / f"{name}.crt.pem").exists()}
    hierarchy = create_hierarchy(data_dir, settings.public_cert_base)
    load_pseudonym_key(data_dir, create=True)
    CertificateStore(settings.database_path)
    settings.issuance_log_path.touch(mode=0o600, exist_ok=True)
    lines = []
    for name in CA_NAMES:
        cert = hierarchy.by_name(name).cert
        state = "kept" if name in existed else "created"
        lines.append(f"{name}: {cert.subject.rfc4514_string()} ({state}, valid until "
                     f"{cert.not_valid_after_utc:%Y-%m-%d})")
    lines.append(f"data directory {data_dir} (keys mode 0600 under pki/)")
    return lines
