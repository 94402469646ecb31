"""HTTP layer of the wallet service: the phone's pages, the headless API, and the PID provider's
published documents and lab API. Views parse, call the core, serialize.

The wallet (the signer's device, step 4):

* ``GET /`` — whose phone this is and the PIDs it holds; a box to paste a scanned QR code;
* ``GET /authorize?client_id=…&request_uri=…`` — the same-device link a verifier redirects to (the
  lab's stand-in for the ``openid4vp://`` scheme an operating system hands to a wallet app); shows
  the verifier's request in plain words, what will be disclosed and what stays hidden, and asks;
* ``POST /requests/<id>`` — the person's decision (CSRF-protected form);
* ``POST /api/v1/presentations`` — headless mode for scripts, the scenario runner and the tour:
  ``{"request_url": <invocation URL>, "holder", "decision": "approve"|"decline", "faults": [...]}``.

The PID provider (``/pid-provider/…``): its page, the Token Status List, the list of trusted PID
providers, and ``/admin/pid-status`` (guarded lab API: revoke, suspend or restore a PID).
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, current_app, jsonify, redirect, render_template, request, session, url_for

from services.wallet.faults import WALLET_FAULTS, parse_faults
from services.wallet.holder import VerifierRequest, invocation_of
from services.wallet.service import PID_STATUS_NAMES, WalletCore
from shared.errors import InvalidRequest, NotFound
from shared.flow import step
from shared.status_list import MEDIA_TYPE

__all__ = ["bp"]

bp = Blueprint("wallet", __name__)
_REQUEST_LIFETIME = 600.0
"""How long a request stays on the wallet's screen (the verifier's own wait is usually shorter)."""


def _core() -> WalletCore:
    return current_app.extensions["signlab.wallet"]


def _csrf() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(24)
    return str(session["csrf"])


def _check_csrf() -> None:
    sent, expected = request.form.get("csrf_token", ""), session.get("csrf", "")
    if not expected or not secrets.compare_digest(sent.encode(), str(expected).encode()):
        raise InvalidRequest("the form's CSRF token is missing or wrong; reload the page and try again")


def _holders() -> list[str]:
    return [c.holder for c in _core().store.credentials()]


def _holder(chosen: str | None) -> str:
    """The phone's owner: the one chosen now, else the one chosen before, else the first."""
    holders = _holders()
    if not holders:
        raise NotFound("this wallet holds no PID yet (provisioning issues them from the IdP's test persons)")
    for candidate in (chosen, session.get("holder")):
        if candidate in holders:
            session["holder"] = candidate
            return str(candidate)
    return holders[0]


# -- the phone ------------------------------------------------------------------------------------------
@bp.get("/")
def home() -> str:
    """The wallet's home: whose phone, the PID, and the scan box."""
    core = _core()
    holder = _holder(request.args.get("holder"))
    return render_template("wallet_home.html", holder=holder, holders=_holders(), claims=core.wallet.claims(holder),
                           credential=core.wallet.credential(holder), csrf_token=_csrf())


@bp.post("/scan")
def scan() -> Response:
    """"Scan" a QR code: the pasted ``openid4vp://`` link opens like a same-device link."""
    _check_csrf()
    client_id, request_uri = invocation_of(request.form.get("link", ""))
    return redirect(url_for("wallet.authorize") + "?" + urlencode({"client_id": client_id, "request_uri": request_uri}),
                    code=303)  # type: ignore[return-value]


@bp.get("/authorize")
def authorize() -> str:
    """A verifier's request, opened on this device (step 4): fetch, check, show, ask."""
    core = _core()
    verified = core.wallet.fetch(request.url)
    pending = core.store.put_request(verified.as_dict(), _REQUEST_LIFETIME)
    return _consent_page(pending.id, verified, _holder(request.args.get("holder")))


def _consent_page(request_id: str, verified: VerifierRequest, holder: str, status: int = 200) -> Any:
    core = _core()
    return render_template("wallet_consent.html", request_id=request_id, request=verified, holder=holder,
                           holders=_holders(), selection=core.wallet.select(verified, holder),
                           faults=list(WALLET_FAULTS.values()), csrf_token=_csrf()), status


