"""HTTP layer of the EUDI Wallet login (step 4): the IdP's OpenID4VP verifier endpoints and pages.

* ``GET/POST /openid4vp/login/<rid>`` — the login in progress ``rid`` uses the wallet: on this device
  (a redirect to the wallet's link) or on another one (a QR code). Reached from ``/authorize`` with
  ``login_hint`` ``…@eudi-wallet`` or from the login page's "EUDI Wallet" button.
* ``GET /openid4vp/request/<id>`` — the signed request object (the wallet's back channel).
* ``POST /openid4vp/response/<id>`` — the response endpoint (``direct_post.jwt``; the wallet's back channel).
* ``GET /openid4vp/wait/<id>`` — the QR code page; it polls ``GET /openid4vp/status/<id>``.
* ``GET /openid4vp/complete/<id>`` — the browser returns (same-device: with the ``response_code``);
  the OIDC login ends with the code, or with ``access_denied`` at the client.

The protocol core is :mod:`services.idp.openid4vp`; the login in progress and its completion are the
login core's (:mod:`services.idp.login`), answered as the login pages answer (:func:`services.idp.http.respond`).
"""

from __future__ import annotations

import hmac
from typing import Any

import segno
from flask import Blueprint, Flask, Response, current_app, jsonify, redirect, render_template, request, session, url_for

from services.idp.authn import Authentication
from services.idp.errors import LoginRefused
from services.idp.http import browser_id, check_csrf, login_core, respond
from services.idp.login import LoginState
from services.idp.openid4vp import Presentation, Verifier
from services.idp.pid_presentation import PresentationRefused, identify, masked_claims
from services.idp.provider import IdpCore
from shared.errors import InvalidRequest, NotFound
from shared.eudi import REQUEST_OBJECT_TYPE, WALLET_MEANS_ID
from shared.flow import step
from shared.tracing import annotate, refused

__all__ = ["bp", "register_wallet_login"]

bp = Blueprint("openid4vp", __name__, url_prefix="/openid4vp")
STEP_4 = step(4)


def register_wallet_login(app: Flask, provider: IdpCore) -> None:
    """Give the IdP its OpenID4VP verifier and the wallet login's endpoints."""
    settings = provider.settings
    app.extensions["signlab.idp.openid4vp"] = Verifier(
        settings.service_dir("openid4vp"), issuer=provider.issuer, browser_url=settings.browser_base_url,
        wallet_url=settings.wallet_url, trusted_list_url=settings.wallet_trusted_list_url,
        wait_seconds=settings.wallet_response_seconds, timeout=settings.http_timeout_seconds,
        clock=provider.clock)
    app.register_blueprint(bp)


def _provider() -> IdpCore:
    return current_app.extensions["signlab.idp"]


def _verifier() -> Verifier:
    return current_app.extensions["signlab.idp.openid4vp"]


def _login(rid: str) -> LoginState:
    """The login in progress ``rid``, started in this browser."""
    return login_core().pending(rid, browser_id())


def _presentation(presentation_id: str) -> Presentation:
    """A presentation of a login started in this browser (status and completion are bound to it)."""
    item = _verifier().get(presentation_id)
    if item is None or item.browser != browser_id():
        raise NotFound("this wallet login is unknown, finished, or was started in another browser", step=STEP_4)
    return item


def _purpose(provider: IdpCore, login: LoginState) -> str:
    client = provider.client(login.client_id)
    purpose = f"log in to {client.name if client else login.client_id}"
    message = login.params.get("binding_message")
    return f"{purpose}: {message}" if message else purpose


# -- the device choice -------------------------------------------------------------------------------
@bp.get("/login/<rid>")
def choose(rid: str) -> str:
    """Use the wallet on this device or on another one."""
    data = _login(rid)
    provider = _provider()
    return render_template("idp_wallet_choose.html", rid=rid, data=data, purpose=_purpose(provider, data),
                           means=provider.catalogue.get_means(WALLET_MEANS_ID), csrf_token=_browser_csrf())


def _browser_csrf() -> str:
    browser_id()
    return str(session.get("csrf", ""))


@bp.post("/login/<rid>")
def start(rid: str) -> Response:
    """Create the presentation request and invoke the wallet (same device) or show the QR code."""
    check_csrf()
    data = _login(rid)
    provider = _provider()
    mode = request.form.get("device", "")
    if request.form.get("action") == "cancel":
        return respond(login_core().refuse(data, LoginRefused("the user cancelled the wallet login", step=STEP_4)))
    if mode not in ("same-device", "cross-device"):
        raise InvalidRequest("choose same-device or cross-device", step=STEP_4)
    wait = next((f.amount() for f in data.failures if f.name == "wallet-wait"), None)
    item = _verifier().start(rid, mode, browser=browser_id(), purpose=_purpose(provider, data), wait=wait)
    provider.record("wallet_request", {"presentation": item.id, "mode": mode, "client_id": _verifier().client_id,
                                       "deadline": item.deadline})
    if mode == "same-device":
        return redirect(_verifier().same_device_url(item), code=303)  # type: ignore[return-value]
    return redirect(url_for("openid4vp.wait", presentation_id=item.id), code=303)  # type: ignore[return-value]


