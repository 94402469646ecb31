"""The signing views: choose documents, review them, the SSASP's callback, the result (steps 1, 2, 10).

Pages for a browser session (``signing``) and the JSON API for partner applications
(``signing_api``, ``/api/v1/sign-requests``, ``/api/v1/transactions/…``). Views only parse the
request, call :class:`~services.portal.signing.PortalCore` and render. The signer sees the
documents on the review page (``/review/<token>``, the link the owner hands to the signer) and
confirms there before anything goes to the SSASP.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, redirect, render_template, request, session, url_for
from werkzeug.datastructures import FileStorage

from services.portal.documents import Document, SignatureFormat, SigningOptions, check_document, safe_label
from services.portal.errors import DocumentRejected, TransactionNotFound, TransactionStateError
from services.portal.http.common import (
    API_PREFIX,
    api_caller,
    authenticate_partner,
    browser_owner,
    check_csrf,
    csrf_token,
    owned,
    portal_core,
    portal_settings,
    public_url,
    shown,
)
from services.portal.http.validation import report_urls
from services.portal.preview import PreviewUnavailable, preview_of, render_pdf_page
from services.portal.refusals import explain
from services.portal.samples import SAMPLES, sample_path
from services.portal.store import COMPLETED, EXPIRED, FAILED, PENDING, REVIEW, StoredDocument, Transaction
from shared.digests import digest_fingerprint
from shared.errors import AccessDenied, InvalidRequest, SignLabError
from shared.flow import STEPS, step
from shared.jose_keys import public_jwks
from shared.tracing import annotate, refused
from shared.tracing.web import trace_response
from shared.web import wants_html

pages = Blueprint("signing", __name__)
api = Blueprint("signing_api", __name__, url_prefix=API_PREFIX)
api.before_request(authenticate_partner)

_MEDIA = {"pades": "application/pdf", "cades": "application/pkcs7-signature", "jades": "application/jose+json"}


def _uploads_from_form(fmt: SignatureFormat) -> list[Document]:
    settings = portal_settings()
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
    return check_document(path.name, path.read_bytes(), fmt, max_bytes=portal_settings().max_document_bytes)


def _check_count(docs: list[Document]) -> None:
    limit = portal_settings().max_documents
    if len(docs) > limit:
        raise InvalidRequest(f"{len(docs)} documents chosen; one signing request takes at most {limit}", step=step(1))


def _documents_from_json(body: dict[str, Any], fmt: SignatureFormat) -> list[Document]:
    settings = portal_settings()
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


def _transaction_json(tx: Transaction) -> dict[str, Any]:
    docs = []
    for doc in tx.documents:
        entry: dict[str, Any] = {"index": doc.idx, "label": doc.label, "digest_sha256_b64": base64.b64encode(doc.digest).decode(),
                                 "digest_fingerprint": digest_fingerprint(doc.digest, "sha256")}
        if tx.state == COMPLETED and doc.signed is not None:
            entry.update({
                "signed_name": doc.signed_name,
                "download_url": public_url("signing_api.download", tx_id=tx.id, idx=doc.idx),
                "report": shown(doc.report),
            })
            if doc.report and doc.report.get("report_id"):
                entry["report_urls"] = report_urls(str(doc.report["report_id"]), api_urls=True)
        docs.append(entry)
    return {
        "transaction_id": tx.id, "state": tx.state, "options": {k: v for k, v in tx.options.items() if k != "login_hint"},
        "error": tx.error, "error_description": tx.error_description,
        "signer": shown(tx.meta) if tx.state == COMPLETED else None,
        "documents": docs, "status_url": public_url("signing_api.api_transaction", tx_id=tx.id),
        "trace_url": public_url("signing_api.api_trace", tx_id=tx.id),
    }


def _create_and_review(docs: list[Document], options: SigningOptions, owner: str) -> tuple[str, str]:
    """Create the transaction; return its id and the review URL the signer opens."""
    _check_count(docs)
    created = portal_core().create(docs, options, owner=owner)
    annotate(transaction_id=created.transaction_id)  # the trace finds the signing by its portal id
    return created.transaction_id, public_url("signing.review", review_token=created.review_token)


def _remember_review(tx_id: str, review_token: str) -> None:
    """Keep the review link in this browser's session, so the callback can bring it back there."""
    kept = dict(session.get("reviews") or {})
    kept[tx_id] = review_token
    session["reviews"] = dict(list(kept.items())[-5:])  # a cookie holds a few, not a history


