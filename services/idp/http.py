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

from services.idp.authn import (
    Authentication,
    LoginOutcome,
    authenticate,
    choose_means,
    parse_acr_values,
    satisfies,
    usable_means,
)
from services.idp.errors import (
    AdminApiDisabled,
    AuthorizationRefused,
    InvalidAuthorizationRequest,
    LoginRefused,
    LoginRequestUnknown,
    LoginRequired,
    RequestObjectNotSupported,
    TemporarilyUnavailable,
    UnmetAuthenticationRequirements,
)
from services.idp.failures import FAILURES, Failure, parse_failure
from services.idp.identifiers import validate_identifier
from services.idp.login_hint import parse_login_hint
from services.idp.oauth2 import IdpAuthorizationServer, stored_request
from services.idp.provider import Provider, mask
from shared.clock import lab_clock
from shared.errors import InvalidRequest, InvalidToken, NotFound
from shared.eudi import WALLET_MEANS_ID
from shared.flow import step
from shared.identity import LOA_NAMES
from shared.trainer_access import require_trainer

__all__ = ["bp"]

log = logging.getLogger(__name__)
bp = Blueprint("idp", __name__)

_ANY_USER = object()
"""Given to authlib's consent validation so that it leaves ``prompt=none`` to us (we know about
headless hints and SSO sessions, authlib does not)."""
_MAX_OTP_ATTEMPTS = 3


def _provider() -> Provider:
    return current_app.extensions["signlab.idp"]  # type: ignore[no-any-return]


def _server() -> IdpAuthorizationServer:
    return current_app.extensions["signlab.idp.server"]  # type: ignore[no-any-return]


def _browser_id() -> str:
    if "bid" not in session:
        session["bid"] = secrets.token_urlsafe(16)
        session["csrf"] = secrets.token_urlsafe(24)
    return str(session["bid"])


def _check_csrf() -> None:
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
def _sso_auth(provider: Provider) -> Authentication | None:
    data = session.get("sso")
    if not isinstance(data, dict) or float(data.get("expires", 0)) < lab_clock().time():
        return None
    try:
        return Authentication.from_dict(data["auth"])
    except (KeyError, TypeError, ValueError):
        return None


def _max_age(args: Any) -> int | None:
    raw = args.get("max_age")
    if raw is None or raw == "":
        return None
    if not raw.isdigit():
        raise InvalidAuthorizationRequest(f"max_age must be a non-negative integer of seconds, not {raw!r}", step=step(3))
    return int(raw)


def _complete(server: IdpAuthorizationServer, oreq: OAuth2Request | None, grant: Any, outcome: LoginOutcome) -> Response:
    _provider().record("login", {"txn": outcome.auth.txn, "person": outcome.auth.person_id, "means": outcome.auth.means_id,
                                 "acr": outcome.auth.acr, "auth_time": outcome.auth.auth_time})
    return server.create_authorization_response(request=oreq, grant_user=outcome, grant=grant)  # type: ignore[no-any-return]


@bp.get("/authorize")
def authorize() -> Response:
    """The OIDC authorization endpoint (step 3): validate, then log in headlessly, reuse the SSO
    session, or send the browser to the login pages."""
    provider, server = _provider(), _server()
    provider.record("authorize", dict(request.args))
    try:
        grant = server.get_consent_grant(end_user=_ANY_USER)
    except OAuth2Error as error:
        return server.handle_error_response(None, error)
    oreq: OAuth2Request = grant.request
    redirect_uri: str = grant.redirect_uri
    client_id: str = oreq.payload.client_id
    args = request.args
    try:
        for parameter in ("request", "request_uri"):
            if parameter in args:
                raise RequestObjectNotSupported(parameter, step=step(3))
        if "openid" not in (oreq.scope or "").split():
            raise InvalidAuthorizationRequest("scope must include openid", step=step(3))
        max_age = _max_age(args)
        min_rank = parse_acr_values(args.get("acr_values"))
        prompts = set(args.get("prompt", "").split())
        hint = None
        if args.get("login_hint"):
            try:
                hint = parse_login_hint(args["login_hint"], provider.catalogue,
                                        failures_allowed=provider.settings.admin_api_enabled)
            except ValueError as exc:
                raise InvalidAuthorizationRequest(f"login_hint: {exc}", step=step(3)) from None
        failures = provider.failures_for_request(client_id, hint.failures if hint else ())
        if any(f.spec.stage == "authorize" for f in failures):
            raise TemporarilyUnavailable("the eID service is temporarily unavailable (injected failure 'unavailable')",
                                         step=step(3))
        # "@eudi-wallet": the wallet presents the PID (services/idp/openid4vp_http.py), no headless login.
        wallet = hint is not None and hint.means is not None and hint.means.id == WALLET_MEANS_ID
        if hint is not None and hint.person is not None and not wallet:
            means = hint.means or choose_means(provider.catalogue, hint.person, min_rank)
            auth = authenticate(provider.catalogue, hint.person, means, min_rank=min_rank, failures=failures, now=lab_clock().time())
            return _complete(server, None, grant, LoginOutcome(auth, failures, min_rank))
        sso = _sso_auth(provider)
        login_failures = any(f.spec.stage == "login" for f in failures)
        if (sso is not None and not wallet and "login" not in prompts and not login_failures and satisfies(sso, min_rank)
                and (max_age is None or lab_clock().time() - sso.auth_time <= max_age)):
            return _complete(server, None, grant, LoginOutcome(sso, failures, min_rank))
        if "none" in prompts:
            raise LoginRequired("prompt=none but there is no usable login session at the IdP", step=step(3))
    except AuthorizationRefused as refusal:
        return server.redirect_refusal(oreq, redirect_uri, refusal)
    rid = secrets.token_urlsafe(18)
    provider.store.put_pending(rid, lab_clock().time() + provider.settings.login_request_lifetime_seconds, {
        "params": {k: v for k, v in args.items()}, "client_id": client_id, "redirect_uri": redirect_uri,
        "min_rank": min_rank, "failures": [f.as_dict() for f in failures], "bid": _browser_id(),
        "stage": "wallet" if wallet else "person", "person": None, "means": None, "otp": None, "attempts": 0,
        "message": None,
    })
    return redirect(url_for("openid4vp.choose" if wallet else "idp.login", rid=rid))  # type: ignore[return-value]


