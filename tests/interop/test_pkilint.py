"""pkilint over everything the TSP issues during representative flows: certificates, CRLs, OCSP.

Flows run first (portal QES PAdES B-LT, portal AdES CAdES B-T, certificate-first QES, one
revocation), then every certificate in the CA's database is linted, with the infrastructure
certificates, both CRLs and OCSP answers (good / revoked / unknown, POST and GET).

pkilint's own CLI entry points are used (``pkilint.bin.<tool>.main(argv)``, in process for speed,
with JSON output parsed; one real subprocess per installed console script proves the same).
Expectations (`docs/interop.md`):

* Leaf QES / AdES (revocation profile ``crl-ocsp``, the default): ``lint_etsi_cert lint -d -s
  WARNING`` → no finding at WARNING or above; the detected type is
  ``QCP-N-QSCD-EIDAS-FINAL-CERTIFICATE`` (QES) / ``NCP-NATURAL-PERSON-CERTIFICATE`` (AdES); RFC 5280
  ``lint_pkix_cert`` and the issuer/subject chain linter are clean as well.
* Leaf QES / AdES in the revocation profile ``short-term-no-revocation`` (built by the CA's own
  profile code with this run's issuing CA): exactly the two findings of EN 319 412-2 GEN-4.3.11-2 /
  GEN-4.4.1-8 (no CRL DP and no OCSP pointer; pkilint 0.13.3 has no val-assured exemption), and
  nothing from ``lint_pkix_cert`` or the chain linter.
* Root, issuing CA, TSA, OCSP responder, trusted-list signer: ``lint_pkix_cert`` and
  ``lint_pkix_signer_signee_cert_chain`` clean at WARNING. pkilint has no ETSI profile for CA,
  TSA (EN 319 422) or OCSP-responder certificates: ``lint_etsi_cert -d`` falls back to an
  end-entity legal-person profile, and its findings there are profile mismatches, not defects —
  asserted exactly (the known codes only), so anything new shows up.
* CRLs: ``lint_crl -t CRL|ARL -p PKIX`` and ``-p BR`` clean at WARNING, also with a revoked entry.
* OCSP responses: ``lint_ocsp_response`` clean at WARNING.
"""

from __future__ import annotations

import base64
import contextlib
import gc
import io
import json
import subprocess
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from pkilint.bin import (
    lint_crl,
    lint_etsi_cert,
    lint_ocsp_response,
    lint_pkix_cert,
    lint_pkix_signer_signee_cert_chain,
)

from services.ca.pki import load_hierarchy
from services.ca.profiles import (
    SHORT_TERM_LINT_FINDINGS,
    CertificateUrls,
    Profile,
    RevocationProfile,
    SubjectIdentity,
    build_end_entity,
)
from services.ca.store import CertificateStore

pytestmark = pytest.mark.hsm

BIN = Path(sys.executable).parent
QES_TYPE = "QCP-N-QSCD-EIDAS-FINAL-CERTIFICATE"
ADES_TYPE = "NCP-NATURAL-PERSON-CERTIFICATE"
INFRASTRUCTURE = ("root", "issuing", "tsa", "ocsp", "tl-signer")
ISSUER_OF = {"issuing": "root", "tsa": "root", "ocsp": "issuing", "tl-signer": "root"}

# lint_etsi_cert -d on certificates that are not ETSI end-entity signing certificates: pkilint
# picks NCP-LEGAL-PERSON-CERTIFICATE; these findings are that profile not applying, not defects.
ETSI_PROFILE_MISMATCH = {
    "root": {"etsi.en_319_412_2.authority_key_identifier_extension_absent",  # self-signed: no AKI needed
             "etsi.en_319_412_2.certificate_policies_extension_absent",
             "etsi.en_319_412_2.authority_info_access_extension_absent",
             "etsi.en_319_412_2.gen-4.3.11-2.crldp_extension_missing",  # nobody revokes the root
             "etsi.en_319_412_2.nat-4.3.2-1.unknown_key_usage_setting"},  # keyCertSign+cRLSign
    "issuing": {"etsi.en_319_412_2.nat-4.3.2-1.unknown_key_usage_setting"},
    "tsa": {"etsi.en_319_412_2.certificate_policies_extension_absent",
            "etsi.en_319_412_2.gen-4.3.10-1.eku_extension_is_critical"},  # RFC 3161 §2.3 requires critical
    "ocsp": {"etsi.en_319_412_2.certificate_policies_extension_absent",
             "etsi.en_319_412_2.gen-4.3.11-2.crldp_extension_missing",  # id-pkix-ocsp-nocheck instead
             "etsi.en_319_412_2.gen-4.4.1-8.ocsp_aia_access_method_absent"},
    "tl-signer": {"etsi.en_319_412_2.certificate_policies_extension_absent",
                  "etsi.en_319_412_2.nat-4.3.2-1.mixed_key_usage_setting"},
}


