"""The SSASP's CSC surface against the CSC API v1.0.4.0 / v2.0.0.2 and the ETSI levels (issue 21):
signDoc makes the level asked or refuses it, ``info`` validates against schemas written from the
specification and lists what is served, the PAR endpoint is at the CSC path, the DNs are RFC 4514,
and the 401 challenges follow RFC 6749 §5.2 and RFC 6750 §3.1."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import struct
from pathlib import Path
from typing import Any

import pytest
import requests
from asn1crypto import cms, ocsp, tsp, x509
from jsonschema import Draft7Validator, FormatChecker
from pyhanko.sign.validation import async_validate_detached_cms
from pyhanko_certvalidator import ValidationContext

from services.signer.levels import LEVEL_NAMES, PRODUCED
from shared.cms_version import version_problems
from shared.testing.partner import Portal, no_keys

SCHEMAS = Path(__file__).parent / "schemas"
SHA256 = "2.16.840.1.101.3.4.2.1"


def _sign_doc(ecosystem: Any, token: str, entry: dict[str, Any], **body: Any) -> requests.Response:
    return requests.post(f"{ecosystem.signer_url}/csc/v2/signatures/signDoc", timeout=60,
                         headers={"Authorization": f"Bearer {token}"}, json={"documentDigests": [entry], **body})


def _entry(digest: bytes, fmt: str, level: str, **more: Any) -> dict[str, Any]:
    return {"hashes": [base64.b64encode(digest).decode()], "hashAlgorithmOID": SHA256, "signature_format": fmt,
            "conformance_level": level, **more}


def _signature_time_stamp(signer_info: cms.SignerInfo) -> tsp.TSTInfo:
    """The TSTInfo of the signature-time-stamp attribute, checked to cover this signature value."""
    stamps = [a for a in signer_info["unsigned_attrs"] if a["type"].native == "signature_time_stamp_token"]
    assert len(stamps) == 1, "no signature-time-stamp unsigned attribute"
    info = stamps[0]["values"][0]["content"]["encap_content_info"]["content"].parsed
    imprint = info["message_imprint"]
    assert imprint["hash_algorithm"]["algorithm"].native == "sha256"
    assert imprint["hashed_message"].native == hashlib.sha256(signer_info["signature"].native).digest()
    return info


@pytest.mark.parametrize("fmt", ["C", "P", "J"])
def test_sign_doc_makes_each_level_asked_or_refuses_it(portal: Portal, ecosystem: Any, root: x509.Certificate,
                                                       fmt: str) -> None:
    """Point 1: every conformance level, per format: produced (checked by parsing and by pyHanko's
    validation) or refused with 400 naming the value, the SAD unspent — never a lower level."""
    document = secrets.token_bytes(32)
    digest = hashlib.sha256(document).digest()
    refused_token = portal.token(documents=[(digest, "doc.bin")]).access_token
    advertised = requests.post(f"{ecosystem.signer_url}/csc/v2/info", json={}, timeout=10).json()["conformance_levels"]
    for level, name in LEVEL_NAMES.items():
        if level in PRODUCED[fmt]:
            assert name in advertised
            continue
        answer = _sign_doc(ecosystem, refused_token, _entry(digest, fmt, name))
        assert answer.status_code == 400, (name, answer.text)
        assert answer.json()["error"] == "invalid_request" and name in answer.json()["error_description"]
    for level in PRODUCED[fmt]:
        token = portal.token(documents=[(digest, "doc.bin")]).access_token
        answer = _sign_doc(ecosystem, token, _entry(digest, fmt, LEVEL_NAMES[level]))
        assert answer.status_code == 200, answer.text
        assert "signatureObject" not in answer.json()  # no lower-case duplicate of SignatureObject
        [signed] = [base64.b64decode(o) for o in answer.json()["SignatureObject"]]
        if fmt == "J":
            assert signed.count(b".") == 2 and level == "ades-b-b"
            continue
        content_info = cms.ContentInfo.load(signed)
        assert version_problems(content_info) == []
        signed_data = content_info["content"]
        signer_info = signed_data["signer_infos"][0]
        if level == "ades-b-b":
            assert not signer_info["unsigned_attrs"].native
        else:
            _signature_time_stamp(signer_info)
            status = asyncio.run(async_validate_detached_cms(
                document, signed_data,
                signer_validation_context=ValidationContext(trust_roots=[root], allow_fetching=False),
                ts_validation_context=ValidationContext(trust_roots=[root], allow_fetching=False)))
            assert status.intact and status.valid and status.trusted
            assert status.timestamp_validity is not None and status.timestamp_validity.valid
        if level == "ades-b-lt":
            choices = [c.name for c in signed_data["crls"]]
            assert choices.count("crl") == 2 and choices.count("other") == 1  # issuing + root CRL, OCSP
            assert signed_data["version"].native == "v5"
            [other] = [c.chosen for c in signed_data["crls"] if c.name == "other"]
            response = ocsp.OCSPResponse.load(other["other_rev_info"].dump())
            single = response.basic_ocsp_response["tbs_response_data"]["responses"][0]
            assert single["cert_id"]["serial_number"].native == signer_info["sid"].chosen["serial_number"].native
            assert single["cert_status"].name == "good"
            subjects = {c.chosen.subject.native.get("common_name") for c in signed_data["certificates"]}
            assert "SignLab Time-Stamping Authority" in subjects
        events = [e for e in ecosystem.service.audit.entries() if e.event == "signature.level_raised"
                  and e.data["document_digest"] == digest.hex()]
        assert bool(events) == (level != "ades-b-b")
    no_keys(ecosystem)


@pytest.mark.parametrize(("more", "fragment"), [
    ({"signed_envelope_property": "Attached"}, "signed_envelope_property"),
    ({"signAlgo": "1.2.840.10045.4.3.3"}, "contradicts signAlgo"),
    ({"signAlgoParams": "MAA="}, "signAlgoParams"),
    ({"signed_props": [{"attribute_name": "signer-location"}]}, "signed_props"),
], ids=["attached", "hash-vs-signAlgo", "pss-params", "signed-props"])
def test_parameters_the_service_cannot_honour_are_refused(portal: Portal, ecosystem: Any, more: dict[str, Any],
                                                          fragment: str) -> None:
    digest = hashlib.sha256(secrets.token_bytes(8)).digest()
    token = portal.token(documents=[(digest, "a.txt")]).access_token
    answer = _sign_doc(ecosystem, token, _entry(digest, "C", "Ades-B-B", **more))
    assert answer.status_code == 400 and fragment in answer.json()["error_description"], answer.text
    asynchronous = _sign_doc(ecosystem, token, _entry(digest, "C", "Ades-B-B"), operationMode="A")
    assert asynchronous.status_code == 400 and "operationMode" in asynchronous.json()["error_description"]
    no_keys(ecosystem)


def test_sign_doc_accepts_the_v1_field_names(portal: Portal, ecosystem: Any) -> None:
    """``hash``/``hashAlgo`` in a documentDigests entry, as docs/signer.md says (they got 400)."""
    digest = hashlib.sha256(secrets.token_bytes(8)).digest()
    token = portal.token(documents=[(digest, "a.txt")]).access_token
    answer = _sign_doc(ecosystem, token, {"hash": [base64.b64encode(digest).decode()], "hashAlgo": SHA256,
                                          "signature_format": "C", "signed_envelope_property": "Detached"})
    assert answer.status_code == 200, answer.text
    no_keys(ecosystem)


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.mark.parametrize("version", [1, 2])
def test_info_validates_against_the_specification(ecosystem: Any, version: int) -> None:
    """Point 4: ``info`` against a JSON schema written from the spec's table; methods = what is
    served; ``logo`` a real PNG ≤ 256×256; ``region`` the provider's country."""
    schema = json.loads((SCHEMAS / f"csc-info-v{'1.0.4.0' if version == 1 else '2.0.0.2'}.schema.json").read_text())
    info = requests.post(f"{ecosystem.signer_url}/csc/v{version}/info", json={}, timeout=10).json()
    errors = [e.message for e in Draft7Validator(schema, format_checker=FormatChecker()).iter_errors(info)]
    assert errors == []
    assert info["region"] == "NO"
    logo = requests.get(info["logo"], timeout=10)
    assert logo.status_code == 200 and logo.headers["Content-Type"] == "image/png"
    assert max(_png_size(logo.content)) <= 256
    for method in info["methods"]:
        path = f"/{method}" if method.startswith("oauth2/") else f"/csc/v{version}/{method}"
        answer = requests.post(f"{ecosystem.signer_url}{path}", timeout=10) if method != "oauth2/authorize" else \
            requests.get(f"{ecosystem.signer_url}{path}", timeout=10, allow_redirects=False)
        assert answer.status_code not in (404, 405), (method, answer.status_code)
    assert "oauth2/pushed_authorize" in info["methods"] or version == 1
    served = requests.get(f"{ecosystem.signer_url}/csc/openapi.json", timeout=10).json()["paths"]
    listed = {f"/csc/v{version}/{m}" for m in info["methods"] if not m.startswith("oauth2/")}
    assert {p for p in served if p.startswith(f"/csc/v{version}/")} == listed
    if version == 2:
        assert len(info["signature_formats"]["envelope_properties"]) == len(info["signature_formats"]["formats"])
        assert "oauth2" not in info
        metadata = requests.get(f"{ecosystem.signer_url}/.well-known/oauth-authorization-server", timeout=10).json()
        assert metadata["issuer"] == info["oauth2Issuer"]
        assert metadata["pushed_authorization_request_endpoint"] == f"{info['oauth2Issuer']}/oauth2/pushed_authorize"


