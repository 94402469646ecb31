"""HTTP layer of the portal: pages (server-rendered) and the JSON API under ``/api/v1``.

Views only parse requests, call :class:`~services.portal.signing.PortalCore` or the validator,
and render. Errors are raised and rendered by the shared frame (JSON or an HTML page). Forms carry
a per-session CSRF token; the JSON API is for automation (no cookies, no CSRF token).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import secrets
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, redirect, render_template, request, session, url_for
from werkzeug.datastructures import FileStorage

from services.portal.documents import Document, SignatureFormat, SigningOptions, check_document, safe_label
from services.portal.errors import DocumentRejected, TransactionNotFound
from services.portal.samples import SAMPLES, sample, sample_path
from services.portal.settings import PortalSettings
from services.portal.signing import PortalCore
from services.portal.store import COMPLETED
from services.portal.validation import validate_document
from shared.errors import InvalidRequest
from shared.flow import STEPS, step

__all__ = ["register"]

bp = Blueprint("portal", __name__)
api = Blueprint("portal_api", __name__, url_prefix="/api/v1")

_MEDIA = {"pades": "application/pdf", "cades": "application/pkcs7-signature", "jades": "application/jose+json"}


def _core() -> PortalCore:
    return current_app.extensions["signlab.portal"]


def _settings() -> PortalSettings:
    return current_app.extensions["signlab.settings"]


# ---------------------------------------------------------------- CSRF


def csrf_token() -> str:
    """The session's CSRF token (created on first use)."""
    token = session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return str(token)


def _check_csrf() -> None:
    sent = request.form.get("csrf_token", "")
    expected = session.get("csrf", "")
    if not expected or not hmac.compare_digest(str(sent), str(expected)):
        raise InvalidRequest("the form's CSRF token is missing or stale; reload the page and submit again", status=403)


# ---------------------------------------------------------------- input helpers


def _uploads_from_form(fmt: SignatureFormat) -> list[Document]:
    settings = _settings()
    docs: list[Document] = []
    files: list[FileStorage] = [f for f in request.files.getlist("documents") if f and f.filename]
    for item in files:
        content = item.read(settings.max_document_bytes + 1)
        docs.append(check_document(item.filename or "document", content, fmt, max_bytes=settings.max_document_bytes))
    for name in request.form.getlist("samples"):
        docs.append(_sample_document(name, fmt))
    return docs


def _sample_document(name: str, fmt: SignatureFormat) -> Document:
    try:
        path = sample_path(name)
    except KeyError:
        raise InvalidRequest(f"there is no sample document {safe_label(name)!r}", step=step(1)) from None
    return check_document(path.name, path.read_bytes(), fmt, max_bytes=_settings().max_document_bytes)


def _check_count(docs: list[Document]) -> None:
    limit = _settings().max_documents
    if len(docs) > limit:
        raise InvalidRequest(f"{len(docs)} documents chosen; one signing request takes at most {limit}", step=step(1))


def _documents_from_json(body: dict[str, Any], fmt: SignatureFormat) -> list[Document]:
    settings = _settings()
    items = body.get("documents")
    if not isinstance(items, list) or not items:
        raise InvalidRequest("'documents' must be a non-empty list of {name, content} or {sample}", step=step(1))
    docs = []
    for item in items:
        if not isinstance(item, dict):
            raise InvalidRequest("each document must be an object", step=step(1))
        if "sample" in item:
            docs.append(_sample_document(str(item["sample"]), fmt))
            continue
        name = str(item.get("name") or "document")
        try:
            content = base64.b64decode(str(item.get("content", "")), validate=True)
        except binascii.Error:
            raise DocumentRejected(safe_label(name), "'content' is not standard base64") from None
        docs.append(check_document(name, content, fmt, max_bytes=settings.max_document_bytes))
    return docs


