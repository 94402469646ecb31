"""HTTP layer of the SSASP: OAuth2 authorization server, IdP callback, consent page, CSC v1/v2.

Views only parse, call :class:`~services.signer.service.SignerCore` and serialize; errors are
raised and rendered by :mod:`shared.web` (``{"error", "error_description"}``), except
authorization errors after the redirect URI is trusted, which go back to the client by redirect.

A CSC body is parsed once, here: after the SAM has checked the bearer token (401 comes before any
400), checked against the method's published JSON schema, then turned into the method's typed
request (:mod:`services.signer.csc`, v1 and v2 spellings alike); the core gets typed requests only.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import unquote

from flask import Blueprint, Response, current_app, jsonify, redirect, render_template, request
from jsonschema import Draft4Validator
from jsonschema.exceptions import best_match
from werkzeug.wrappers import Response as BaseResponse

from services.signer import csc
from services.signer.authorization import RedirectError
from services.signer.clients import Client, ClientCredentials
from services.signer.faults import DISABLED_HINT
from services.signer.info import csc_info
from services.signer.openapi import openapi_document, request_schemas
from services.signer.service import SignerCore
from services.signer.store import TokenRecord
from shared.errors import InvalidClient, InvalidRequest
from shared.faults import add_fault_admin_routes
from shared.jose_keys import public_jwks
from shared.trainer_access import require_trainer
from shared.web import writes_nothing

__all__ = ["csc_blueprint", "oauth_blueprint", "trainer_blueprint"]

oauth_blueprint = Blueprint("signer_oauth", __name__)
csc_blueprint = Blueprint("signer_csc", __name__)
trainer_blueprint = Blueprint("signer_trainer", __name__, url_prefix="/trainer")

AUDIT_PAGE_SIZE = 50
"""Audit entries per page of the trainer's view (``per_page`` may ask for 1-500)."""

_COOKIE_PREFIX = "signlab_tx_"


def _service() -> SignerCore:
    return current_app.extensions["signlab.signer"]


def _form() -> dict[str, str]:
    return dict(request.form.items())