def test_par_is_served_at_the_csc_path_and_the_old_one(portal: Portal, ecosystem: Any) -> None:
    partner = ecosystem.settings.partner_clients[0].client_id
    form = {"response_type": "code", "client_id": partner, "redirect_uri": "http://127.0.0.1:1/cb",
            "code_challenge": "x" * 43, "code_challenge_method": "S256", "scope": "service"}
    for path in ("/oauth2/pushed_authorize", "/oauth2/par"):
        answer = requests.post(f"{ecosystem.signer_url}{path}", auth=(partner, ecosystem.partner_secret), data=form,
                               timeout=10)
        assert answer.status_code != 404 and answer.json().get("error") != "invalid_client", answer.text


def test_challenges_follow_rfc_6749_and_6750(ecosystem: Any) -> None:
    """Point 9: a failed HTTP Basic client gets a Basic challenge; no token gets a Bearer challenge
    without an error code; a bad token gets ``error="invalid_token"``."""
    partner = ecosystem.settings.partner_clients[-1].client_id
    basic = requests.post(f"{ecosystem.signer_url}/oauth2/token", auth=(partner, "wrong-secret-x"),
                          data={"grant_type": "authorization_code", "code": "x"}, timeout=10)
    assert basic.status_code == 401 and basic.json()["error"] == "invalid_client"
    assert basic.headers["WWW-Authenticate"].startswith("Basic realm=")
    malformed = requests.post(f"{ecosystem.signer_url}/oauth2/token", headers={"Authorization": "Basic !!!"},
                              data={"grant_type": "authorization_code"}, timeout=10)
    assert malformed.status_code == 401 and malformed.headers["WWW-Authenticate"].startswith("Basic realm=")
    for path in ("/csc/v2/credentials/list", "/csc/v1/signatures/timestamp", "/csc/v2/signatures/signDoc"):
        bare = requests.post(f"{ecosystem.signer_url}{path}", json={}, timeout=10)
        assert bare.status_code == 401
        assert bare.headers["WWW-Authenticate"].startswith("Bearer") and "error=" not in bare.headers["WWW-Authenticate"]
        bad = requests.post(f"{ecosystem.signer_url}{path}", json={}, headers={"Authorization": "Bearer nope"},
                            timeout=10)
        assert bad.status_code == 401 and 'error="invalid_token"' in bad.headers["WWW-Authenticate"]


