"""The TSP's guarded fault injection: wrong-key issuance (step 7), the TSA down (step 10), and the
lab switch that issues one certificate in the short-term-no-revocation profile (step 7); the
validation matrix's certificates (revoked at issuance, expired before issuance, from a CA on no
trusted list), the OCSP responder down, and the trusted-list status changes of the same guard.

A second CA with ``faults_enabled`` is provisioned beside the suite's default one and served on
loopback; it uses the same test IdP and test signer JWKS, so issuance runs every real check.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from asn1crypto import tsp
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask

from services.ca import create_app
from services.ca.issuance_log import EVENT_ISSUED
from services.ca.provision import provision
from services.ca.settings import CaSettings
from shared.clients.ca import CaClient
from shared.testing import LiveServer, free_port


@dataclass
class FaultyCa:
    settings: CaSettings
    url: str
    client: CaClient
    app: Flask
    token: str

    def admin(self, method: str, path: str = "", token: str | None = None, **kwargs: Any) -> requests.Response:
        return requests.request(method, f"{self.url}/admin/faults{path}", timeout=10,
                                headers={"Authorization": f"Bearer {self.token if token is None else token}"}, **kwargs)

    def log(self) -> list[dict[str, Any]]:
        return self.app.extensions["signlab.ca"].authority.log.entries()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def faulty(ca_env: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultyCa]:
    port = free_port()
    settings = ca_env.settings.model_copy(update={"port": port, "data_dir": tmp_path_factory.mktemp("ca-faults"),
                                                  "faults_enabled": True})
    provision(settings)
    app = create_app(settings)
    server = LiveServer(app, port).start()
    client = CaClient(server.url, public_cert_base=settings.public_cert_base)
    try:
        yield FaultyCa(settings, server.url, client, app, settings.admin_token.get_secret_value())
    finally:
        client.close()
        server.stop()


def _issue(ca_env: Any, faulty: FaultyCa, csr_factory: Any, transaction_id: str) -> tuple[Any, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    issued = faulty.client.issue_certificate(
        csr_der=csr_factory(key), profile="qes", id_token=ca_env.id_token("high"),
        client_assertion=ca_env.assertion(audience=faulty.client.issuance_url), transaction_id=transaction_id)
    return issued, key


def _spki(public_key: Any) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _tsa_query() -> bytes:
    return tsp.TimeStampReq({"version": "v1", "message_imprint": {
        "hash_algorithm": {"algorithm": "sha256"}, "hashed_message": hashlib.sha256(b"x").digest()},
        "cert_req": True}).dump()


def _tsa(url: str) -> requests.Response:
    return requests.post(f"{url}/tsa", data=_tsa_query(), timeout=10,
                         headers={"Content-Type": "application/timestamp-query"})


def test_wrong_key_certifies_another_key_once_and_is_logged(ca_env: Any, faulty: FaultyCa, csr_factory: Any) -> None:
    armed = faulty.admin("POST", json={"name": "wrong-key"})
    assert armed.status_code == 201 and armed.json()["step"] == 7 and armed.json()["remaining"] == 1
    issued, key = _issue(ca_env, faulty, csr_factory, "txn-wrong-key")
    cert = x509.load_der_x509_certificate(issued.certificate)
    assert _spki(cert.public_key()) != _spki(key.public_key())  # not the CSR's key
    assert cert.subject.get_attributes_for_oid(x509.NameOID.SERIAL_NUMBER)[0].value == "PNONO-01017012345"
    again, key2 = _issue(ca_env, faulty, csr_factory, "txn-after")  # one-shot
    assert _spki(x509.load_der_x509_certificate(again.certificate).public_key()) == _spki(key2.public_key())
    entries = faulty.log()
    fired = [e for e in entries if e["event"] == "fault.fired"]
    assert fired[-1]["name"] == "wrong-key" and fired[-1]["step"] == 7 and fired[-1]["transaction_id"] == "txn-wrong-key"
    issued_entry = next(e for e in entries if e["event"] == EVENT_ISSUED and e["transaction_id"] == "txn-wrong-key")
    assert issued_entry["serial"] == issued.serial and issued_entry["seq"] > fired[-1]["seq"]
    assert any(e["event"] == "fault.armed" and e["name"] == "wrong-key" for e in entries)
    assert faulty.app.extensions["signlab.ca"].authority.log.verify().ok


def test_tsa_unavailable_answers_503_while_the_ca_works(ca_env: Any, faulty: FaultyCa, csr_factory: Any) -> None:
    assert faulty.admin("POST", json={"name": "tsa-unavailable", "count": 2}).status_code == 201
    for _ in range(2):
        down = _tsa(faulty.url)
        assert down.status_code == 503
        assert down.json() == {"error": "temporarily_unavailable", "error_description":
                               "step 10 (SCASP → TSP): the time-stamping authority is temporarily unavailable "
                               "(injected fault tsa-unavailable)"}
    granted = tsp.TimeStampResp.load(_tsa(faulty.url).content)
    assert granted["status"]["status"].native == "granted"
    # until removed: the CA keeps issuing, publishing and answering OCSP meanwhile
    forever = faulty.admin("POST", json={"name": "tsa-unavailable", "count": None}).json()
    assert forever["remaining"] is None
    assert _tsa(faulty.url).status_code == 503 and _tsa(faulty.url).status_code == 503
    issued, _ = _issue(ca_env, faulty, csr_factory, "txn-tsa-down")
    assert issued.serial
    assert requests.get(f"{faulty.url}/crl/issuing.crl", timeout=10).status_code == 200
    assert requests.get(f"{faulty.url}/certs/tsa.crt", timeout=10).status_code == 200
    assert faulty.admin("DELETE", f"/{forever['id']}").json() == {"removed": 1}
    assert faulty.admin("DELETE", f"/{forever['id']}").status_code == 404
    assert _tsa(faulty.url).status_code == 200
    fired = [e for e in faulty.log() if e["event"] == "fault.fired" and e["name"] == "tsa-unavailable"]
    assert len(fired) >= 4 and all(e["step"] == 10 for e in fired)


def test_admin_api_needs_the_admin_token(faulty: FaultyCa) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {base64.b64encode(b'a:b').decode()}"}):
        for method in ("GET", "POST", "DELETE"):
            answer = requests.request(method, f"{faulty.url}/admin/faults", json={"name": "wrong-key"},
                                      headers=headers, timeout=10)
            assert answer.status_code == 401 and answer.json()["error"] == "invalid_token", (method, headers)
    listing = faulty.admin("GET").json()
    assert listing["armed"] == []
    assert {(k["name"], k["step"]) for k in listing["known"]} == {("wrong-key", 7), ("tsa-unavailable", 10),
                                                                  ("short-term-no-revocation", 7),
                                                                  ("hold-after-log", 7), ("revoked-at-issuance", 7),
                                                                  ("expired-certificate", 7), ("unlisted-ca", 7),
                                                                  ("ocsp-unavailable", 10)}
    assert faulty.admin("POST", json={"name": "ocsp-down"}).status_code == 400
    assert faulty.admin("POST", json={"name": "wrong-key", "count": 0}).status_code == 400
    assert faulty.admin("POST", json={"name": "wrong-key", "count": 3}).status_code == 201
    assert faulty.admin("DELETE").json() == {"removed": 1}


def test_faults_are_absent_by_default(ca_env: Any) -> None:
    """The suite's default CA: /admin/faults is 404 even with the admin token, and the TSA answers."""
    assert ca_env.settings.faults_enabled is False
    assert ca_env.app.extensions["signlab.ca"].faults is None
    headers = {"Authorization": f"Bearer {ca_env.admin_token}"}
    for method, path in (("GET", "/admin/faults"), ("POST", "/admin/faults"), ("DELETE", "/admin/faults"),
                         ("DELETE", "/admin/faults/1")):
        answer = requests.request(method, ca_env.url + path, json={"name": "tsa-unavailable"}, headers=headers, timeout=10)
        assert answer.status_code == 404 and "SIGNLAB_CA_FAULTS_ENABLED" in answer.json()["error_description"]
    assert _tsa(ca_env.url).status_code == 200


