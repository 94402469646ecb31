"""The TSP on the lab clock: issuance, CRLs, OCSP, time-stamps and the trusted list take their time
from it, and show the CA as it was at that time (a revocation recorded at a later lab time is not
published yet; a trusted-list status change dated later is not listed yet).

Each test gives the suite's CA a lab clock of its own, built on a fixed machine time (two hours
after the CA hierarchy starts), and puts the real one back afterwards.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import tsp as asn1_tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from lxml import etree
from pyhanko.sign.validation.qualified.eutl_parse import trust_list_to_registry_unsafe
from pyhanko_certvalidator.authority import AuthorityWithCert

from services.ca.describe import status_of
from services.ca.trusted_list import StatusChange, service_timeline
from shared.clock import LabClock

HOUR = dt.timedelta(hours=1)
TSL = "{http://uri.etsi.org/02231/v2#}"


@pytest.fixture
def tsp(ca_env: Any, tmp_path: Path) -> Iterator[Any]:
    provider = ca_env.app.extensions["signlab.ca"]
    machine = (provider.hierarchy.issuing.cert.not_valid_before_utc + 2 * HOUR).timestamp()
    clock = LabClock(tmp_path / "lab-clock.json", system=lambda: machine)
    saved = provider.authority.clock, provider.tsa.clock, provider._tl
    provider.authority.clock = provider.tsa.clock = clock
    provider.authority._crl_cache.clear()
    try:
        yield provider
    finally:
        provider.authority.clock, provider.tsa.clock, provider._tl = saved
        provider.authority._crl_cache.clear()
        provider.authority.store.clear_status_changes()


def _ocsp(provider: Any, cert: x509.Certificate) -> ocsp.OCSPResponse:
    request = ocsp.OCSPRequestBuilder().add_certificate(cert, provider.hierarchy.issuing.cert, hashes.SHA256()).build()
    return ocsp.load_der_ocsp_response(provider.ocsp.respond(request.public_bytes(serialization.Encoding.DER)))


def _certificate(ca_env: Any, csr_factory: Any) -> x509.Certificate:
    issued = ca_env.client.issue_certificate(csr_der=csr_factory(ec.generate_private_key(ec.SECP256R1())), profile="qes",
                                             id_token=ca_env.id_token("high"), client_assertion=ca_env.assertion(),
                                             transaction_id="txn-lab-clock")
    return x509.load_der_x509_certificate(issued.certificate)


def test_issuance_crl_ocsp_and_time_stamps_follow_the_lab_clock(tsp: Any, ca_env: Any, csr_factory: Any) -> None:
    clock = tsp.authority.clock
    clock.set_offset(86400)
    lab_now = clock.now().replace(microsecond=0)
    cert = _certificate(ca_env, csr_factory)
    backdate = dt.timedelta(seconds=ca_env.settings.backdate_seconds)
    assert cert.not_valid_before_utc == lab_now - backdate
    assert cert.not_valid_after_utc == lab_now + dt.timedelta(minutes=ca_env.settings.cert_validity_minutes)
    crl = x509.load_der_x509_crl(tsp.authority.crl("issuing"))
    assert crl.last_update_utc == lab_now - backdate
    assert _ocsp(tsp, cert).this_update_utc == lab_now
    query = asn1_tsp.TimeStampReq({"version": "v1", "message_imprint": {
        "hash_algorithm": {"algorithm": "sha256"}, "hashed_message": hashlib.sha256(b"x").digest()}}).dump()
    token = asn1_tsp.TimeStampResp.load(tsp.tsa.respond(query))["time_stamp_token"]
    gen_time = token["content"]["encap_content_info"]["content"].parsed["gen_time"].native
    assert abs(gen_time - clock.now()) < dt.timedelta(seconds=1)


def test_a_revocation_recorded_at_a_later_lab_time_is_not_published_yet(tsp: Any, ca_env: Any, csr_factory: Any) -> None:
    clock = tsp.authority.clock
    cert = _certificate(ca_env, csr_factory)
    clock.set_offset(HOUR.total_seconds())
    tsp.authority.revoke(cert.serial_number, "keyCompromise", requester="test")
    revoked_at = clock.now().replace(microsecond=0)
    clock.reset()  # the lab clock back before the revocation
    crl = x509.load_der_x509_crl(tsp.authority.crl("issuing"))
    assert crl.get_revoked_certificate_by_serial_number(cert.serial_number) is None
    assert _ocsp(tsp, cert).certificate_status is ocsp.OCSPCertStatus.GOOD
    assert status_of(tsp.authority.lookup(cert.serial_number), clock.now()) == "valid"
    clock.set_offset(2 * HOUR.total_seconds())  # after it: the next CRL lists it, OCSP says revoked
    entry = x509.load_der_x509_crl(tsp.authority.crl("issuing")).get_revoked_certificate_by_serial_number(cert.serial_number)
    assert entry is not None and entry.revocation_date_utc == revoked_at
    assert _ocsp(tsp, cert).certificate_status is ocsp.OCSPCertStatus.REVOKED


def test_service_timeline() -> None:
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    changes = [StatusChange("ca", "withdrawn", start + HOUR), StatusChange("tsa", "withdrawn", start + HOUR),
               StatusChange("ca", "granted", start + 3 * HOUR), StatusChange("ca", "withdrawn", start + 9 * HOUR)]
    assert service_timeline("ca", start, changes, start + 5 * HOUR) == [
        ("granted", start), ("withdrawn", start + HOUR), ("granted", start + 3 * HOUR)]  # the 9 h change: not yet
    assert service_timeline("ca", start, [StatusChange("ca", "withdrawn", start - HOUR)], start + HOUR) == [
        ("withdrawn", start)]  # dated before the service started: from its start
    assert service_timeline("tsa", start, [], start) == [("granted", start)]


def test_trusted_list_shows_a_withdrawal_with_its_history(tsp: Any) -> None:
    clock = tsp.authority.clock
    withdrawn = clock.now().replace(microsecond=0) + HOUR
    tsp.change_status("ca", "withdrawn", withdrawn, note="test")
    before = tsp.trusted_list()  # the lab clock stands before the withdrawal: not listed yet
    assert b"Svcstatus/withdrawn" not in before
    clock.set_offset(2 * HOUR.total_seconds())
    xml = tsp.trusted_list()
    service = etree.fromstring(xml).find(f".//{TSL}TSPService")
    assert service.findtext(f"{TSL}ServiceInformation/{TSL}ServiceStatus").endswith("/withdrawn")
    history = service.findall(f"{TSL}ServiceHistory/{TSL}ServiceHistoryInstance")
    assert [h.findtext(f"{TSL}ServiceStatus").rsplit("/", 1)[-1] for h in history] == ["granted"]
    registry, errors = trust_list_to_registry_unsafe(xml.decode("utf-8"))
    assert errors == []
    issuing = AuthorityWithCert(asn1_x509.Certificate.load(tsp.hierarchy.issuing.der))
    assert list(registry.applicable_service_definitions(issuing, withdrawn - dt.timedelta(minutes=1)))
    assert not list(registry.applicable_service_definitions(issuing, withdrawn + dt.timedelta(minutes=1)))