def _client_credentials() -> ClientCredentials:
    """What the request presents to authenticate its client: a client assertion (RFC 7523 §2.2,
    ``private_key_jwt``), or an id and secret from HTTP Basic (RFC 6749 §2.3.1, form-url-encoded
    parts) or the form."""
    form = request.form
    assertion = {"assertion_type": form.get("client_assertion_type"), "assertion": form.get("client_assertion")}
    header = request.headers.get("Authorization", "")
    if header[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise InvalidClient("malformed HTTP Basic client credentials") from None
        client_id, _, secret = decoded.partition(":")
        return ClientCredentials(unquote(client_id), unquote(secret), **assertion)
    return ClientCredentials(form.get("client_id"), form.get("client_secret"), **assertion)


BASIC_CHALLENGE = 'Basic realm="signlab-signer"'
"""The challenge of a client that authenticated with HTTP Basic and failed (RFC 6749 §5.2)."""


def _authenticated_client() -> Client:
    """The client of a PAR, token or revocation request, authenticated (audited on refusal).

    A client that tried HTTP Basic and failed gets 401 with a ``Basic`` challenge: RFC 6749 §5.2
    wants the scheme the client used (the generic 401 of :mod:`shared.web` names ``Bearer``).
    """
    service = _service()
    try:
        return service.authenticate_client(_client_credentials(), request.remote_addr or "",
                                           endpoint=f"{service.settings.base_url}{request.path}")
    except InvalidClient as exc:
        if request.headers.get("Authorization", "")[:6].lower() == "basic ":
            exc.headers = {**exc.headers, "WWW-Authenticate": BASIC_CHALLENGE}
        raise


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    return header[7:].strip() if header[:7].lower() == "bearer " else None


_VALIDATORS = {method: Draft4Validator(schema) for method, schema in request_schemas().items()}
"""One validator per CSC method, from the schemas the OpenAPI document publishes."""


def _json_body(method: str, *, optional: bool = False) -> dict[str, Any]:
    """The JSON object body of a CSC call, validated against the method's published schema."""
    if not request.get_data(cache=True) and optional:
        return {}
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object (Content-Type: application/json)")
    csc.refuse_documents(body)  # digests only: this refusal says so, before any schema detail
    error = best_match(_VALIDATORS[method].iter_errors(body))
    if error is not None:
        where = ".".join(str(part) for part in error.path)
        if error.validator == "required":
            missing = [name for name in error.validator_value if name not in error.instance]
            raise InvalidRequest(f"Missing parameter {'.'.join(filter(None, [where, missing[0]]))}")
        # Name the rule, never the value: a reflected SAD or token would leak into logs and pages.
        raise InvalidRequest(f"Invalid parameter {where or 'body'}: must satisfy {error.validator} {error.validator_value!r}")
    return body


def _authorized(method: str, kind: str, *, optional: bool = False) -> tuple[dict[str, Any], TokenRecord]:
    """The schema-checked body of a CSC call and its bearer token, checked by the SAM.

    The order is the API's contract: a missing or bad bearer token is refused first (401: a caller
    who is not authenticated learns nothing about bodies), then a body that breaks the published
    schema (400), and only then what the body says (400).
    """
    access = _service().sam.access_token(_bearer(), (kind,))
    return _json_body(method, optional=optional), access


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


# ---------------------------------------------------------------------------- OAuth2 / OIDC


@oauth_blueprint.post("/oauth2/pushed_authorize")
@oauth_blueprint.post("/oauth2/par")
def par() -> tuple[Response, int]:
    """RFC 9126 pushed authorization request (step 2) at the CSC v2 path ``oauth2/pushed_authorize``
    (and ``/oauth2/par``, its earlier path); the client authenticates (``private_key_jwt`` for the
    portal, a client secret for further partners)."""
    client = _authenticated_client()
    return _no_store(jsonify(_service().push_authorization_request(client, _form()))), 201


@oauth_blueprint.get("/oauth2/authorize")
def authorize() -> BaseResponse:
    """Authorization endpoint: resolve the (pushed) request and send the browser to the IdP (step 3)."""
    try:
        url, record, browser = _service().start_authorization(dict(request.args.items()))
    except RedirectError as exc:
        return redirect(exc.location, 302)
    response = redirect(url, 302)
    response.set_cookie(_COOKIE_PREFIX + record.id, browser, max_age=_service().settings.login_timeout_seconds,
                        path="/oauth2", httponly=True, samesite="Lax", secure=request.is_secure)
    return response


@oauth_blueprint.get("/oauth2/idp-callback")
def idp_callback() -> BaseResponse:
    """The IdP's redirect back (step 5): verify the identity, then show the consent page."""
    service = _service()
    record = service.store.transaction_by("idp_state", request.args.get("state") or "\0")
    browser = request.cookies.get(_COOKIE_PREFIX + record.id) if record else None
    try:
        record = service.idp_callback(dict(request.args.items()), browser)
    except RedirectError as exc:
        return redirect(exc.location, 302)
    return redirect(f"/oauth2/consent/{record.id}", 303)


@oauth_blueprint.route("/oauth2/consent/<transaction_id>", methods=["GET", "POST"])
def consent(transaction_id: str) -> Any:
    """Consent page (GET) and the signer's decision (POST, CSRF-protected)."""
    service = _service()
    browser = request.cookies.get(_COOKIE_PREFIX + transaction_id)
    if request.method == "GET":
        view = service.consent_view(transaction_id, browser)
        response = Response(render_template("signer_consent.html", view=view))
        response.headers["Cache-Control"] = "no-store"
        return response
    decision = request.form.get("decision")
    if decision not in ("approve", "decline"):
        raise InvalidRequest("decision must be approve or decline")
    try:
        location = service.consent_decision(transaction_id, browser, request.form.get("csrf_token"),
                                            decision == "approve")
    except RedirectError as exc:
        location = exc.location
    answer = redirect(location, 303)
    answer.delete_cookie(_COOKIE_PREFIX + transaction_id, path="/oauth2")
    return answer


@oauth_blueprint.post("/oauth2/token")
def token() -> Response:
    """Token endpoint: authorization_code + PKCE, client authentication required."""
    client = _authenticated_client()
    return _no_store(jsonify(_service().exchange_code(client, _form())))


@oauth_blueprint.post("/oauth2/revoke")
def revoke() -> Response:
    """RFC 7009 token revocation (200, also for unknown tokens)."""
    client = _authenticated_client()
    _service().revoke(client, request.form.get("token"))
    return Response(status=200)


@oauth_blueprint.post("/oauth2/transaction-status")
def transaction_status() -> Response:
    """Where a transaction of the authenticated partner is (form ``transaction_id``; ``answer_lost=true``
    reports that the signed answer of a completed one never arrived)."""
    client = _authenticated_client()
    answer_lost = request.form.get("answer_lost", "false").lower()
    if answer_lost not in ("true", "false"):
        raise InvalidRequest("answer_lost must be true or false")
    return _no_store(jsonify(_service().transaction_status(client, request.form.get("transaction_id"),
                                                           answer_lost=answer_lost == "true")))


@oauth_blueprint.get("/.well-known/oauth-authorization-server")
def metadata() -> Response:
    """RFC 8414 metadata of the authorization server."""
    base = _service().settings.base_url
    return jsonify({
        "issuer": base,
        "pushed_authorization_request_endpoint": f"{base}/oauth2/pushed_authorize",
        "authorization_endpoint": f"{base}/oauth2/authorize",
        "token_endpoint": f"{base}/oauth2/token",
        "revocation_endpoint": f"{base}/oauth2/revoke",
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": _service().clients.auth_methods,
        "token_endpoint_auth_signing_alg_values_supported": ["ES256", "RS256", "PS256"],
        "scopes_supported": ["service", "credential"],
        "authorization_details_types_supported": ["credential", "https://cloudsignatureconsortium.org/2025/credential"],
        "require_pushed_authorization_requests": False,
    })


@oauth_blueprint.get("/.well-known/jwks.json")
def jwks() -> Response:
    """The signer's public key for RFC 7523 client assertions to the TSP (step 7)."""
    return jsonify(public_jwks(current_app.extensions["signlab.signer_assertion_key"]))


# Lab fault injection (HSM failures, services.signer.faults): 404 unless SIGNLAB_SIGNER_FAULTS_ENABLED.
add_fault_admin_routes(oauth_blueprint, lambda: _service().faults, DISABLED_HINT)


# ---------------------------------------------------------------------------- CSC API


def _register_csc(version: int) -> None:
    prefix = f"/csc/v{version}"

    # The read-only methods keep answering while the disk is low (they store nothing).
    @writes_nothing
    def info() -> Response:
        if request.method == "POST":
            _json_body("info", optional=True)  # CSC: POST with {} or {"lang"}; GET as pyHanko's dummy allows
        settings = _service().settings
        return jsonify(csc_info(version, base_url=settings.base_url, qualifiers=list(settings.portal_qualifiers)))

    @writes_nothing
    def credentials_list() -> Response:
        body, access = _authorized("credentials/list", "service", optional=True)
        return jsonify(_service().credentials_list(access, csc.CredentialsListRequest.parse(body), version))

    @writes_nothing
    def credentials_info() -> Response:
        body, access = _authorized("credentials/info", "service")
        return jsonify(_service().credentials_info(access, csc.CredentialInfoRequest.parse(body), version))

    def credentials_authorize() -> Response:
        body, access = _authorized("credentials/authorize", "service")
        return _no_store(jsonify(_service().credentials_authorize(access, csc.CredentialsAuthorizeRequest.parse(body))))

    def sign_hash() -> Response:
        # The token first (401), as in _authorized; whether the body carries a SAD decides which
        # kind of token the header may be (v2: a credential token in place of the SAD).
        sent = request.get_json(silent=True)
        holder = _service().sam.sign_hash_token(_bearer(), sad_in_body=isinstance(sent, dict) and bool(sent.get("SAD")))
        body = _json_body("signatures/signHash")
        return jsonify(_service().sign_hash(holder, csc.SignHashRequest.parse(body)))

    def credentials_extend_transaction() -> Response:
        body, access = _authorized("credentials/extendTransaction", "service")
        return _no_store(jsonify(_service().extend_transaction(access, csc.ExtendTransactionRequest.parse(body))))

    def timestamp() -> Response:
        _service().sam.timestamp_token(_bearer())
        body = _json_body("signatures/timestamp")
        return jsonify(_service().timestamp(csc.TimestampRequest.parse(body)))

    csc_blueprint.add_url_rule(f"{prefix}/info", f"v{version}_info", info, methods=["GET", "POST"])
    csc_blueprint.add_url_rule(f"{prefix}/credentials/list", f"v{version}_credentials_list", credentials_list,
                               methods=["POST"])
    csc_blueprint.add_url_rule(f"{prefix}/credentials/info", f"v{version}_credentials_info", credentials_info,
                               methods=["POST"])
    csc_blueprint.add_url_rule(f"{prefix}/credentials/authorize", f"v{version}_credentials_authorize",
                               credentials_authorize, methods=["POST"])
    csc_blueprint.add_url_rule(f"{prefix}/credentials/extendTransaction", f"v{version}_credentials_extend_transaction",
                               credentials_extend_transaction, methods=["POST"])
    csc_blueprint.add_url_rule(f"{prefix}/signatures/signHash", f"v{version}_signatures_sign_hash", sign_hash,
                               methods=["POST"])
    csc_blueprint.add_url_rule(f"{prefix}/signatures/timestamp", f"v{version}_signatures_timestamp", timestamp,
                               methods=["POST"])


_register_csc(1)
_register_csc(2)


@csc_blueprint.post("/csc/v2/signatures/signDoc")
def signatures_sign_doc() -> Response:
    """CSC v2 ``signatures/signDoc`` with a one-time key (steps 6-10)."""
    body, access = _authorized("signatures/signDoc", "sign")
    request = csc.SignDocRequest.parse(body, max_documents=_service().settings.max_documents)
    return _no_store(jsonify(_service().sign_doc(access, request)))


@csc_blueprint.get("/csc/openapi.json")
def openapi() -> Response:
    """OpenAPI 3 description of the CSC API and the OAuth2 endpoints of this service."""
    return jsonify(openapi_document(_service().settings.base_url))


# ---------------------------------------------------------------------------- trainer view


@trainer_blueprint.before_request
def _trainer_only() -> None:
    """The audit log's view is for trainers (the trainer token; 401 with its challenge otherwise)."""
    require_trainer()


def _audit_page() -> dict[str, Any]:
    page = request.args.get("page", "1")
    per_page = request.args.get("per_page", str(AUDIT_PAGE_SIZE))
    if not page.isdigit() or not per_page.isdigit() or not 1 <= int(per_page) <= 500:
        raise InvalidRequest("page must be a positive number and per_page 1-500")
    return _service().audit_page(int(page), int(per_page))


@trainer_blueprint.get("/audit")
def audit_page() -> str:
    """The audit log, newest first, with its chain status (read-only; trainer token)."""
    return render_template("signer_audit.html", view=_audit_page())


@trainer_blueprint.get("/api/audit")
def audit_json() -> Response:
    """The same page as JSON: ``{"chain": {ok, summary, entries, head, …}, "page", "pages", "entries"}``."""
    return jsonify(_audit_page())
