"""The CA hierarchy on disk: keys (mode 0600) and certificates under ``<data_dir>/pki``.

Root CA (EC P-384) → issuing CA for short-term natural-person signing certificates (EC P-384);
the root also certifies the TSA (EKU timeStamping only, critical) and the trusted-list signer
(EKU tslSigning); the issuing CA certifies a delegated OCSP responder (EKU OCSPSigning +
ocsp-nocheck) that answers for the certificates it issued.

Limits: keys are software keys in PEM files, not in an HSM; this is a simulation, not a key ceremony.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from shared.lab_pki import KeyPair

__all__ = [
    "CA_NAMES",
    "Hierarchy",
    "ORGANIZATION",
    "ORGANIZATION_ID",
    "TSL_SIGNING_EKU",
    "create_hierarchy",
    "load_hierarchy",
    "unlisted_ca",
]

ORGANIZATION = "SignLab Trust Services (simulation)"
ORGANIZATION_ID = "NTRNO-999999999"
"""EN 319 412-1 organizationIdentifier of the simulated TSP (a number no real company has)."""
TSL_SIGNING_EKU = ObjectIdentifier("0.4.0.2231.3.0")
"""id-tsl-kp-tslSigning (ETSI TS 119 612): the EKU of a trusted-list signer."""

CA_NAMES = ("root", "issuing", "tsa", "ocsp", "tl-signer")
"""The key/certificate pairs of the hierarchy, by file name."""


@dataclass(frozen=True)
class Hierarchy:
    """The provisioned hierarchy: root, issuing CA, TSA, OCSP responder, trusted-list signer."""

    root: KeyPair
    issuing: KeyPair
    tsa: KeyPair
    ocsp: KeyPair
    tl_signer: KeyPair

    def by_name(self, name: str) -> KeyPair:
        """The pair called ``name`` (one of :data:`CA_NAMES`)."""
        return {"root": self.root, "issuing": self.issuing, "tsa": self.tsa, "ocsp": self.ocsp,
                "tl-signer": self.tl_signer}[name]


def _pki_dir(data_dir: Path) -> Path:
    path = data_dir / "pki"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def _write_private(path: Path, data: bytes) -> None:
    # Created 0600 from the start (O_EXCL): the key is never readable by others, not even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _name(common_name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "NO"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
        x509.NameAttribute(NameOID.ORGANIZATION_IDENTIFIER, ORGANIZATION_ID),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


def _key_usage(*, cert_sign: bool = False, digital_signature: bool = False,
               non_repudiation: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature, content_commitment=non_repudiation, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign, crl_sign=cert_sign,
        encipher_only=False, decipher_only=False,
    )


def _builder(subject: x509.Name, issuer: KeyPair | None, public_key: ec.EllipticCurvePublicKey,
             now: dt.datetime, days: int) -> x509.CertificateBuilder:
    issuer_name = issuer.cert.subject if issuer else subject
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False)
    return builder


def _crl_dp(url: str) -> x509.CRLDistributionPoints:
    return x509.CRLDistributionPoints([x509.DistributionPoint(
        full_name=[x509.UniformResourceIdentifier(url)], relative_name=None, reasons=None, crl_issuer=None)])


def _aia(ca_issuers: str, ocsp: str | None = None) -> x509.AuthorityInformationAccess:
    items = [x509.AccessDescription(x509.oid.AuthorityInformationAccessOID.CA_ISSUERS,
                                    x509.UniformResourceIdentifier(ca_issuers))]
    if ocsp:
        items.append(x509.AccessDescription(x509.oid.AuthorityInformationAccessOID.OCSP,
                                            x509.UniformResourceIdentifier(ocsp)))
    return x509.AuthorityInformationAccess(items)


BuildFn = Callable[[ec.EllipticCurvePrivateKey], x509.Certificate]


@functools.cache
def unlisted_ca() -> KeyPair:
    """A self-signed CA outside the hierarchy and the trusted list, made in memory once per process
    (the lab fault ``unlisted-ca``: the certificates it issues chain to nothing a validator trusts)."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (_builder(_name("SignLab Unlisted CA (on no trusted list)"), None, key.public_key(),
                     dt.datetime.now(dt.UTC), 365)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(cert_sign=True), critical=True)
            .sign(key, hashes.SHA256()))
    return KeyPair(key, cert)


