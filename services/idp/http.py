"""HTTP layer of the IdP: discovery, JWKS, authorize + login pages, token, userinfo, logout,
catalogue, debugger and the guarded admin API. Views parse, call the core, serialize.

Flow steps: the authentication request arrives at step 3 (``/authorize``), the person logs in at
step 4 (``/login/<rid>`` pages or headless via ``login_hint``), the signing service redeems the
code and fetches keys at step 5 (``/token``, ``/.well-known/jwks.json``).

Browser protection on the login pages: a per-browser session cookie (``signlab_idp_session``,
signed, HttpOnly, SameSite=Lax) carries a CSRF token that every form must echo, and binds each
login in progress to the browser that started it (no login CSRF).
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from authlib.oauth2.rfc6749 import OAuth2Error, OAuth2Request
from flask import Blueprint, Response, current_app, jsonify, redirect, render_template, request, session, url_for

from services.idp.authorization_server import IdpAuthorizationServer
from services.idp.errors import AdminApiDisabled
from services.idp.failures import FAILURES, parse_failure
from services.idp.login import (
    MAX_CODE_ATTEMPTS,
    Action,
    Cancel,
    ChooseMeans,
    ChoosePerson,
    Completed,
    EnterCode,
    LoginCore,
    Redirect,
    Refusal,
    Render,
    Result,
    Show,
    StartOver,
    Unexpected,
    Unmet,
    UseWallet,
)
from services.idp.oauth2 import stored_request
from services.idp.provider import IdpCore, mask
from shared.errors import InvalidRequest, InvalidToken, NotFound
from shared.trainer_access import require_trainer

__all__ = ["bp", "browser_id", "check_csrf", "login_core", "respond"]

log = logging.getLogger(__name__)
bp = Blueprint("idp", __name__)

_ANY_USER = object()
"""Given to authlib's consent validation so that it leaves ``prompt=none`` to us (we know about
headless hints and SSO sessions, authlib does not)."""


def _provider() -> IdpCore:
    return current_app.extensions["signlab.idp"]


def _server() -> IdpAuthorizationServer:
    return current_app.extensions["signlab.idp.server"]


def login_core() -> LoginCore:
    """The app's login state machine."""
    return current_app.extensions["signlab.idp.login"]


def browser_id() -> str:
    """This browser's id in the IdP session cookie (set, with a CSRF token, on first use)."""
    if "bid" not in session:
        session["bid"] = secrets.token_urlsafe(16)
        session["csrf"] = secrets.token_urlsafe(24)
    return str(session["bid"])


def check_csrf() -> None:
    """The posted form echoes this browser's CSRF token.

    :raises InvalidRequest: it does not.
    """
    sent = request.form.get("csrf_token", "")
    expected = session.get("csrf", "")
    if not expected or not secrets.compare_digest(sent.encode(), str(expected).encode()):
        raise InvalidRequest("the form's CSRF token is missing or wrong; reload the page and try again")


# -- discovery and keys --------------------------------------------------------------------------
@bp.get("/.well-known/openid-configuration")
def discovery() -> Response:
    """OpenID Provider metadata."""
    return jsonify(_provider().discovery())


@bp.get("/.well-known/jwks.json")
def jwks() -> Response:
    """The published ID-token keys (active + retained)."""
    response = jsonify(_provider().keys.jwks())
    response.headers["Cache-Control"] = "public, max-age=60"
    return response


# -- step 3: the authentication request -------------------------------------------------------------
@bp.get("/authorize")
def authorize() -> Response:
    """The OIDC authorization endpoint (step 3): authlib validates, the login core decides (log in
    headlessly, reuse the SSO session, or send the browser to the login pages)."""
    provider, server = _provider(), _server()
    provider.record("authorize", dict(request.args))
    try:
        grant = server.get_consent_grant(end_user=_ANY_USER)
    except OAuth2Error as error:
        return server.handle_error_response(None, error)
    oreq: OAuth2Request = grant.request
    result = login_core().start(dict(request.args.items()), client_id=oreq.payload.client_id,
                                redirect_uri=grant.redirect_uri, scope=oreq.scope, sso_session=session.get("sso"),
                                browser=browser_id)
    if isinstance(result, Completed):
        return _issue_code(server, None, grant, result)
    return respond(result, oreq)


# -- step 4: the login pages ------------------------------------------------------------------------
_FORM_ACTIONS: dict[str, type[Cancel | Unmet | UseWallet | StartOver]] = {
    action.form_action: action for action in (Cancel, Unmet, UseWallet, StartOver)}


def _form_action() -> Action:
    """The login page's form as an action of the login core."""
    form = request.form
    name = form.get("action", "")
    if name in _FORM_ACTIONS:
        return _FORM_ACTIONS[name]()
    if name == ChoosePerson.form_action:
        return ChoosePerson((form.get("identifier") or "").strip() or form.get("person", ""))
    if name == ChooseMeans.form_action:
        return ChooseMeans(form.get("means", ""))
    if name == EnterCode.form_action:
        return EnterCode(form.get("otp") or "")
    return Unexpected(name)


