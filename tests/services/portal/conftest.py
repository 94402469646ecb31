"""Fixtures of the portal's tests: a test-only PKI for the core tests, and the real ecosystem.

* The test PKI, TSA, trusted list and one-time signer are TEST FIXTURES built with the real
  libraries (cryptography for the CA, pyHanko's ``SimpleSigner`` for the CMS over a digest,
  pyHanko's ``DummyTimeStamper`` as an in-process RFC 3161 TSA, joserfc for JWS). They stand in
  for the SSASP and TSP only in the core tests (fast, no services).
* ``stack`` is the real ecosystem — IdP, CA, signer (SoftHSM) and portal apps on loopback ports —
  shared by every integration test of the session (one SoftHSM token per process, and starting
  it once keeps the suite fast). It also runs a second portal with a 2-second transaction TTL for
  the expiry tests.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pyhanko.sign import signers
from pyhanko.sign.ades import qualified_asn1
from pyhanko.sign.timestamps.dummy_client import DummyTimeStamper
from pyhanko_certvalidator.registry import SimpleCertificateStore

from services.portal.ltv import ValidationMaterial
from shared.testing import browse_to_portal, confirm_review, free_port
from testkit.ecosystem import Ecosystem

QCP_N_QSCD = "0.4.0.194112.1.2"
NCP = "0.4.0.2042.1.1"
PUBLIC_BASE = "http://ca.signlab.example.com"


def _asn1(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


def _key_info(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> asn1_keys.PrivateKeyInfo:
    return asn1_keys.PrivateKeyInfo.load(
        key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


def _name(cn: str, **extra: str) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COUNTRY_NAME, "NO"), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "SignLab Test TSP")]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


def _qc_statements_der() -> bytes:
    return qualified_asn1.QcStatements(
        [
            {"statement_id": "qc_compliance"},
            {"statement_id": "qc_sscd"},
            {"statement_id": "qc_type", "statement_info": qualified_asn1.QcCertificateType(["qct_esign"])},
        ]
    ).dump()


@dataclass
class TestPki:
    """A root → issuing CA hierarchy with a TSA, CRLs and a trusted list (test only)."""

    root_key: ec.EllipticCurvePrivateKey
    root: x509.Certificate
    issuing_key: ec.EllipticCurvePrivateKey
    issuing: x509.Certificate
    tsa_key: rsa.RSAPrivateKey  # pyHanko's DummyTimeStamper signs with RSA only
    tsa: x509.Certificate

    @property
    def root_asn1(self) -> asn1_x509.Certificate:
        return _asn1(self.root)

    def der(self, cert: x509.Certificate) -> bytes:
        return cert.public_bytes(serialization.Encoding.DER)

    def crl(self, issuer_key: ec.EllipticCurvePrivateKey, issuer: x509.Certificate, revoked: list[int] | None = None) -> bytes:
        now = datetime.now(UTC)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(issuer.subject)
            .last_update(now - timedelta(minutes=5))
            .next_update(now + timedelta(days=1))
            .add_extension(x509.CRLNumber(1), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
        )
        for serial in revoked or []:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now - timedelta(minutes=1)).build()
            )
        return builder.sign(issuer_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)

    def material(self, leaf: x509.Certificate | None = None, revoked: list[int] | None = None) -> ValidationMaterial:
        certs = [self.der(self.issuing), self.der(self.root), self.der(self.tsa)]
        if leaf is not None:
            certs.insert(0, self.der(leaf))
        return ValidationMaterial(
            certificates=certs,
            crls=[self.crl(self.root_key, self.root), self.crl(self.issuing_key, self.issuing, revoked)],
            ocsps=[self.ocsp(leaf)] if leaf is not None and not revoked else [],
        )

    def ocsp(self, leaf: x509.Certificate) -> bytes:
        """A "good" OCSP response for ``leaf``, signed by the issuing CA itself (RFC 6960 §4.2.2.2)."""
        now = datetime.now(UTC)
        builder = (
            ocsp.OCSPResponseBuilder()
            .add_response(cert=leaf, issuer=self.issuing, algorithm=hashes.SHA256(), cert_status=ocsp.OCSPCertStatus.GOOD,
                          this_update=now - timedelta(minutes=1), next_update=now + timedelta(hours=1),
                          revocation_time=None, revocation_reason=None)
            .responder_id(ocsp.OCSPResponderEncoding.HASH, self.issuing)
        )
        return builder.sign(self.issuing_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)

    def timestamper(self) -> DummyTimeStamper:
        return DummyTimeStamper(
            tsa_cert=_asn1(self.tsa),
            tsa_key=_key_info(self.tsa_key),
            certs_to_embed=SimpleCertificateStore.from_certs([_asn1(self.issuing), self.root_asn1]),
        )

    def issue_leaf(self, qualifier: str, minutes: int = 15) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        subject = x509.Name([
            x509.NameAttribute(NameOID.COUNTRY_NAME, "NO"),
            x509.NameAttribute(NameOID.GIVEN_NAME, "Kari"),
            x509.NameAttribute(NameOID.SURNAME, "Nordmann"),
            x509.NameAttribute(NameOID.COMMON_NAME, "Kari Nordmann"),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, "PNONO-01017012345"),
        ])
        policy = QCP_N_QSCD if qualifier == "qes" else NCP
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.issuing.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=1))
            .not_valid_after(now + timedelta(minutes=minutes))
            .add_extension(x509.KeyUsage(False, True, False, False, False, False, False, False, False), critical=True)
            .add_extension(x509.CertificatePolicies([x509.PolicyInformation(x509.ObjectIdentifier(policy), None)]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.issuing_key.public_key()), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(
                x509.CRLDistributionPoints([x509.DistributionPoint(
                    [x509.UniformResourceIdentifier(f"{PUBLIC_BASE}/crl/issuing.crl")], None, None, None)]),
                critical=False,
            )
        )
        if qualifier == "qes":
            builder = builder.add_extension(
                x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.5.5.7.1.3"), _qc_statements_der()), critical=False
            )
        return key, builder.sign(self.issuing_key, hashes.SHA256())

    def trusted_list(self) -> str:
        issuing_b64 = base64.b64encode(self.der(self.issuing)).decode()
        tsa_b64 = base64.b64encode(self.der(self.tsa)).decode()
        start = "2020-01-01T00:00:00Z"
        return f"""<?xml version="1.0" encoding="UTF-8"?>
