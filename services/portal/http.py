"""HTTP layer of the portal: pages (server-rendered) and the JSON API under ``/api/v1``.

Views only parse requests, call :class:`~services.portal.signing.PortalCore` or the validator,
and render. Errors are raised and rendered by the shared frame (JSON or an HTML page). Forms carry
a per-session CSRF token; the JSON API is for partner applications (HTTP Basic, no cookies).

Ownership: every transaction and validation report belongs to the browser session (a random id
in the signed session cookie) or to the partner application that created it. Its status, result
page, downloads, report and trace answer only that owner; anyone else gets the same 404 as for an
id that never existed. The signer sees the documents on the review page (``/review/<token>``, the
link the owner hands to the signer) and confirms there before anything goes to the SSASP.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from datetime import datetime
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, redirect, render_template, request, session, url_for
from werkzeug.datastructures import FileStorage

from services.portal.documents import Document, SignatureFormat, SigningOptions, check_document, safe_label
from services.portal.errors import DocumentRejected, TransactionNotFound, TransactionStateError
from services.portal.partners import PartnerApplications
from services.portal.preview import PreviewUnavailable, preview_of, render_pdf_page
from services.portal.refusals import explain
from services.portal.samples import SAMPLES, sample, sample_path
from services.portal.settings import PortalSettings
from services.portal.signing import PortalCore
from services.portal.store import COMPLETED, EXPIRED, FAILED, PENDING, REVIEW, StoredDocument, Transaction
from shared.clock import lab_clock, parse_moment
from shared.digests import digest_fingerprint
from shared.errors import AccessDenied, InvalidRequest, SignLabError
from shared.flow import STEPS, step
from shared.jose_keys import public_jwks
from shared.personal_data import mask_personal_data
from shared.tracing import annotate, refused
from shared.tracing.web import trace_response
from shared.web import wants_html

__all__ = ["register"]

bp = Blueprint("portal", __name__)
api = Blueprint("portal_api", __name__, url_prefix="/api/v1")

_MEDIA = {"pades": "application/pdf", "cades": "application/pkcs7-signature", "jades": "application/jose+json"}


def _core() -> PortalCore:
    return current_app.extensions["signlab.portal"]


def _settings() -> PortalSettings:
    return current_app.extensions["signlab.settings"]


# ---------------------------------------------------------------- owners


def _browser_owner(create: bool = False) -> str | None:
    """The owner key of this browser session (``browser:<hash>``); made on first use when ``create``."""
    token = session.get("owner")
    if not token:
        if not create:
            return None
        token = session["owner"] = secrets.token_urlsafe(32)
    return "browser:" + hashlib.sha256(str(token).encode()).hexdigest()[:32]


def _api_owner() -> str:
    """The owner key of the authenticated partner application (``app:<id>``).

    :raises services.portal.partners.PartnerAuthRequired: 401 with the Basic challenge.
    """
    auth = request.authorization
    partners: PartnerApplications = current_app.extensions["signlab.portal.partners"]
    if auth is None or auth.type != "basic":
        return partners.authenticate(None, None, request.remote_addr)
    return partners.authenticate(auth.username, auth.password, request.remote_addr)


def _owned(tx_id: str, owner: str | None) -> Transaction:
    return _core().get(tx_id, owner or "")


def _public_url(endpoint: str, **values: Any) -> str:
    """An absolute URL of this portal from its configured public URL (never from the request's
    ``Host`` header, which the caller chooses)."""
    return _settings().base_url + url_for(endpoint, **values)


def _shown(value: Any) -> Any:
    """Personal data (the signer's identifier in a report) masked unless the lab shows it."""
    return mask_personal_data(value, show=_settings().show_personal_data)


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


def _transaction_json(tx: Transaction) -> dict[str, Any]:
    docs = []
    for doc in tx.documents:
        entry: dict[str, Any] = {"index": doc.idx, "label": doc.label, "digest_sha256_b64": base64.b64encode(doc.digest).decode(),
                                 "digest_fingerprint": digest_fingerprint(doc.digest, "sha256")}
        if tx.state == COMPLETED and doc.signed is not None:
            entry.update({
                "signed_name": doc.signed_name,
                "download_url": _public_url("portal_api.download", tx_id=tx.id, idx=doc.idx),
                "report": _shown(doc.report),
            })
            if doc.report and doc.report.get("report_id"):
                entry["report_urls"] = report_urls(str(doc.report["report_id"]), api_urls=True)
        docs.append(entry)
    return {
        "transaction_id": tx.id, "state": tx.state, "options": {k: v for k, v in tx.options.items() if k != "login_hint"},
        "error": tx.error, "error_description": tx.error_description,
        "signer": _shown(tx.meta) if tx.state == COMPLETED else None,
        "documents": docs, "status_url": _public_url("portal_api.api_transaction", tx_id=tx.id),
        "trace_url": _public_url("portal_api.api_trace", tx_id=tx.id),
    }


def _create_and_review(docs: list[Document], options: SigningOptions, owner: str) -> tuple[str, str]:
    """Create the transaction; return its id and the review URL the signer opens."""
    _check_count(docs)
    created = _core().create(docs, options, owner=owner)
    annotate(transaction_id=created.transaction_id)  # the trace finds the signing by its portal id
    return created.transaction_id, _public_url("portal.review", review_token=created.review_token)


def _remember_review(tx_id: str, review_token: str) -> None:
    """Keep the review link in this browser's session, so the callback can bring it back there."""
    kept = dict(session.get("reviews") or {})
    kept[tx_id] = review_token
    session["reviews"] = dict(list(kept.items())[-5:])  # a cookie holds a few, not a history


# ---------------------------------------------------------------- pages


@bp.get("/")
def index() -> str:
    """Step 1: choose documents and options."""
    return render_template("portal/index.html", samples=SAMPLES, csrf=csrf_token(), settings=_settings(), step1=step(1),
                           options=SigningOptions)


@bp.post("/sign")
def sign() -> Response:
    """Step 1: prepare the documents (owned by this browser session) and show them for review."""
    _check_csrf()
    options = SigningOptions.parse(dict(request.form.items()))
    docs = _uploads_from_form(options.format)
    _, review_url = _create_and_review(docs, options, _browser_owner(create=True) or "")
    return redirect(review_url, code=303)  # type: ignore[return-value]


def _review_tx(review_token: str) -> Transaction:
    """The transaction of a review link; a browser session's own transaction only for that session."""
    tx = _core().by_review(review_token)
    if tx.owner.startswith("browser:") and tx.owner != _browser_owner():
        raise TransactionNotFound("(review link)")
    return tx


@bp.get("/review/<review_token>")
def review(review_token: str) -> str:
    """What you see is what you sign: each document (rendered PDF pages, text) with the digest that
    will be signed; the signer confirms (or declines) before anything goes to the SSASP."""
    tx = _review_tx(review_token)
    previews = [preview_of(_signed_bytes(tx, doc)) for doc in tx.documents] if tx.state == REVIEW else []
    fingerprints = [digest_fingerprint(doc.digest, "sha256") for doc in tx.documents]
    return render_template("portal/review.html", tx=tx, review_token=review_token, previews=previews,
                           fingerprints=fingerprints, csrf=csrf_token(), owner=tx.owner == _browser_owner(),
                           why=explain(tx.error, tx.error_description))


@bp.post("/review/<review_token>")
def review_decision(review_token: str) -> Response:
    """Step 2 on confirmation: push the authorization request, send the browser to the SSASP."""
    _check_csrf()
    tx = _review_tx(review_token)
    annotate(transaction_id=tx.id)
    decision = request.form.get("decision")
    if decision == "decline":
        _core().cancel(tx)
        # The trace shows the refusal where it happened (the page itself answers normally).
        refused(AccessDenied(tx.error_description or "the signer declined at the portal's review", step=step(1)))
        return redirect(url_for("portal.review", review_token=review_token), code=303)  # type: ignore[return-value]
    if decision != "confirm":
        raise InvalidRequest("choose 'confirm' or 'decline'", step=step(1))
    try:
        authorize_url = _core().confirm(tx)
    except TransactionStateError:
        return redirect(url_for("portal.review", review_token=review_token), code=303)  # type: ignore[return-value]
    _remember_review(tx.id, review_token)
    return redirect(authorize_url, code=303)  # type: ignore[return-value]


@bp.get("/review/<review_token>/documents/<int:idx>/pages/<int:page>.png")
def review_page_image(review_token: str, idx: int, page: int) -> Response:
    """One rendered PDF page of a document under review (rendered here, from the bytes that are signed)."""
    tx = _review_tx(review_token)
    doc = next((d for d in tx.documents if d.idx == idx), None)
    if tx.state != REVIEW or doc is None:
        raise TransactionNotFound("(review link)")
    content = _signed_bytes(tx, doc)
    shown = preview_of(content)
    if shown.kind != "pdf" or not 1 <= page <= shown.pages:
        raise TransactionNotFound("(review link)")
    try:
        image = render_pdf_page(content, page)
    except PreviewUnavailable as exc:
        raise SignLabError(f"the preview of page {page} is not available: {exc}", error="temporarily_unavailable",
                           status=503) from None
    response = Response(image, mimetype="image/png")
    response.headers["Cache-Control"] = "private, no-store"
    return response


def _signed_bytes(tx: Transaction, doc: StoredDocument) -> bytes:
    """What the digest is computed over: the prepared PDF for PAdES (with its signature field), else
    the document itself."""
    return doc.prepared if tx.options.get("format") == "pades" and doc.prepared else doc.original


@bp.get("/sign/callback")
def callback() -> Response | tuple[str, int]:
    """Step 10: the SSASP sends the browser back with ``code`` and ``state`` (or an error). The
    owner's browser goes to the result page; another browser (the signer of a partner
    application's request) back to the review link, which shows the outcome without documents.
    In the certificate-first flow the first return sends the browser on to the SSASP, where the
    person approves the hashes; the second one ends like the others. A refusal is explained on a page that names its transaction and step (:func:`_refusal_page`)."""
    state = request.args.get("state")
    try:
        tx = _core().complete(
            state=state, code=request.args.get("code"),
            error=request.args.get("error"), error_description=request.args.get("error_description"),
        )
    except SignLabError as exc:
        failed = _core().store.by_oauth_state(state) if state else None
        if failed is not None:
            annotate(transaction_id=failed.id)  # a refusal names its transaction, in the trace too
        if failed is None or failed.state not in (FAILED, EXPIRED) or not wants_html():
            raise
        refused(exc)  # the trace records the refusal, as if the frame had rendered it
        return _refusal_page(failed), exc.status
    annotate(transaction_id=tx.id)
    return _after_callback(tx)


def _refusal_page(tx: Transaction) -> str:
    """A refused, declined or expired signing in plain words: the step, the reason, the transaction
    and (for its owner) its diagram and *start again* with the same documents."""
    owner = tx.owner == _browser_owner()
    return render_template("portal/refused.html", tx=tx, why=explain(tx.error, tx.error_description), owner=owner,
                           csrf=csrf_token())


@bp.post("/sign/again")
def sign_again() -> Response:
    """Start again after a refusal: a new transaction with the same documents and options (this
    browser session's own transactions only), shown for review."""
    _check_csrf()
    owner = _browser_owner() or ""
    previous = _owned(str(request.form.get("previous") or ""), owner)
    created = _core().restart(previous, owner=owner)
    annotate(transaction_id=created.transaction_id)
    return redirect(url_for("portal.review", review_token=created.review_token), code=303)  # type: ignore[return-value]


def _after_callback(tx: Transaction) -> Response:
    if tx.state == PENDING and tx.authorize_url:  # certificate first: on to the approval of the hashes
        return redirect(tx.authorize_url, code=303)  # type: ignore[return-value]
    if tx.owner == _browser_owner():
        return redirect(url_for("portal.result", tx_id=tx.id), code=303)  # type: ignore[return-value]
    review_token = (session.get("reviews") or {}).get(tx.id)
    if review_token:
        return redirect(url_for("portal.review", review_token=review_token), code=303)  # type: ignore[return-value]
    why = explain(tx.error, tx.error_description)
    return render_template("portal/review.html", tx=tx, review_token=None, previews=[], fingerprints=[],  # type: ignore[return-value]
                           csrf=csrf_token(), owner=False, why=why)


@bp.get("/transactions/<tx_id>")
def result(tx_id: str) -> str:
    """The result page: downloads, validation report, transaction id, flow diagram (owner only)."""
    tx = _owned(tx_id, _browser_owner())
    reports = [_shown(doc.report) for doc in tx.documents]
    fingerprints = [digest_fingerprint(doc.digest, "sha256") for doc in tx.documents]
    why = explain(tx.error, tx.error_description) if tx.state in (FAILED, EXPIRED) else None
    return render_template("portal/result.html", tx=tx, steps=STEPS, reports=reports, meta=_shown(tx.meta),
                           trace_urls=_owner_trace_urls(tx.id), fingerprints=fingerprints, why=why, csrf=csrf_token())


@bp.get("/transactions/<tx_id>/documents/<int:idx>")
def download_page(tx_id: str, idx: int) -> Response:
    """Download one signed document (owner only)."""
    return _download(_owned(tx_id, _browser_owner()), idx)


@bp.get("/transactions/<tx_id>/trace.<fmt>")
def trace_page(tx_id: str, fmt: str) -> Response:
    """The live diagram's data of this transaction, for its owner's result page (json, svg, mmd)."""
    tx = _owned(tx_id, _browser_owner())
    if fmt not in ("json", "svg", "mmd"):
        raise TransactionNotFound(tx_id)
    return trace_response(tx.id, fmt)


def _owner_trace_urls(tx_id: str) -> dict[str, str]:
    return {"json": url_for("portal.trace_page", tx_id=tx_id, fmt="json"),
            "svg": url_for("portal.trace_page", tx_id=tx_id, fmt="svg"),
            "mermaid": url_for("portal.trace_page", tx_id=tx_id, fmt="mmd")}


@bp.route("/validate", methods=["GET", "POST"])
def validate_page() -> str | tuple[str, int]:
    """Upload a signed PDF, .p7s + file, or JAdES JSON + payload, and optionally a validation
    time; show the report with its downloads (simple and detailed JSON, ETSI TS 119 102-2 XML)."""
    if request.method == "GET":
        return render_template("portal/validate.html", csrf=csrf_token(), report=None, report_id=None)
    _check_csrf()
    report, report_id = _validate_uploads(_browser_owner(create=True) or "")
    return render_template("portal/validate.html", csrf=csrf_token(), report=_shown(dict(report.to_dict(), report_id=report_id)),
                           report_id=report_id)


REPORT_PARTS = {"simple": ("json", "application/json"), "detailed": ("detailed.json", "application/json"),
                "etsi_xml": ("etsi.xml", "application/xml")}
"""The downloads of a stored validation: part → (file suffix, media type)."""


@bp.get("/reports/<report_id>.json")
def report_json(report_id: str) -> Response:
    """A stored validation report, as a JSON download (its owner only)."""
    return _report_download(report_id, _browser_owner(), "simple")


@bp.get("/reports/<report_id>.detailed.json")
def report_detailed(report_id: str) -> Response:
    """The detailed report of a stored validation (its owner only)."""
    return _report_download(report_id, _browser_owner(), "detailed")


@bp.get("/reports/<report_id>.etsi.xml")
def report_etsi(report_id: str) -> Response:
    """The ETSI TS 119 102-2 XML report of a stored validation (its owner only)."""
    return _report_download(report_id, _browser_owner(), "etsi_xml")


def _report_download(report_id: str, owner: str | None, part: str) -> Response:
    body = _core().store.report(report_id, owner) if owner else None
    if body is not None and "simple" not in body:
        body = {"simple": body}  # a report stored before the detailed and ETSI reports existed
    if body is None or part not in body:
        raise TransactionNotFound(report_id if body is None else f"{report_id} ({part} report)")
    suffix, media = REPORT_PARTS[part]
    content = body[part] if part == "etsi_xml" else json.dumps(_shown(body[part]), indent=2)
    response = Response(content, mimetype=media)
    response.headers["Content-Disposition"] = f'attachment; filename="validation-report-{report_id}.{suffix}"'
    return response


@bp.get("/.well-known/jwks.json")
def jwks() -> Response:
    """The public key of the portal's client assertions to the SSASP (``private_key_jwt``, RFC 7523)."""
    return jsonify(public_jwks(current_app.extensions["signlab.portal.assertion_key"]))


def report_urls(report_id: str, *, api_urls: bool) -> dict[str, str]:
    """Where the three reports of a stored validation are downloaded (browser or API routes)."""
    if api_urls:
        return {"simple": _public_url("portal_api.api_report", report_id=report_id),
                "detailed": _public_url("portal_api.api_report_detailed", report_id=report_id),
                "etsi": _public_url("portal_api.api_report_etsi", report_id=report_id)}
    return {"simple": url_for("portal.report_json", report_id=report_id),
            "detailed": url_for("portal.report_detailed", report_id=report_id),
            "etsi": url_for("portal.report_etsi", report_id=report_id)}


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


def _validate_uploads(owner: str) -> tuple[Any, str]:
    signed = _read_upload("signed", required=True)
    assert signed is not None
    original = _read_upload("original", required=False)
    return _core().validate(signed[0], signed[1], original=original[1] if original else None, owner=owner,
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


# ---------------------------------------------------------------- JSON API (partner applications)


@api.before_request
def _authenticate_partner() -> None:
    """Every API call needs a partner application's credentials (401 with the Basic challenge)."""
    request.environ["signlab.portal.owner"] = _api_owner()


def _api_caller() -> str:
    return str(request.environ["signlab.portal.owner"])


@api.post("/sign-requests")
def api_create() -> tuple[Response, int]:
    """Create a signing request: JSON ``{documents, qualifier, format, level, flow, visible, signer_name, login_hint}``
    (documents as ``{"name", "content": <base64>}`` or ``{"sample": <name>}``) or the same as multipart form.

    Answers the ``review_url`` to send the signer to: the portal shows the documents and digests
    there, and the signer confirms before the portal contacts the SSASP."""
    if request.is_json:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise InvalidRequest("the body must be a JSON object", step=step(1))
        options = SigningOptions.parse(body)
        docs = _documents_from_json(body, options.format)
    else:
        options = SigningOptions.parse(dict(request.form.items()))
        docs = _uploads_from_form(options.format)
    tx_id, review_url = _create_and_review(docs, options, _api_caller())
    body = {
        "transaction_id": tx_id,
        "review_url": review_url,
        "status_url": _public_url("portal_api.api_transaction", tx_id=tx_id),
    }
    return jsonify(body), 201


@api.get("/transactions/<tx_id>")
def api_transaction(tx_id: str) -> Response:
    """The transaction's state and, when completed, downloads and validation reports (its application only)."""
    return jsonify(_transaction_json(_owned(tx_id, _api_caller())))


@api.get("/transactions/<tx_id>/trace")
def api_trace(tx_id: str) -> Response:
    """The transaction's flow trace as JSON (its application only)."""
    return trace_response(_owned(tx_id, _api_caller()).id)


@api.get("/transactions/<tx_id>/documents/<int:idx>")
def download(tx_id: str, idx: int) -> Response:
    """The signed document ``idx`` (404 until the transaction is completed; its application only)."""
    return _download(_owned(tx_id, _api_caller()), idx)


def _download(tx: Transaction, idx: int) -> Response:
    doc = next((d for d in tx.documents if d.idx == idx), None)
    if tx.state != COMPLETED or doc is None or doc.signed is None:
        raise TransactionNotFound(f"{tx.id}/documents/{idx} (not signed)")
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
        report, report_id = _core().validate(safe_label(body.get("name"), "signed"), signed, original=original,
                                             owner=_api_caller(), at=validation_time(body.get("at")))
    else:
        report, report_id = _validate_uploads(_api_caller())
    body = _shown(report.to_dict())
    urls = report_urls(report_id, api_urls=True)
    body.update(report_id=report_id, download_url=urls["simple"], detailed_report_url=urls["detailed"],
                etsi_report_url=urls["etsi"])
    return jsonify(body)


@api.get("/reports/<report_id>")
def api_report(report_id: str) -> Response:
    """A stored validation report (its application only)."""
    return _report_download(report_id, _api_caller(), "simple")


@api.get("/reports/<report_id>/detailed")
def api_report_detailed(report_id: str) -> Response:
    """The detailed report of a stored validation (its application only)."""
    return _report_download(report_id, _api_caller(), "detailed")


@api.get("/reports/<report_id>/etsi")
def api_report_etsi(report_id: str) -> Response:
    """The ETSI TS 119 102-2 XML report of a stored validation (its application only)."""
    return _report_download(report_id, _api_caller(), "etsi_xml")


@api.get("/samples")
def api_samples() -> Response:
    """The bundled sample documents."""
    return jsonify([{"name": s.name, "title": s.title, "formats": list(s.formats)} for s in SAMPLES])


def register(app: Flask) -> None:
    """Register the portal's blueprints and template helpers."""
    app.register_blueprint(bp)
    app.register_blueprint(api)
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.jinja_env.globals["report_urls"] = report_urls
    app.jinja_env.globals["sample_info"] = sample