# -- the wallet's back channel ------------------------------------------------------------------------
@bp.get("/request/<presentation_id>")
def request_object(presentation_id: str) -> Response:
    """The signed request object (RFC 9101 §5.2; OpenID4VP §5)."""
    token, _claims = _verifier().request_object(presentation_id)
    annotate(response={"request_object": token})  # decoded and redacted by the tracer
    response = Response(token, mimetype=f"application/{REQUEST_OBJECT_TYPE}")
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/response/<presentation_id>")
def response_endpoint(presentation_id: str) -> Response:
    """The response endpoint (``direct_post.jwt``): verify, remember, answer 200 JSON (OpenID4VP §8.2)."""
    verifier, provider = _verifier(), _provider()
    item = verifier.get(presentation_id)
    login = login_core().find(item.rid) if item is not None else None
    min_rank = login.min_rank if login is not None else None
    means = provider.catalogue.get_means(WALLET_MEANS_ID)
    if means is None:  # the catalogue ships the means (checked by the catalogue's tests)
        raise NotFound(f"the catalogue has no eID means {WALLET_MEANS_ID}", step=STEP_4)
    now = provider.clock.time()

    def as_login(verified: Any) -> Authentication:
        return identify(verified, provider.catalogue, means, min_rank=min_rank, now=now)

    answer: dict[str, Any] = {}
    try:
        item, verified = verifier.receive(presentation_id, request.form.to_dict(), as_login, now=now)
        if verified is not None:
            annotate(request={"presentation": verified.summary},
                     response={"verified": {"issuer": verified.issuer, "status_index": verified.status_index,
                                            "claims": masked_claims({k: verified.claims[k] for k in verified.disclosed
                                                                     if k in verified.claims})}})
            answer["status"] = "verified"
        else:
            answer.update(status="declined", error=item.error, error_description=item.error_description)
            refused(LoginRefused(item.error_description, step=STEP_4))
    except PresentationRefused as refusal:
        if refusal.check == "request":
            raise
        refused(refusal)
        answer.update(status="refused", error=refusal.error, error_description=refusal.error_description)
        item = verifier.get(presentation_id)
    except LoginRefused as refusal:
        refused(refusal)
        answer.update(status="refused", error=refusal.error, error_description=refusal.error_description)
        item = verifier.get(presentation_id)
    provider.record("wallet_response", {"presentation": presentation_id, **answer})
    if item is not None and item.mode == "same-device":
        # The browser is on the wallet's device: send it back with the code that proves it is the
        # same session (OpenID4VP §13.3 and HAIP: a fresh value, checked on return).
        answer["redirect_uri"] = (f"{verifier.browser_url}/openid4vp/complete/{item.id}"
                                  f"?response_code={item.response_code}")
    response = jsonify(answer)
    response.headers["Cache-Control"] = "no-store"
    return response


# -- the browser's side ---------------------------------------------------------------------------------
@bp.get("/wait/<presentation_id>")
def wait(presentation_id: str) -> str:
    """The QR code for a wallet on another device; the page polls until the wallet has answered."""
    item = _presentation(presentation_id)
    verifier = _verifier()
    link = verifier.cross_device_url(item)
    qr = segno.make(link, error="m")
    return render_template("idp_wallet_wait.html", item=item, link=link, qr_svg=qr.svg_inline(scale=4, border=2),
                           lab_link=verifier.same_device_url(item), status_url=url_for("openid4vp.status",
                           presentation_id=item.id), complete_url=url_for("openid4vp.complete", presentation_id=item.id),
                           seconds=max(0, int(item.deadline - _provider().clock.time())))


@bp.get("/status/<presentation_id>")
def status(presentation_id: str) -> Response:
    """Has the wallet answered? (polled by the QR page; only in the browser that started the login)."""
    item = _presentation(presentation_id)
    now = _provider().clock.time()
    state = "expired" if item.expired(now) else item.status
    return jsonify({"status": state, "done": item.answered or item.expired(now),
                    "seconds_left": max(0, int(item.deadline - now)),
                    "complete_url": url_for("openid4vp.complete", presentation_id=item.id)})


@bp.get("/complete/<presentation_id>")
def complete(presentation_id: str) -> Any:
    """The browser is back: finish the OIDC login with the wallet's outcome."""
    item = _presentation(presentation_id)
    core, verifier = login_core(), _verifier()
    login = core.pending(item.rid, item.browser)
    now = _provider().clock.time()
    if item.mode == "same-device" and item.answered:
        sent = request.args.get("response_code", "")
        if not item.response_code or not hmac.compare_digest(sent.encode(), item.response_code.encode()):
            raise InvalidRequest("the response_code is missing or not this login's: the wallet's answer belongs to "
                                 "another browser session (session fixation)", step=STEP_4)
    if item.expired(now):
        refusal = LoginRefused(f"the wallet did not answer within {int(item.deadline - item.created)} s", step=STEP_4)
    elif item.status in ("refused", "declined"):
        refusal = LoginRefused(item.error_description or "the wallet login failed", step=STEP_4)
    elif item.status == "verified" and item.auth is not None:
        verifier.finish(item)  # no SSO session: every signing asks the wallet again
        return respond(core.complete(login, Authentication.from_dict(item.auth)))
    else:  # the wallet has not answered yet (a reload of the return URL): keep waiting
        return redirect(url_for("openid4vp.wait", presentation_id=item.id))
    verifier.finish(item)
    return respond(core.refuse(login, refusal))