<TrustServiceStatusList xmlns="http://uri.etsi.org/02231/v2#" xmlns:tns="http://uri.etsi.org/TrstSvc/SvcInfoExt/eSigDir-1999-93-EC-TrustedList/#" xmlns:xades="http://uri.etsi.org/01903/v1.3.2#" TSLTag="http://uri.etsi.org/19612/TSLTag">
 <SchemeInformation><TSLVersionIdentifier>5</TSLVersionIdentifier><TSLSequenceNumber>1</TSLSequenceNumber>
  <TSLType>http://uri.etsi.org/TrstSvc/TrustedList/TSLType/EUgeneric</TSLType>
  <SchemeOperatorName><Name xml:lang="en">SignLab test</Name></SchemeOperatorName>
  <ListIssueDateTime>{start}</ListIssueDateTime></SchemeInformation>
 <TrustServiceProviderList><TrustServiceProvider>
  <TSPInformation><TSPName><Name xml:lang="en">SignLab Test TSP</Name></TSPName></TSPInformation>
  <TSPServices>
   <TSPService><ServiceInformation>
    <ServiceTypeIdentifier>http://uri.etsi.org/TrstSvc/Svctype/CA/QC</ServiceTypeIdentifier>
    <ServiceName><Name xml:lang="en">SignLab Test Issuing CA</Name></ServiceName>
    <ServiceDigitalIdentity><DigitalId><X509Certificate>{issuing_b64}</X509Certificate></DigitalId></ServiceDigitalIdentity>
    <ServiceStatus>http://uri.etsi.org/TrstSvc/TrustedList/Svcstatus/granted</ServiceStatus>
    <StatusStartingTime>{start}</StatusStartingTime>
    <ServiceInformationExtensions>
     <Extension Critical="true"><tns:Qualifications><tns:QualificationElement>
      <tns:Qualifiers><tns:Qualifier uri="http://uri.etsi.org/TrstSvc/TrustedList/SvcInfoExt/QCQSCDManagedOnBehalf"/></tns:Qualifiers>
      <tns:CriteriaList assert="atLeastOne"><tns:PolicySet><tns:PolicyIdentifier><xades:Identifier>{QCP_N_QSCD}</xades:Identifier></tns:PolicyIdentifier></tns:PolicySet></tns:CriteriaList>
     </tns:QualificationElement></tns:Qualifications></Extension>
     <Extension Critical="true"><AdditionalServiceInformation><URI xml:lang="en">http://uri.etsi.org/TrstSvc/TrustedList/SvcInfoExt/ForeSignatures</URI></AdditionalServiceInformation></Extension>
    </ServiceInformationExtensions>
   </ServiceInformation></TSPService>
   <TSPService><ServiceInformation>
    <ServiceTypeIdentifier>http://uri.etsi.org/TrstSvc/Svctype/TSA/QTST</ServiceTypeIdentifier>
    <ServiceName><Name xml:lang="en">SignLab Test TSA</Name></ServiceName>
    <ServiceDigitalIdentity><DigitalId><X509Certificate>{tsa_b64}</X509Certificate></DigitalId></ServiceDigitalIdentity>
    <ServiceStatus>http://uri.etsi.org/TrstSvc/TrustedList/Svcstatus/granted</ServiceStatus>
    <StatusStartingTime>{start}</StatusStartingTime>
   </ServiceInformation></TSPService>
  </TSPServices>
 </TrustServiceProvider></TrustServiceProviderList>
