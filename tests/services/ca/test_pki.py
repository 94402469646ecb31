"""Revocation, time-stamps and the trusted list, checked with independent code (pyHanko, cryptography)."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import secrets
from typing import Any

import pytest
import requests
from asn1crypto import tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from pyhanko.sign.ades import qualified_asn1
from pyhanko.sign.validation.errors import SignatureValidationError
from pyhanko.sign.validation.generic_cms import validate_tst_signed_data
from pyhanko.sign.validation.qualified.assess import QualificationAssessor
from pyhanko.sign.validation.qualified.eutl_parse import trust_list_to_registry
from pyhanko.sign.validation.qualified.q_status import QcPrivateKeyManagementType
from pyhanko.sign.validation.qualified.tsp import QcCertType
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import PathValidationError

from services.ca.tsa import _StatusOnlyResp

TRAINER = {"Authorization": "Bearer trainer-token-of-the-tests"}


def _validation_context(ca_env: Any) -> ValidationContext:
    # Only what the CA serves: the root from /certs/root.crt; intermediates, CRLs and OCSP fetched
    # from the URLs inside the certificates (public base mapped to the CA).
    root = asn1_x509.Certificate.load(ca_env.client.certificate("root"))
    return ValidationContext(trust_roots=[root], allow_fetching=True, revocation_mode="require",
                             fetcher_backend=ca_env.client.fetcher_backend())


def _validate(ca_env: Any, der: bytes) -> Any:
    validator = CertificateValidator(asn1_x509.Certificate.load(der), validation_context=_validation_context(ca_env))
    return asyncio.run(validator.async_validate_usage({"non_repudiation"}))


@pytest.mark.parametrize(("profile", "eid"), [("qes", "high"), ("ades", "substantial")])
def test_chain_validates_with_revocation_required_from_ca_data_only(ca_env: Any, issue: Any, profile: str,
                                                                     eid: str) -> None:
    issued, _ = issue(profile, eid)
    path = _validate(ca_env, issued.certificate)
    assert path.pkix_len == 2  # issuing CA fetched via caIssuers, then the leaf


def test_revoked_certificate_fails_validation(ca_env: Any, issue: Any) -> None:
    issued, _ = issue("qes", "high")
    status = ca_env.client.revoke(issued.serial, "keyCompromise", ca_env.admin_token)
    assert status.status == "revoked" and status.revocation_reason == "keyCompromise"
    with pytest.raises(PathValidationError, match="revoked"):
        _validate(ca_env, issued.certificate)


def test_revoke_needs_the_admin_token(ca_env: Any, issue: Any) -> None:
    issued, _ = issue("ades", "substantial")
    url = f"{ca_env.url}/api/v1/certificates/{issued.serial}/revoke"
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        response = requests.post(url, json={"reason": "keyCompromise"}, headers=headers, timeout=10)
        assert response.status_code == 401 and response.json()["error"] == "invalid_token"
    assert ca_env.client.certificate_status(issued.serial).status == "valid"
    bad = requests.post(url, json={"reason": "because"}, timeout=10,
                        headers={"Authorization": f"Bearer {ca_env.admin_token}"})
    assert bad.status_code == 400
    missing = requests.get(f"{ca_env.url}/api/v1/certificates/abc123", timeout=10)
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"


def _ocsp_request(cert: x509.Certificate, issuer: x509.Certificate, nonce: bytes | None = None) -> bytes:
    # SHA-1 in the CertID: what most OCSP clients send (RFC 6960 §4.1.1); not a signature
    builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1())  # noqa: S303
    if nonce:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


def _verify_ocsp(response: ocsp.OCSPResponse, issuing: x509.Certificate) -> None:
    responder = response.certificates[0]
    assert responder.issuer == issuing.subject
    responder.verify_directly_issued_by(issuing)
    eku = responder.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.oid.ExtendedKeyUsageOID.OCSP_SIGNING in eku
    responder.extensions.get_extension_for_class(x509.OCSPNoCheck)
    public = responder.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(response.signature, response.tbs_response_bytes, ec.ECDSA(response.signature_hash_algorithm))


def test_ocsp_good_revoked_unknown_with_nonce(ca_env: Any, issue: Any) -> None:
    issued, _ = issue("ades", "substantial")
    cert = x509.load_der_x509_certificate(issued.certificate)
    issuing = x509.load_der_x509_certificate(issued.chain[0])
    nonce = secrets.token_bytes(16)
    response = ocsp.load_der_ocsp_response(ca_env.client.ocsp(_ocsp_request(cert, issuing, nonce)))
    assert response.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
    _verify_ocsp(response, issuing)
    assert response.certificate_status == ocsp.OCSPCertStatus.GOOD
    assert response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == nonce
    assert response.next_update_utc is not None and response.next_update_utc > response.this_update_utc

    ca_env.client.revoke(issued.serial, "superseded", ca_env.admin_token)
    # GET form (RFC 6960 appendix A.1) as well as POST
    encoded = base64.b64encode(_ocsp_request(cert, issuing)).decode()
    revoked = ocsp.load_der_ocsp_response(requests.get(f"{ca_env.url}/ocsp/{encoded}", timeout=10).content)
    _verify_ocsp(revoked, issuing)
    assert revoked.certificate_status == ocsp.OCSPCertStatus.REVOKED
    assert revoked.revocation_reason == x509.ReasonFlags.superseded

    stranger = (x509.CertificateBuilder().subject_name(cert.subject).issuer_name(issuing.subject)
                .public_key(cert.public_key()).serial_number(12345).not_valid_before(cert.not_valid_before_utc)
                .not_valid_after(cert.not_valid_after_utc).sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256()))
    unknown = ocsp.load_der_ocsp_response(ca_env.client.ocsp(_ocsp_request(stranger, issuing)))
    assert unknown.certificate_status == ocsp.OCSPCertStatus.UNKNOWN

    malformed = ocsp.load_der_ocsp_response(ca_env.client.ocsp(b"\x30\x03garbage"))
    assert malformed.response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    foreign_ca = x509.load_der_x509_certificate(ca_env.client.certificate("tsa"))
    unauthorized = ocsp.load_der_ocsp_response(ca_env.client.ocsp(_ocsp_request(cert, foreign_ca)))
    assert unauthorized.response_status == ocsp.OCSPResponseStatus.UNAUTHORIZED


def test_crls_are_signed_numbered_and_fresh(ca_env: Any, issue: Any) -> None:
    root = x509.load_der_x509_certificate(ca_env.client.certificate("root"))
    issuing = x509.load_der_x509_certificate(ca_env.client.certificate("issuing"))
    for name, issuer in (("root", root), ("issuing", issuing)):
        crl = x509.load_der_x509_crl(ca_env.client.crl(name))
        assert crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
        assert crl.issuer == issuer.subject
        assert crl.next_update_utc is not None and crl.next_update_utc > dt.datetime.now(dt.UTC)
        crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    before = x509.load_der_x509_crl(ca_env.client.crl("issuing"))
    number_before = before.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    issued, _ = issue("ades", "substantial")
    ca_env.client.revoke(issued.serial, "cessationOfOperation", ca_env.admin_token)
    after = x509.load_der_x509_crl(ca_env.client.crl("issuing"))
    assert after.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number > number_before
    entry = after.get_revoked_certificate_by_serial_number(int(issued.serial, 16))
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == x509.ReasonFlags.cessation_of_operation
    assert requests.get(f"{ca_env.url}/crl/other.crl", timeout=10).status_code == 404


def _crl_number(der: bytes) -> int:
    return x509.load_der_x509_crl(der).extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def test_crl_etag_and_not_modified(ca_env: Any) -> None:
    """The CRL is kept signed: the same bytes and number until something changes; ``ETag`` is the
    quoted CRL number and ``If-None-Match`` with it gets 304 without a body."""
    for name in ("root", "issuing"):
        first = requests.get(f"{ca_env.url}/crl/{name}.crl", timeout=10)
        assert first.status_code == 200
        assert first.headers["ETag"] == f'"{_crl_number(first.content)}"'
        again = requests.get(f"{ca_env.url}/crl/{name}.crl", timeout=10)
        assert again.content == first.content and again.headers["ETag"] == first.headers["ETag"]
        unchanged = requests.get(f"{ca_env.url}/crl/{name}.crl", headers={"If-None-Match": first.headers["ETag"]},
                                 timeout=10)
        assert unchanged.status_code == 304 and unchanged.content == b""
        assert unchanged.headers["ETag"] == first.headers["ETag"]
        for stale in ('"0"', "W/\"0\"", '"not-a-number"'):
            changed = requests.get(f"{ca_env.url}/crl/{name}.crl", headers={"If-None-Match": stale}, timeout=10)
            assert changed.status_code == 200 and changed.content == first.content


def test_caching_client_sees_a_revocation_in_the_very_next_crl(ca_env: Any, issue: Any) -> None:
    """CaClient.crl keeps the last CRL and revalidates it (If-None-Match): 304 gives the kept
    bytes, and a revocation shows in the next call, with a higher CRL number."""
    from shared.clients.ca import CaClient

    client = CaClient(ca_env.url, public_cert_base=ca_env.settings.public_cert_base)
    sent: list[str | None] = []
    original = client.session.request

    def spy(method: str, url: str, **kwargs: Any) -> Any:
        sent.append((kwargs.get("headers") or {}).get("If-None-Match"))
        response = original(method, url, **kwargs)
        sent.append(str(response.status_code))
        return response

    client.session.request = spy  # type: ignore[method-assign]
    try:
        first = client.crl("issuing")
        assert client.crl("issuing") == first
        assert sent[:2] == [None, "200"] and sent[2] == f'"{_crl_number(first)}"' and sent[3] == "304"
        issued, _ = issue("ades", "substantial")
        ca_env.client.revoke(issued.serial, "keyCompromise", ca_env.admin_token)
        after = client.crl("issuing")
        assert sent[-1] == "200"
        assert _crl_number(after) > _crl_number(first)
        assert x509.load_der_x509_crl(after).get_revoked_certificate_by_serial_number(int(issued.serial, 16))
        assert client.crl("issuing") == after and sent[-1] == "304"
        assert client.crl("root") != after  # one kept CRL per name
    finally:
        client.close()


def test_tsa_token_verifies_with_pyhanko(ca_env: Any) -> None:
    digest = hashlib.sha256(b"document").digest()
    nonce = secrets.randbits(64)
    query = tsp.TimeStampReq({"version": "v1", "message_imprint": {"hash_algorithm": {"algorithm": "sha256"},
                                                                   "hashed_message": digest},
                              "nonce": nonce, "cert_req": True})
    response = tsp.TimeStampResp.load(ca_env.client.timestamp(query.dump()))
    assert response["status"]["status"].native == "granted"
    signed_data = response["time_stamp_token"]["content"]
    info = signed_data["encap_content_info"]["content"].parsed
    assert info["nonce"].native == nonce
    assert info["policy"].dotted == ca_env.settings.tsa_policy_oid
    root = asn1_x509.Certificate.load(ca_env.client.certificate("root"))
    context = ValidationContext(trust_roots=[root], allow_fetching=True, revocation_mode="require",
                                fetcher_backend=ca_env.client.fetcher_backend())
    status = asyncio.run(validate_tst_signed_data(signed_data, context,
                                                  expected_tst_imprint=lambda algo: hashlib.new(algo, b"document").digest()))
    assert status["intact"] and status["valid"]
    assert status["signing_cert"].subject.native["common_name"] == "SignLab Time-Stamping Authority"
    assert status["trust_problem_indic"] is None


def test_tsa_token_claims_to_be_a_qualified_time_stamp(ca_env: Any) -> None:
    """ETSI EN 319 422 §9.1: a token of a TSA the trusted list calls qualified carries, in the TSTInfo
    ``extensions`` field, a non-critical qcStatements extension (RFC 3739) holding exactly the
    statement esi4-qtstStatement-1 (0.4.0.19422.1.1, no statement info). Decoded with pyHanko's
    QCStatements definition."""
    query = tsp.TimeStampReq({"version": "v1", "message_imprint": {"hash_algorithm": {"algorithm": "sha256"},
                                                                   "hashed_message": bytes(32)}})
    token = tsp.TimeStampResp.load(ca_env.client.timestamp(query.dump()))["time_stamp_token"]
    info = token["content"]["encap_content_info"]["content"].parsed
    extensions = list(info["extensions"])
    assert [e["extn_id"].dotted for e in extensions] == ["1.3.6.1.5.5.7.1.3"]
    assert extensions[0]["critical"].native is False
    statements = qualified_asn1.QcStatements.load(extensions[0]["extn_value"].native)
    assert [(st["statement_id"].dotted, st["statement_info"].native) for st in statements] == [("0.4.0.19422.1.1", None)]
    assert info["policy"].dotted == "0.4.0.2023.1.1"  # EN 319 422 §9.1: an EN 319 421 policy


@pytest.mark.parametrize(("query", "failure"), [
    (b"not DER at all", "bad_data_format"),
    (tsp.TimeStampReq({"version": "v1", "message_imprint": {"hash_algorithm": {"algorithm": "md5"},
                                                            "hashed_message": b"0" * 16}}).dump(), "bad_alg"),
    (tsp.TimeStampReq({"version": "v1", "message_imprint": {"hash_algorithm": {"algorithm": "sha256"},
                                                            "hashed_message": b"short"}}).dump(), "bad_data_format"),
    (tsp.TimeStampReq({"version": "v1", "message_imprint": {"hash_algorithm": {"algorithm": "sha256"},
                                                            "hashed_message": b"0" * 32},
                       "req_policy": "1.2.3.4"}).dump(), "unaccepted_policy"),
])
def test_tsa_rejects_bad_queries_inside_rfc3161(ca_env: Any, query: bytes, failure: str) -> None:
    answer = _StatusOnlyResp.load(ca_env.client.timestamp(query))
    assert answer["status"]["status"].native == "rejection"
    assert failure in answer["status"]["fail_info"].native


def test_tsa_needs_its_content_type(ca_env: Any) -> None:
    response = requests.post(f"{ca_env.url}/tsa", data=b"x", headers={"Content-Type": "text/plain"}, timeout=10)
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"


def test_trusted_list_is_signed_and_tells_qes_from_ades(ca_env: Any, issue: Any) -> None:
    xml = ca_env.client.trusted_list().decode("utf-8")
    signer = asn1_x509.Certificate.load(ca_env.client.certificate("tl-signer"))
    registry, errors = trust_list_to_registry(xml, [signer])
    assert errors == []
    issuing = asn1_x509.Certificate.load(ca_env.client.certificate("issuing"))
    tsa = asn1_x509.Certificate.load(ca_env.client.certificate("tsa"))
    assert [a.certificate.dump() for a in registry.known_certificate_authorities] == [issuing.dump()]  # type: ignore[attr-defined]
    assert [a.certificate.dump() for a in registry.known_timestamp_authorities] == [tsa.dump()]  # type: ignore[attr-defined]
    assessor = QualificationAssessor(registry)
    results = {}
    for profile, eid in (("qes", "high"), ("ades", "substantial")):
        issued, _ = issue(profile, eid)
        results[profile] = assessor.check_entity_cert_qualified(_validate(ca_env, issued.certificate)).status
    assert results["qes"].qualified and results["qes"].qc_type == QcCertType.QC_ESIGN
    assert results["qes"].qc_key_security == QcPrivateKeyManagementType.QSCD_DELEGATED
    assert not results["ades"].qualified

    tampered = xml.replace("SignLab Time-Stamping Authority (qualified", "SignLab Time-Stamping Authority (forged")
    with pytest.raises(SignatureValidationError):
        trust_list_to_registry(tampered, [signer])
    other = asn1_x509.Certificate.load(ca_env.client.certificate("tsa"))
    with pytest.raises(SignatureValidationError):
        trust_list_to_registry(xml, [other])


@pytest.mark.parametrize("path", ["/", "/certificates", "/trusted-list", "/trust", "/issuance-log", "/role",
                                  "/certs/chain.pem", "/healthz"])
def test_pages_render(ca_env: Any, path: str) -> None:
    response = requests.get(ca_env.url + path, timeout=10, headers={"Accept": "text/html", **TRAINER})
    assert response.status_code == 200


def test_certificate_page_shows_the_decoded_profile(ca_env: Any, issue: Any) -> None:
    issued, _ = issue("qes", "high")
    assert requests.get(f"{ca_env.url}/certificates/{issued.serial}", timeout=10).status_code == 401
    page = requests.get(f"{ca_env.url}/certificates/{issued.serial}", headers=TRAINER, timeout=10).text
    # The subject's national identifier is masked (type and country kept).
    for text in ("QCP-n-qscd", "QcCompliance", "QcSSCD", "QcType: esign", "cRLDistributionPoints", "PNONO-•••••••••45",
                 "countdown"):
        assert text in page
    assert "01017012345" not in page
