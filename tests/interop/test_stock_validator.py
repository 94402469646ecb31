"""A stock validator on the lab machine: poppler's ``pdfsig`` (NSS) trusting only the SignLab root.

The PDF is signed through the portal by the real services on loopback; ``pdfsig`` then checks the
certificate with NSS, which fetches the OCSP answer from the URL in the certificate
(``http://ca.signlab.example.com:<CA port>/ocsp``) through the system resolver. The verdict is
"Certificate is Trusted", and after the CA revokes that certificate "Certificate has been Revoked":
the second answer can only come from this CA's live OCSP responder, so the URLs in SignLab's
certificates really are fetchable here (docs/design.md §4: every URL in a certificate must be).

Needs the lab host name to resolve to 127.0.0.1 (``signlab hosts``; ``make test`` maps it as root).
The same check on the container deployment is in ``tests/compose/test_real_engine.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.x509.oid import AuthorityInformationAccessOID

from services.registry import LAB_HOSTS
from shared.clients.ca import CaClient
from shared.testing.stock_validator import pdfsig, stock_validator_problem
from signlab.hosts import lab_host_problems

pytestmark = pytest.mark.hsm


@pytest.fixture(scope="module")
def stock_validator() -> None:
    problem = stock_validator_problem() or "; ".join(lab_host_problems())
    if problem:
        pytest.skip(f"the stock validator cannot run here: {problem} (run 'sudo .venv/bin/signlab hosts')")


def test_pdfsig_trusts_a_signlab_pdf_and_sees_its_revocation_live(ecosystem, stock_validator, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    transaction = ecosystem.portal_sign([{"sample": "employment-contract.pdf"}], qualifier="qes", format="pades",
                                        level="B-B", login_hint="kari-nordmann@no-bankid")
    assert transaction["state"] == "completed", transaction
    signed = tmp_path / "signed.pdf"
    signed.write_bytes(requests.get(f"{ecosystem.portal_url}/api/v1/transactions/{transaction['transaction_id']}"
                                    "/documents/0", auth=ecosystem.partner, timeout=30).content)
    root = requests.get(f"{ecosystem.ca_url}/certs/root.crt", timeout=10).content

    first = pdfsig(signed, root, tmp_path / "first")
    assert first.signature == "Signature is Valid.", first.output
    assert first.certificate == "Certificate is Trusted.", first.output

    serial = transaction["signer"]["certificate_serial"]
    leaf = x509.load_der_x509_certificate(CaClient(ecosystem.ca_url).certificate_status(serial).certificate)
    ocsp = [d.access_location.value for d in leaf.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
            if d.access_method == AuthorityInformationAccessOID.OCSP]
    port = ecosystem.ca_url.rsplit(":", 1)[1]
    assert ocsp == [f"http://{LAB_HOSTS['ca']}:{port}/ocsp"]  # this CA, under the lab host name

    CaClient(ecosystem.ca_url).revoke(serial, "keyCompromise", ecosystem.ca_admin)
    second = pdfsig(signed, root, tmp_path / "second")
    assert second.signature == "Signature is Valid.", second.output
    assert second.certificate == "Certificate has been Revoked.", second.output