</TrustServiceStatusList>
"""  # noqa: E501 - the trusted list's XML, one element per line as ETSI TS 119 612 shows it


@dataclass
class PkiTsp:
    """The test PKI seen as the TSP the portal's ``TrustStore`` reads: certificates, current CRLs
    (made on each call, as the CA serves them) and the trusted list."""

    pki: TestPki

    def certificate(self, name: str) -> bytes:
        return self.pki.der({"root": self.pki.root, "issuing": self.pki.issuing, "tsa": self.pki.tsa}[name])

    def crl(self, name: str) -> bytes:
        if name == "root":
            return self.pki.crl(self.pki.root_key, self.pki.root)
        return self.pki.crl(self.pki.issuing_key, self.pki.issuing)

    def trusted_list(self) -> bytes:
        return self.pki.trusted_list().encode()


def _ca_cert(subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey, signing_key: ec.EllipticCurvePrivateKey,
             *, path_length: int | None, crl_name: str | None) -> x509.Certificate:
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signing_key.public_key()), critical=False)
    )
    if crl_name:
        builder = builder.add_extension(
            x509.CRLDistributionPoints([x509.DistributionPoint(
                [x509.UniformResourceIdentifier(f"{PUBLIC_BASE}/crl/{crl_name}")], None, None, None)]),
            critical=False,
        )
    return builder.sign(signing_key, hashes.SHA256())


def build_pki(label: str = "SignLab Test") -> TestPki:
    root_key = ec.generate_private_key(ec.SECP256R1())
    root_name = _name(f"{label} Root CA")
    root = _ca_cert(root_name, root_name, root_key, root_key, path_length=1, crl_name=None)
    issuing_key = ec.generate_private_key(ec.SECP256R1())
    issuing = _ca_cert(_name(f"{label} Issuing CA"), root_name, issuing_key, root_key, path_length=0, crl_name="root.crl")
    tsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.now(UTC)
    tsa = (
        x509.CertificateBuilder().subject_name(_name(f"{label} TSA")).issuer_name(issuing.subject)
        .public_key(tsa_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=365))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        .add_extension(x509.KeyUsage(True, True, False, False, False, False, False, False, False), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuing_key.public_key()), critical=False)
        .add_extension(
            x509.CRLDistributionPoints([x509.DistributionPoint(
                [x509.UniformResourceIdentifier(f"{PUBLIC_BASE}/crl/issuing.crl")], None, None, None)]),
            critical=False,
        )
        .sign(issuing_key, hashes.SHA256())
    )
    return TestPki(root_key, root, issuing_key, issuing, tsa_key, tsa)


@pytest.fixture(scope="session")
def pki() -> TestPki:
    """The test PKI (session-wide: building keys costs time)."""
    return build_pki()


@pytest.fixture(scope="session")
def pki_tsp(pki: TestPki) -> PkiTsp:
    """The test PKI as the TSP source of the portal's ``TrustStore``."""
    return PkiTsp(pki)