def test_short_term_switch_issues_one_certificate_without_revocation(ca_env: Any, faulty: FaultyCa,
                                                                    csr_factory: Any) -> None:
    armed = faulty.admin("POST", json={"name": "short-term-no-revocation"})
    assert armed.status_code == 201 and armed.json()["remaining"] == 1
    switched, _ = _issue(ca_env, faulty, csr_factory, "txn-short-term")
    default, _ = _issue(ca_env, faulty, csr_factory, "txn-default")
    extensions = {name: {e.oid.dotted_string for e in x509.load_der_x509_certificate(issued.certificate).extensions}
                  for name, issued in (("switched", switched), ("default", default))}
    assert {"2.5.29.56", "0.4.0.194121.2.1"} <= extensions["switched"]
    assert "2.5.29.31" not in extensions["switched"]  # no CRL DP
    assert (switched.ocsp_url, switched.crl_urls) == (None, ())
    assert not {"2.5.29.56", "0.4.0.194121.2.1"} & extensions["default"] and "2.5.29.31" in extensions["default"]
    fired = [e for e in faulty.log() if e["event"] == "fault.fired" and e["name"] == "short-term-no-revocation"]
    assert [e["transaction_id"] for e in fired] == ["txn-short-term"]


def _ocsp_status(faulty: FaultyCa, certificate: bytes, issuer: bytes) -> str:
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509 import ocsp

    request = ocsp.OCSPRequestBuilder().add_certificate(
        x509.load_der_x509_certificate(certificate), x509.load_der_x509_certificate(issuer), hashes.SHA256()).build()
    answer = ocsp.load_der_ocsp_response(faulty.client.ocsp(request.public_bytes(serialization.Encoding.DER)))
    return answer.certificate_status.name


