"""The two revocation profiles of docs/design.md §4, checked with cryptography and pyhanko-certvalidator.

* ``crl-ocsp`` (the default CA): CRL DP + AIA OCSP, no noRevAvail / valassured mark; the CA's
  CRL and OCSP vouch for the certificate.
* ``short-term-no-revocation`` (a second CA with that setting): noRevAvail + valassured-ST, no CRL
  DP, no OCSP pointer; the CA never revokes such a certificate, its OCSP responder does not vouch
  for it, and its CRL's scope (IssuingDistributionPoint) does not cover it. A validator that
  requires revocation data therefore refuses the certificate; one that checks revocation only
  where it is declared accepts it on its short validity.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import requests
from asn1crypto import crl as asn1_crl
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import PathValidationError

NO_REV_AVAIL, VALASSURED = "2.5.29.56", "0.4.0.194121.2.1"
CRL_DP, AIA = "2.5.29.31", "1.3.6.1.5.5.7.1.1"


def _extensions(der: bytes) -> dict[str, x509.Extension]:
    return {e.oid.dotted_string: e for e in x509.load_der_x509_certificate(der).extensions}


def _aia_methods(der: bytes) -> set[str]:
    aia = x509.load_der_x509_certificate(der).extensions.get_extension_for_class(x509.AuthorityInformationAccess)
    return {d.access_method.dotted_string for d in aia.value}


def _validate(env: Any, der: bytes, mode: str, crls: list[bytes] | None = None, fetching: bool = True) -> Any:
    root = asn1_x509.Certificate.load(env.client.certificate("root"))
    context = ValidationContext(
        trust_roots=[root], other_certs=[asn1_x509.Certificate.load(env.client.certificate("issuing"))],
        crls=[asn1_crl.CertificateList.load(c) for c in crls or []], allow_fetching=fetching,
        revocation_mode=mode, fetcher_backend=env.client.fetcher_backend())
    validator = CertificateValidator(asn1_x509.Certificate.load(der), validation_context=context)
    return asyncio.run(validator.async_validate_usage({"non_repudiation"}))


def _ocsp_status(env: Any, leaf_der: bytes) -> ocsp.OCSPCertStatus:
    leaf = x509.load_der_x509_certificate(leaf_der)
    issuing = x509.load_der_x509_certificate(env.client.certificate("issuing"))
    request = ocsp.OCSPRequestBuilder().add_certificate(leaf, issuing, hashes.SHA256()).build()
    answer = ocsp.load_der_ocsp_response(env.client.ocsp(request.public_bytes(serialization.Encoding.DER)))
    assert answer.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
    return answer.certificate_status


@pytest.mark.parametrize(("profile", "eid"), [("qes", "high"), ("ades", "substantial")])
def test_default_profile_points_to_crl_and_ocsp_and_claims_nothing_else(ca_env: Any, issue: Any, profile: str,
                                                                         eid: str) -> None:
    issued, _ = issue(profile, eid)
    extensions = _extensions(issued.certificate)
    assert NO_REV_AVAIL not in extensions and VALASSURED not in extensions  # RFC 9608: no contradiction
    assert CRL_DP in extensions
    assert _aia_methods(issued.certificate) == {"1.3.6.1.5.5.7.48.2", "1.3.6.1.5.5.7.48.1"}  # caIssuers, OCSP
    assert _ocsp_status(ca_env, issued.certificate) == ocsp.OCSPCertStatus.GOOD
    # The issuing CA's CRL alone (its scope names the certificate's CRL DP) satisfies "require".
    path = _validate(ca_env, issued.certificate, "require", crls=[ca_env.client.crl("issuing"),
                                                                   ca_env.client.crl("root")], fetching=False)
    assert path.pkix_len == 2


def test_issuing_crl_names_its_scope(ca_env: Any) -> None:
    crl = x509.load_der_x509_crl(ca_env.client.crl("issuing"))
    idp = crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint)
    assert idp.critical  # RFC 5280 §5.2.5
    assert [n.value for n in idp.value.full_name] == [ca_env.settings.public_url_for("/crl/issuing.crl")]
    assert idp.value.only_contains_user_certs and not idp.value.indirect_crl


def test_short_term_profile_has_no_revocation_pointer(short_term_ca_env: Any, issue_short_term: Any) -> None:
    issued, _ = issue_short_term("qes", "high")
    extensions = _extensions(issued.certificate)
    for oid in (NO_REV_AVAIL, VALASSURED):
        assert not extensions[oid].critical
        assert extensions[oid].value.value == b"\x05\x00"  # NULL
    assert CRL_DP not in extensions
    assert _aia_methods(issued.certificate) == {"1.3.6.1.5.5.7.48.2"}  # caIssuers only
    assert (issued.ocsp_url, issued.crl_urls) == (None, ())
    page = requests.get(f"{short_term_ca_env.url}/certificates/{issued.serial}", timeout=10,
                        headers={"Authorization": "Bearer trainer-token-of-the-tests"}).text  # a trainer view
    assert "noRevAvail" in page and "valassured" in page


def test_short_term_certificate_is_never_revoked_nor_vouched_for(short_term_ca_env: Any,
                                                                  issue_short_term: Any) -> None:
    issued, _ = issue_short_term("ades", "substantial")
    answer = requests.post(f"{short_term_ca_env.url}/api/v1/certificates/{issued.serial}/revoke", timeout=10,
                           json={"reason": "keyCompromise"},
                           headers={"Authorization": f"Bearer {short_term_ca_env.admin_token}"})
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_request"
    assert answer.json()["error_description"].startswith("revocation_not_available: ")
    assert short_term_ca_env.client.certificate_status(issued.serial).status == "valid"
    crl = x509.load_der_x509_crl(short_term_ca_env.client.crl("issuing"))
    assert crl.get_revoked_certificate_by_serial_number(int(issued.serial, 16)) is None
    assert _ocsp_status(short_term_ca_env, issued.certificate) == ocsp.OCSPCertStatus.UNKNOWN


def test_validator_requiring_revocation_data_refuses_the_short_term_certificate(short_term_ca_env: Any,
                                                                                 issue_short_term: Any) -> None:
    """pyhanko-certvalidator honours noRevAvail only for attribute certificates: with revocation
    ``require`` it finds no revocation data for the leaf — nothing to fetch (no pointer), and the
    issuing CA's CRL, even when handed over, does not cover it. ``soft-fail`` and ``hard-fail``
    check revocation where it is declared and accept the leaf on its short validity."""
    env = short_term_ca_env
    issued, _ = issue_short_term("qes", "high")
    with pytest.raises(PathValidationError, match="no revocation information could be found for the end-entity"):
        _validate(env, issued.certificate, "require")
    with pytest.raises(PathValidationError, match="no revocation information could be found for the end-entity"):
        _validate(env, issued.certificate, "require", crls=[env.client.crl("issuing"), env.client.crl("root")])
    for mode in ("soft-fail", "hard-fail"):
        assert _validate(env, issued.certificate, mode).pkix_len == 2
