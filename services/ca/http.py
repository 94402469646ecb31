"""The TSP's HTTP layer: parse, call the core, serialize. No protocol logic here.

Blueprints: ``api`` (issuance at step 7, lookup, revoke), ``pki`` (certificates, CRLs, OCSP, TSA,
trusted list) and ``pages`` (trainer pages).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from typing import Any

from cryptography.hazmat.primitives import serialization
from flask import Blueprint, Response, current_app, jsonify, render_template, request
from werkzeug.exceptions import RequestEntityTooLarge

from services.ca.authority import CRL_NAMES, REVOCATION_REASONS
from services.ca.core import PUBLISHED_CERTIFICATES, CaCore
from services.ca.describe import describe_certificate, status_of
from services.ca.errors import AdminAuthFailed, BodyTooLarge, CertificateNotFound, RequestRejected
from services.ca.faults import DISABLED_HINT
from services.ca.issuance_log import cross_check
from services.ca.store import CertificateRecord
from services.ca.trusted_list import SERVICE_STATUSES, TL_SERVICES, StatusChange
from shared.clock import parse_moment
from shared.fault_admin import add_fault_admin_routes, lab_admin
from shared.guard import SecretGuard, bearer_token
from shared.personal_data import mask_personal_data
from shared.trainer_access import is_trainer, require_trainer
from shared.web import writes_nothing

__all__ = ["api", "pages", "pki"]

api = Blueprint("ca_api", __name__, url_prefix="/api/v1")
pki = Blueprint("ca_pki", __name__)
pages = Blueprint("ca_pages", __name__)

_DER_TYPES = {"crt": "application/pkix-cert", "crl": "application/pkix-crl"}


def tsp() -> CaCore:
    """The app's TSP."""
    return current_app.extensions["signlab.ca"]


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


def _limited_body() -> bytes:
    """The raw body, refused (413) above the endpoint limit without reading more."""
    limit = tsp().settings.issuance_max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLarge("body_too_large", f"the body ({request.content_length} bytes) exceeds {limit} bytes", step=None)
    request.max_content_length = limit
    try:
        return request.get_data(cache=True)
    except RequestEntityTooLarge:
        raise BodyTooLarge("body_too_large", f"the body exceeds {limit} bytes", step=None) from None


def _serial(text: str) -> int:
    try:
        value = int(text, 16)
    except ValueError:
        raise RequestRejected("serial_invalid", f"serial {text[:40]!r} is not hexadecimal", step=None) from None
    if value <= 0 or len(text) > 40:
        raise RequestRejected("serial_invalid", "serial must be a positive hex number of at most 40 digits", step=None)
    return value


def _show_personal_data() -> bool:
    """Signers' identifiers unmasked: for trainers in a lab that shows personal data."""
    return bool(tsp().settings.show_personal_data) and is_trainer()


def record_json(record: CertificateRecord) -> dict[str, Any]:
    """The JSON view of a stored certificate (the subject's identifier masked, docs/design.md §6)."""
    return {
        "serial": record.serial,
        "profile": record.profile,
        "status": status_of(record),
        "subject": mask_personal_data(record.subject, show=_show_personal_data()),
        "loa": record.loa,
        "requester": record.requester,
        "transaction_id": record.transaction_id,
        "not_before": _iso(record.not_before),
        "not_after": _iso(record.not_after),
        "issued_at": _iso(record.issued_at),
        "revoked_at": _iso(record.revoked_at),
        "revocation_reason": record.revocation_reason,
        "certificate": base64.b64encode(record.der).decode("ascii"),
    }


# --- API ------------------------------------------------------------------------------------------

@api.post("/certificates")
def issue_certificate() -> tuple[Response, int]:
    """Step 7: issue a short-term certificate (JSON in, 201 JSON out)."""
    issuance = tsp().issuance
    limit = tsp().settings.issuance_max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise issuance.refuse_oversized(request.content_length)
    request.max_content_length = limit
    try:
        body = request.get_json(silent=True)
    except RequestEntityTooLarge:
        raise issuance.refuse_oversized(None) from None
    issued = issuance.issue(body)
    return jsonify(issued.to_json()), 201


@api.post("/certificates/revocations")
def revoke_issued_certificates() -> Response:
    """The signing service revokes certificates it was issued, for a flow that failed after step 7
    (client assertion; ``serial`` and/or ``transaction_id``; ``reason``, default ``cessationOfOperation``)."""
    revoked = tsp().issuance.revoke_issued(request.get_json(silent=True))
    return jsonify({"revoked": [record_json(record) for record in revoked]})


@api.get("/certificates/<serial>")
def get_certificate(serial: str) -> Response:
    """Look up an issued certificate and its status."""
    record = tsp().authority.lookup(_serial(serial))
    if record is None:
        raise CertificateNotFound("certificate_not_found", f"no certificate with serial {serial} was issued here",
                                  step=None)
    return jsonify(record_json(record))


