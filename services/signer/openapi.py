"""OpenAPI 3 description of the SSASP's CSC API (v1 and v2) and OAuth2 endpoints.

Served at ``/csc/openapi.json``; the fuzzing work (schemathesis) reads it. It describes what the
service accepts (both v1 and v2 spellings) and the error shape every refusal uses.
"""

from __future__ import annotations

from typing import Any

__all__ = ["openapi_document", "request_schemas"]

_B64 = {"type": "string", "description": "standard base64 (base64url accepted)", "maxLength": 200}
_B64_OBJECT = {"type": "string", "description": "standard base64 of a DER object (CMS, certificate, CRL, OCSP, token)"}
_ERROR = {
    "type": "object",
    "required": ["error", "error_description"],
    "properties": {"error": {"type": "string"}, "error_description": {"type": "string"}},
}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(c): {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            for c in codes}


def _op(summary: str, schema: dict[str, Any] | None, ok: dict[str, Any], *, auth: bool = True,
        errors: tuple[int, ...] = (400, 401), body_required: bool = True) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "responses": {"200": {"description": "success", "content": {"application/json": {"schema": ok}}},
                      **_errors(*errors)},
    }
    if schema is not None:
        operation["requestBody"] = {"required": body_required, "content": {"application/json": {"schema": schema}}}
    if auth:
        operation["security"] = [{"bearer": []}]
    return operation


def request_schemas() -> dict[str, dict[str, Any]]:
    """The JSON schemas of the CSC request bodies, by method (``credentials/info`` …).

    One definition for two uses: the OpenAPI document publishes them, and the HTTP layer validates
    every request body against them, so what is documented is what is enforced.
    """
    hashes = {"type": "array", "items": _B64, "minItems": 1, "maxItems": 100}
    cred_info = {"type": "object", "properties": {
        "credentialID": {"type": "string"}, "certificates": {"type": "string", "enum": ["none", "single", "chain"]},
        "certInfo": {"type": "boolean"}, "authInfo": {"type": "boolean"}, "lang": {"type": "string"},
        "clientData": {"type": "string"}}, "required": ["credentialID"]}
    cred_list = {"type": "object", "properties": {
        "maxResults": {"type": "integer"}, "pageToken": {"type": "string"}, "credentialInfo": {"type": "boolean"},
        "certificates": {"type": "string"}, "certInfo": {"type": "boolean"}, "onlyValid": {"type": "boolean"},
        "clientData": {"type": "string"}}}
    authorize = {"type": "object", "required": ["credentialID", "numSignatures"], "properties": {
        "credentialID": {"type": "string"}, "numSignatures": {"type": "integer", "minimum": 1},
        "hash": hashes, "hashes": hashes, "hashAlgo": {"type": "string"}, "hashAlgorithmOID": {"type": "string"},
        "description": {"type": "string"}, "clientData": {"type": "string"}}}
    extend = {"type": "object", "required": ["credentialID", "SAD"], "properties": {
        "credentialID": {"type": "string"}, "SAD": {"type": "string"}, "hash": hashes, "hashes": hashes,
        "hashAlgorithmOID": {"type": "string"}, "clientData": {"type": "string"}}}
    sign_hash = {"type": "object", "required": ["credentialID", "signAlgo"], "properties": {
        "credentialID": {"type": "string"}, "SAD": {"type": "string"}, "hash": hashes, "hashes": hashes,
        "hashAlgo": {"type": "string"}, "hashAlgorithmOID": {"type": "string"}, "signAlgo": {"type": "string"},
        "signAlgoParams": {"type": "string"}, "operationMode": {"type": "string", "enum": ["S"]},
        "clientData": {"type": "string"}}}
    sign_doc = {"type": "object", "required": ["documentDigests"], "properties": {
        "signatureQualifier": {"type": "string", "enum": ["eu_eidas_qes", "eu_eidas_aes"]},
        "documentDigests": {"type": "array", "minItems": 1, "items": {
            # hashes (v1: hash) and hashAlgorithmOID (v1: hashAlgo; implied by a combined signAlgo)
            # are required in either spelling: csc.SignDocRequest says which is missing.
            "type": "object", "required": ["signature_format"], "properties": {
                "hashes": hashes, "hash": hashes, "hashAlgorithmOID": {"type": "string"}, "hashAlgo": {"type": "string"},
                "signature_format": {"type": "string", "enum": ["C", "P", "J"]},
                "conformance_level": {"type": "string"}, "signAlgo": {"type": "string"},
                "signAlgoParams": {"type": "string"}, "signed_props": {"type": "array"},
                "signed_envelope_property": {"type": "string"}}}},
        "credentialID": {"type": "string"}, "SAD": {"type": "string"}, "operationMode": {"type": "string"},
        "returnValidationInfo": {"type": "boolean"}, "clientData": {"type": "string"}},
        "description": "Whole documents (`documents`) are refused: digests only. A conformance_level, "
                       "signed_envelope_property or algorithm that is not produced is refused, never downgraded."}
    timestamp = {"type": "object", "required": ["hash"], "properties": {
        "hash": _B64, "hashAlgo": {"type": "string"}, "hashAlgorithmOID": {"type": "string"},
        "nonce": {"type": "string"}, "clientData": {"type": "string"}}}
    info = {"type": "object", "properties": {"lang": {"type": "string"}, "clientData": {"type": "string"}}}
    return {"info": info, "credentials/list": cred_list, "credentials/info": cred_info,
            "credentials/authorize": authorize, "credentials/extendTransaction": extend,
            "signatures/signHash": sign_hash, "signatures/signDoc": sign_doc, "signatures/timestamp": timestamp}


def openapi_document(base_url: str) -> dict[str, Any]:
    """The OpenAPI 3.0 document, with ``base_url`` as server."""
    schemas = request_schemas()
    cred_list, cred_info, authorize = schemas["credentials/list"], schemas["credentials/info"], schemas["credentials/authorize"]
    extend, sign_hash, sign_doc = schemas["credentials/extendTransaction"], schemas["signatures/signHash"], schemas["signatures/signDoc"]
    timestamp = schemas["signatures/timestamp"]
    sign_doc_ok = {"type": "object", "properties": {
        "SignatureObject": {"type": "array", "items": _B64_OBJECT},
        "validationInfo": {"type": "object", "properties": {
            "certificates": {"type": "array", "items": _B64_OBJECT}, "crl": {"type": "array", "items": _B64_OBJECT},
            "ocsp": {"type": "array", "items": _B64_OBJECT}}},
        "transactionID": {"type": "string"}, "signatureQualifier": {"type": "string"}, "loa": {"type": "string"},
        "certificateSerial": {"type": "string"}}}
    paths: dict[str, Any] = {}
    for version in (1, 2):
        prefix = f"/csc/v{version}"
        info_op = _op("Service information", schemas["info"], {"type": "object"}, auth=False, errors=(400,),
                      body_required=False)
        paths[f"{prefix}/info"] = {"post": info_op, "get": {k: v for k, v in info_op.items() if k != "requestBody"}}
        paths[f"{prefix}/credentials/list"] = {"post": _op("List the one-time credentials", cred_list, {"type": "object"},
                                                           body_required=False)}
        paths[f"{prefix}/credentials/info"] = {"post": _op("Credential details", cred_info, {"type": "object"})}
        paths[f"{prefix}/credentials/authorize"] = {"post": _op("SAD bound to hashes (SCAL 2)", authorize, {
            "type": "object", "properties": {"SAD": {"type": "string"}, "expiresIn": {"type": "integer"}}})}
        paths[f"{prefix}/signatures/signHash"] = {"post": _op("Sign authorized DTBS/R hashes", sign_hash, {
            "type": "object", "properties": {"signatures": {"type": "array", "items": _B64}}})}
        paths[f"{prefix}/signatures/timestamp"] = {"post": _op("RFC 3161 time-stamp from the TSA", timestamp, {
            "type": "object", "properties": {"timestamp": _B64_OBJECT}}, errors=(400, 401, 502, 503))}
        paths[f"{prefix}/credentials/extendTransaction"] = {"post": _op("Extend a SAD to new hashes", extend,
                                                                        {"type": "object"})}
    paths["/csc/v2/signatures/signDoc"] = {"post": _op(
        "Sign document digests with a one-time key (steps 6-10)", sign_doc, sign_doc_ok, errors=(400, 401, 403, 500, 502, 503))}
    # Client authentication: the portal's private_key_jwt (form fields client_assertion_type and
    # client_assertion, RFC 7523), which OpenAPI has no scheme for, or HTTP Basic (a secret partner).
    form = {"application/x-www-form-urlencoded": {"schema": {"type": "object", "properties": {
        "client_id": {"type": "string"}, "client_assertion_type": {"type": "string"},
        "client_assertion": {"type": "string"}}}}}
    par = {"post": {"summary": "Pushed authorization request (RFC 9126)", "requestBody": {
        "required": True, "content": form}, "security": [{"basic": []}], "responses": {
        "201": {"description": "created", "content": {"application/json": {"schema": {"type": "object", "properties": {
            "request_uri": {"type": "string"}, "expires_in": {"type": "integer"}}}}}}, **_errors(400, 401, 403, 429)}}}
    paths["/oauth2/pushed_authorize"] = par  # the CSC v2 method oauth2/pushed_authorize
    paths["/oauth2/par"] = {"post": {**par["post"], "summary": "Alias of /oauth2/pushed_authorize"}}
    paths["/oauth2/token"] = {"post": {"summary": "Token endpoint (authorization_code + PKCE)", "requestBody": {
        "required": True, "content": form}, "security": [{"basic": []}], "responses": {
        "200": {"description": "token", "content": {"application/json": {"schema": {"type": "object"}}}},
        **_errors(400, 401, 429)}}}
    paths["/oauth2/revoke"] = {"post": {"summary": "Token revocation (RFC 7009)", "requestBody": {
        "required": True, "content": form}, "security": [{"basic": []}], "responses": {
        "200": {"description": "revoked"}, **_errors(400, 401, 429)}}}
    paths["/oauth2/transaction-status"] = {"post": {
        "summary": "Where a transaction of this partner is (form transaction_id; answer_lost=true reports that the "
                   "signed answer never arrived)", "requestBody": {"required": True, "content": form},
        "security": [{"basic": []}], "responses": {
            "200": {"description": "the transaction's state", "content": {"application/json": {"schema": {
                "type": "object", "required": ["transaction_id", "state", "ended"], "properties": {
                    "transaction_id": {"type": "string"}, "state": {"type": "string"}, "ended": {"type": "boolean"},
                    "error": {"type": "string", "nullable": True},
                    "certificate_revocation": {"type": "string"}}}}}},
            **_errors(400, 401, 404, 429)}}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "SignLab SSASP — CSC API", "version": "1.0.4.0 / 2.0.0.2",
                 "description": "CSC API of the SignLab remote signing service (one-time keys, SoftHSM2)."},
        "servers": [{"url": base_url}],
        "paths": paths,
        "components": {
            "schemas": {"Error": _ERROR},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                "basic": {"type": "http", "scheme": "basic"}},
        },
    }
