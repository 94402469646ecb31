"""Step 7 through the real HTTP API: profiles linted by pkilint, subject from claims, every refusal."""

from __future__ import annotations

import base64
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from joserfc.jwk import ECKey

from services.ca.issuance_log import EVENT_ISSUED, EVENT_REFUSED
from services.ca.profiles import NCP, QCP_N_QSCD

LINT = Path(sys.executable).parent / "lint_etsi_cert"


def _lint(der: bytes, tmp_path: Path) -> tuple[int, str, str]:
    path = tmp_path / "cert.der"
    path.write_bytes(der)
    result = subprocess.run([str(LINT), "lint", "-d", "-o", "-s", "WARNING", str(path)],
                            capture_output=True, text=True, timeout=120)
    return result.returncode, result.stdout, result.stderr.strip()


@pytest.mark.parametrize(("profile", "eid", "expected_type", "policy"), [
    ("qes", "high", "QCP-N-QSCD-EIDAS-FINAL-CERTIFICATE", QCP_N_QSCD),
    ("ades", "substantial", "NCP-NATURAL-PERSON-CERTIFICATE", NCP),
    ("ades", "high", "NCP-NATURAL-PERSON-CERTIFICATE", NCP),
])
def test_issued_certificate_lints_clean(issue: Any, tmp_path: Path, profile: str, eid: str, expected_type: str,
                                        policy: str) -> None:
    issued, _key = issue(profile, eid)
    code, out, detected = _lint(issued.certificate, tmp_path)
    assert detected == expected_type
    assert code == 0, out
    assert issued.policy_oid == policy and issued.profile == profile


def test_subject_comes_from_verified_claims_not_the_csr(issue: Any) -> None:
    issued, key = issue("qes", "high")
    cert = x509.load_der_x509_certificate(issued.certificate)
    attrs = {a.oid: a.value for a in cert.subject}
    assert attrs == {NameOID.COUNTRY_NAME: "NO", NameOID.SURNAME: "Nordmann", NameOID.GIVEN_NAME: "Kari",
                     NameOID.SERIAL_NUMBER: "PNONO-01017012345", NameOID.COMMON_NAME: "Kari Nordmann"}
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()


def test_short_term_validity_and_urls(ca_env: Any, issue: Any) -> None:
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    issued, _ = issue("ades", "substantial")
    cert = x509.load_der_x509_certificate(issued.certificate)
    backdate = before - cert.not_valid_before_utc
    assert dt.timedelta(0) <= backdate <= dt.timedelta(seconds=61)
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert lifetime == dt.timedelta(minutes=15, seconds=60)
    assert issued.ocsp_url == "http://ca.signlab.example.com:8002/ocsp"
    assert issued.crl_urls == ("http://ca.signlab.example.com:8002/crl/issuing.crl",)
    oids = {e.oid.dotted_string: e.critical for e in cert.extensions}
    assert "2.5.29.56" not in oids and "0.4.0.194121.2.1" not in oids  # default profile: no noRevAvail/valassured
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.content_commitment and not ku.value.digital_signature
    chain = [x509.load_der_x509_certificate(c) for c in issued.chain]
    assert [c.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value for c in chain] == [
        "SignLab Short-Term Signing CA", "SignLab Root CA"]
    status = ca_env.client.certificate_status(issued.serial)
    assert status.status == "valid" and status.loa == "substantial" and status.transaction_id == "txn-test"


def _post(ca_env: Any, body: Any, **kwargs: Any) -> requests.Response:
    return requests.post(ca_env.client.issuance_url, json=body, timeout=10, **kwargs)


def _count(ca_env: Any) -> tuple[int, int]:
    entries = ca_env.app.extensions["signlab.ca"].authority.log.entries()
    return (sum(e["event"] == EVENT_ISSUED for e in entries), sum(e["event"] == EVENT_REFUSED for e in entries))


