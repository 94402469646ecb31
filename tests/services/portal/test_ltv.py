"""services.portal.ltv: the certificates and CRLs shared between concurrent validations.

asn1crypto parses lazily and not atomically, so an object shared between threads must arrive with
its whole tree parsed: a half-filled child list made a second thread's read fail with
"No field numbered N" (a KeyError seen under load on a cold portal).
"""

from __future__ import annotations

import threading
from typing import Any

from asn1crypto import core

from services.portal import ltv


def _unparsed_nodes(value: Any, path: str = "") -> list[str]:
    """Paths of the constructed nodes below ``value`` whose children are not parsed yet."""
    found: list[str] = []
    if isinstance(value, core.Sequence | core.SequenceOf):
        if value.children is None:
            return [path or "(top)"]
        for index, child in enumerate(value.children):
            found += _unparsed_nodes(child, f"{path}/{index}")
    elif isinstance(value, core.ParsableOctetString) and value.parsed is not None:
        found += _unparsed_nodes(value.parsed, f"{path}/parsed")
    return found


def test_shared_certificates_and_crls_are_fully_parsed_before_they_are_shared(pki: Any) -> None:
    ltv.read_only_certificate.cache_clear()
    ltv.read_only_crl.cache_clear()
    material = pki.material()
    for der in material.certificates:
        assert _unparsed_nodes(ltv.read_only_certificate(der)) == []
    for der in material.crls:
        assert _unparsed_nodes(ltv.read_only_crl(der)) == []


def test_concurrent_first_readers_of_a_shared_certificate_all_succeed(pki: Any) -> None:
    material = pki.material()
    errors: list[BaseException] = []
    for _ in range(20):  # a cold cache each round: every thread races to read the fresh objects
        ltv.read_only_certificate.cache_clear()
        ltv.read_only_crl.cache_clear()
        start = threading.Barrier(8)

        def read() -> None:
            try:
                start.wait()
                for der in material.certificates:
                    cert = ltv.read_only_certificate(der)
                    cert["tbs_certificate"]["extensions"].native  # noqa: B018
                    cert.subject.hashable  # noqa: B018
                for der in material.crls:
                    ltv.read_only_crl(der)["tbs_cert_list"]["revoked_certificates"].native  # noqa: B018
            except BaseException as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)

        threads = [threading.Thread(target=read) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []
