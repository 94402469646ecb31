"""Step 2: an OAuth2 authorization request (pushed, RFC 9126, or direct) checked and turned into
the request a transaction stores.

The OAuth2 part is the same for every request: the client, an exactly registered
``redirect_uri``, ``response_type=code``, PKCE with S256, bounded ``state`` and ``login_hint``,
and never a whole document. What is asked for comes in one of three forms:

* ``authorization_details`` of type ``credential`` (RFC 9396; CSC v2): person signing, the
  qualifier and the document digests with labels; or a named credential and its hashes;
* ``scope=service`` (certificate first): the qualifier, the number of signatures and the SCAL of
  the one-time credential — ``2`` (the default: each SAD comes from the person's approval of the
  exact hashes, a credential authorization below) or, only when the request says ``SCAL=1``, the
  count-only mode (the partner picks the hashes of up to that many signatures);
* ``scope=credential`` (CSC v1), or ``authorization_details`` naming a ``credentialID``: a
  credential and the exact hashes to sign with it, which the person approves (SCAL 2).

The stored request is a JSON object (``TransactionRecord.request``) with ``kind`` (``sign``,
``service`` or ``credential``), ``qualifier``, ``documents`` (``[{hash, label}]``, standard
base64), ``num_signatures``, ``hash_alg`` and the OAuth2 values the later steps need (the
``redirect_uri``, and whether the request named it: then the token request must name it too).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from typing import Any

from services.signer import csc
from services.signer.clients import Client
from services.signer.errors import InvalidScope
from services.signer.store import CredentialRecord
from shared.errors import AccessDenied, InvalidRequest
from shared.flow import step
from shared.identity import LOA_HIGH, LOA_SUBSTANTIAL

__all__ = ["REQUIRED_LOA", "SCAL_LEVELS", "CredentialLookup", "binding_message", "parse_authorization_request"]

REQUIRED_LOA = {"eu_eidas_qes": LOA_HIGH, "eu_eidas_aes": LOA_SUBSTANTIAL}
"""The level of assurance each qualifier needs (step 3 ``acr_values``, step 5 check)."""

CredentialLookup = Callable[[str, str, int], CredentialRecord]
"""``(client_id, credential_id, count)`` → the credential, or a refusal (the SAM's check)."""

SCAL_LEVELS = ("1", "2")
"""The SCAL of a certificate-first credential (CSC ``SCAL``): ``2`` binds every SAD to hashes the
person approved; ``1`` (count only) lets the partner pick the hashes within the approved count."""

DEFAULT_HASH_OID = "2.16.840.1.101.3.4.2.1"
"""SHA-256: the hash of ``scope=credential`` requests that name none."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _redirect_uri(client: Client, params: Mapping[str, str]) -> str:
    """The client's redirect URI, compared exactly (the only one may be left out)."""
    redirect_uri = params.get("redirect_uri")
    if redirect_uri is None and len(client.redirect_uris) == 1:
        redirect_uri = client.redirect_uris[0]
    if redirect_uri not in client.redirect_uris:
        raise InvalidRequest("redirect_uri is not registered for this client (exact match required)", step=step(2))
    return redirect_uri


def _pkce_challenge(params: Mapping[str, str]) -> str:
    """The S256 ``code_challenge`` (PKCE is required, ``plain`` is refused)."""
    challenge = params.get("code_challenge")
    if not challenge or not 43 <= len(challenge) <= 128:
        raise InvalidRequest("PKCE is required: code_challenge (43-128 characters) with method S256", step=step(2))
    if params.get("code_challenge_method") != "S256":
        raise InvalidRequest("PKCE code_challenge_method must be S256", step=step(2))
    return challenge


def _oauth_parameters(client: Client, params: Mapping[str, str]) -> dict[str, Any]:
    """The OAuth2 part every authorization request shares, checked."""
    s2 = step(2)
    if params.get("client_id") not in (None, client.client_id):
        raise InvalidRequest("client_id does not match the authenticated client", step=s2)
    redirect_uri = _redirect_uri(client, params)
    if params.get("response_type") != "code":
        raise InvalidRequest("response_type must be 'code'", step=s2)
    state = params.get("state")
    if state is not None and len(state) > 255:
        raise InvalidRequest("state is longer than 255 characters", step=s2)
    challenge = _pkce_challenge(params)
    login_hint = params.get("login_hint")
    if login_hint is not None and len(login_hint) > 512:
        raise InvalidRequest("login_hint is longer than 512 characters", step=s2)
    csc.refuse_documents(params, step=s2)
    # RFC 6749 §4.1.3: a redirect_uri sent here must be sent again, identical, to the token endpoint.
    return {"client_id": client.client_id, "redirect_uri": redirect_uri,
            "redirect_uri_given": params.get("redirect_uri") is not None, "state": state,
            "code_challenge": challenge, "login_hint": login_hint,
            "description": (params.get("description") or "")[:500]}


def _from_authorization_details(client: Client, params: Mapping[str, str], max_documents: int,
                                credential_for: CredentialLookup) -> dict[str, Any]:
    """RAR ``authorization_details`` of type ``credential``: person signing, or a named credential."""
    detail = csc.parse_authorization_details(params["authorization_details"], step=step(2),
                                             max_documents=max_documents)[0]
    request: dict[str, Any] = {"authorization_details": [detail.raw], "hash_alg": detail.hash_algorithm,
                               "documents": [{"hash": _b64(d.digest), "label": d.label} for d in detail.documents]}
    if detail.credential_id is None:
        return {**request, "kind": "sign", "qualifier": detail.qualifier}
    credential = credential_for(client.client_id, detail.credential_id, len(detail.documents))
    return {**request, "kind": "credential", "credential_id": detail.credential_id, "qualifier": credential.qualifier}


def _from_service_scope(client: Client, params: Mapping[str, str], max_documents: int) -> dict[str, Any]:
    """``scope=service`` (certificate first): a qualifier, a number of signatures and the SCAL of the
    credential (``2`` unless the request asks for the count-only ``SCAL=1``), no digests yet."""
    s2 = step(2)
    if "credential" in (params.get("scope") or "").split():
        raise InvalidScope("the scopes service and credential are never combined", step=s2)
    qualifier = params.get("signatureQualifier") or (client.qualifiers[0] if client.qualifiers else "")
    if qualifier not in REQUIRED_LOA:
        raise InvalidRequest(f"unsupported signatureQualifier {qualifier[:40]!r}", step=s2)
    number = params.get("numSignatures", "1")
    if not number.isdigit() or not 1 <= int(number) <= max_documents:
        raise InvalidRequest(f"numSignatures must be 1-{max_documents}", step=s2)
    scal = params.get("SCAL", "2")
    if scal not in SCAL_LEVELS:
        raise InvalidRequest(f"SCAL must be 1 (count only) or 2 (the person approves each hash), not {scal[:8]!r}",
                             step=s2)
    return {"kind": "service", "qualifier": qualifier, "num_signatures": int(number), "scal": scal, "documents": []}


def _from_credential_scope(client: Client, params: Mapping[str, str], max_documents: int,
                           credential_for: CredentialLookup) -> dict[str, Any]:
    """``scope=credential`` (CSC v1): a credential and exactly the hashes it may sign (SCAL 2)."""
    s2 = step(2)
    credential_id = params.get("credentialID")
    if not credential_id:
        raise InvalidRequest("scope credential needs credentialID (or authorization_details)", step=s2)
    algorithm = csc.hash_algorithm(csc.first(params, "hashAlgorithmOID", "hashAlgo") or DEFAULT_HASH_OID, step=s2)
    digests = csc.parse_digest_list(csc.first(params, "hashes", "hash"), algorithm, step=s2, max_count=max_documents)
    number = params.get("numSignatures", str(len(digests)))
    if not number.isdigit() or int(number) != len(digests):
        raise InvalidRequest("numSignatures must equal the number of hashes (SCAL 2)", step=s2)
    credential = credential_for(client.client_id, credential_id, len(digests))
    return {"kind": "credential", "credential_id": credential_id, "hash_alg": algorithm,
            "qualifier": credential.qualifier,
            "documents": [{"hash": _b64(d), "label": f"hash {i + 1}"} for i, d in enumerate(digests)]}


def parse_authorization_request(client: Client, params: Mapping[str, str], *, max_documents: int,
                                credential_for: CredentialLookup) -> dict[str, Any]:
    """Check an authorization request of ``client`` (step 2); the request to store.

    :param max_documents: the most digests (or signatures) one transaction may have.
    :param credential_for: checks a named credential (its client, status and signatures left).
    :raises SignLabError: ``invalid_request``, ``invalid_scope`` or ``access_denied`` (a qualifier
        the client may not ask for), at step 2.
    """
    request = _oauth_parameters(client, params)
    scope = (params.get("scope") or "").split()
    if params.get("authorization_details"):
        request.update(_from_authorization_details(client, params, max_documents, credential_for))
    elif "service" in scope:
        request.update(_from_service_scope(client, params, max_documents))
    elif "credential" in scope:
        request.update(_from_credential_scope(client, params, max_documents, credential_for))
    else:
        raise InvalidScope("request scope service or credential, or authorization_details of type credential",
                           step=step(2))
    if request["qualifier"] not in client.qualifiers:
        raise AccessDenied(f"client {client.client_id!r} may not request {request['qualifier']}", step=step(2))
    request["num_signatures"] = request.get("num_signatures") or len(request["documents"])
    return request


def binding_message(request: Mapping[str, Any], client: Client) -> str:
    """The sign message the eID provider shows at login (step 4): who asks for what."""
    count = int(request.get("num_signatures") or len(request.get("documents") or ()) or 1)
    kind = "QES" if request.get("qualifier") == "eu_eidas_qes" else "AdES"
    noun = "document" if count == 1 else "documents"
    return f"Sign {count} {noun} ({kind}) for {client.name}"