def _read_upload(field: str, required: bool) -> tuple[str, bytes] | None:
    item = request.files.get(field)
    if item is None or not item.filename:
        if required:
            raise InvalidRequest(f"upload the file in the '{field}' field")
        return None
    limit = _settings().max_document_bytes
    content = item.read(limit + 1)
    label = safe_label(item.filename)
    if not content:
        raise DocumentRejected(label, "the file is empty (0 bytes)")
    if len(content) > limit:
        raise DocumentRejected(label, f"the file is larger than the limit of {limit} bytes", status=413)
    return label, content


def _transaction_json(tx_id: str) -> dict[str, Any]:
    tx = _core().get(tx_id)
    docs = []
    for doc in tx.documents:
        entry: dict[str, Any] = {"index": doc.idx, "label": doc.label, "digest_sha256_b64": base64.b64encode(doc.digest).decode()}
        if tx.state == COMPLETED and doc.signed is not None:
            entry.update({
                "signed_name": doc.signed_name,
                "download_url": url_for("portal_api.download", tx_id=tx.id, idx=doc.idx, _external=True),
                "report": doc.report,
            })
        docs.append(entry)
    return {
        "transaction_id": tx.id, "state": tx.state, "options": tx.options, "authorize_url": tx.authorize_url,
        "error": tx.error, "error_description": tx.error_description, "signer": tx.meta if tx.state == COMPLETED else None,
        "documents": docs, "result_url": url_for("portal.result", tx_id=tx.id, _external=True),
        "trace_url": url_for("signlab_trainer.view", key=tx.id, _external=True),
    }


# ---------------------------------------------------------------- pages


@bp.get("/")
def index() -> str:
    """Step 1: choose documents and options."""
    return render_template("portal/index.html", samples=SAMPLES, csrf=csrf_token(), settings=_settings(), step1=step(1))


@bp.post("/sign")
def sign() -> Response:
    """Steps 1-2: prepare the documents, push the authorization request, send the browser to the SSASP."""
    _check_csrf()
    options = SigningOptions.parse(dict(request.form.items()))
    docs = _uploads_from_form(options.format)
    _check_count(docs)
    created = _core().create(docs, options)
    return redirect(created.authorize_url, code=303)  # type: ignore[return-value]


@bp.get("/sign/callback")
def callback() -> Response:
    """Step 10: the SSASP sends the browser back with ``code`` and ``state`` (or an error)."""
    tx = _core().complete(
        state=request.args.get("state"), code=request.args.get("code"),
        error=request.args.get("error"), error_description=request.args.get("error_description"),
    )
    return redirect(url_for("portal.result", tx_id=tx.id), code=303)  # type: ignore[return-value]


@bp.get("/transactions/<tx_id>")
def result(tx_id: str) -> str:
    """The result page: downloads, validation report, transaction id, flow diagram slot."""
    tx = _core().get(tx_id)
    return render_template("portal/result.html", tx=tx, steps=STEPS)


@bp.get("/transactions/<tx_id>/documents/<int:idx>")
def download_page(tx_id: str, idx: int) -> Response:
    """Download one signed document (same as the API)."""
    return download(tx_id, idx)


@bp.route("/validate", methods=["GET", "POST"])
def validate_page() -> str | tuple[str, int]:
    """Upload a signed PDF, .p7s + file, or JAdES JSON + payload; show the report."""
    if request.method == "GET":
        return render_template("portal/validate.html", csrf=csrf_token(), report=None, report_id=None)
    _check_csrf()
    report, report_id = _validate_uploads()
    return render_template("portal/validate.html", csrf=csrf_token(), report=report, report_id=report_id)


@bp.get("/reports/<report_id>.json")
def report_json(report_id: str) -> Response:
    """A stored validation report, as a JSON download."""
    body = _core().store.report(report_id)
    if body is None:
        raise TransactionNotFound(report_id)
    response = Response(json.dumps(body, indent=2), mimetype="application/json")
    response.headers["Content-Disposition"] = f'attachment; filename="validation-report-{report_id}.json"'
    return response