def _lookup(faulty: FaultyCa, serial: str) -> dict[str, Any]:
    return dict(requests.get(f"{faulty.url}/api/v1/certificates/{serial}", timeout=10).json())


def _time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_revoked_at_issuance_is_revoked_from_its_first_second(ca_env: Any, faulty: FaultyCa, csr_factory: Any) -> None:
    assert faulty.admin("POST", json={"name": "revoked-at-issuance"}).status_code == 201
    issued, _ = _issue(ca_env, faulty, csr_factory, "txn-revoked-at-issuance")
    status = _lookup(faulty, issued.serial)
    cert = x509.load_der_x509_certificate(issued.certificate)
    assert status["status"] == "revoked" and status["revocation_reason"] == "keyCompromise"
    assert status["revoked_at"] == status["issued_at"]  # before anything could be signed with it
    assert cert.not_valid_before_utc < _time(status["revoked_at"]) < cert.not_valid_after_utc
    assert _ocsp_status(faulty, issued.certificate, issued.chain[0]) == "REVOKED"
    crl = x509.load_der_x509_crl(faulty.client.crl("issuing"))
    assert crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None
    assert faulty.app.extensions["signlab.ca"].authority.log.verify().ok


def test_expired_certificate_ended_before_it_was_issued(ca_env: Any, faulty: FaultyCa, csr_factory: Any) -> None:
    assert faulty.admin("POST", json={"name": "expired-certificate"}).status_code == 201
    issued, _ = _issue(ca_env, faulty, csr_factory, "txn-expired")
    cert = x509.load_der_x509_certificate(issued.certificate)
    status = _lookup(faulty, issued.serial)
    assert cert.not_valid_after_utc < _time(status["issued_at"])
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == dt.timedelta(minutes=faulty.settings.cert_validity_minutes)
    assert status["status"] == "expired"