@bp.route("/login/<rid>", methods=["GET", "POST"])
def login(rid: str) -> Any:
    """The interactive login (step 4): person → eID means → simulated credential / one-time code."""
    core = login_core()
    state = core.pending(rid, session.get("bid"))
    if request.method == "GET":
        return respond(core.advance(state, Show()))
    check_csrf()
    return respond(core.advance(state, _form_action()))


def respond(result: Result, oreq: OAuth2Request | None = None) -> Any:
    """The HTTP response for a result of the login core (``oreq``: the live authorization request;
    by default the stored one is rebuilt)."""
    provider, server = _provider(), _server()
    if isinstance(result, Render):
        return _render_login(result), result.status
    if isinstance(result, Redirect):
        return redirect(url_for("openid4vp.choose" if result.to == "wallet" else "idp.login", rid=result.rid))
    request_ = oreq or stored_request(provider.issuer, dict(result.params))
    if isinstance(result, Refusal):
        return server.redirect_refusal(request_, result.redirect_uri, result.refusal)
    try:
        grant = server.get_consent_grant(request=request_, end_user=_ANY_USER)
    except OAuth2Error as error:  # e.g. the client registration changed meanwhile
        return server.handle_error_response(request_, error)
    if result.sso_until is not None:
        session["sso"] = {"auth": result.outcome.auth.as_dict(), "expires": result.sso_until}
    return _issue_code(server, request_, grant, result)


def _issue_code(server: IdpAuthorizationServer, oreq: OAuth2Request | None, grant: Any, result: Completed) -> Response:
    auth = result.outcome.auth
    _provider().record("login", {"txn": auth.txn, "person": auth.person_id, "means": auth.means_id, "acr": auth.acr,
                                 "auth_time": auth.auth_time})
    return server.create_authorization_response(request=oreq, grant_user=result.outcome, grant=grant)


def _render_login(result: Render) -> str:
    page = result.page
    state = page.state
    return render_template(
        "idp_login.html", rid=state.rid, data=state, client=page.client, person=page.person, means=page.means,
        held=page.held, usable=page.usable, min_rank=state.min_rank, required=state.required,
        sign_message=state.params.get("binding_message"), scope=state.params.get("scope", ""),
        failures=list(state.failures), persons=page.persons, csrf_token=session.get("csrf", ""),
        max_attempts=MAX_CODE_ATTEMPTS,
    )


