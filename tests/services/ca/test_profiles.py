"""The end-entity profiles: the per-profile cached extensions give exactly the certificate a
one-extension-at-a-time build of the profile gives (same TBSCertificate bytes) in both revocation
profiles, and the cached QCStatements equal freshly built ones."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ObjectIdentifier
from pydantic import SecretStr

from services.ca.pki import load_hierarchy
from services.ca.profiles import (
    NO_REV_AVAIL,
    QC_STATEMENTS,
    VALASSURED_ST_CERTS,
    CertificateUrls,
    Profile,
    RevocationProfile,
    SubjectIdentity,
    _static_extensions,
    build_end_entity,
    qc_statements_der,
)
from services.ca.provision import provision
from services.ca.settings import CaSettings
from shared.lab_pki import KeyPair

URLS = CertificateUrls(ca_issuers="http://ca.signlab.example.com/certs/issuing.crt",
                       ocsp="http://ca.signlab.example.com/ocsp", crl="http://ca.signlab.example.com/crl/issuing.crl")
PDS = "https://ca.signlab.example.com/pds/pds_en.pdf"
SUBJECT = SubjectIdentity(country="NO", given_name="Åse Marit", family_name="Ærlig-Sæbø",
                          serial_number="PNONO-30869043342")


@pytest.fixture(scope="module")
def issuing(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    data_dir: Path = tmp_path_factory.mktemp("ca-profiles")
    settings = CaSettings(data_dir=data_dir, admin_token=SecretStr("t" * 24), trainer_token=SecretStr("trainer-token-of-the-tests"),
                          log_level="WARNING")
    provision(settings)
    return load_hierarchy(settings.service_dir()).issuing


def _reference(issuer: KeyPair, public_key: object, profile: Profile, revocation: RevocationProfile, serial: int,
               not_before: dt.datetime, not_after: dt.datetime) -> x509.Certificate:
    """The profile built one add_extension at a time, as docs/design.md §4 lists it."""
    ca_issuers = x509.AccessDescription(x509.oid.AuthorityInformationAccessOID.CA_ISSUERS,
                                        x509.UniformResourceIdentifier(URLS.ca_issuers))
    builder = (
        x509.CertificateBuilder()
        .subject_name(SUBJECT.to_name()).issuer_name(issuer.cert.subject).public_key(public_key)  # type: ignore[arg-type]
        .serial_number(serial).not_valid_before(not_before).not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, True, False, False, False, False, False, False, False), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False)  # type: ignore[arg-type]
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)  # type: ignore[arg-type]
        .add_extension(x509.CertificatePolicies([x509.PolicyInformation(ObjectIdentifier(profile.policy_oid), None)]),
                       critical=False)
        .add_extension(x509.UnrecognizedExtension(QC_STATEMENTS, qc_statements_der(profile, PDS)), critical=False)
    )
    if revocation is RevocationProfile.CRL_OCSP:
        builder = (
            builder.add_extension(x509.AuthorityInformationAccess([ca_issuers, x509.AccessDescription(
                x509.oid.AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(URLS.ocsp))]),
                critical=False)
            .add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
                full_name=[x509.UniformResourceIdentifier(URLS.crl)], relative_name=None, reasons=None,
                crl_issuer=None)]), critical=False)
        )
    else:
        builder = (
            builder.add_extension(x509.AuthorityInformationAccess([ca_issuers]), critical=False)
            .add_extension(x509.UnrecognizedExtension(NO_REV_AVAIL, b"\x05\x00"), critical=False)
            .add_extension(x509.UnrecognizedExtension(VALASSURED_ST_CERTS, b"\x05\x00"), critical=False)
        )
    return builder.sign(issuer.key, hashes.SHA384())  # type: ignore[arg-type]


@pytest.mark.parametrize("revocation", list(RevocationProfile))
@pytest.mark.parametrize("profile", list(Profile))
@pytest.mark.parametrize("key_type", ["ec", "rsa"])
def test_cached_extensions_give_the_same_certificate(issuing: KeyPair, profile: Profile, key_type: str,
                                                     revocation: RevocationProfile) -> None:
    private = ec.generate_private_key(ec.SECP256R1()) if key_type == "ec" else rsa.generate_private_key(65537, 2048)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    args = {"serial": x509.random_serial_number(), "not_before": now - dt.timedelta(seconds=60),
            "not_after": now + dt.timedelta(minutes=15)}
    for _ in range(2):  # the second build comes from the cache
        ours = build_end_entity(issuer=issuing, public_key=private.public_key(), subject=SUBJECT, profile=profile,
                                urls=URLS, pds_url=PDS, revocation=revocation, **args)  # type: ignore[arg-type]
        reference = _reference(issuing, private.public_key(), profile, revocation, **args)  # type: ignore[arg-type]
        assert ours.tbs_certificate_bytes == reference.tbs_certificate_bytes


@pytest.mark.parametrize("profile", list(Profile))
def test_cached_qc_statements_equal_freshly_built(issuing: KeyPair, profile: Profile) -> None:
    _, tail = _static_extensions(profile, URLS, PDS, issuing.cert)
    cached = next(e for e in tail if e.oid == QC_STATEMENTS)
    assert cached.value.value == qc_statements_der(profile, PDS)
    assert _static_extensions(profile, URLS, PDS, issuing.cert) is _static_extensions(profile, URLS, PDS, issuing.cert)
    # Another PDS URL is another cache entry, never the old value.
    other = next(e for e in _static_extensions(profile, URLS, PDS + "?v=2", issuing.cert)[1] if e.oid == QC_STATEMENTS)
    assert other.value.value == qc_statements_der(profile, PDS + "?v=2")