# -- step 4: the login pages ------------------------------------------------------------------------
def _render_login(provider: Provider, rid: str, data: dict[str, Any], status: int = 200) -> tuple[str, int]:
    client = provider.client(data["client_id"])
    person = provider.catalogue.get_person(data["person"]) if data.get("person") else None
    means = provider.catalogue.get_means(data["means"]) if data.get("means") else None
    min_rank = data.get("min_rank")
    held = provider.catalogue.means_of(person) if person else []
    usable = {m.id for m in usable_means(provider.catalogue, person, None)} if person else set()
    page = render_template(
        "idp_login.html", rid=rid, data=data, client=client, person=person, means=means, held=held, usable=usable,
        min_rank=min_rank, required=LOA_NAMES[min_rank - 1] if min_rank else None,
        sign_message=data["params"].get("binding_message"), scope=data["params"].get("scope", ""),
        failures=[Failure.from_dict(f) for f in data.get("failures") or ()],
        persons=provider.catalogue.persons, csrf_token=session.get("csrf", ""), max_attempts=_MAX_OTP_ATTEMPTS,
    )
    return page, status


def _finish_refused(provider: Provider, rid: str, data: dict[str, Any], refusal: AuthorizationRefused) -> Response:
    provider.store.take_pending(rid)
    oreq = stored_request(provider.issuer, data["params"])
    return _server().redirect_refusal(oreq, data["redirect_uri"], refusal)


@bp.route("/login/<rid>", methods=["GET", "POST"])
def login(rid: str) -> Any:
    """The interactive login (step 4): person → eID means → simulated credential / one-time code."""
    provider = _provider()
    pending = provider.store.get_pending(rid)
    if pending is None:
        raise LoginRequestUnknown(step=step(4))
    data = pending.data
    if data.get("bid") != session.get("bid"):
        raise LoginRequestUnknown("this login was started in another browser; go back to the service and start again",
                                  step=step(4))
    if request.method == "GET":
        return _render_login(provider, rid, data)
    _check_csrf()
    action = request.form.get("action", "")
    data["message"] = None
    min_rank = data.get("min_rank")
    if action == "cancel":
        return _finish_refused(provider, rid, data, LoginRefused("the user cancelled the login", step=step(4)))
    if action == "unmet":
        return _finish_refused(provider, rid, data, UnmetAuthenticationRequirements(
            f"none of the person's eID means reaches level {LOA_NAMES[min_rank - 1] if min_rank else 'requested'}",
            step=step(4)))
    if action == "wallet":  # the EUDI Wallet button: the wallet login takes over (services/idp/openid4vp_http.py)
        data.update(stage="wallet")
        provider.store.put_pending(rid, pending.expires, data)
        return redirect(url_for("openid4vp.choose", rid=rid))
    if action == "back":
        data.update(stage="person", person=None, means=None, otp=None, attempts=0)
    elif action == "person":
        typed = (request.form.get("identifier") or "").strip()
        chosen = typed or request.form.get("person", "")
        person = provider.catalogue.find_person(chosen) if chosen else None
        if person is None:
            data["message"] = _unknown_identifier_message(typed or chosen)
            provider.store.put_pending(rid, pending.expires, data)
            return _render_login(provider, rid, data, 400)
        data.update(stage="means", person=person.id, means=None)
    elif action == "means" and data.get("person"):
        person = provider.catalogue.get_person(data["person"])
        means = provider.catalogue.get_means(request.form.get("means", ""))
        if person is None or means is None or person.holding(means.id) is None:
            data["message"] = "choose one of the eID means listed"
            provider.store.put_pending(rid, pending.expires, data)
            return _render_login(provider, rid, data, 400)
        if _locked(provider, person.id):
            return _finish_refused(provider, rid, data, _lockout_refusal(provider))
        data.update(stage="otp", means=means.id, otp=f"{secrets.randbelow(10**6):06d}", attempts=0)
    elif action == "otp" and data.get("means") and data.get("otp"):
        code = (request.form.get("otp") or "").strip()
        if not secrets.compare_digest(code.encode(), str(data["otp"]).encode()):
            provider.store.record_failed_code(str(data["person"]))
            if _locked(provider, str(data["person"])):
                return _finish_refused(provider, rid, data, _lockout_refusal(provider))
            data["attempts"] = int(data.get("attempts", 0)) + 1
            if data["attempts"] >= _MAX_OTP_ATTEMPTS:
                return _finish_refused(provider, rid, data, LoginRefused(
                    f"wrong one-time code {_MAX_OTP_ATTEMPTS} times; authentication failed", step=step(4)))
            data["message"] = f"wrong code; {_MAX_OTP_ATTEMPTS - data['attempts']} attempt(s) left"
            provider.store.put_pending(rid, pending.expires, data)
            return _render_login(provider, rid, data, 400)
        return _finish_login(provider, rid, data)
    else:
        raise InvalidRequest(f"unexpected form action {action!r} at this stage of the login", step=step(4))
    provider.store.put_pending(rid, pending.expires, data)
    return redirect(url_for("idp.login", rid=rid))


