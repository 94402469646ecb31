"""CSC bodies parsed once at the edge into typed requests: v1 and v2 spellings alike, refusals
naming the step they belong to."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest

from services.signer.csc import (
    CredentialInfoRequest,
    CredentialsAuthorizeRequest,
    CredentialsListRequest,
    ExtendTransactionRequest,
    SignDocRequest,
    SignHashRequest,
    TimestampRequest,
    parse_authorization_details,
)
from services.signer.errors import UnsupportedAlgorithm, WholeDocumentRefused
from shared.errors import InvalidRequest, SignLabError

SHA256, SHA384 = "2.16.840.1.101.3.4.2.1", "2.16.840.1.101.3.4.2.2"
ECDSA_SHA256, EC_KEY = "1.2.840.10045.4.3.2", "1.2.840.10045.2.1"
DIGEST = hashlib.sha256(b"document").digest()
B64 = base64.b64encode(DIGEST).decode()
B64URL = base64.urlsafe_b64encode(DIGEST).decode().rstrip("=")


def test_sign_doc_flattens_entries_in_request_order() -> None:
    other = hashlib.sha384(b"other").digest()
    request = SignDocRequest.parse({"signatureQualifier": "eu_eidas_qes", "returnValidationInfo": True,
                                    "documentDigests": [
                                        {"hashes": [B64], "hashAlgorithmOID": SHA256, "signature_format": "P"},
                                        {"hashes": [base64.b64encode(other).decode()], "hashAlgorithmOID": SHA384,
                                         "signature_format": "C", "conformance_level": "Ades-B-LT",
                                         "signAlgo": "1.2.840.10045.4.3.3"}]}, max_documents=20)
    assert request.qualifier == "eu_eidas_qes" and request.return_validation_info
    assert [(d.digest, d.hash_algorithm, d.signature_format, d.conformance_level, d.sign_algo)
            for d in request.documents] == [(DIGEST, "sha256", "P", "ades-b-b", None),
                                            (other, "sha384", "C", "ades-b-lt", "1.2.840.10045.4.3.3")]


@pytest.mark.parametrize(("body", "error", "fragment"), [
    ({"credentialID": "cred-1"}, InvalidRequest, "no credentialID"),
    ({"SAD": "x"}, InvalidRequest, "omit SAD"),
    ({"documentDigests": [{"hashes": [B64], "hashAlgorithmOID": "1.3.14.3.2.26", "signature_format": "P"}]},
     UnsupportedAlgorithm, "unsupported hash"),
    ({"documentDigests": [{"hashes": [B64], "hashAlgorithmOID": SHA256, "signature_format": "X"}]},
     UnsupportedAlgorithm, "signature_format"),
    ({"documentDigests": [{"hashes": [B64], "hashAlgorithmOID": SHA256, "signature_format": "P",
                           "conformance_level": "Ades-B-Z"}]}, InvalidRequest, "conformance_level"),
    ({"documentDigests": [{"hashes": [B64, B64, B64], "hashAlgorithmOID": SHA256, "signature_format": "P"}]},
     InvalidRequest, "at most 2 hash values"),
    ({"documentDigests": [{"hashes": [B64], "hashAlgorithmOID": SHA384, "signature_format": "P"}]},
     InvalidRequest, "sha384 needs 48 bytes"),
    ({"documentDigests": [{"hashes": [B64], "hashAlgorithmOID": SHA256, "signature_format": "P",
                           "document": "JVBERi0="}]}, WholeDocumentRefused, "whole documents"),
], ids=["credential-id", "sad", "sha1", "xades", "level", "too-many", "length", "whole-document"])
def test_sign_doc_refusals_are_at_step_6(body: dict[str, Any], error: type[SignLabError], fragment: str) -> None:
    body.setdefault("documentDigests", [{"hashes": [B64], "hashAlgorithmOID": SHA256, "signature_format": "P"}])
    with pytest.raises(error) as refused:
        SignDocRequest.parse(body, max_documents=2)
    assert refused.value.error_description.startswith("step 6") and fragment in refused.value.error_description


@pytest.mark.parametrize("body", [
    {"credentialID": "c", "SAD": "s", "signAlgo": ECDSA_SHA256, "hash": [B64]},  # v1, algorithm implied
    {"credentialID": "c", "SAD": "s", "signAlgo": EC_KEY, "hashAlgo": SHA256, "hash": [B64URL]},  # v1, bare key OID
    {"credentialID": "c", "SAD": "s", "signAlgo": ECDSA_SHA256, "hashAlgorithmOID": SHA256, "hashes": [B64]},  # v2
], ids=["v1-combined", "v1-key-oid-base64url", "v2"])
def test_sign_hash_accepts_both_spellings(body: dict[str, Any]) -> None:
    assert SignHashRequest.parse(body) == SignHashRequest("c", "s", body["signAlgo"], "sha256", (DIGEST,))


@pytest.mark.parametrize(("body", "fragment"), [
    ({"signAlgo": ECDSA_SHA256, "hashAlgo": SHA384}, "contradicts"),
    ({"signAlgo": EC_KEY}, "hashAlgorithmOID (hashAlgo) is required"),
    ({"signAlgo": ECDSA_SHA256, "signAlgoParams": "MA=="}, "RSASSA-PSS"),
], ids=["contradiction", "no-hash-algorithm", "pss"])
def test_sign_hash_refusals_are_at_step_9(body: dict[str, Any], fragment: str) -> None:
    with pytest.raises(SignLabError) as refused:
        SignHashRequest.parse({"credentialID": "c", "hash": [B64], **body})
    assert refused.value.error_description.startswith("step 9") and fragment in refused.value.error_description


def test_credentials_authorize_and_its_refusals_at_step_2() -> None:
    v1 = CredentialsAuthorizeRequest.parse({"credentialID": "c", "numSignatures": 1, "hash": [B64]})
    v2 = CredentialsAuthorizeRequest.parse({"credentialID": "c", "numSignatures": 1, "hashes": [B64URL],
                                            "hashAlgorithmOID": SHA256})
    assert (v1.hash_algorithm, v2.hash_algorithm) == (None, "sha256") and v1.digests == v2.digests == (DIGEST,)
    with pytest.raises(InvalidRequest, match=r"step 2.*positive integer"):
        CredentialsAuthorizeRequest.parse({"credentialID": "c", "numSignatures": True, "hash": [B64]})
    with pytest.raises(InvalidRequest, match=r"step 2.*base64"):
        CredentialsAuthorizeRequest.parse({"credentialID": "c", "numSignatures": 1, "hash": ["!!"]})


def test_extend_transaction_hashes_are_optional() -> None:
    assert ExtendTransactionRequest.parse({"credentialID": "c", "SAD": "s"}).digests == ()
    assert ExtendTransactionRequest.parse({"credentialID": "c", "SAD": "s", "hash": [B64]}).digests == (DIGEST,)


def test_credential_info_and_list_options() -> None:
    assert CredentialInfoRequest.parse({"credentialID": "c"}) == CredentialInfoRequest("c", "single", False)
    assert CredentialInfoRequest.parse({"credentialID": "c", "certificates": "chain", "certInfo": True}).cert_info
    with pytest.raises(InvalidRequest, match="none, single or chain"):
        CredentialInfoRequest.parse({"credentialID": "c", "certificates": "all"})
    listed = CredentialsListRequest.parse({"credentialInfo": True, "certificates": "none", "onlyValid": True})
    assert listed.only_valid and listed.with_info and listed.info == CredentialInfoRequest(None, "none", False)
    with pytest.raises(InvalidRequest, match="userID"):
        CredentialsListRequest.parse({"userID": "kari"})


def test_timestamp_nonce_is_hex_and_refusals_are_at_step_10() -> None:
    assert TimestampRequest.parse({"hash": B64, "hashAlgo": SHA256, "nonce": "0a1B"}) == \
        TimestampRequest("sha256", DIGEST, 0x0A1B)
    for body, fragment in (({"hash": B64, "hashAlgo": SHA256, "nonce": "xyz"}, "nonce"),
                           ({"hash": B64}, "hashAlgorithmOID")):
        with pytest.raises(InvalidRequest) as refused:
            TimestampRequest.parse(body)
        assert refused.value.error_description.startswith("step 10") and fragment in refused.value.error_description


@pytest.mark.parametrize(("value", "fragment"), [
    ([{"type": "payment"}], "unsupported authorization_details type"),
    ([], "JSON array of objects"),
    ({"type": "credential", "hashAlgorithmOID": SHA256, "documentDigests": [{"hash": B64}]}, "signatureQualifier or"),
    ([{"type": "credential", "signatureQualifier": "eu_eidas_qes", "hashAlgorithmOID": SHA256,
       "documentDigests": [{"hash": B64}]}] * 2, "exactly one"),
    ({"type": "credential", "signatureQualifier": "eu_eidas_qes", "hashAlgorithmOID": SHA256,
      "documentDigests": [{"hash": B64, "label": 7}]}, "label"),
], ids=["type", "empty", "no-qualifier", "two-entries", "label"])
def test_authorization_details_refusals(value: Any, fragment: str) -> None:
    with pytest.raises(InvalidRequest, match=fragment):
        parse_authorization_details(json.dumps(value))


def test_authorization_details_accept_both_type_spellings_and_one_object() -> None:
    entry = {"signatureQualifier": "eu_eidas_aes", "hashAlgo": SHA256, "documentDigests": [{"hash": B64URL}]}
    for kind in ("credential", "https://cloudsignatureconsortium.org/2025/credential"):
        [detail] = parse_authorization_details({**entry, "type": kind})
        assert (detail.qualifier, detail.hash_algorithm) == ("eu_eidas_aes", "sha256")
        assert detail.documents[0].digest == DIGEST
