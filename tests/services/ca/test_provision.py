"""Provisioning: the hierarchy's keys, profiles of the infrastructure certificates, idempotence."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from pydantic import SecretStr

from services.ca.pki import CA_NAMES, TSL_SIGNING_EKU, load_hierarchy
from services.ca.provision import provision
from services.ca.settings import CaSettings


@pytest.fixture
def settings(tmp_path: Path) -> CaSettings:
    return CaSettings(data_dir=tmp_path / "ca", admin_token=SecretStr("t"), trainer_token=SecretStr("trainer-token-of-the-tests"))


def test_keys_are_private_and_provisioning_is_idempotent(settings: CaSettings) -> None:
    first = provision(settings)
    assert all("created" in line for line in first[: len(CA_NAMES)])
    pki = settings.data_dir / "pki"
    for name in CA_NAMES:
        assert stat.S_IMODE((pki / f"{name}.key.pem").stat().st_mode) == 0o600
    assert stat.S_IMODE((settings.data_dir / "pseudonym.key").stat().st_mode) == 0o600
    assert stat.S_IMODE(pki.stat().st_mode) == 0o700
    before = {name: (pki / f"{name}.crt.pem").read_bytes() for name in CA_NAMES}
    second = provision(settings)
    assert all("kept" in line for line in second[: len(CA_NAMES)])
    assert before == {name: (pki / f"{name}.crt.pem").read_bytes() for name in CA_NAMES}


def test_hierarchy_profiles(settings: CaSettings) -> None:
    provision(settings)
    h = load_hierarchy(settings.data_dir)
    for ca in (h.root, h.issuing):
        assert isinstance(ca.key, ec.EllipticCurvePrivateKey) and ca.key.curve.name == "secp384r1"
        assert ca.cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    h.issuing.cert.verify_directly_issued_by(h.root.cert)
    tsa_eku = h.tsa.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert tsa_eku.critical and list(tsa_eku.value) == [ExtendedKeyUsageOID.TIME_STAMPING]
    h.ocsp.cert.verify_directly_issued_by(h.issuing.cert)
    assert list(h.ocsp.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.OCSP_SIGNING]
    h.ocsp.cert.extensions.get_extension_for_class(x509.OCSPNoCheck)
    assert list(h.tl_signer.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [TSL_SIGNING_EKU]
    aia = h.issuing.cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    assert aia[0].access_location.value == "http://ca.signlab.example.com:8002/certs/root.crt"


def test_missing_provisioning_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="signlab up"):
        load_hierarchy(tmp_path)


def test_settings_refuse_bad_values() -> None:
    from shared.errors import ConfigurationError

    env = {"SIGNLAB_CA_ADMIN_TOKEN": "x", "SIGNLAB_CA_BACKDATE_SECONDS": "120"}
    with pytest.raises(ConfigurationError, match="SIGNLAB_CA_BACKDATE_SECONDS"):
        CaSettings.from_env(env)
    with pytest.raises(ConfigurationError, match="SIGNLAB_CA_PDS_URL"):
        CaSettings.from_env({"SIGNLAB_CA_ADMIN_TOKEN": "x", "SIGNLAB_CA_PDS_URL": "http://x.example.com/pds"})
    with pytest.raises(ConfigurationError, match="SIGNLAB_CA_ADMIN_TOKEN"):
        CaSettings.from_env({})
