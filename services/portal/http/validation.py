"""The validation views: upload a signed file, the three reports, the trust anchor for Acrobat.

Pages for a browser session (``validation``: ``/validate``, ``/reports/…``, ``/trust``) and the
JSON API for partner applications (``validation_api``: ``/api/v1/validate``,
``/api/v1/reports/…``). Views only parse the request, call
:meth:`~services.portal.signing.PortalCore.validate` (which runs :mod:`services.portal.validation`)
and render; a report answers only its owner.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, jsonify, render_template, request, url_for

from services.portal.documents import safe_label
from services.portal.errors import DocumentRejected, TransactionNotFound
from services.portal.http.common import (
    API_PREFIX,
    api_caller,
    authenticate_partner,
    browser_owner,
    check_csrf,
    csrf_token,
    portal_core,
    portal_settings,
    public_url,
    shown,
)
from shared.clock import lab_clock, parse_moment
from shared.errors import InvalidRequest

pages = Blueprint("validation", __name__)
api = Blueprint("validation_api", __name__, url_prefix=API_PREFIX)
api.before_request(authenticate_partner)


def _read_upload(field: str) -> tuple[str, bytes] | None:
    """The uploaded file of ``field`` (its safe label and bytes), None when none was chosen."""
    item = request.files.get(field)
    if item is None or not item.filename:
        return None
    limit = portal_settings().max_document_bytes
    content = item.read(limit + 1)
    label = safe_label(item.filename)
    if not content:
        raise DocumentRejected(label, "the file is empty (0 bytes)")
    if len(content) > limit:
        raise DocumentRejected(label, f"the file is larger than the limit of {limit} bytes", status=413)
    return label, content


@pages.route("/validate", methods=["GET", "POST"])
def validate_page() -> str | tuple[str, int]:
    """Upload a signed PDF, .p7s + file, or JAdES JSON + payload, and optionally a validation
    time; show the report with its downloads (simple and detailed JSON, ETSI TS 119 102-2 XML)."""
    if request.method == "GET":
        return render_template("portal/validate.html", csrf=csrf_token(), report=None, report_id=None)
    check_csrf()
    report, report_id = _validate_uploads(browser_owner(create=True) or "")
    return render_template("portal/validate.html", csrf=csrf_token(), report=shown(dict(report.to_dict(), report_id=report_id)),
                           report_id=report_id)


REPORT_PARTS = {"simple": ("json", "application/json"), "detailed": ("detailed.json", "application/json"),
                "etsi_xml": ("etsi.xml", "application/xml")}
"""The downloads of a stored validation: part → (file suffix, media type)."""


@pages.get("/reports/<report_id>.json")
def report_json(report_id: str) -> Response:
    """A stored validation report, as a JSON download (its owner only)."""
    return _report_download(report_id, browser_owner(), "simple")


@pages.get("/reports/<report_id>.detailed.json")
def report_detailed(report_id: str) -> Response:
    """The detailed report of a stored validation (its owner only)."""
    return _report_download(report_id, browser_owner(), "detailed")


@pages.get("/reports/<report_id>.etsi.xml")
def report_etsi(report_id: str) -> Response:
    """The ETSI TS 119 102-2 XML report of a stored validation (its owner only)."""
    return _report_download(report_id, browser_owner(), "etsi_xml")


def _report_download(report_id: str, owner: str | None, part: str) -> Response:
    body = portal_core().store.report(report_id, owner) if owner else None
    if body is not None and "simple" not in body:
        body = {"simple": body}  # a report stored before the detailed and ETSI reports existed
    if body is None or part not in body:
        raise TransactionNotFound(report_id if body is None else f"{report_id} ({part} report)")
    suffix, media = REPORT_PARTS[part]
    content = body[part] if part == "etsi_xml" else json.dumps(shown(body[part]), indent=2)
    response = Response(content, mimetype=media)
    response.headers["Content-Disposition"] = f'attachment; filename="validation-report-{report_id}.{suffix}"'
    return response


def report_urls(report_id: str, *, api_urls: bool) -> dict[str, str]:
    """Where the three reports of a stored validation are downloaded (browser or API routes)."""
    if api_urls:
        return {"simple": public_url("validation_api.api_report", report_id=report_id),
                "detailed": public_url("validation_api.api_report_detailed", report_id=report_id),
                "etsi": public_url("validation_api.api_report_etsi", report_id=report_id)}
    return {"simple": url_for("validation.report_json", report_id=report_id),
            "detailed": url_for("validation.report_detailed", report_id=report_id),
            "etsi": url_for("validation.report_etsi", report_id=report_id)}


@pages.get("/trust")
def trust_page() -> str:
    """Step-by-step: trust the SignLab root in Adobe Acrobat."""
    root = portal_core().trust.root()
    return render_template("portal/trust.html", subject=root.subject.human_friendly,
                           sha256=root.sha256_fingerprint, not_after=root.not_valid_after)


@pages.get("/trust/signlab-root.cer")
def trust_root() -> Response:
    """The root certificate (DER), for Acrobat's trusted certificates."""
    response = Response(portal_core().trust.root_der(), mimetype="application/pkix-cert")
    response.headers["Content-Disposition"] = 'attachment; filename="signlab-root.cer"'
    return response