@bp.get("/requests/<request_id>")
def show_request(request_id: str) -> Any:
    """The same request, shown for another holder (the holder picker)."""
    pending = _core().store.get_request(request_id)
    if pending is None:
        raise NotFound("this request is no longer on the wallet's screen; open the link again", step=step(4))
    return _consent_page(request_id, VerifierRequest.from_dict(pending.data), _holder(request.args.get("holder")))


@bp.post("/requests/<request_id>")
def decide(request_id: str) -> Any:
    """The person's decision: approve (present) or decline; then back to the verifier if it asks."""
    _check_csrf()
    core = _core()
    pending = core.store.take_request(request_id)
    if pending is None:
        raise NotFound("this request was already answered or has expired; open the link again", step=step(4))
    verified = VerifierRequest.from_dict(pending.data)
    faults = parse_faults([f for f in request.form.getlist("fault") if f])
    holder = _holder(request.form.get("holder"))
    outcome = core.wallet.respond(verified, holder, approve=request.form.get("decision") == "approve", faults=faults)
    if outcome.redirect_uri:
        return redirect(outcome.redirect_uri, code=303)
    return render_template("wallet_done.html", outcome=outcome, request=verified)


# -- headless mode --------------------------------------------------------------------------------------
@bp.post("/api/v1/presentations")
def present() -> Response:
    """Headless presentation: fetch the request, decide as ``holder``, answer the verifier."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("request_url"), str):
        raise InvalidRequest("expected JSON {\"request_url\": <invocation URL>, \"holder\", \"decision\", \"faults\"}")
    decision = body.get("decision", "approve")
    if decision not in ("approve", "decline"):
        raise InvalidRequest("decision must be approve or decline")
    try:
        faults = parse_faults(body.get("faults"))
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    core = _core()
    holder = str(body.get("holder") or "")
    core.wallet.credential(holder)  # an unknown holder is refused before the verifier is called
    verified = core.wallet.fetch(body["request_url"])
    outcome = core.wallet.respond(verified, holder, approve=decision == "approve", faults=faults)
    return jsonify(outcome.as_dict())


@bp.get("/api/v1/holders")
def holders_json() -> Response:
    """The PIDs the wallet holds: holder, status index, validity and the claims."""
    core = _core()
    return jsonify([{"holder": c.holder, "status_index": c.status_index, "issued_at": c.issued_at,
                     "expires_at": c.expires_at,
                     "claims": {v.name: v.value for v in core.wallet.claims(c.holder)}}
                    for c in core.store.credentials()])


@bp.get("/api/v1/faults")
def faults_json() -> Response:
    """The named wallet faults."""
    return jsonify([fault.as_dict() for fault in WALLET_FAULTS.values()])


# -- the PID provider --------------------------------------------------------------------------------
@bp.get("/pid-provider/")
def provider_page() -> str:
    """The PID provider: who it is, its certificates, the PIDs it issued and their status."""
    core = _core()
    return render_template("wallet_provider.html", trust=core.trust, provider=core.provider,
                           statuses=core.pid_statuses())


@bp.get("/pid-provider/status-lists/1")
def status_list() -> Response:
    """The Token Status List (JWT) of every PID (draft-ietf-oauth-status-list §8)."""
    return Response(_core().provider.status_list_token(), mimetype=MEDIA_TYPE,
                    headers={"Cache-Control": "no-cache"})


@bp.get("/pid-provider/trusted-providers")
def trusted_providers() -> Response:
    """The signed list of trusted PID providers (the lab's list of trusted entities)."""
    return Response(_core().provider.trusted_list(), mimetype="application/jwt", headers={"Cache-Control": "no-cache"})


@bp.get("/admin/pid-status")
def admin_pid_statuses() -> Response:
    """Every issued PID and its status (guarded lab API)."""
    core = _core()
    core.check_admin(request.headers.get("Authorization"))
    return jsonify({"pids": core.pid_statuses(), "statuses": list(PID_STATUS_NAMES)})


@bp.post("/admin/pid-status")
def admin_set_pid_status() -> Response:
    """Revoke, suspend or restore a PID: JSON ``{"holder", "status": "valid"|"revoked"|"suspended"}``."""
    core = _core()
    core.check_admin(request.headers.get("Authorization"))
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("holder"), str) or not isinstance(body.get("status"), str):
        raise InvalidRequest("expected JSON {\"holder\": <person id>, \"status\": \"valid\"|\"revoked\"|\"suspended\"}")
    return jsonify(core.set_pid_status(body["holder"], body["status"]))