def create_hierarchy(data_dir: Path, public_base: str, *, now: dt.datetime | None = None) -> Hierarchy:
    """Create every missing key/certificate pair of the hierarchy; keep the ones that exist.

    :param public_base: the public certificate base written into AIA and CRL DP URLs.
    """
    now = now or dt.datetime.now(dt.UTC)
    pki = _pki_dir(data_dir)
    made: dict[str, KeyPair] = {}

    def ensure(name: str, curve: ec.EllipticCurve, build: BuildFn) -> KeyPair:
        key_path, cert_path = pki / f"{name}.key.pem", pki / f"{name}.crt.pem"
        if key_path.exists() and cert_path.exists():
            pair = _load_pair(key_path, cert_path)
        else:
            for stale in (key_path, cert_path):
                stale.unlink(missing_ok=True)
            key = ec.generate_private_key(curve)
            cert = build(key)
            _write_private(key_path, key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
            cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
            pair = KeyPair(key, cert)
        made[name] = pair
        return pair

    def build_root(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
        return (
            _builder(_name("SignLab Root CA"), None, key.public_key(), now, 20 * 365)
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .add_extension(_key_usage(cert_sign=True), critical=True)
            .sign(key, hashes.SHA384())
        )

    root = ensure("root", ec.SECP384R1(), build_root)
    root_aia = _aia(f"{public_base}/certs/root.crt")
    root_dp = _crl_dp(f"{public_base}/crl/root.crl")

    def build_issuing(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
        return (
            _builder(_name("SignLab Short-Term Signing CA"), root, key.public_key(), now, 10 * 365)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(cert_sign=True), critical=True)
            .add_extension(x509.CertificatePolicies([x509.PolicyInformation(
                x509.oid.CertificatePoliciesOID.ANY_POLICY, None)]), critical=False)
            .add_extension(root_aia, critical=False)
            .add_extension(root_dp, critical=False)
            .sign(root.key, hashes.SHA384())
        )

    issuing = ensure("issuing", ec.SECP384R1(), build_issuing)

    def build_tsa(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
        return (
            _builder(_name("SignLab Time-Stamping Authority"), root, key.public_key(), now, 5 * 365)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(digital_signature=True), critical=True)
            # RFC 3161 §2.3: timeStamping must be the only EKU, and critical.
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
            .add_extension(root_aia, critical=False)
            .add_extension(root_dp, critical=False)
            .sign(root.key, hashes.SHA384())
        )

    ensure("tsa", ec.SECP256R1(), build_tsa)

    def build_ocsp(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
        return (
            _builder(_name("SignLab OCSP Responder"), issuing, key.public_key(), now, 2 * 365)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(digital_signature=True), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), critical=False)
            # RFC 6960 §4.2.2.2.1: the responder's own certificate is not checked for revocation.
            .add_extension(x509.OCSPNoCheck(), critical=False)
            .add_extension(_aia(f"{public_base}/certs/issuing.crt"), critical=False)
            .sign(issuing.key, hashes.SHA384())
        )

    ensure("ocsp", ec.SECP256R1(), build_ocsp)

    def build_tl_signer(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
        return (
            _builder(_name("SignLab Trusted List Signer"), root, key.public_key(), now, 5 * 365)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(digital_signature=True, non_repudiation=True), critical=True)
            .add_extension(x509.ExtendedKeyUsage([TSL_SIGNING_EKU]), critical=False)
            .add_extension(root_aia, critical=False)
            .add_extension(root_dp, critical=False)
            .sign(root.key, hashes.SHA384())
        )

    ensure("tl-signer", ec.SECP256R1(), build_tl_signer)
    return Hierarchy(root=made["root"], issuing=made["issuing"], tsa=made["tsa"], ocsp=made["ocsp"],
                     tl_signer=made["tl-signer"])


def _load_pair(key_path: Path, cert_path: Path) -> KeyPair:
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{key_path} is not an EC private key")
    return KeyPair(key, x509.load_pem_x509_certificate(cert_path.read_bytes()))


def load_hierarchy(data_dir: Path) -> Hierarchy:
    """Load the provisioned hierarchy; raise ``FileNotFoundError`` naming what is missing."""
    pki = data_dir / "pki"
    pairs = {}
    for name in CA_NAMES:
        key_path, cert_path = pki / f"{name}.key.pem", pki / f"{name}.crt.pem"
        if not (key_path.exists() and cert_path.exists()):
            raise FileNotFoundError(f"{cert_path} or its key is missing: run the CA provisioning (signlab up)")
        pairs[name] = _load_pair(key_path, cert_path)
    return Hierarchy(root=pairs["root"], issuing=pairs["issuing"], tsa=pairs["tsa"], ocsp=pairs["ocsp"],
                     tl_signer=pairs["tl-signer"])
