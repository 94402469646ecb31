"""Bundled sample documents (small, real files) the signer can pick instead of uploading.

Regenerate the PDFs with ``python -m services.portal.samples.generate`` (pyHanko's own PDF writer,
no other PDF library).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["SAMPLES", "Sample", "sample", "sample_path"]

_DIR = Path(__file__).parent


@dataclass(frozen=True)
class Sample:
    """One bundled document.

    :ivar name: file name (also the id used in forms and the API).
    :ivar title: what it is.
    :ivar formats: signature formats it suits.
    """

    name: str
    title: str
    formats: tuple[str, ...]


SAMPLES: tuple[Sample, ...] = (
    Sample("employment-contract.pdf", "Employment contract (1 page PDF)", ("pades", "cades")),
    Sample("loan-agreement.pdf", "Loan agreement (2 page PDF)", ("pades", "cades")),
    Sample("payment-order.json", "Payment order (JSON)", ("jades", "cades")),
    Sample("meeting-minutes.txt", "Meeting minutes (plain text)", ("cades",)),
)


def sample(name: str) -> Sample:
    """The sample called ``name``; ``KeyError`` when there is none."""
    for item in SAMPLES:
        if item.name == name:
            return item
    raise KeyError(name)


def sample_path(name: str) -> Path:
    """Path of the sample file ``name`` (only names from :data:`SAMPLES`)."""
    return _DIR / sample(name).name