def _locked(provider: Provider, person: str) -> bool:
    """Brute-force protection: too many wrong codes for this person recently (any login, any browser)."""
    window = provider.settings.lockout_seconds
    return provider.store.failed_codes_since(person, lab_clock().time() - window) >= provider.settings.lockout_failures


def _lockout_refusal(provider: Provider) -> LoginRefused:
    settings = provider.settings
    return LoginRefused(f"this eID login is locked for {settings.lockout_seconds // 60} minutes after "
                        f"{settings.lockout_failures} wrong one-time codes", step=step(4))


def _unknown_identifier_message(typed: str) -> str:
    compact = "".join(typed.split())
    for country, semantics in (("NO", "PNO"), ("SE", "PNO"), ("FI", "PNO"), ("DK", "PNO")):
        looks_like = {"NO": compact.isdigit() and len(compact) == 11,
                      "SE": compact.replace("-", "").replace("+", "").isdigit() and len(compact.replace("-", "")) in (10, 12),
                      "FI": len(compact) == 11 and compact[:6].isdigit() and compact[6] in "+-ABCDEFUVWXY",
                      "DK": compact.replace("-", "").isdigit() and len(compact.replace("-", "")) == 10}[country]
        if looks_like:
            try:
                validate_identifier(country, semantics, compact)
            except ValueError as exc:
                if country != "SE" or len(compact) != 10:  # Danish and Swedish short forms overlap
                    return f"{exc}; check the number"
    return "no test person with this id or national identifier; pick one from the list"


def _finish_login(provider: Provider, rid: str, data: dict[str, Any]) -> Response:
    person = provider.catalogue.get_person(data["person"])
    means = provider.catalogue.get_means(data["means"])
    if person is None or means is None:
        raise LoginRequestUnknown(step=step(4))
    if provider.store.take_pending(rid) is None:  # finished in another tab meanwhile
        raise LoginRequestUnknown(step=step(4))
    failures = tuple(Failure.from_dict(f) for f in data.get("failures") or ())
    oreq = stored_request(provider.issuer, data["params"])
    server = _server()
    try:
        auth = authenticate(provider.catalogue, person, means, min_rank=data.get("min_rank"), failures=failures,
                            now=lab_clock().time())
    except AuthorizationRefused as refusal:
        return server.redirect_refusal(oreq, data["redirect_uri"], refusal)
    try:
        grant = server.get_consent_grant(request=oreq, end_user=_ANY_USER)
    except OAuth2Error as error:  # e.g. the client registration changed meanwhile
        return server.handle_error_response(oreq, error)
    if provider.settings.sso_session_seconds > 0:
        session["sso"] = {"auth": auth.as_dict(), "expires": lab_clock().time() + provider.settings.sso_session_seconds}
    return _complete(server, oreq, grant, LoginOutcome(auth, failures, data.get("min_rank")))


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
    return response  # type: ignore[no-any-return]


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
        _check_csrf()
    elif end.needs_confirmation:
        _browser_id()
        return render_template("idp_logout.html", confirm=True, csrf_token=session.get("csrf", ""),
                               params=dict(request.args))
    response = server.create_endpoint_response("end_session", end)
    return response or render_template("idp_logout.html", confirm=False)


# -- catalogue, debugger ---------------------------------------------------------------------------
def _person_json(provider: Provider, person: Any) -> dict[str, Any]:
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
def _admin() -> Provider:
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