@pages.get("/")
def index() -> str:
    """Step 1: choose documents and options."""
    return render_template("portal/index.html", samples=SAMPLES, csrf=csrf_token(), settings=portal_settings(), step1=step(1),
                           options=SigningOptions)


@pages.post("/sign")
def sign() -> Response:
    """Step 1: prepare the documents (owned by this browser session) and show them for review."""
    check_csrf()
    options = SigningOptions.parse(dict(request.form.items()))
    docs = _uploads_from_form(options.format)
    _, review_url = _create_and_review(docs, options, browser_owner(create=True) or "")
    return redirect(review_url, code=303)  # type: ignore[return-value]


def _review_tx(review_token: str) -> Transaction:
    """The transaction of a review link; a browser session's own transaction only for that session."""
    tx = portal_core().by_review(review_token)
    if tx.owner.startswith("browser:") and tx.owner != browser_owner():
        raise TransactionNotFound("(review link)")
    return tx


@pages.get("/review/<review_token>")
def review(review_token: str) -> str:
    """What you see is what you sign: each document (rendered PDF pages, text) with the digest that
    will be signed; the signer confirms (or declines) before anything goes to the SSASP."""
    tx = _review_tx(review_token)
    previews = [preview_of(_signed_bytes(tx, doc)) for doc in tx.documents] if tx.state == REVIEW else []
    fingerprints = [digest_fingerprint(doc.digest, "sha256") for doc in tx.documents]
    return render_template("portal/review.html", tx=tx, review_token=review_token, previews=previews,
                           fingerprints=fingerprints, csrf=csrf_token(), owner=tx.owner == browser_owner(),
                           why=explain(tx.error, tx.error_description))


@pages.post("/review/<review_token>")
def review_decision(review_token: str) -> Response:
    """Step 2 on confirmation: push the authorization request, send the browser to the SSASP."""
    check_csrf()
    tx = _review_tx(review_token)
    annotate(transaction_id=tx.id)
    decision = request.form.get("decision")
    if decision == "decline":
        portal_core().cancel(tx)
        # The trace shows the refusal where it happened (the page itself answers normally).
        refused(AccessDenied(tx.error_description or "the signer declined at the portal's review", step=step(1)))
        return redirect(url_for("signing.review", review_token=review_token), code=303)  # type: ignore[return-value]
    if decision != "confirm":
        raise InvalidRequest("choose 'confirm' or 'decline'", step=step(1))
    try:
        authorize_url = portal_core().confirm(tx)
    except TransactionStateError:
        return redirect(url_for("signing.review", review_token=review_token), code=303)  # type: ignore[return-value]
    _remember_review(tx.id, review_token)
    return redirect(authorize_url, code=303)  # type: ignore[return-value]


@pages.get("/review/<review_token>/documents/<int:idx>/pages/<int:page>.png")
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


@pages.get("/sign/callback")
def callback() -> Response | tuple[str, int]:
    """Step 10: the SSASP sends the browser back with ``code`` and ``state`` (or an error). The
    owner's browser goes to the result page; another browser (the signer of a partner
    application's request) back to the review link, which shows the outcome without documents.
    In the certificate-first flow the first return sends the browser on to the SSASP, where the
    person approves the hashes; the second one ends like the others. A refusal is explained on a
    page that names its transaction and step (:func:`_refusal_page`)."""
    state = request.args.get("state")
    try:
        tx = portal_core().complete(
            state=state, code=request.args.get("code"),
            error=request.args.get("error"), error_description=request.args.get("error_description"),
        )
    except SignLabError as exc:
        failed = portal_core().store.by_oauth_state(state) if state else None
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
    owner = tx.owner == browser_owner()
    return render_template("portal/refused.html", tx=tx, why=explain(tx.error, tx.error_description), owner=owner,
                           csrf=csrf_token())


@pages.post("/sign/again")
def sign_again() -> Response:
    """Start again after a refusal: a new transaction with the same documents and options (this
    browser session's own transactions only), shown for review."""
    check_csrf()
    owner = browser_owner() or ""
    previous = owned(str(request.form.get("previous") or ""), owner)
    created = portal_core().restart(previous, owner=owner)
    annotate(transaction_id=created.transaction_id)
    return redirect(url_for("signing.review", review_token=created.review_token), code=303)  # type: ignore[return-value]