@dataclass(frozen=True)
class Lint:
    """One pkilint run: exit code, the parsed JSON findings, stderr."""

    code: int
    findings: list[dict[str, str]]  # {"validator", "node_path", "severity", "code", "message"}
    stderr: str

    @property
    def codes(self) -> set[str]:
        return {f["code"] for f in self.findings}


def _parse(code: int, stdout: str, stderr: str) -> Lint:
    findings = []
    if stdout.strip():
        for result in json.loads(stdout)["results"]:
            for finding in result["finding_descriptions"]:
                findings.append({"validator": result["validator"], "node_path": result["node_path"], **finding})
    # The exit code is the number of findings at/above the threshold (1 also means "failed to load").
    assert code == min(len(findings), 255), (code, stdout, stderr)
    assert "Failed to load" not in stderr, stderr
    return Lint(code, findings, stderr)


def run(main: Callable[[list[str]], int], *argv: str) -> Lint:
    """A pkilint CLI ``main`` in process, JSON output parsed."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
        # pkilint's CLI opens its inputs with argparse.FileType and never closes them (harmless in
        # a process that exits right after); in process the files are closed when main returns.
        warnings.simplefilter("ignore", ResourceWarning)
        code = main([*argv[:1], "-f", "JSON", *argv[1:]])
        gc.collect()
    return _parse(code, out.getvalue(), err.getvalue())


def run_installed(script: str, *argv: str) -> Lint:
    """The installed console script, as a user runs it."""
    answer = subprocess.run([str(BIN / script), *argv[:1], "-f", "JSON", *argv[1:]], capture_output=True, check=False, text=True,
                            timeout=60)
    return _parse(answer.returncode, answer.stdout, answer.stderr)


def _pem(path: Path, der: bytes) -> Path:
    path.write_bytes(x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM))
    return path


@dataclass
class Material:
    """What the flows made the TSP issue."""

    leaves: list[Any]  # CertificateRecord of every issued certificate
    infrastructure: dict[str, bytes]
    crls: dict[str, bytes]
    ocsp: dict[str, bytes]
    revoked_serial: str


def _ocsp_request(leaf_der: bytes, issuer_der: bytes, serial: int | None = None) -> bytes:
    leaf, issuer = x509.load_der_x509_certificate(leaf_der), x509.load_der_x509_certificate(issuer_der)
    if serial is None:
        builder = ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, hashes.SHA256())
    else:  # a serial this CA never issued
        name_hash = hashes.Hash(hashes.SHA256())
        name_hash.update(issuer.subject.public_bytes())
        builder = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
            name_hash.finalize(), _spki_key_hash(issuer), serial, hashes.SHA256())
    return builder.add_extension(x509.OCSPNonce(b"interop-nonce-0123456789"), critical=False).build().public_bytes(
        serialization.Encoding.DER)


def _spki_key_hash(issuer: x509.Certificate) -> bytes:
    """SHA-256 of the issuer's subjectPublicKey BIT STRING value (RFC 6960 issuerKeyHash)."""
    from asn1crypto import x509 as asn1_x509

    spki = asn1_x509.Certificate.load(issuer.public_bytes(serialization.Encoding.DER)).public_key
    digest = hashes.Hash(hashes.SHA256())
    digest.update(spki["public_key"].contents[1:])  # without the unused-bits octet
    return digest.finalize()


