"""Small lab certificates for the EUDI Wallet trust framework: key pairs on disk, chains checked.

The wallet service's PID provider (trust anchor → signing certificate, the list operator) and the
IPSP's OpenID4VP verifier certificate are made here; the IPSP checks a PID's ``x5c`` chain against
the anchors of the trusted list with :func:`verify_chain` (cryptography's X.509 path validation).

These are not the TSP's certificates (``services/ca`` makes those with its own profiles and only
shares :class:`KeyPair`, a certificate with its key): they belong to the simulated EU wallet
ecosystem, are EC P-256, and carry only what the checks need (basic constraints, key usage, key
identifiers).

Limits: software keys in PEM files (mode 0600); no revocation of these certificates.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import ExtensionPolicy, PolicyBuilder, Store, VerificationError
from joserfc.jwk import ECKey

__all__ = ["KeyPair", "VerificationError", "load_or_create_pair", "verify_chain"]

ORGANIZATION = "SignLab lab trust framework (simulation)"


@dataclass(frozen=True)
class KeyPair:
    """A private key and its certificate."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @property
    def der(self) -> bytes:
        """The certificate, DER."""
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def x5c(self) -> list[str]:
        """The certificate as an ``x5c`` chain of one (standard base64 DER, RFC 7515 §4.1.6)."""
        return [base64.b64encode(self.der).decode("ascii")]

    @property
    def jose_key(self) -> ECKey:
        """The private key for joserfc."""
        return ECKey.import_key(self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "EU"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(subject: str, key: ec.EllipticCurvePrivateKey, issuer: KeyPair | None, *, ca: bool,
                 years: int) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    public = key.public_key()
    usage = dict.fromkeys(("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
                           "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only"), False)
    usage.update({"key_cert_sign": True, "crl_sign": True} if ca else {"digital_signature": True})
    builder = (x509.CertificateBuilder().subject_name(_name(subject))
               .issuer_name(issuer.cert.subject if issuer else _name(subject))
               .public_key(public).serial_number(x509.random_serial_number())
               .not_valid_before(now).not_valid_after(now + dt.timedelta(days=365 * years))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
               .add_extension(x509.KeyUsage(**usage), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False))
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False)
    return builder.sign(issuer.key if issuer else key, hashes.SHA256())


def load_or_create_pair(directory: Path, name: str, subject: str, issuer: KeyPair | None = None, *,
                        ca: bool = False) -> KeyPair:
    """The pair ``<name>.key.pem`` / ``<name>.crt.pem`` under ``directory``, created when missing:
    a CA certificate (10 years) or an end-entity signing certificate (3 years), issued by ``issuer``
    or self-signed."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    key_path, cert_path = directory / f"{name}.key.pem", directory / f"{name}.crt.pem"
    if key_path.exists() and cert_path.exists():
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{key_path} is not an EC private key")
        return KeyPair(key, x509.load_pem_x509_certificate(cert_path.read_bytes()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _certificate(subject, key, issuer, ca=ca, years=10 if ca else 3)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return KeyPair(key, cert)


def verify_chain(leaf: x509.Certificate, intermediates: Sequence[x509.Certificate],
                 anchors: Sequence[x509.Certificate], *, at: dt.datetime) -> None:
    """Check that ``leaf`` chains to one of ``anchors`` at time ``at`` (RFC 5280 path validation by
    cryptography; the end entity may carry any extensions: these are signing, not TLS, certificates).

    :raises VerificationError: no valid path.
    """
    if not anchors:
        raise VerificationError("no trust anchor is configured")
    verifier = (PolicyBuilder().store(Store(list(anchors))).time(at)
                .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ExtensionPolicy.permit_all())
                .build_client_verifier())
    verifier.verify(leaf, list(intermediates))