@pytest.fixture(scope="session")
def other_pki() -> TestPki:
    """An unrelated PKI, for wrong-trust-root tests."""
    return build_pki("Elsewhere")


@dataclass
class OneTimeSignature:
    """What the test SSASP returns for one digest."""

    signature: bytes  # CMS DER (P/C) or JWS compact (J, as ASCII bytes)
    leaf: x509.Certificate
    material: ValidationMaterial


def one_time_sign(pki: TestPki, digest: bytes, *, qualifier: str, fmt: str, label: str = "doc") -> OneTimeSignature:
    """Sign a digest with a fresh key and short-term certificate (stands in for SSASP steps 6-9)."""
    key, leaf = pki.issue_leaf(qualifier)
    material = pki.material(leaf)
    if fmt == "jades":
        from joserfc import jws
        from joserfc.jwk import ECKey
        from joserfc.registry import HeaderParameter

        header = {
            "alg": "ES256",
            "x5c": [base64.b64encode(pki.der(c)).decode() for c in (leaf, pki.issuing)],
            "sigT": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "crit": ["sigT", "sigD"],
            "sigD": {
                "mId": "http://uri.etsi.org/19182/ObjectIdByURIHash",
                "pars": [label],
                "hashM": "S256",
                "hashV": [base64.urlsafe_b64encode(digest).rstrip(b"=").decode()],
            },
        }
        jwk = ECKey.import_key(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption()))
        registry = jws.JWSRegistry(
            header_registry={
                "sigT": HeaderParameter("JAdES claimed signing time", "str"),
                "sigD": HeaderParameter("JAdES signed data object references", lambda v: isinstance(v, dict)),
            },
            algorithms=["ES256"],
        )
        token = jws.serialize_compact(header, b"", jwk, registry=registry)
        return OneTimeSignature(token.encode(), leaf, material)
    signer = signers.SimpleSigner(
        signing_cert=_asn1(leaf),
        signing_key=_key_info(key),
        cert_registry=SimpleCertificateStore.from_certs([_asn1(pki.issuing), pki.root_asn1]),
    )
    cms_obj = asyncio.run(signer.async_sign(digest, "sha256", use_pades=(fmt == "pades")))
    return OneTimeSignature(cms_obj.dump(), leaf, material)


@pytest.fixture
def sign_digest(pki: TestPki) -> Callable[..., OneTimeSignature]:
    """``sign_digest(digest, qualifier="qes", fmt="pades")`` → :class:`OneTimeSignature`."""

    def _sign(digest: bytes, qualifier: str = "qes", fmt: str = "pades", label: str = "doc") -> OneTimeSignature:
        return one_time_sign(pki, digest, qualifier=qualifier, fmt=fmt, label=label)

    return _sign


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


@pytest.fixture(scope="module")
def trust(pki: TestPki) -> Any:
    """What the validator trusts: the test root, the test trusted list, the test TSP's current data."""
    from services.portal.validation import TrustSettings, load_registry

    return TrustSettings(pki.root_asn1, load_registry(pki.trusted_list()), pki.material(), "test list")