@pytest.fixture(scope="module")
def material(ecosystem: Any) -> Material:
    """Run the representative flows, revoke one certificate, collect everything to lint."""
    qes = ecosystem.portal_sign([{"sample": "employment-contract.pdf"}], qualifier="qes", format="pades",
                                level="B-LT", login_hint="kari-nordmann@no-bankid")
    assert qes["state"] == "completed", qes
    ades = ecosystem.portal_sign([{"sample": "meeting-minutes.txt"}], qualifier="ades", format="cades",
                                 level="B-T", login_hint="aino-virtanen@fi-bank")
    assert ades["state"] == "completed", ades
    ecosystem.service_authorization(num_signatures=1, login_hint="lukas-mueller@de-eidas")  # certificate-first
    infrastructure = {name: requests.get(f"{ecosystem.ca_url}/certs/{name}.crt", timeout=10).content
                      for name in INFRASTRUCTURE}
    revoked_serial = ades["signer"]["certificate_serial"]
    revoked = requests.post(f"{ecosystem.ca_url}/api/v1/certificates/{revoked_serial}/revoke", timeout=10,
                            json={"reason": "keyCompromise"},
                            headers={"Authorization": f"Bearer {ecosystem.ca_admin}"})
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked", revoked.text
    leaves = CertificateStore(ecosystem.ca_database).recent(10_000)
    by_serial = {r.serial: r for r in leaves}
    good_der = by_serial[qes["signer"]["certificate_serial"]].der
    revoked_der = by_serial[revoked_serial].der
    answers: dict[str, bytes] = {}
    for name, request in (("good", _ocsp_request(good_der, infrastructure["issuing"])),
                          ("revoked", _ocsp_request(revoked_der, infrastructure["issuing"])),
                          ("unknown", _ocsp_request(good_der, infrastructure["issuing"], serial=0x5157A7E))):
        answer = requests.post(f"{ecosystem.ca_url}/ocsp", data=request, timeout=10,
                               headers={"Content-Type": "application/ocsp-request"})
        assert answer.status_code == 200 and answer.headers["Content-Type"] == "application/ocsp-response"
        answers[name] = answer.content
    get_form = base64.b64encode(_ocsp_request(good_der, infrastructure["issuing"])).decode()
    answers["good-get"] = requests.get(f"{ecosystem.ca_url}/ocsp/{requests.utils.quote(get_form, safe='')}",
                                       timeout=10).content
    crls = {name: requests.get(f"{ecosystem.ca_url}/crl/{name}.crl", timeout=10).content for name in ("root", "issuing")}
    return Material(leaves, infrastructure, crls, answers, revoked_serial)


def test_every_leaf_certificate_is_etsi_clean(material: Material, tmp_path: Path) -> None:
    profiles = {r.profile for r in material.leaves}
    assert profiles == {"qes", "ades"}, profiles
    assert len(material.leaves) >= 3
    for record in material.leaves:
        # Default revocation profile: CRL DP + OCSP and no noRevAvail claiming the opposite (RFC 9608).
        oids = {e.oid.dotted_string for e in x509.load_der_x509_certificate(record.der).extensions}
        assert "2.5.29.31" in oids and "2.5.29.56" not in oids
        path = _pem(tmp_path / f"{record.serial}.pem", record.der)
        etsi = run(lint_etsi_cert.main, "lint", "-d", "-o", "-s", "WARNING", str(path))
        assert etsi.findings == [], (record.profile, record.serial, etsi.findings)
        detected = etsi.stderr.strip().splitlines()[-1]
        assert detected == {"qes": QES_TYPE, "ades": ADES_TYPE}[record.profile], (record.serial, detected)
        # Lint explicitly against the intended type too (detection could pick a laxer one).
        typed = run(lint_etsi_cert.main, "lint", "-t", detected, "-s", "WARNING", str(path))
        assert typed.findings == [], typed.findings
        assert run(lint_pkix_cert.main, "lint", "-s", "WARNING", str(path)).findings == []
        issuing = _pem(tmp_path / "issuing.pem", material.infrastructure["issuing"])
        chain = run(lint_pkix_signer_signee_cert_chain.main, "lint", "-s", "WARNING", str(issuing), str(path))
        assert chain.findings == [], chain.findings