def test_credential_dns_are_rfc_4514_strings(portal: Portal, ecosystem: Any) -> None:
    """Point 4: ``issuerDN``/``subjectDN`` of credentials/info and list (CSC: RFC 4514 strings)."""
    from cryptography import x509 as cx509

    token = portal.token(scope="service", qualifier="eu_eidas_qes", num_signatures=1)
    headers = {"Authorization": f"Bearer {token.access_token}"}
    for version in (1, 2):
        info = requests.post(f"{ecosystem.signer_url}/csc/v{version}/credentials/info", headers=headers, timeout=10,
                             json={"credentialID": token.credential_id, "certInfo": True}).json()
        cert = cx509.load_der_x509_certificate(base64.b64decode(info["cert"]["certificates"][0]))
        shown = [info["cert"]]
        if version == 2:  # v1 credentials/list names the credentials only
            listed = requests.post(f"{ecosystem.signer_url}/csc/v2/credentials/list", headers=headers, timeout=10,
                                   json={"credentialInfo": True, "certInfo": True}).json()
            shown.append(listed["credentialInfos"][0]["cert"])
        for details in shown:
            assert details["issuerDN"] == cert.issuer.rfc4514_string()
            assert details["subjectDN"] == cert.subject.rfc4514_string()
            assert cx509.Name.from_rfc4514_string(details["subjectDN"]) == cert.subject
            assert "Common Name:" not in details["subjectDN"]
