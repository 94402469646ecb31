"""OpenAPI-driven fuzzing of the signer's CSC API and OAuth2 endpoints with schemathesis.

The schema is the live document at ``/csc/openapi.json`` of the running signer. Requests carry
real credentials obtained through the real flow (so they reach the handlers, not only the
authentication check):

* CSC ``credentials/*``, ``signHash``, ``timestamp``, ``extendTransaction``: a service token of a
  certificate-first credential (eID login + consent), and in bodies that name a credential, half
  of the time the real ``credentialID`` (so ``credentials/authorize`` etc. run their full checks);
* ``signatures/signDoc``: a credential token (SAD) of a person-signing authorization;
* ``/oauth2/*``: the client credentials of a partner registered with a secret (HTTP Basic; the
  portal itself authenticates with private_key_jwt, which OpenAPI cannot describe as a scheme).

Checks: every built-in schemathesis check (no 5xx, status code documented, content type, response
schema conformance, response headers, schema-invalid data rejected, missing auth → 401) except
``positive_data_acceptance``, which is reconfigured: the CSC API answers ``400 invalid_request``
to schema-valid bodies whose *meaning* is wrong (unknown credentialID, hash of the wrong length,
an unauthorized digest), as CSC v1 §10 / v2 §11 require, and the schema cannot express that.

Bounded here (``MAX_EXAMPLES`` per operation); the longer local run is documented in
`docs/interop.md` (``schemathesis run …``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from schemathesis.config import HttpBasicAuthConfig, HttpBearerAuthConfig

pytestmark = pytest.mark.hsm

MAX_EXAMPLES = int(os.environ.get("SIGNLAB_FUZZ_EXAMPLES", "15"))
EXCLUDED_CHECKS = os.environ.get("SIGNLAB_FUZZ_EXCLUDE_CHECKS", "").split()
POSITIVE_ACCEPTED = ["2xx", "400", "401", "403", "404", "409"]
"""Statuses a schema-valid request may get: 400 for semantically invalid input (CSC error model)."""


class FuzzAuth:
    """Real credentials for the fuzzed requests (obtained once through the real flows)."""

    def __init__(self, ecosystem: Any) -> None:
        self.ecosystem = ecosystem
        # Count only (SCAL 1), so that credentials/authorize and extendTransaction issue SADs and
        # their full checks run (a SCAL 2 credential refuses them at once).
        service = ecosystem.service_authorization(num_signatures=5, scal="1")
        self.service_token = service.access_token
        self.credential_id = service.credential_id
        digest = hashlib.sha256(b"fuzzed person-signing document").digest()
        sign = ecosystem.authorize({"authorization_details": json.dumps([{
            "type": "credential", "signatureQualifier": "eu_eidas_qes", "hashAlgorithmOID": "2.16.840.1.101.3.4.2.1",
            "documentDigests": [{"hash": base64.b64encode(digest).decode(), "label": "fuzz.pdf"}]}])})
        self.sign_token = sign.access_token


@pytest.fixture(scope="module")
def fuzz_auth(ecosystem: Any) -> FuzzAuth:
    return FuzzAuth(ecosystem)


def _load(ecosystem: Any, bearer: str) -> Any:
    """The signer's live OpenAPI document, loaded by schemathesis, bounded, with real credentials.

    Credentials go through schemathesis' OpenAPI-aware auth (per security scheme), so its own
    missing/invalid-auth scenarios still go out without them (and must get 401).
    """
    schema = schemathesis.openapi.from_url(f"{ecosystem.signer_url}/csc/openapi.json")
    schema.config.generation.update(max_examples=MAX_EXAMPLES, deterministic=True, database="none")
    schema.config.checks.positive_data_acceptance.expected_statuses = POSITIVE_ACCEPTED
    if EXCLUDED_CHECKS:  # local exploration only: hide a known failure to see what lies behind it
        schema.config.checks.update(excluded_check_names=EXCLUDED_CHECKS)
    schema.config.auth.openapi.schemes.update(  # keys = the document's securitySchemes
        bearer=HttpBearerAuthConfig(bearer=bearer),
        basic=HttpBasicAuthConfig(username=ecosystem.secret_partner[0], password=ecosystem.secret_partner[1]))
    return schema


@pytest.fixture(scope="module")
def csc_schema(ecosystem: Any, fuzz_auth: FuzzAuth) -> Any:
    """Every operation but signDoc, with the certificate-first service token."""
    return _load(ecosystem, fuzz_auth.service_token)


@pytest.fixture(scope="module")
def sign_doc_schema(ecosystem: Any, fuzz_auth: FuzzAuth) -> Any:
    """signDoc only, with a person-signing credential token (SAD)."""
    return _load(ecosystem, fuzz_auth.sign_token)


def _with_real_credential(case: Any, credential_id: str) -> None:
    """Half of the bodies that name a credential name the real one (deterministically)."""
    if (isinstance(case.body, dict) and "credentialID" in case.body
            and hashlib.sha256(repr(case.body).encode()).digest()[0] % 2 == 0):
        case.body = {**case.body, "credentialID": credential_id}


SIGN_DOC = "/csc/v2/signatures/signDoc"


@schemathesis.pytest.from_fixture("csc_schema").exclude(path=SIGN_DOC).parametrize()
def test_csc_api_conforms_to_its_openapi_document(case: Any, fuzz_auth: FuzzAuth) -> None:
    _with_real_credential(case, fuzz_auth.credential_id)
    response = case.call_and_validate()
    assert response.status_code < 500, response.text


@schemathesis.pytest.from_fixture("sign_doc_schema").include(path=SIGN_DOC).parametrize()
def test_sign_doc_conforms_to_its_openapi_document(case: Any) -> None:
    response = case.call_and_validate()
    assert response.status_code < 500, response.text


def test_signing_still_works_after_fuzzing(ecosystem: Any, fuzz_auth: FuzzAuth) -> None:
    """The fuzzed credential is not damaged: with a proper SAD it still signs, and the HSM is sane."""
    digest = hashlib.sha256(b"after the fuzz").digest()
    headers = {"Authorization": f"Bearer {fuzz_auth.service_token}"}
    info = requests.post(f"{ecosystem.signer_url}/csc/v1/credentials/info", json={"credentialID": fuzz_auth.credential_id},
                         headers=headers, timeout=10).json()
    remaining = ecosystem.signer_service.store.credential(fuzz_auth.credential_id).remaining
    if remaining == 0 or info["key"]["status"] != "enabled":
        pytest.fail(f"fuzzing exhausted or disabled the credential (remaining={remaining}, key={info['key']})")
    sad = requests.post(f"{ecosystem.signer_url}/csc/v1/credentials/authorize", headers=headers, timeout=10, json={
        "credentialID": fuzz_auth.credential_id, "numSignatures": 1, "hash": [base64.b64encode(digest).decode()]})
    assert sad.status_code == 200, sad.text
    signed = requests.post(f"{ecosystem.signer_url}/csc/v1/signatures/signHash", headers=headers, timeout=30, json={
        "credentialID": fuzz_auth.credential_id, "SAD": sad.json()["SAD"], "hash": [base64.b64encode(digest).decode()],
        "hashAlgo": "2.16.840.1.101.3.4.2.1", "signAlgo": "1.2.840.10045.4.3.2"})
    assert signed.status_code == 200, signed.text
    assert ecosystem.signer_service.audit.verify().ok


OPENAPI_CANDIDATES = ("/openapi.json", "/api/openapi.json", "/api/v1/openapi.json")


@pytest.mark.parametrize("service", ["ca", "portal"])
def test_other_json_apis_are_fuzzed_when_they_publish_openapi(ecosystem: Any, service: str, tmp_path: Path) -> None:
    """The CA's and the portal's JSON APIs: fuzzed with the schemathesis CLI once they publish OpenAPI."""
    base = {"ca": ecosystem.ca_url, "portal": ecosystem.portal_url}[service]
    found = []
    for path in OPENAPI_CANDIDATES:
        answer = requests.get(base + path, timeout=10)
        if answer.status_code == 200 and answer.headers.get("Content-Type", "").startswith("application/json") \
                and "openapi" in answer.json():
            found.append(path)
    if not found:
        pytest.skip(f"the {service} publishes no OpenAPI document (tried {', '.join(OPENAPI_CANDIDATES)})")
    cli = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert cli, "schemathesis CLI missing from the venv"
    answer = subprocess.run([cli, "run", base + found[0], "--url", base, "--checks", "all", "-n", str(MAX_EXAMPLES),
                             "--seed", "1", "--report", "junit", "--report-dir", str(tmp_path)],
                            capture_output=True, check=False, text=True, timeout=120)
    assert answer.returncode == 0, answer.stdout[-4000:]