def test_unlisted_ca_issues_a_certificate_that_chains_to_nothing_listed(ca_env: Any, faulty: FaultyCa,
                                                                     csr_factory: Any) -> None:
    assert faulty.admin("POST", json={"name": "unlisted-ca"}).status_code == 201
    issued, _ = _issue(ca_env, faulty, csr_factory, "txn-unlisted")
    cert = x509.load_der_x509_certificate(issued.certificate)
    (issuer_der,) = issued.chain
    issuer = x509.load_der_x509_certificate(issuer_der)
    assert cert.issuer == issuer.subject == issuer.issuer  # a self-signed CA …
    hierarchy = faulty.app.extensions["signlab.ca"].hierarchy
    assert issuer.subject not in (hierarchy.root.cert.subject, hierarchy.issuing.cert.subject)  # … outside SignLab's
    assert "2.5.29.56" in {e.oid.dotted_string for e in cert.extensions}  # points to no revocation service
    listed = faulty.client.trusted_list()
    assert base64.b64encode(issuer_der) not in listed
    # logged and stored alike: the issuance log and the database still agree
    assert requests.get(f"{faulty.url}/api/v1/issuance-log/verify", timeout=10).json()["cross_check"]["ok"] is True


def test_ocsp_unavailable_answers_503_while_crls_work(faulty: FaultyCa) -> None:
    forever = faulty.admin("POST", json={"name": "ocsp-unavailable", "count": None}).json()
    down = requests.post(f"{faulty.url}/ocsp", data=b"x", headers={"Content-Type": "application/ocsp-request"}, timeout=10)
    assert down.status_code == 503 and "OCSP responder is temporarily unavailable" in down.json()["error_description"]
    assert requests.get(f"{faulty.url}/crl/issuing.crl", timeout=10).status_code == 200
    assert faulty.admin("DELETE", f"/{forever['id']}").json() == {"removed": 1}
    assert requests.post(f"{faulty.url}/ocsp", data=b"x", headers={"Content-Type": "application/ocsp-request"},
                         timeout=10).status_code == 200  # a malformedRequest answer, as for any bad request


def _tl_admin(faulty: FaultyCa, method: str, path: str = "", token: str | None = None, **kwargs: Any) -> requests.Response:
    return requests.request(method, f"{faulty.url}/admin/trusted-list{path}", timeout=30,
                            headers={"Authorization": f"Bearer {faulty.token if token is None else token}"}, **kwargs)


def test_trusted_list_status_changes_through_the_lab_admin_api(ca_env: Any, faulty: FaultyCa) -> None:
    from pyhanko.sign.validation.qualified.eutl_parse import trust_list_to_registry_unsafe
    from pyhanko_certvalidator.authority import AuthorityWithCert
    from asn1crypto import x509 as asn1_x509

    assert _tl_admin(faulty, "GET", token="wrong").status_code == 401
    assert requests.get(f"{ca_env.url}/admin/trusted-list", timeout=10,
                        headers={"Authorization": f"Bearer {ca_env.admin_token}"}).status_code == 404  # lab only
    assert _tl_admin(faulty, "POST", "/ca", json={"status": "suspended"}).status_code == 400
    assert _tl_admin(faulty, "POST", "/hsm", json={"status": "withdrawn"}).status_code == 400
    changed = _tl_admin(faulty, "POST", "/ca", json={"status": "withdrawn", "note": "test"})
    assert changed.status_code == 201 and changed.json()["service"] == "ca"
    since = dt.datetime.fromisoformat(changed.json()["since"].replace("Z", "+00:00"))
    assert _tl_admin(faulty, "GET").json()["changes"] == [changed.json()]
    registry, errors = trust_list_to_registry_unsafe(faulty.client.trusted_list().decode())
    assert errors == []
    issuing = AuthorityWithCert(asn1_x509.Certificate.load(faulty.client.certificate("issuing")))
    assert list(registry.applicable_service_definitions(issuing, since - dt.timedelta(minutes=1)))  # granted before
    assert not list(registry.applicable_service_definitions(issuing, since + dt.timedelta(minutes=1)))  # not after
    assert _tl_admin(faulty, "DELETE").json() == {"removed": 1}
    registry, _ = trust_list_to_registry_unsafe(faulty.client.trusted_list().decode())
    assert list(registry.applicable_service_definitions(issuing, since + dt.timedelta(minutes=1)))