@api.post("/certificates/<serial>/revoke")
def revoke_certificate(serial: str) -> Response:
    """Revoke a certificate (admin bearer token; body ``{"reason": "keyCompromise"}``, optional)."""
    guard: SecretGuard = current_app.extensions["signlab.ca.admin_guard"]
    if not guard.matches(bearer_token(request.headers.get("Authorization")), request.remote_addr):
        raise AdminAuthFailed("admin_token_invalid", "the revoke API needs 'Authorization: Bearer <admin token>'",
                              step=None)
    value = _serial(serial)
    body = request.get_json(silent=True) if request.content_length else {}
    if body is None or not isinstance(body, dict):
        raise RequestRejected("body_not_json_object", "the body must be a JSON object", step=None)
    reason = body.get("reason", "unspecified")
    if reason not in REVOCATION_REASONS:
        raise RequestRejected("reason_invalid", f"reason must be one of {', '.join(REVOCATION_REASONS)}", step=None)
    try:
        record = tsp().authority.revoke(value, str(reason), requester="admin")
    except KeyError:
        raise CertificateNotFound("certificate_not_found", f"no certificate with serial {serial} was issued here",
                                  step=None) from None
    return jsonify(record_json(record))


@api.get("/issuance-log/verify")
def verify_issuance_log() -> Response:
    """Recompute the issuance log's hash chain and compare it with the certificate database."""
    authority = tsp().authority
    result = authority.log.verify()
    with authority.gate.quiet(10) as quiet:
        check = cross_check(authority.store.states(), authority.log.raw_entries()) if quiet else None
    return jsonify({"ok": result.ok, "entries": result.entries, "first_broken": result.first_broken,
                    "reason": result.reason, "head": result.head, "summary": result.summary(),
                    "recoveries": [r.seq for r in result.recoveries],
                    "cross_check": None if check is None else {
                        "ok": check.ok, "certificates": check.certificates, "summary": check.summary(),
                        "mismatches": [vars(m) for m in check.mismatches]}})


# --- PKI publication ------------------------------------------------------------------------------

@pki.get("/certs/<name>.crt")
def certificate(name: str) -> Response:
    """A CA/TSA/OCSP/trusted-list-signer certificate, DER."""
    if name not in PUBLISHED_CERTIFICATES:
        raise CertificateNotFound("certificate_not_found", f"no certificate {name!r}; published: "
                                  + ", ".join(PUBLISHED_CERTIFICATES), step=None)
    return Response(tsp().hierarchy.by_name(name).der, mimetype=_DER_TYPES["crt"],
                    headers={"Content-Disposition": f'attachment; filename="signlab-{name}.crt"'})


@pki.get("/certs/chain.pem")
def chain_pem() -> Response:
    """Issuing CA and root, PEM."""
    h = tsp().hierarchy
    pem = b"".join(c.cert.public_bytes(serialization.Encoding.PEM) for c in (h.issuing, h.root))
    return Response(pem, mimetype="application/x-pem-file",
                    headers={"Content-Disposition": 'attachment; filename="signlab-chain.pem"'})


@pki.get("/crl/<name>.crl")
def crl(name: str) -> Response:
    """The current CRL of the root or issuing CA, DER.

    ``ETag`` is the quoted CRL number; a request whose ``If-None-Match`` names it gets ``304 Not
    Modified`` without a body (the CRL is rebuilt, with a new number, as soon as the revocation
    set changes, so a 304 never hides a revocation). ``Cache-Control: no-cache``: a cache may
    keep the CRL but must revalidate it on every use.
    """
    if name not in CRL_NAMES:
        raise CertificateNotFound("crl_not_found", f"no CRL {name!r}; published: root, issuing", step=None)
    published = tsp().authority.published_crl(name)
    tag = str(published.number)
    if request.if_none_match.contains_weak(tag):
        response = Response(status=304)
    else:
        response = Response(published.der, mimetype=_DER_TYPES["crl"])
    response.set_etag(tag)
    response.headers["Cache-Control"] = "no-cache"
    return response


@pki.post("/ocsp")
@writes_nothing
def ocsp_post() -> Response:
    """RFC 6960 OCSP over POST (``application/ocsp-request``)."""
    return Response(tsp().ocsp.respond(_limited_body()), mimetype="application/ocsp-response")


@pki.get("/ocsp/<path:encoded>")
def ocsp_get(encoded: str) -> Response:
    """RFC 6960 OCSP over GET (base64 of the DER request, URL-encoded, in the path)."""
    try:
        der = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        der = b""  # answered as malformedRequest, like any other unparsable request
    return Response(tsp().ocsp.respond(der), mimetype="application/ocsp-response")


@pki.post("/tsa")
@writes_nothing
def time_stamp() -> Response:
    """RFC 3161 time-stamping over HTTP (``application/timestamp-query`` → ``-reply``)."""
    if request.mimetype != "application/timestamp-query":
        raise RequestRejected("content_type_invalid", "send the TimeStampReq as application/timestamp-query",
                              step=None)
    return Response(tsp().tsa.respond(_limited_body()), mimetype="application/timestamp-reply")