@pytest.fixture
def signed_pdf(pki: TestPki, sign_digest: Callable[..., OneTimeSignature]) -> Callable[..., bytes]:
    """``signed_pdf(level, qualifier="qes", visible=False, pdf=<employment contract>)``: the sample PDF
    signed at ``level`` with the portal's default /Contents reservation for that level."""
    from services.portal import pades
    from services.portal.documents import Qualifier
    from services.portal.settings import PortalSettings

    reservation = PortalSettings.model_fields["pdf_bytes_reserved"].default
    contract = (Path(__file__).parents[3] / "services" / "portal" / "samples" / "employment-contract.pdf").read_bytes()

    def _signed(level: Any, qualifier: str = "qes", visible: bool = False, pdf: bytes = contract) -> bytes:
        prep = asyncio.run(pades.prepare_pdf(pdf, label="c.pdf", qualifier=Qualifier(qualifier), visible=visible,
                                             signer_name="Kari Nordmann",
                                             bytes_reserved=pades.contents_reservation(level, reservation)))
        sig = sign_digest(prep.digest, qualifier, "pades")
        return asyncio.run(pades.augment_pdf(prep, sig.signature, level=level, timestamper=pki.timestamper(),
                                             root=pki.root_asn1, material=sig.material))

    return _signed


def random_id() -> str:
    return secrets.token_hex(4)


@pytest.fixture
def other_sign_digest(other_pki: TestPki) -> Callable[..., OneTimeSignature]:
    """Like :func:`sign_digest`, with a certificate from an unrelated PKI (wrong trust root)."""

    def _sign(digest: bytes, qualifier: str = "qes", fmt: str = "pades") -> OneTimeSignature:
        return one_time_sign(other_pki, digest, qualifier=qualifier, fmt=fmt)

    return _sign


# ---------------------------------------------------------------- the real ecosystem (integration tests)


class Stack(Ecosystem):
    """IdP, CA, signer and portal (:class:`testkit.ecosystem.Ecosystem`) and a second
    portal, ``portal-short-ttl``, with a 2-second transaction TTL for the expiry tests."""

    def __init__(self, root: Path, hsm: Any) -> None:
        portal_port, short_port = free_port(), free_port()
        self.short_ttl_portal_url = f"http://127.0.0.1:{short_port}"
        callbacks = [f"http://127.0.0.1:{port}/sign/callback" for port in (portal_port, short_port)]
        super().__init__(root, hsm=hsm, ports={"portal": portal_port}, settings={
            "signer": {"portal_redirect_uris": callbacks}, "portal": {"transaction_ttl_seconds": 300}})
        # The same partner with SIGNLAB_PORTAL_TRANSACTION_TTL_SECONDS=2, for the expiry tests.
        self.start_instance("portal", "portal-short-ttl", port=short_port, transaction_ttl_seconds=2)

    @property
    def signer_settings(self) -> Any:
        return self.settings_of("signer")

    @property
    def portal_app(self) -> Any:
        return self.app("portal")

    def create(self, documents: list[dict[str, Any]], *, portal_url: str | None = None, **options: Any) -> dict[str, Any]:
        """``POST /api/v1/sign-requests`` as the lab's partner application; the 201 body."""
        created = requests.post(f"{portal_url or self.portal_url}/api/v1/sign-requests", auth=self.partner,
                                json={"documents": documents, **options}, timeout=60)
        assert created.status_code == 201, created.text
        return dict(created.json())

    def sign(self, documents: list[dict[str, Any]], *, approve: bool = True, **options: Any) -> dict[str, Any]:
        """Create a request through the API, run the browser, return the transaction JSON."""
        body = self.create(documents, **options)
        self.browse(body["review_url"], approve=approve)
        return dict(requests.get(body["status_url"], auth=self.partner, timeout=30).json())

    def browse(self, review_url: str, *, approve: bool = True, headers: dict[str, str] | None = None,
               pause: float = 0.0) -> requests.Response:
        """The signer's browser: confirm at the portal's review page, (wait ``pause`` seconds,)
        follow redirects, submit consent, until a portal answers — in the certificate-first flow
        twice: the first answer sends the browser back to the signer to approve the hashes."""
        session = requests.Session()
        session.headers.update(headers or {})
        authorize_url = confirm_review(review_url, session)
        time.sleep(pause)
        return browse_to_portal(authorize_url, (self.portal_url, self.short_ttl_portal_url), session=session,
                                approve=approve)


@pytest.fixture(scope="session")
def stack(signer_settings: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The real ecosystem, started once for all portal integration tests."""
    with Stack(tmp_path_factory.mktemp("stack"), signer_settings) as env:
        yield env