def _refusal_cases(ca_env: Any, make_csr: Any) -> dict[str, tuple[dict[str, Any] | bytes, int, str, str]]:
    good = make_csr()
    tampered = bytearray(good)
    tampered[-3] ^= 0x01  # flips a bit of the signature: the CSR no longer proves possession
    other_idp = ECKey.generate_key("P-256", parameters={"alg": "ES256"})
    other_signer = ECKey.generate_key("P-256", parameters={"alg": "ES256"})
    other_signer.ensure_kid()
    return {
        "qes from substantial": (ca_env.request("qes", "substantial"), 403, "access_denied", "loa_too_low"),
        "qes from unapproved high eID": (ca_env.request("qes", "high-unapproved"), 403, "access_denied",
                                         "eid_not_qes_approved"),
        "ades from low": (ca_env.request("ades", "low"), 403, "access_denied", "loa_too_low"),
        "malformed csr": (ca_env.request(csr=b"not a csr"), 400, "invalid_request", "csr_malformed"),
        "csr not base64": (ca_env.request(csr=None) | {"csr": "%%%"}, 400, "invalid_request", "csr_malformed"),
        "csr signature mismatch": (ca_env.request(csr=bytes(tampered)), 400, "invalid_request",
                                   "csr_signature_invalid"),
        "weak rsa key": (ca_env.request(csr=make_csr(rsa.generate_private_key(65537, 1024))), 400,
                         "invalid_request", "weak_key"),
        "unsupported curve": (ca_env.request(csr=make_csr(ec.generate_private_key(ec.SECP256K1()))), 400,
                              "invalid_request", "unsupported_key"),
        "forged id token": (ca_env.request() | {"id_token": ca_env.id_token(key=other_idp, kid=ca_env.idp_key.kid)},
                            403, "access_denied", "id_token_signature"),
        "expired id token": (ca_env.request() | {"id_token": ca_env.id_token(iat=1_700_000_000)}, 403,
                             "access_denied", "id_token_exp"),
        "id token from another issuer": (ca_env.request() | {"id_token": ca_env.id_token(issuer="https://evil.example.org")},
                                         403, "access_denied", "id_token_iss"),
        "id token too old": (ca_env.request() | {"id_token": ca_env.id_token(iat=dt.datetime.now(dt.UTC).timestamp() - 3600,
                                                                              exp_in=7200)},
                             403, "access_denied", "id_token_iat"),
        "unknown caller key": (ca_env.request() | {"client_assertion": ca_env.assertion(key=other_signer)}, 401,
                               "invalid_client", "unknown_caller"),
        "caller with other client id": (ca_env.request() | {"client_assertion": ca_env.assertion(client_id="intruder")},
                                        401, "invalid_client", "unknown_caller"),
        "assertion for another audience": (ca_env.request() | {"client_assertion": ca_env.assertion(
            audience="https://elsewhere.example.org/token")}, 401, "invalid_client", "unknown_caller"),
        "no client assertion": ({k: v for k, v in ca_env.request().items() if not k.startswith("client_")}, 401,
                                "invalid_client", "client_assertion_missing"),
        "unknown profile": (ca_env.request(profile="qscd"), 400, "invalid_request", "profile_invalid"),
        "missing id token": ({k: v for k, v in ca_env.request().items() if k != "id_token"}, 400, "invalid_request",
                             "id_token_missing"),
        "body not an object": (b"[1, 2]", 400, "invalid_request", "body_not_json_object"),
        "oversized body": (b"{" + b" " * (70 * 1024) + b"}", 413, "invalid_request", "body_too_large"),
    }


CASES = ["qes from substantial", "qes from unapproved high eID", "ades from low", "malformed csr", "csr not base64",
         "csr signature mismatch", "weak rsa key", "unsupported curve", "forged id token", "expired id token",
         "id token from another issuer", "id token too old", "unknown caller key", "caller with other client id",
         "assertion for another audience", "no client assertion", "unknown profile", "missing id token",
         "body not an object", "oversized body"]


@pytest.mark.parametrize("case", CASES)
def test_refusals_are_clear_logged_and_issue_nothing(ca_env: Any, csr_factory: Any, case: str) -> None:
    body, status, error, reason = _refusal_cases(ca_env, csr_factory)[case]
    issued_before, refused_before = _count(ca_env)
    if isinstance(body, bytes):
        response = requests.post(ca_env.client.issuance_url, data=body, timeout=10,
                                 headers={"Content-Type": "application/json"})
    else:
        response = _post(ca_env, body)
    assert response.status_code == status, response.text
    answer = response.json()
    assert answer["error"] == error
    assert reason in answer["error_description"]
    assert "certificate" not in answer
    issued_after, refused_after = _count(ca_env)
    assert issued_after == issued_before
    assert refused_after == refused_before + 1
    last = ca_env.app.extensions["signlab.ca"].authority.log.entries()[-1]
    assert last["event"] == EVENT_REFUSED and last["reason"] == reason


def test_replayed_client_assertion_is_refused(ca_env: Any, csr_factory: Any) -> None:
    body = ca_env.request("ades", "substantial")
    assert _post(ca_env, body).status_code == 201
    again = _post(ca_env, body | {"csr": base64.b64encode(csr_factory()).decode()})
    assert again.status_code == 401 and "already used" in again.json()["error_description"]


def test_issuance_log_is_chained_and_detects_edits(ca_env: Any, issue: Any, tmp_path: Path) -> None:
    from services.ca.issuance_log import verify_log

    issue("ades", "substantial")
    log = ca_env.app.extensions["signlab.ca"].authority.log
    assert log.verify().ok
    entries = log.entries()
    assert all("Nordmann" not in str(e) and "01017012345" not in str(e) for e in entries)  # pseudonymised
    copy = tmp_path / "log.jsonl"
    lines = log.path.read_text().splitlines()
    edited = json.loads(lines[0])
    edited["data"]["requester"] = "someone-else"  # a quiet edit of the first entry
    lines[0] = json.dumps(edited, sort_keys=True, separators=(",", ":"))
    copy.write_text("\n".join(lines) + "\n")
    result = verify_log(copy)
    assert not result.ok and result.first_broken == 1