def _validate_uploads(owner: str) -> tuple[Any, str]:
    signed = _read_upload("signed")
    if signed is None:
        raise InvalidRequest("upload the file in the 'signed' field")
    original = _read_upload("original")
    return portal_core().validate(signed[0], signed[1], original=original[1] if original else None, owner=owner,
                            at=validation_time(request.form.get("at")))


def validation_time(text: Any) -> datetime | None:
    """The validation time a caller asked for: None (empty: now on the lab clock), an ISO 8601 time
    (``2027-01-01T12:00:00Z``, or a browser's ``2027-01-01T12:00`` taken as UTC), or an offset from
    the lab clock's now (``+1d``, ``now-2h``).

    :raises InvalidRequest: anything else (400, the message shows the accepted forms).
    """
    if text is None or not str(text).strip():
        return None
    try:
        return parse_moment(str(text), lab_clock().now())
    except ValueError as exc:
        raise InvalidRequest(f"'at': {exc}") from None


@api.post("/validate")
def api_validate() -> Response:
    """Validate: multipart ``signed`` (+ ``original`` for detached CAdES/JAdES), or JSON
    ``{"signed": <base64>, "original": <base64>, "name": ...}``; returns the report."""
    if request.is_json:
        body = request.get_json(silent=True) or {}
        try:
            signed = base64.b64decode(str(body.get("signed", "")), validate=True)
            original = base64.b64decode(str(body["original"]), validate=True) if body.get("original") else None
        except binascii.Error:
            raise InvalidRequest("'signed' and 'original' must be standard base64") from None
        if not signed:
            raise InvalidRequest("'signed' is missing or empty")
        if len(signed) > portal_settings().max_document_bytes:
            raise DocumentRejected("signed", "larger than the size limit", status=413)
        report, report_id = portal_core().validate(safe_label(body.get("name"), "signed"), signed, original=original,
                                             owner=api_caller(), at=validation_time(body.get("at")))
    else:
        report, report_id = _validate_uploads(api_caller())
    body = shown(report.to_dict())
    urls = report_urls(report_id, api_urls=True)
    body.update(report_id=report_id, download_url=urls["simple"], detailed_report_url=urls["detailed"],
                etsi_report_url=urls["etsi"])
    return jsonify(body)


@api.get("/reports/<report_id>")
def api_report(report_id: str) -> Response:
    """A stored validation report (its application only)."""
    return _report_download(report_id, api_caller(), "simple")


@api.get("/reports/<report_id>/detailed")
def api_report_detailed(report_id: str) -> Response:
    """The detailed report of a stored validation (its application only)."""
    return _report_download(report_id, api_caller(), "detailed")


@api.get("/reports/<report_id>/etsi")
def api_report_etsi(report_id: str) -> Response:
    """The ETSI TS 119 102-2 XML report of a stored validation (its application only)."""
    return _report_download(report_id, api_caller(), "etsi_xml")