def _after_callback(tx: Transaction) -> Response:
    if tx.state == PENDING and tx.authorize_url:  # certificate first: on to the approval of the hashes
        return redirect(tx.authorize_url, code=303)  # type: ignore[return-value]
    if tx.owner == browser_owner():
        return redirect(url_for("signing.result", tx_id=tx.id), code=303)  # type: ignore[return-value]
    review_token = (session.get("reviews") or {}).get(tx.id)
    if review_token:
        return redirect(url_for("signing.review", review_token=review_token), code=303)  # type: ignore[return-value]
    why = explain(tx.error, tx.error_description)
    return render_template("portal/review.html", tx=tx, review_token=None, previews=[], fingerprints=[],  # type: ignore[return-value]
                           csrf=csrf_token(), owner=False, why=why)


@pages.get("/transactions/<tx_id>")
def result(tx_id: str) -> str:
    """The result page: downloads, validation report, transaction id, flow diagram (owner only)."""
    tx = owned(tx_id, browser_owner())
    reports = [shown(doc.report) for doc in tx.documents]
    fingerprints = [digest_fingerprint(doc.digest, "sha256") for doc in tx.documents]
    why = explain(tx.error, tx.error_description) if tx.state in (FAILED, EXPIRED) else None
    return render_template("portal/result.html", tx=tx, steps=STEPS, reports=reports, meta=shown(tx.meta),
                           trace_urls=_owner_trace_urls(tx.id), fingerprints=fingerprints, why=why, csrf=csrf_token())


@pages.get("/transactions/<tx_id>/documents/<int:idx>")
def download_page(tx_id: str, idx: int) -> Response:
    """Download one signed document (owner only)."""
    return _download(owned(tx_id, browser_owner()), idx)


@pages.get("/transactions/<tx_id>/trace.<fmt>")
def trace_page(tx_id: str, fmt: str) -> Response:
    """The live diagram's data of this transaction, for its owner's result page (json, svg, mmd)."""
    tx = owned(tx_id, browser_owner())
    if fmt not in ("json", "svg", "mmd"):
        raise TransactionNotFound(tx_id)
    return trace_response(tx.id, fmt)


def _owner_trace_urls(tx_id: str) -> dict[str, str]:
    return {"json": url_for("signing.trace_page", tx_id=tx_id, fmt="json"),
            "svg": url_for("signing.trace_page", tx_id=tx_id, fmt="svg"),
            "mermaid": url_for("signing.trace_page", tx_id=tx_id, fmt="mmd")}


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
    tx_id, review_url = _create_and_review(docs, options, api_caller())
    body = {
        "transaction_id": tx_id,
        "review_url": review_url,
        "status_url": public_url("signing_api.api_transaction", tx_id=tx_id),
    }
    return jsonify(body), 201


@api.get("/transactions/<tx_id>")
def api_transaction(tx_id: str) -> Response:
    """The transaction's state and, when completed, downloads and validation reports (its application only)."""
    return jsonify(_transaction_json(owned(tx_id, api_caller())))


@api.get("/transactions/<tx_id>/trace")
def api_trace(tx_id: str) -> Response:
    """The transaction's flow trace as JSON (its application only)."""
    return trace_response(owned(tx_id, api_caller()).id)


@api.get("/transactions/<tx_id>/documents/<int:idx>")
def download(tx_id: str, idx: int) -> Response:
    """The signed document ``idx`` (404 until the transaction is completed; its application only)."""
    return _download(owned(tx_id, api_caller()), idx)


def _download(tx: Transaction, idx: int) -> Response:
    doc = next((d for d in tx.documents if d.idx == idx), None)
    if tx.state != COMPLETED or doc is None or doc.signed is None:
        raise TransactionNotFound(f"{tx.id}/documents/{idx} (not signed)")
    fmt = tx.options.get("format", "pades")
    response = Response(doc.signed, mimetype=_MEDIA.get(fmt, "application/octet-stream"))
    response.headers["Content-Disposition"] = f'attachment; filename="{doc.signed_name}"'
    return response


@api.get("/samples")
def api_samples() -> Response:
    """The bundled sample documents."""
    return jsonify([{"name": s.name, "title": s.title, "formats": list(s.formats)} for s in SAMPLES])



@pages.get("/.well-known/jwks.json")
def jwks() -> Response:
    """The public key of the portal's client assertions to the SSASP (``private_key_jwt``, RFC 7523)."""
    return jsonify(public_jwks(current_app.extensions["signlab.portal.assertion_key"]))