@pki.get("/tl/trusted-list.xml")
def trusted_list() -> Response:
    """The XAdES-signed ETSI TS 119 612 trusted list."""
    return Response(tsp().trusted_list(), mimetype="application/vnd.etsi.tsl+xml")


# Lab fault injection (wrong-key, tsa-unavailable; services.ca.faults): 404 unless SIGNLAB_CA_FAULTS_ENABLED.
add_fault_admin_routes(pki, lambda: tsp().faults, DISABLED_HINT)


# --- lab: status changes of the trusted-list services (same guard as /admin/faults) ---------------

def _change_json(change: StatusChange) -> dict[str, Any]:
    return {"service": change.service, "status": change.status, "since": _iso(change.since), "note": change.note}


@pki.get("/admin/trusted-list")
def trusted_list_changes() -> Response:
    """The recorded status changes of the listed services (admin token, lab only)."""
    lab_admin(tsp().faults, DISABLED_HINT)
    return jsonify({"changes": [_change_json(c) for c in tsp().status_changes()], "services": list(TL_SERVICES),
                    "statuses": list(SERVICE_STATUSES)})


@pki.post("/admin/trusted-list/<service>")
def change_trusted_list_status(service: str) -> tuple[Response, int]:
    """Change a listed service's status from a time on: ``{"status": "withdrawn"|"granted", "since"?: ISO 8601
    (default: now on the lab clock), "note"?}``; the next trusted list shows it (admin token, lab only)."""
    lab_admin(tsp().faults, DISABLED_HINT)
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("status"), str):
        raise RequestRejected("body_not_json_object", 'expected a JSON object {"status": "withdrawn", "since"?: ISO 8601}',
                              step=None)
    since = None
    if body.get("since") is not None:
        try:
            since = parse_moment(str(body["since"]), tsp().authority.clock.now())
        except ValueError as exc:
            raise RequestRejected("since_invalid", str(exc), step=None) from None
    try:
        change = tsp().change_status(service, body["status"], since, str(body.get("note") or ""))
    except ValueError as exc:
        raise RequestRejected("status_change_invalid", str(exc), step=None) from None
    return jsonify(_change_json(change)), 201


@pki.delete("/admin/trusted-list")
def clear_trusted_list_changes() -> Response:
    """Forget every status change: each service is granted again from its start (admin token, lab only)."""
    lab_admin(tsp().faults, DISABLED_HINT)
    return jsonify({"removed": tsp().authority.store.clear_status_changes()})


# --- trainer pages --------------------------------------------------------------------------------

@pages.get("/")
def overview() -> str:
    """The hierarchy, downloads and the latest certificates."""
    h = tsp().hierarchy
    chain = [(name, describe_certificate(h.by_name(name).der)) for name in PUBLISHED_CERTIFICATES]
    return render_template("ca/overview.html", chain=chain, settings=tsp().settings,
                           recent=tsp().authority.store.recent(10), status_of=status_of)


def _mask(value: Any) -> Any:
    """Template filter: personal data masked unless the lab shows it."""
    return mask_personal_data(value, show=_show_personal_data())


@pages.get("/certificates")
def certificates_page() -> str:
    """The issued certificates with status and validity countdown (trainer token)."""
    require_trainer()
    return render_template("ca/certificates.html", records=tsp().authority.store.recent(200), status_of=status_of,
                           now=tsp().authority.clock.now(), mask=_mask)


@pages.get("/certificates/<serial>")
def certificate_page(serial: str) -> str:
    """One issued certificate, decoded (trainer token)."""
    require_trainer()
    record = tsp().authority.lookup(_serial(serial))
    if record is None:
        raise CertificateNotFound("certificate_not_found", f"no certificate with serial {serial}", step=None)
    return render_template("ca/certificate.html", record=record, cert=describe_certificate(record.der),
                           status=status_of(record), mask=_mask)


@pages.get("/trusted-list")
def trusted_list_page() -> str:
    """What the trusted list says, and why it tells QES from AdES."""
    return render_template("ca/trusted_list.html", settings=tsp().settings,
                           issuing=describe_certificate(tsp().hierarchy.issuing.der),
                           tsa=describe_certificate(tsp().hierarchy.tsa.der))


@pages.get("/trust")
def trust_page() -> str:
    """How to trust the SignLab root in Adobe Acrobat (and elsewhere)."""
    return render_template("ca/trust.html", root=describe_certificate(tsp().hierarchy.root.der))


@pages.get("/issuance-log")
def issuance_log_page() -> str:
    """The issuance log (pseudonymised) and its verification."""
    log = tsp().authority.log
    return render_template("ca/issuance_log.html", entries=list(reversed(log.entries()))[:200],
                           verification=log.verify())
