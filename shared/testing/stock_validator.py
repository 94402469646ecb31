"""A stock PDF signature validator for tests: poppler's ``pdfsig`` with an NSS database that trusts
only the SignLab root.

``pdfsig`` checks the signature and then the signer's certificate with NSS, which fetches the OCSP
answer from the URL in the certificate's AIA through the system resolver — exactly what a relying
party on the lab machine does. Its verdict lines are returned as they are printed
(``Certificate is Trusted.``, ``Certificate has been Revoked.``, ``Unknown issue with Certificate
or corrupted data.`` …). Needs the Debian packages ``poppler-utils`` and ``libnss3-tools``
(``certutil``), which ``make`` installs.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PdfsigVerdict", "pdfsig", "stock_validator_problem"]


@dataclass(frozen=True)
class PdfsigVerdict:
    """What ``pdfsig`` said about the first signature."""

    signature: str
    """The ``Signature Validation:`` line's text, e.g. ``Signature is Valid.``."""
    certificate: str
    """The ``Certificate Validation:`` line's text, e.g. ``Certificate is Trusted.``."""
    output: str


def stock_validator_problem() -> str | None:
    """Why ``pdfsig`` cannot run here (None when it can)."""
    missing = [tool for tool in ("pdfsig", "certutil") if shutil.which(tool) is None]
    if missing:
        return f"{' and '.join(missing)} not installed (Debian packages poppler-utils, libnss3-tools; make installs them)"
    return None


def pdfsig(pdf: Path, trusted_root_der: bytes, workdir: Path) -> PdfsigVerdict:
    """Validate ``pdf`` with ``pdfsig`` and a fresh NSS database under ``workdir`` whose only trust
    anchor is ``trusted_root_der`` (trusted for signing: ``-t CT,C,C``)."""
    database = workdir / "nssdb"
    database.mkdir(parents=True, exist_ok=True)
    (workdir / "root.der").write_bytes(trusted_root_der)
    for command in (["certutil", "-N", "-d", f"sql:{database}", "--empty-password"],
                    ["certutil", "-A", "-d", f"sql:{database}", "-n", "signlab-root", "-t", "CT,C,C",
                     "-i", str(workdir / "root.der")]):
        subprocess.run(command, check=True, capture_output=True, timeout=60)
    result = subprocess.run(["pdfsig", "-nssdir", f"sql:{database}", str(pdf)], capture_output=True, text=True,
                            timeout=120)
    output = result.stdout + result.stderr

    def line(label: str) -> str:
        found = re.search(rf"{label}:\s*(.+)", output)
        return found.group(1).strip() if found else ""

    return PdfsigVerdict(line("Signature Validation"), line("Certificate Validation"), output)