# -- step 5: token, userinfo; logout ------------------------------------------------------------------
@bp.post("/token")
def token() -> Response:
    """The token endpoint (step 5): code + PKCE verifier → access token and ID token."""
    form = request.form
    auth = request.authorization
    _provider().record("token_request", {
        "grant_type": form.get("grant_type"), "client_id": form.get("client_id") or (auth.username if auth else None),
        "client_auth": "client_secret_basic" if auth else ("client_secret_post" if form.get("client_secret") else "none"),
        "code": mask(form.get("code")), "code_verifier": mask(form.get("code_verifier")),
        "redirect_uri": form.get("redirect_uri"),
    })
    response = _server().create_token_response()
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/userinfo", methods=["GET", "POST"])
def userinfo() -> Response:
    """Claims of the person behind a bearer access token."""
    scheme, _, value = (request.headers.get("Authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise InvalidToken("send the access token as 'Authorization: Bearer <token>'")
    return jsonify(_provider().userinfo(value.strip()))


@bp.route("/logout", methods=["GET", "POST"])
def logout() -> Any:
    """RP-initiated logout (end_session_endpoint): ends the SSO session, then redirects to a
    registered ``post_logout_redirect_uri`` (with ``state``) or shows a page."""
    server = _server()
    try:
        end = server.validate_endpoint_request("end_session")
    except OAuth2Error as error:
        raise InvalidRequest(f"logout: {error.description or error.error}") from None
    if request.method == "POST":
        check_csrf()
    elif end.needs_confirmation:
        browser_id()
        return render_template("idp_logout.html", confirm=True, csrf_token=session.get("csrf", ""),
                               params=dict(request.args))
    response = server.create_endpoint_response("end_session", end)
    return response or render_template("idp_logout.html", confirm=False)


# -- catalogue, debugger ---------------------------------------------------------------------------
def _person_json(provider: IdpCore, person: Any) -> dict[str, Any]:
    return {
        "id": person.id, "given_name": person.given_name, "family_name": person.family_name,
        "birthdate": person.birthdate.isoformat(), "nationality": person.nationality,
        "person_id": person.person_id.claim(), "etsi_serial_number": person.person_id.etsi_serial_number,
        "deceased": person.deceased.isoformat() if person.deceased else None,
        "eidas_person_identifier": person.eidas_person_identifier, "edge": person.edge, "subject": person.subject,
        "means": [{"id": m.id, "status": h.status, "loa": m.loa, "qes_approved": m.qes_approved}
                  for m, h in provider.catalogue.means_of(person)],
        "login_hints": [f"{person.id}@{h.means_id}" for h in person.holdings],
    }


@bp.get("/api/v1/persons")
def persons_json() -> Response:
    """The test persons (synthetic data) as JSON."""
    provider = _provider()
    return jsonify([_person_json(provider, p) for p in provider.catalogue.persons])


@bp.get("/api/v1/eid-means")
def means_json() -> Response:
    """The eID means as JSON."""
    return jsonify([{**m.claim(), "acr": m.acr, "amr": list(m.amr), "proves_identity": m.proves_identity,
                     "description": m.description} for m in _provider().catalogue.means])


@bp.get("/api/v1/failures")
def failures_json() -> Response:
    """The named failures (what each does, at which step, with which error)."""
    return jsonify([spec.as_dict() for spec in FAILURES.values()])


@bp.get("/persons")
def persons_page() -> str:
    """The catalogue for people: persons, means, headless hints, failure names."""
    provider = _provider()
    return render_template("idp_persons.html", persons=[_person_json(provider, p) for p in provider.catalogue.persons],
                           means=provider.catalogue.means, failures=list(FAILURES.values()))


@bp.get("/debugger")
def debugger() -> str:
    """The last requests received and tokens issued (decoded; secrets masked; national identifiers
    and birth dates stored masked unless SIGNLAB_IDP_SHOW_PERSONAL_DATA): a trainer view."""
    provider = _provider()
    if not provider.settings.debugger_enabled:
        raise NotFound("the debugger is disabled (SIGNLAB_IDP_DEBUGGER_ENABLED=false)")
    require_trainer()
    kind = request.args.get("kind") or None
    text = (request.args.get("q") or "").strip()[:100] or None
    page = max(1, request.args.get("page", 1, type=int) or 1)
    total = provider.store.count_events(kind=kind, text=text)
    pages = max(1, -(-total // DEBUGGER_PAGE))
    page = min(page, pages)
    events = provider.store.events(DEBUGGER_PAGE, offset=(page - 1) * DEBUGGER_PAGE, kind=kind, text=text)
    return render_template("idp_debugger.html", events=events, kinds=provider.store.event_kinds(), kind=kind,
                           q=text or "", page=page, pages=pages, total=total)


DEBUGGER_PAGE = 20
"""Events per debugger page."""


# -- admin API (guarded) -------------------------------------------------------------------------------
def _admin() -> IdpCore:
    provider = _provider()
    if not provider.settings.admin_api_enabled:
        raise AdminApiDisabled()
    provider.check_admin(request.headers.get("Authorization"), request.remote_addr)
    return provider


@bp.get("/admin/failures")
def admin_list_failures() -> Response:
    """Armed failures."""
    return jsonify({"armed": [a.as_dict() for a in _admin().store.armed()], "known": list(FAILURES)})


@bp.post("/admin/failures")
def admin_arm_failure() -> tuple[Response, int]:
    """Arm a failure: JSON ``{"name", "value"?, "count"? (default 1; null = until removed), "client_id"?}``."""
    provider = _admin()
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("name"), str):
        raise InvalidRequest("expected a JSON object with a failure 'name'")
    text = body["name"] if body.get("value") is None else f"{body['name']}={body['value']}"
    try:
        failure = parse_failure(text)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    count = body.get("count", 1)
    if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 1):
        raise InvalidRequest("count must be a positive integer, or null for 'until removed'")
    client_id = body.get("client_id")
    if client_id is not None and provider.client(client_id) is None:
        raise InvalidRequest(f"unknown client_id {client_id!r}")
    armed = provider.store.arm(failure.name, failure.value, client_id, count)
    provider.record("admin", {"armed": armed.as_dict()})
    return jsonify(armed.as_dict()), 201


@bp.delete("/admin/failures")
def admin_clear_failures() -> Response:
    """Remove every armed failure."""
    return jsonify({"removed": _admin().store.disarm()})


@bp.delete("/admin/failures/<int:failure_id>")
def admin_remove_failure(failure_id: int) -> Response:
    """Remove one armed failure."""
    removed = _admin().store.disarm(failure_id)
    if not removed:
        raise NotFound(f"no armed failure {failure_id}")
    return jsonify({"removed": removed})


@bp.post("/admin/keys/rotate")
def admin_rotate_keys() -> Response:
    """Rotate the ID-token signing key; the previous keys stay in the JWKS (``key_retention``)."""
    provider = _admin()
    key = provider.keys.rotate()
    provider.record("admin", {"rotated_to": key.kid})
    return jsonify({"kid": key.kid, "published": [k.kid for k in provider.keys.published()]})
