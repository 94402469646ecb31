"""Concurrent first validations on a cold portal (a crash found them failing with ``KeyError``).

asn1crypto parses names and fields on first access and keeps the result on the object; two
threads doing that first access on one shared certificate at once saw it half-built. The trust
root and the TSP's certificates and CRLs are shared by every validation, so they are primed in one
thread before they are shared (``services.portal.ltv.fully_parsed``).
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from services.portal import pades
from services.portal.documents import Level, Qualifier
from services.portal.ltv import read_only_certificate, read_only_crl
from services.portal.trust import TrustStore
from services.portal.validation import validate_document

SAMPLES = Path(__file__).parents[3] / "services" / "portal" / "samples"
THREADS = 8


def test_concurrent_first_validations_on_a_cold_portal(tmp_path: Path, pki, pki_tsp, sign_digest) -> None:
    pdf = (SAMPLES / "employment-contract.pdf").read_bytes()
    prep = asyncio.run(pades.prepare_pdf(pdf, label="c.pdf", qualifier=Qualifier.QES, visible=False, signer_name="K",
                                         bytes_reserved=32768))
    sig = sign_digest(prep.digest, "qes", "pades")
    signed = asyncio.run(pades.augment_pdf(prep, sig.signature, level=Level.B_T, timestamper=pki.timestamper(),
                                           root=pki.root_asn1, material=sig.material))
    (tmp_path / "root.der").write_bytes(pki.der(pki.root))
    read_only_certificate.cache_clear()  # cold: nothing parsed yet in this process's shared caches
    read_only_crl.cache_clear()
    store = TrustStore(tmp_path / "root.der", tmp_path / "tl.xml", pki_tsp, None)
    start = threading.Barrier(THREADS)
    outcomes: list[object] = []

    def validate() -> None:
        trust = store.settings()
        start.wait()  # every thread enters the validator at once
        try:
            outcomes.append(asyncio.run(validate_document("c.pdf", signed, trust)).indication)
        except Exception as exc:  # noqa: BLE001 - the failure under test is recorded, not raised in a thread
            outcomes.append(exc)

    threads = [threading.Thread(target=validate) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert outcomes == ["TOTAL_PASSED"] * THREADS