@pytest.mark.parametrize("profile", list(Profile))
def test_short_term_profile_has_exactly_the_documented_finding(ecosystem: Any, tmp_path: Path, profile: Profile) -> None:
    settings = ecosystem.settings_of("ca")
    issuing = load_hierarchy(settings.data_dir).issuing
    now = datetime.now(UTC).replace(microsecond=0)
    leaf = build_end_entity(
        issuer=issuing, public_key=ec.generate_private_key(ec.SECP256R1()).public_key(),
        subject=SubjectIdentity(country="NO", given_name="Kari", family_name="Nordmann",
                                serial_number="PNONO-01017012345"),
        profile=profile, serial=x509.random_serial_number(), not_before=now - timedelta(seconds=60),
        not_after=now + timedelta(minutes=settings.cert_validity_minutes),
        urls=CertificateUrls(ca_issuers=settings.public_url_for("/certs/issuing.crt"),
                             ocsp=settings.public_url_for("/ocsp"), crl=settings.public_url_for("/crl/issuing.crl")),
        pds_url=settings.pds_url, revocation=RevocationProfile.SHORT_TERM_NO_REVOCATION)
    path = _pem(tmp_path / "short-term.pem", leaf.public_bytes(serialization.Encoding.DER))
    etsi = run(lint_etsi_cert.main, "lint", "-d", "-o", "-s", "WARNING", str(path))
    assert etsi.stderr.strip().splitlines()[-1] == {Profile.QES: QES_TYPE, Profile.ADES: ADES_TYPE}[profile]
    assert etsi.codes == SHORT_TERM_LINT_FINDINGS, etsi.findings
    assert {f["severity"] for f in etsi.findings} == {"ERROR"}
    assert run(lint_pkix_cert.main, "lint", "-s", "WARNING", str(path)).findings == []
    issuer = _pem(tmp_path / "issuing.pem", issuing.der)
    assert run(lint_pkix_signer_signee_cert_chain.main, "lint", "-s", "WARNING", str(issuer), str(path)).findings == []


def test_installed_cli_agrees_on_a_qes_leaf(material: Material, tmp_path: Path) -> None:
    record = next(r for r in material.leaves if r.profile == "qes")
    path = _pem(tmp_path / "qes.pem", record.der)
    lint = run_installed("lint_etsi_cert", "lint", "-d", "-o", "-s", "WARNING", str(path))
    assert (lint.code, lint.findings) == (0, [])
    assert lint.stderr.strip().splitlines()[-1] == QES_TYPE
    # Below WARNING pkilint still reports what it noticed; none of it may be an error in disguise.
    everything = run_installed("lint_etsi_cert", "lint", "-t", QES_TYPE, "-s", "INFO", str(path))
    assert {f["severity"] for f in everything.findings} <= {"INFO", "NOTICE"}, everything.findings


@pytest.mark.parametrize("name", INFRASTRUCTURE)
def test_infrastructure_certificates(material: Material, tmp_path: Path, name: str) -> None:
    path = _pem(tmp_path / f"{name}.pem", material.infrastructure[name])
    pkix = run(lint_pkix_cert.main, "lint", "-s", "WARNING", str(path))
    assert pkix.findings == [], pkix.findings
    if name in ISSUER_OF:
        issuer = _pem(tmp_path / "issuer.pem", material.infrastructure[ISSUER_OF[name]])
        chain = run(lint_pkix_signer_signee_cert_chain.main, "lint", "-s", "WARNING", str(issuer), str(path))
        assert chain.findings == [], chain.findings
    etsi = run(lint_etsi_cert.main, "lint", "-d", "-o", "-s", "WARNING", str(path))
    assert etsi.stderr.strip().splitlines()[-1] == "NCP-LEGAL-PERSON-CERTIFICATE"
    assert etsi.codes == ETSI_PROFILE_MISMATCH[name], etsi.findings


@pytest.mark.parametrize("name", ["root", "issuing"])
@pytest.mark.parametrize("profile", ["PKIX", "BR"])
def test_crls(material: Material, tmp_path: Path, name: str, profile: str) -> None:
    path = tmp_path / f"{name}.crl"
    path.write_bytes(material.crls[name])
    crl = x509.load_der_x509_crl(material.crls[name])
    if name == "issuing":
        assert crl.get_revoked_certificate_by_serial_number(int(material.revoked_serial, 16)) is not None
    kind = "ARL" if name == "root" else "CRL"  # the root's CRL covers CA certificates only
    lint = run(lint_crl.main, "lint", "-t", kind, "-p", profile, "-s", "WARNING", str(path))
    assert lint.findings == [], lint.findings


@pytest.mark.parametrize("name", ["good", "revoked", "unknown", "good-get"])
def test_ocsp_responses(material: Material, tmp_path: Path, name: str) -> None:
    answer = ocsp.load_der_ocsp_response(material.ocsp[name])
    assert answer.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
    expected = {"good": ocsp.OCSPCertStatus.GOOD, "good-get": ocsp.OCSPCertStatus.GOOD,
                "revoked": ocsp.OCSPCertStatus.REVOKED, "unknown": ocsp.OCSPCertStatus.UNKNOWN}[name]
    assert answer.certificate_status == expected
    path = tmp_path / f"{name}.ocsp"
    path.write_bytes(material.ocsp[name])
    lint = run(lint_ocsp_response.main, "lint", "-s", "WARNING", str(path))
    assert lint.findings == [], lint.findings