@bp.get("/trust")
def trust_page() -> str:
    """Step-by-step: trust the SignLab root in Adobe Acrobat."""
    root = _core().trust.root()
    return render_template("portal/trust.html", subject=root.subject.human_friendly,
                           sha256=root.sha256_fingerprint, not_after=root.not_valid_after)


@bp.get("/trust/signlab-root.cer")
def trust_root() -> Response:
    """The root certificate (DER), for Acrobat's trusted certificates."""
    response = Response(_core().trust.root_der(), mimetype="application/pkix-cert")
    response.headers["Content-Disposition"] = 'attachment; filename="signlab-root.cer"'
    return response


def _validate_uploads() -> tuple[Any, str]:
    signed = _read_upload("signed", required=True)
    assert signed is not None
    original = _read_upload("original", required=False)
    trust = _core().trust.settings()
    report = asyncio.run(validate_document(signed[0], signed[1], trust, original=original[1] if original else None))
    report_id = secrets.token_hex(8)
    _core().store.save_report(report_id, report.to_dict())
    return report, report_id


# ---------------------------------------------------------------- JSON API


@api.post("/sign-requests")
def api_create() -> tuple[Response, int]:
    """Create a signing request: JSON ``{documents, qualifier, format, level, flow, visible, signer_name, login_hint}``
    (documents as ``{"name", "content": <base64>}`` or ``{"sample": <name>}``) or the same as multipart form."""
    if request.is_json:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise InvalidRequest("the body must be a JSON object", step=step(1))
        options = SigningOptions.parse(body)
        docs = _documents_from_json(body, options.format)
    else:
        options = SigningOptions.parse(dict(request.form.items()))
        docs = _uploads_from_form(options.format)
    _check_count(docs)
    created = _core().create(docs, options)
    body = {
        "transaction_id": created.transaction_id,
        "authorize_url": created.authorize_url,
        "status_url": url_for("portal_api.api_transaction", tx_id=created.transaction_id, _external=True),
    }
    return jsonify(body), 201


@api.get("/transactions/<tx_id>")
def api_transaction(tx_id: str) -> Response:
    """The transaction's state and, when completed, downloads and validation reports."""
    return jsonify(_transaction_json(tx_id))


@api.get("/transactions/<tx_id>/documents/<int:idx>")
def download(tx_id: str, idx: int) -> Response:
    """The signed document ``idx`` (404 until the transaction is completed)."""
    tx = _core().get(tx_id)
    doc = next((d for d in tx.documents if d.idx == idx), None)
    if tx.state != COMPLETED or doc is None or doc.signed is None:
        raise TransactionNotFound(f"{tx_id}/documents/{idx} (not signed)")
    fmt = tx.options.get("format", "pades")
    response = Response(doc.signed, mimetype=_MEDIA.get(fmt, "application/octet-stream"))
    response.headers["Content-Disposition"] = f'attachment; filename="{doc.signed_name}"'
    return response


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
        if len(signed) > _settings().max_document_bytes:
            raise DocumentRejected("signed", "larger than the size limit", status=413)
        trust = _core().trust.settings()
        report = asyncio.run(validate_document(safe_label(body.get("name"), "signed"), signed, trust, original=original))
        report_id = secrets.token_hex(8)
        _core().store.save_report(report_id, report.to_dict())
    else:
        report, report_id = _validate_uploads()
    body = report.to_dict()
    body["report_id"] = report_id
    body["download_url"] = url_for("portal.report_json", report_id=report_id, _external=True)
    return jsonify(body)


@api.get("/samples")
def api_samples() -> Response:
    """The bundled sample documents."""
    return jsonify([{"name": s.name, "title": s.title, "formats": list(s.formats)} for s in SAMPLES])


def register(app: Flask) -> None:
    """Register the portal's blueprints and template helpers."""
    app.register_blueprint(bp)
    app.register_blueprint(api)
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.jinja_env.globals["sample_info"] = sample
