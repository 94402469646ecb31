"""Step 2: authorization requests in their three forms, and every refusal at step 2."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest

from services.signer.authorization_request import binding_message, parse_authorization_request
from services.signer.clients import Client
from services.signer.errors import InvalidScope, TooManySignatures
from services.signer.store import CredentialRecord
from shared.errors import AccessDenied, InvalidRequest, SignLabError

REDIRECT = "https://portal.example.com/callback"
CLIENT = Client("portal", (REDIRECT,), "Demo Partner", ("eu_eidas_qes", "eu_eidas_aes"))
AES_ONLY = Client("aes-portal", (REDIRECT, REDIRECT + "2"), "AdES Partner", ("eu_eidas_aes",))
DIGEST = hashlib.sha256(b"document").digest()
B64 = base64.b64encode(DIGEST).decode()


def credential_for(client_id: str, credential_id: str, count: int) -> CredentialRecord:
    """The SAM's check, for a credential with one signature left."""
    if count > 1:
        raise TooManySignatures("too many")
    return CredentialRecord(credential_id, "tx", client_id, "ps", "k", "ec-p256", "", "", [], "eu_eidas_aes", "1",
                            1, 1, "enabled", 0, 0)


def parse(client: Client = CLIENT, **params: str) -> dict[str, Any]:
    base = {"response_type": "code", "code_challenge": "c" * 43, "code_challenge_method": "S256", "state": "st"}
    return parse_authorization_request(client, {**base, **params}, max_documents=3, credential_for=credential_for)


def details(**entry: Any) -> str:
    return json.dumps([{"type": "credential", "signatureQualifier": "eu_eidas_qes", "hashAlgorithmOID":
                        "2.16.840.1.101.3.4.2.1", "documentDigests": [{"hash": B64, "label": "a.pdf"}], **entry}])


def test_person_signing_request() -> None:
    request = parse(authorization_details=details(), login_hint="kari@bankid")
    assert (request["kind"], request["qualifier"], request["num_signatures"]) == ("sign", "eu_eidas_qes", 1)
    assert request["documents"] == [{"hash": B64, "label": "a.pdf"}] and request["redirect_uri"] == REDIRECT
    assert request["hash_alg"] == "sha256" and request["login_hint"] == "kari@bankid"
    assert binding_message(request, CLIENT) == "Sign 1 document (QES) for Demo Partner"


def test_service_and_credential_scopes() -> None:
    service = parse(scope="service", numSignatures="3", signatureQualifier="eu_eidas_aes")
    assert (service["kind"], service["num_signatures"], service["documents"]) == ("service", 3, [])
    assert binding_message(service, CLIENT) == "Sign 3 documents (AdES) for Demo Partner"
    credential = parse(scope="credential", credentialID="cred-1", hash=base64.urlsafe_b64encode(DIGEST).decode())
    assert (credential["kind"], credential["credential_id"], credential["qualifier"]) == \
        ("credential", "cred-1", "eu_eidas_aes")
    assert credential["documents"] == [{"hash": B64, "label": "hash 1"}]


@pytest.mark.parametrize(("client", "params", "error", "fragment"), [
    (CLIENT, {"redirect_uri": "https://evil.example.com/cb", "scope": "service"}, InvalidRequest, "exact match"),
    (AES_ONLY, {"scope": "service"}, InvalidRequest, "redirect_uri"),  # two registered: the URI must be named
    (CLIENT, {"code_challenge_method": "plain", "scope": "service"}, InvalidRequest, "S256"),
    (CLIENT, {"code_challenge": "short", "scope": "service"}, InvalidRequest, "PKCE is required"),
    (CLIENT, {"client_id": "other", "scope": "service"}, InvalidRequest, "client_id"),
    (CLIENT, {"response_type": "token", "scope": "service"}, InvalidRequest, "response_type"),
    (CLIENT, {"scope": "service credential"}, InvalidScope, "never combined"),
    (CLIENT, {}, InvalidScope, "request scope service or credential"),
    (CLIENT, {"scope": "service", "numSignatures": "4"}, InvalidRequest, "numSignatures must be 1-3"),
    (CLIENT, {"scope": "credential", "credentialID": "cred-1", "hash": f"{B64},{B64}"}, TooManySignatures, "too many"),
    (CLIENT, {"scope": "credential", "credentialID": "c", "hash": B64, "numSignatures": "2"}, InvalidRequest,
     "SCAL 2"),
    (CLIENT, {"authorization_details": details(documents=["JVBERi0="])}, InvalidRequest, "whole documents"),
    (CLIENT, {"authorization_details": details(numSignatures=2)}, InvalidRequest, "differs"),
    (CLIENT, {"authorization_details": "not json"}, InvalidRequest, "not valid JSON"),
    (CLIENT, {"authorization_details": details(documentDigests=[{"hash": B64}, {"hash": B64}])}, InvalidRequest,
     "twice"),
], ids=["redirect-uri", "redirect-uri-missing", "pkce-plain", "pkce-short", "client-id", "response-type",
        "both-scopes", "no-scope", "too-many-signatures", "credential-budget", "scal2-count", "whole-document",
        "rar-count", "rar-json", "rar-duplicate"])
def test_refusals_are_at_step_2(client: Client, params: dict[str, str], error: type[SignLabError],
                                fragment: str) -> None:
    with pytest.raises(error) as refused:
        parse(client, **params)
    assert fragment in refused.value.error_description
    if error is not TooManySignatures:  # the SAM's own refusal names its step itself
        assert refused.value.error_description.startswith("step 2")


def test_a_qualifier_the_client_may_not_request_is_access_denied() -> None:
    with pytest.raises(AccessDenied, match="may not request eu_eidas_qes"):
        parse(AES_ONLY, redirect_uri=REDIRECT, authorization_details=details())
