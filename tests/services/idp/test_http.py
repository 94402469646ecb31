"""Every endpoint and error path of the IdP against the real app (authlib server, real ES256 keys)."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from idp_testkit import (  # type: ignore[import-not-found]
    ADMIN_TOKEN,
    CLIENT_ID,
    CLIENT_SECRET,
    OTHER_ID,
    OTHER_REDIRECT,
    POST_LOGOUT,
    REDIRECT_URI,
    AuthRequest,
    authorize,
    headless_tokens,
    jwks_of,
    query_of,
    redeem,
)
from joserfc import jwt
from joserfc.jwk import KeySet

from services.idp.settings import IdpSettings
from shared.identity import LOA_HIGH, LOA_LOW, LOA_SUBSTANTIAL, IdentityEvidenceError, verify_id_token

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def verify(client: FlaskClient, settings: IdpSettings, tokens: dict[str, Any], req: AuthRequest, **kw: Any) -> Any:
    return verify_id_token(tokens["id_token"], jwks_of(client), issuer=settings.base_url, audience=req.client_id,
                           nonce=req.nonce, **kw)


def error_redirect(response: Any, req: AuthRequest) -> dict[str, str]:
    """Assert an OIDC error redirect to the client with state; return its parameters."""
    assert response.status_code == 302, response.get_data(as_text=True)
    location = response.headers["Location"]
    assert location.startswith(req.redirect_uri + "?")
    params = query_of(location)
    assert params["state"] == req.state
    assert "code" not in params
    assert params["error_description"].isascii()
    return params


# -- discovery, JWKS, role page ----------------------------------------------------------------
def test_discovery_is_valid_openid_provider_metadata(client: FlaskClient, settings: IdpSettings) -> None:
    from authlib.oidc.discovery import OpenIDProviderMetadata

    body = client.get("/.well-known/openid-configuration").get_json()
    metadata = OpenIDProviderMetadata(body)
    # Every authlib check except one: Discovery 1.0 wants RS256 listed, SignLab signs ES256 only
    # (the contracts fix ES256; RS256 is a documented non-goal).
    for key in metadata.REGISTRY_KEYS:
        if key != "id_token_signing_alg_values_supported":
            getattr(metadata, f"validate_{key}")()
    assert body["issuer"] == settings.base_url
    assert body["code_challenge_methods_supported"] == ["S256"]
    assert body["id_token_signing_alg_values_supported"] == ["ES256"]
    assert body["acr_values_supported"] == [LOA_LOW, LOA_SUBSTANTIAL, LOA_HIGH]
    assert body["token_endpoint_auth_methods_supported"] == ["client_secret_basic", "client_secret_post"]
    assert body["trust_frameworks_supported"] == ["eidas"]


def test_browser_endpoints_can_live_under_another_name(tmp_path: Path) -> None:
    """In docker compose services call the issuer by container name; browsers use 127.0.0.1."""
    from idp_testkit import make_settings  # type: ignore[import-not-found]

    from services.idp import create_app
    from services.idp.provision import provision

    settings = make_settings(tmp_path / "idp").model_copy(update={"public_url": "http://idp:8001",
                                                                  "browser_url": "http://127.0.0.1:8001"})
    provision(settings)
    application = create_app(settings)
    try:
        body = application.test_client().get("/.well-known/openid-configuration").get_json()
    finally:
        application.extensions["signlab.idp"].close()
    assert body["issuer"] == "http://idp:8001" and body["token_endpoint"] == "http://idp:8001/token"
    assert body["authorization_endpoint"] == "http://127.0.0.1:8001/authorize"
    assert body["end_session_endpoint"] == "http://127.0.0.1:8001/logout"


def test_jwks_has_kid_and_public_parts_only(client: FlaskClient) -> None:
    keys = client.get("/.well-known/jwks.json").get_json()["keys"]
    assert len(keys) == 1 and keys[0]["kid"] and keys[0]["alg"] == "ES256" and "d" not in keys[0]


def test_health_and_pages(client: FlaskClient) -> None:
    health = client.get("/healthz").get_json()
    assert health["status"] == "ok" and "signing key" in health["checks"]
    assert "Kari" in client.get("/persons").get_data(as_text=True)
    assert client.get("/api/v1/persons").get_json()[0]["login_hints"]
    assert len(client.get("/api/v1/eid-means").get_json()) >= 7
    assert {f["name"] for f in client.get("/api/v1/failures").get_json()} >= {"cancel", "wrong-nonce"}


# -- headless code flow ----------------------------------------------------------------------------
def test_headless_flow_claims(client: FlaskClient, settings: IdpSettings) -> None:
    req = AuthRequest(acr_values=LOA_HIGH, login_hint="kari-nordmann@no-bankid")
    tokens = headless_tokens(client, req)
    identity = verify(client, settings, tokens, req, min_loa="high")
    assert identity.acr == LOA_HIGH and identity.eid_id == "no-bankid" and identity.qes_approved
    assert identity.etsi_serial_number() == "PNONO-14838540105"
    assert identity.age_over_18 is True
    assert identity.amr and identity.auth_time
    vc = identity.verified_claims
    assert vc is not None and vc["verification"]["trust_framework"] == "eidas"
    assert vc["verification"]["assurance_level"] == "high"
    assert vc["verification"]["evidence"][0]["type"] == "electronic_record"
    assert vc["claims"]["family_name"] == "Nordmann"
    header = jwt.decode(tokens["id_token"], jwks_of(client)).header
    assert header["alg"] == "ES256" and header["kid"]
    userinfo = client.get("/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}).get_json()
    assert userinfo["sub"] == identity.subject and userinfo["signlab_person_id"]["value"] == "14838540105"
    assert tokens["token_type"].lower() == "bearer"


def test_acr_is_what_the_means_gives_even_when_less_is_asked(client: FlaskClient, settings: IdpSettings) -> None:
    req = AuthRequest(acr_values=LOA_LOW, login_hint="kari-nordmann@no-bankid")
    assert verify(client, settings, headless_tokens(client, req), req).acr == LOA_HIGH
    req = AuthRequest(acr_values=LOA_SUBSTANTIAL, login_hint="kari-nordmann@no-minid")
    identity = verify(client, settings, headless_tokens(client, req), req)
    assert identity.acr == LOA_SUBSTANTIAL and not identity.qes_approved


def test_default_means_is_first_usable_at_requested_level(client: FlaskClient, settings: IdpSettings) -> None:
    req = AuthRequest(acr_values=LOA_HIGH, login_hint="tor-tilbakekalt")  # BankID revoked, MinID substantial
    params = error_redirect(authorize(client, req), req)
    assert params["error"] == "access_denied" and "revoked" in params["error_description"]
    req = AuthRequest(acr_values=LOA_SUBSTANTIAL, login_hint="tor-tilbakekalt")
    assert verify(client, settings, headless_tokens(client, req), req).eid_id == "no-minid"


def test_unsatisfiable_loa_is_unmet_authentication_requirements(client: FlaskClient) -> None:
    for hint in ("siri-substans", "siri-substans@no-minid", "kari-nordmann@no-minid"):
        req = AuthRequest(acr_values=LOA_HIGH, login_hint=hint)
        params = error_redirect(authorize(client, req), req)
        assert params["error"] == "unmet_authentication_requirements"
        assert params["error_description"].startswith("step 4")


def test_minor_logs_in_with_age_over_18_false(client: FlaskClient, settings: IdpSettings) -> None:
    req = AuthRequest(acr_values=LOA_HIGH, login_hint="nora-lillebo@no-bankid")
    identity = verify(client, settings, headless_tokens(client, req), req)
    assert identity.age_over_18 is False and identity.birthdate == "2012-05-17"


@pytest.mark.parametrize(("hint", "words"), [
    ("per-gjenganger@no-bankid", "deceased"),
    ("tor-tilbakekalt@no-bankid", "revoked"),
    ("lars-ostergaard@dk-mitid", "blocked"),
])
def test_refused_persons(client: FlaskClient, hint: str, words: str) -> None:
    req = AuthRequest(login_hint=hint)
    params = error_redirect(authorize(client, req), req)
    assert params["error"] == "access_denied" and words in params["error_description"]


def test_social_login_proves_no_identifier(client: FlaskClient, settings: IdpSettings) -> None:
    req = AuthRequest(login_hint="sofie-sosial")
    identity = verify(client, settings, headless_tokens(client, req), req)
    assert identity.loa == "low" and identity.person_id_value is None and identity.verified_claims is None
    with pytest.raises(IdentityEvidenceError) as caught:
        identity.etsi_serial_number()
    assert caught.value.check == "signlab_person_id"


def test_eidas_cross_border_person(client: FlaskClient, settings: IdpSettings) -> None:
    req = AuthRequest(acr_values=LOA_HIGH, login_hint="lukas-mueller@de-eidas")
    identity = verify(client, settings, headless_tokens(client, req), req)
    assert identity.etsi_serial_number() == "IDCDE-T220001293"
    assert identity.claims["eidas_person_identifier"].startswith("DE/NO/")
    assert identity.family_name == "Müller"


# -- authorization request errors (step 3) ---------------------------------------------------------
def test_unknown_client_is_not_redirected(client: FlaskClient) -> None:
    response = authorize(client, AuthRequest(client_id="nobody"))
    assert response.status_code in (400, 401) and response.get_json()["error"] == "invalid_client"
    assert response.get_json()["error_description"].startswith("step 3")


def test_unregistered_redirect_uri_is_not_redirected(client: FlaskClient) -> None:
    for uri in (REDIRECT_URI + "/", REDIRECT_URI + "?x=1", "http://evil.example/cb"):
        response = authorize(client, AuthRequest(redirect_uri=uri))
        assert response.status_code == 400 and "Location" not in response.headers
        assert response.get_json()["error"] == "invalid_request"


def test_missing_redirect_uri_is_refused(client: FlaskClient) -> None:
    params = AuthRequest().params()
    params.pop("redirect_uri")
    response = client.get("/authorize", query_string=params)
    assert response.status_code == 400 and "redirect_uri is required" in response.get_json()["error_description"]


def test_browser_gets_an_html_error_page(client: FlaskClient) -> None:
    response = client.get("/authorize", query_string=AuthRequest(client_id="nobody").params(),
                          headers={"Accept": "text/html"})
    assert response.mimetype == "text/html" and "invalid_client" in response.get_data(as_text=True)


@pytest.mark.parametrize(("change", "error", "words"), [
    ({"code_challenge": None, "code_challenge_method": None}, "invalid_request", "PKCE is required"),
    ({"code_challenge_method": "plain"}, "invalid_request", "S256"),
    ({"code_challenge_method": None}, "invalid_request", "S256"),
    ({"code_challenge": "short"}, "invalid_request", "code_challenge"),
    ({"nonce": None}, "invalid_request", "nonce"),
    ({"scope": "profile"}, "invalid_request", "openid"),
    ({"response_type": "token"}, "unsupported_response_type", "token"),
    ({"acr_values": "urn:loa:4"}, "invalid_request", "acr_values"),
    ({"max_age": "soon"}, "invalid_request", "max_age"),
    ({"login_hint": "nobody@no-bankid"}, "invalid_request", "unknown person"),
    ({"login_hint": "kari-nordmann@no-such"}, "invalid_request", "unknown eID means"),
    ({"login_hint": "ola-nordmann@no-buypass"}, "invalid_request", "does not hold"),
    ({"prompt": "none login"}, "invalid_request", "prompt"),
    ({"prompt": "none"}, "login_required", "no usable login session"),
])
def test_authorization_request_errors_go_back_to_the_client(client: FlaskClient, change: dict[str, str | None],
                                                            error: str, words: str) -> None:
    req = AuthRequest()
    params = req.params()
    params.update(change)  # type: ignore[arg-type]
    response = client.get("/authorize", query_string={k: v for k, v in params.items() if v is not None})
    result = error_redirect(response, req)
    assert result["error"] == error
    assert words.lower() in result["error_description"].lower()


# -- token endpoint errors (step 5) -----------------------------------------------------------------
def _code(client: FlaskClient, req: AuthRequest) -> str:
    return query_of(authorize(client, req).headers["Location"])["code"]


@pytest.mark.parametrize(("form", "words"), [
    ({"code_verifier": None}, "code_verifier is missing"),
    ({"code_verifier": "A" * 43}, "does not match"),
    ({"code_verifier": "bad!"}, "malformed"),
    ({"redirect_uri": OTHER_REDIRECT}, "redirect_uri"),
    ({"code": "not-a-code"}, "code"),
])
def test_token_request_errors_are_invalid_grant(client: FlaskClient, form: dict[str, str | None], words: str) -> None:
    req = AuthRequest(login_hint="kari-nordmann")
    response = redeem(client, _code(client, req), req, **form)  # type: ignore[arg-type]
    assert response.status_code == 400
    body = response.get_json()
    assert body["error"] == "invalid_grant" and words in body["error_description"]
    assert body["error_description"].startswith("step 5")


def test_code_is_single_use_even_after_a_failed_attempt(client: FlaskClient) -> None:
    req = AuthRequest(login_hint="kari-nordmann")
    code = _code(client, req)
    assert redeem(client, code, req).status_code == 200
    assert redeem(client, code, req).get_json()["error"] == "invalid_grant"
    code = _code(client, req)
    assert redeem(client, code, req, code_verifier="B" * 43).status_code == 400
    assert redeem(client, code, req).get_json()["error"] == "invalid_grant"


def test_client_authentication(client: FlaskClient) -> None:
    req = AuthRequest(login_hint="kari-nordmann")
    data = {"grant_type": "authorization_code", "code": _code(client, req), "redirect_uri": REDIRECT_URI,
            "code_verifier": req.verifier}
    wrong = client.post("/token", data=data, auth=(CLIENT_ID, "wrong"))
    assert wrong.status_code == 401 and wrong.get_json()["error"] == "invalid_client"
    none = client.post("/token", data={**data, "client_id": CLIENT_ID})
    assert none.status_code in (400, 401) and none.get_json()["error"] == "invalid_client"
    fresh = AuthRequest(login_hint="kari-nordmann")
    post = client.post("/token", data={**data, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                                       "code": _code(client, fresh), "code_verifier": fresh.verifier})
    assert post.status_code == 200 and post.headers["Cache-Control"] == "no-store"


def test_code_of_another_client_is_refused(client: FlaskClient) -> None:
    req = AuthRequest(login_hint="kari-nordmann")
    code = _code(client, req)
    other = AuthRequest(client_id=OTHER_ID, redirect_uri=OTHER_REDIRECT, verifier=req.verifier)
    assert redeem(client, code, other).get_json()["error"] == "invalid_grant"


def test_unsupported_grant_type(client: FlaskClient) -> None:
    response = client.post("/token", data={"grant_type": "password"}, auth=(CLIENT_ID, CLIENT_SECRET))
    assert response.status_code == 400 and response.get_json()["error"] == "unsupported_grant_type"


def test_expired_code(client: FlaskClient, app: Flask) -> None:
    req = AuthRequest(login_hint="kari-nordmann")
    code = _code(client, req)
    store = app.extensions["signlab.idp"].store
    stored = store.take_code(code)
    store.put_code(code, stored.client_id, time.time() - 5, stored.data)
    body = redeem(client, code, req).get_json()
    assert body["error"] == "invalid_grant" and "expired" in body["error_description"]


def test_nonce_cannot_be_reused_while_a_code_is_outstanding(client: FlaskClient) -> None:
    req = AuthRequest(login_hint="kari-nordmann")
    _code(client, req)
    again = AuthRequest(login_hint="kari-nordmann", nonce=req.nonce)
    assert error_redirect(authorize(client, again), again)["error"] == "invalid_request"


# -- userinfo ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("header", [None, "Basic abc", "Bearer ", "Bearer unknown-token"])
def test_userinfo_refuses_bad_tokens(client: FlaskClient, header: str | None) -> None:
    response = client.get("/userinfo", headers={"Authorization": header} if header else {})
    assert response.status_code == 401 and response.get_json()["error"] == "invalid_token"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


# -- interactive login pages (step 4) -----------------------------------------------------------------
def _csrf(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match
    return match.group(1)


def _start(client: FlaskClient, req: AuthRequest) -> str:
    response = authorize(client, req)
    assert response.status_code == 302 and response.headers["Location"].startswith("/login/")
    return str(response.headers["Location"])


def _post(client: FlaskClient, url: str, **form: str) -> Any:
    page = client.get(url).get_data(as_text=True)
    return client.post(url, data={"csrf_token": _csrf(page), **form})


def interactive_login(client: FlaskClient, req: AuthRequest, person: str, means: str, url: str | None = None) -> Any:
    """Person → means → one-time code; returns the final response (redirect to the client)."""
    url = url or _start(client, req)
    assert _post(client, url, action="person", person=person).status_code == 302
    assert _post(client, url, action="means", means=means).status_code == 302
    page = client.get(url).get_data(as_text=True)
    otp = re.search(r'id="test-otp">(\d{6})<', page).group(1)  # type: ignore[union-attr]
    return client.post(url, data={"csrf_token": _csrf(page), "action": "otp", "otp": otp})


def test_interactive_login_shows_the_request_and_completes(client: FlaskClient, settings: IdpSettings) -> None:
    req = AuthRequest(acr_values=LOA_HIGH, extra={"binding_message": "Sign 3 documents for SignLab Demo Partner"})
    url = _start(client, req)
    page = client.get(url).get_data(as_text=True)
    assert "SignLab remote signing service" in page and "Sign 3 documents for SignLab Demo Partner" in page
    assert "at least <strong>high</strong>" in page
    assert client.get(url).headers["X-Frame-Options"] == "DENY"
    response = interactive_login(client, req, "aase-aerlig", "no-buypass", url)
    params = query_of(response.headers["Location"])
    assert params["state"] == req.state
    identity = verify(client, settings, redeem(client, params["code"], req).get_json(), req)
    assert identity.given_name == "Åse Marit" and identity.eid_id == "no-buypass"
    assert client.get(url).status_code == 404, "a finished login cannot be replayed"


def test_identifier_can_be_typed(client: FlaskClient) -> None:
    url = _start(client, AuthRequest())
    assert _post(client, url, action="person", identifier="19790405-2383").status_code == 302
    assert "Astrid" in client.get(url).get_data(as_text=True)
    url = _start(client, AuthRequest())
    bad = _post(client, url, action="person", identifier="14838540106")
    assert bad.status_code == 400 and "not a valid Norwegian" in bad.get_data(as_text=True)


def test_means_below_level_cannot_be_chosen_and_unmet_returns(client: FlaskClient) -> None:
    req = AuthRequest(acr_values=LOA_HIGH)
    url = _start(client, req)
    _post(client, url, action="person", person="siri-substans")
    page = client.get(url).get_data(as_text=True)
    assert 'id="unmet"' in page and "disabled" in page
    response = _post(client, url, action="unmet")
    assert error_redirect(response, req)["error"] == "unmet_authentication_requirements"


def test_cancel_button(client: FlaskClient) -> None:
    req = AuthRequest()
    url = _start(client, req)
    params = error_redirect(_post(client, url, action="cancel"), req)
    assert params["error"] == "access_denied" and "cancelled" in params["error_description"]


def test_wrong_otp_three_times(client: FlaskClient) -> None:
    req = AuthRequest()
    url = _start(client, req)
    _post(client, url, action="person", person="ola-nordmann")
    _post(client, url, action="means", means="no-bankid")
    assert _post(client, url, action="otp", otp="xxxxxx").status_code == 400
    assert _post(client, url, action="otp", otp="xxxxxx").status_code == 400
    params = error_redirect(_post(client, url, action="otp", otp="xxxxxx"), req)
    assert params["error"] == "access_denied" and "3 times" in params["error_description"]


def test_deceased_person_refused_interactively(client: FlaskClient) -> None:
    req = AuthRequest()
    response = interactive_login(client, req, "per-gjenganger", "no-bankid")
    assert error_redirect(response, req)["error"] == "access_denied"


def test_csrf_and_browser_binding(client: FlaskClient, app: Flask) -> None:
    url = _start(client, AuthRequest())
    assert client.post(url, data={"action": "cancel"}).status_code == 400
    assert client.post(url, data={"action": "cancel", "csrf_token": "forged"}).status_code == 400
    other_browser = app.test_client()
    assert other_browser.get(url).status_code == 404
    assert client.get("/login/unknown").status_code == 404


def test_sso_session_prompt_login_and_max_age(client: FlaskClient, settings: IdpSettings) -> None:
    first = AuthRequest()
    response = interactive_login(client, first, "kari-nordmann", "no-bankid")
    first_identity = verify(client, settings, redeem(client, query_of(response.headers["Location"])["code"], first).get_json(), first)
    # SSO: a second request without prompt=login completes at once with the original auth_time.
    again = AuthRequest(extra={"prompt": "none"})
    response = authorize(client, again)
    identity = verify(client, settings, redeem(client, query_of(response.headers["Location"])["code"], again).get_json(), again)
    assert identity.auth_time == first_identity.auth_time
    # prompt=login and a too-small max_age force the login page.
    assert authorize(client, AuthRequest(extra={"prompt": "login"})).headers["Location"].startswith("/login/")
    time.sleep(1.1)
    assert authorize(client, AuthRequest(extra={"max_age": "0"})).headers["Location"].startswith("/login/")
    # The session's level (high) satisfies a request for high: no new login.
    assert "code" in query_of(authorize(client, AuthRequest(acr_values=LOA_HIGH)).headers["Location"])


def test_sso_session_below_requested_level_forces_login(client: FlaskClient) -> None:
    first = AuthRequest()
    response = interactive_login(client, first, "kari-nordmann", "no-minid")
    assert "code" in query_of(response.headers["Location"])
    assert "code" in query_of(authorize(client, AuthRequest(acr_values=LOA_SUBSTANTIAL)).headers["Location"])
    assert authorize(client, AuthRequest(acr_values=LOA_HIGH)).headers["Location"].startswith("/login/")
    req = AuthRequest(acr_values=LOA_HIGH, extra={"prompt": "none"})
    assert error_redirect(authorize(client, req), req)["error"] == "login_required"


def test_end_session(client: FlaskClient) -> None:
    req = AuthRequest(login_hint="kari-nordmann")
    tokens = headless_tokens(client, req)
    response = client.get("/logout", query_string={"id_token_hint": tokens["id_token"],
                                                   "post_logout_redirect_uri": POST_LOGOUT, "state": "bye"})
    assert response.status_code == 302 and response.headers["Location"] == POST_LOGOUT + "?state=bye"
    # Without id_token_hint: a confirmation page with CSRF protection, then a plain page.
    page = client.get("/logout").get_data(as_text=True)
    assert 'id="logout"' in page
    assert client.post("/logout", data={}).status_code == 400
    assert 'id="logged-out"' in client.post("/logout", data={"csrf_token": _csrf(page)}).get_data(as_text=True)
    # An unregistered post-logout URI is not followed; a forged id_token_hint is refused.
    response = client.get("/logout", query_string={"id_token_hint": tokens["id_token"],
                                                   "post_logout_redirect_uri": "http://evil.example/"})
    assert response.status_code == 200
    forged = tokens["id_token"][:-4] + ("AAAA" if not tokens["id_token"].endswith("AAAA") else "BBBB")
    assert client.get("/logout", query_string={"id_token_hint": forged}).status_code == 400


# -- failure injection -------------------------------------------------------------------------------
@pytest.mark.parametrize(("failure", "step_no", "error"), [
    ("unavailable", 3, "temporarily_unavailable"),
    ("cancel", 4, "access_denied"),
    ("wrong-password", 4, "access_denied"),
    ("locked", 4, "access_denied"),
    ("revoked", 4, "access_denied"),
])
def test_failures_at_authorization(client: FlaskClient, failure: str, step_no: int, error: str) -> None:
    req = AuthRequest(login_hint=f"kari-nordmann@no-bankid!{failure}")
    params = error_redirect(authorize(client, req), req)
    assert params["error"] == error and params["error_description"].startswith(f"step {step_no}")
    assert failure in params["error_description"]


def test_login_failure_applies_to_interactive_login(client: FlaskClient) -> None:
    req = AuthRequest(login_hint="!wrong-password")
    response = interactive_login(client, req, "kari-nordmann", "no-bankid")
    assert error_redirect(response, req)["error"] == "access_denied"


def test_code_rejected(client: FlaskClient) -> None:
    req = AuthRequest(login_hint="kari-nordmann!code-rejected")
    body = redeem(client, _code(client, req), req).get_json()
    assert body["error"] == "invalid_grant" and "code-rejected" in body["error_description"]


def test_slow_delays_the_token_endpoint(client: FlaskClient) -> None:
    req = AuthRequest(login_hint="kari-nordmann!slow=0.4")
    code = _code(client, req)
    started = time.monotonic()
    assert redeem(client, code, req).status_code == 200
    assert time.monotonic() - started >= 0.4


@pytest.mark.parametrize(("failure", "check"), [
    ("wrong-nonce", "nonce"), ("wrong-audience", "aud"), ("wrong-issuer", "iss"), ("expired", "exp"),
    ("unknown-key", "kid"), ("acr-lower", "acr"), ("clock-skew", "iat"), ("clock-skew=120", "iat"),
])
def test_id_token_failures_are_detected_at_step_5(client: FlaskClient, settings: IdpSettings, failure: str, check: str) -> None:
    req = AuthRequest(acr_values=LOA_HIGH, login_hint=f"kari-nordmann@no-bankid!{failure}")
    tokens = headless_tokens(client, req)
    with pytest.raises(IdentityEvidenceError) as caught:
        verify(client, settings, tokens, req, min_loa="high")
    assert caught.value.check == check


def test_acr_lower_below_low_is_not_an_eidas_level(client: FlaskClient, settings: IdpSettings) -> None:
    req = AuthRequest(acr_values=LOA_LOW, login_hint="bjorn-angstrom@social-login!acr-lower")
    tokens = headless_tokens(client, req)
    with pytest.raises(IdentityEvidenceError, match="not an eIDAS level"):
        verify(client, settings, tokens, req)


# -- admin API -----------------------------------------------------------------------------------------
def test_admin_api_disabled_by_default(tmp_path: Any) -> None:
    from idp_testkit import make_settings  # type: ignore[import-not-found]

    from services.idp import create_app

    app = create_app(make_settings(tmp_path / "idp", admin_api_enabled=False))
    response = app.test_client().get("/admin/failures", headers=ADMIN)
    assert response.status_code == 404 and "ADMIN_API_ENABLED" in response.get_json()["error_description"]
    app.extensions["signlab.idp"].close()


@pytest.mark.parametrize("header", [None, "Bearer wrong", f"Basic {ADMIN_TOKEN}"])
def test_admin_api_needs_the_token(client: FlaskClient, header: str | None) -> None:
    response = client.post("/admin/failures", json={"name": "cancel"}, headers={"Authorization": header} if header else {})
    assert response.status_code == 401 and response.get_json()["error"] == "invalid_token"


def test_admin_armed_failure_is_consumed(client: FlaskClient) -> None:
    armed = client.post("/admin/failures", json={"name": "cancel", "count": 2, "client_id": CLIENT_ID}, headers=ADMIN)
    assert armed.status_code == 201 and armed.get_json()["remaining"] == 2
    other = AuthRequest(client_id=OTHER_ID, redirect_uri=OTHER_REDIRECT, login_hint="kari-nordmann")
    assert "code" in query_of(authorize(client, other).headers["Location"]), "other clients unaffected"
    for _ in range(2):
        req = AuthRequest(login_hint="kari-nordmann")
        assert error_redirect(authorize(client, req), req)["error"] == "access_denied"
    req = AuthRequest(login_hint="kari-nordmann")
    assert "code" in query_of(authorize(client, req).headers["Location"])
    assert client.get("/admin/failures", headers=ADMIN).get_json()["armed"] == []


def test_admin_arm_list_remove_clear(client: FlaskClient) -> None:
    one = client.post("/admin/failures", json={"name": "slow", "value": 0.1, "count": None}, headers=ADMIN).get_json()
    client.post("/admin/failures", json={"name": "wrong-nonce"}, headers=ADMIN)
    assert [a["name"] for a in client.get("/admin/failures", headers=ADMIN).get_json()["armed"]] == ["slow", "wrong-nonce"]
    assert client.delete(f"/admin/failures/{one['id']}", headers=ADMIN).get_json() == {"removed": 1}
    assert client.delete(f"/admin/failures/{one['id']}", headers=ADMIN).status_code == 404
    assert client.delete("/admin/failures", headers=ADMIN).get_json() == {"removed": 1}


@pytest.mark.parametrize(("body", "words"), [
    ({"name": "explode"}, "unknown failure"), ({"name": "cancel", "value": 3}, "takes no value"),
    ({"name": "cancel", "count": 0}, "count"), ({"name": "cancel", "client_id": "nobody"}, "client_id"), ([], "JSON object"),
])
def test_admin_arm_errors(client: FlaskClient, body: Any, words: str) -> None:
    response = client.post("/admin/failures", json=body, headers=ADMIN)
    assert response.status_code == 400 and words in response.get_json()["error_description"]


def test_key_rotation_keeps_old_tokens_valid(client: FlaskClient, settings: IdpSettings) -> None:
    req = AuthRequest(login_hint="kari-nordmann")
    old_tokens = headless_tokens(client, req)
    rotated = client.post("/admin/keys/rotate", headers=ADMIN).get_json()
    assert len(rotated["published"]) == 2
    verify(client, settings, old_tokens, req)
    new_req = AuthRequest(login_hint="kari-nordmann")
    new_tokens = headless_tokens(client, new_req)
    assert jwt.decode(new_tokens["id_token"], jwks_of(client)).header["kid"] == rotated["kid"]
    stale = KeySet.import_key_set({"keys": [k for k in client.get("/.well-known/jwks.json").get_json()["keys"]
                                            if k["kid"] != rotated["kid"]]})
    with pytest.raises(IdentityEvidenceError) as caught:
        verify_id_token(new_tokens["id_token"], stale, issuer=settings.base_url, audience=CLIENT_ID)
    assert caught.value.check == "kid"


# -- debugger -----------------------------------------------------------------------------------------
def test_debugger_shows_decoded_tokens_with_secrets_masked(client: FlaskClient) -> None:
    req = AuthRequest(login_hint="kari-nordmann")
    tokens = headless_tokens(client, req)
    assert client.get("/debugger").status_code == 401  # a trainer view
    page = client.get("/debugger", headers={"Authorization": "Bearer trainer-token-of-the-tests"}).get_data(as_text=True)
    assert "id_token" in page and "Nordmann" in page and "PNO" in page
    assert tokens["access_token"] not in page and req.verifier not in page and CLIENT_SECRET not in page
    assert tokens["id_token"] not in page
    # Personal data is stored and shown masked; nonces only by their first characters.
    assert "14838540105" not in page and "1985-03-14" not in page
    masked = page.replace("\\u2022", "•")  # the page shows the events as JSON (non-ASCII escaped)
    assert "•••••••••05" in masked and "••••-••-••" in masked
    assert req.nonce not in page


def test_repeated_wrong_codes_lock_the_person_across_logins(client: FlaskClient, settings: IdpSettings) -> None:
    """Brute force: wrong codes count per person across logins; at the threshold the login is locked."""
    refusals = []
    for _ in range(settings.lockout_failures):  # several logins, each with a wrong code
        req = AuthRequest()
        url = _start(client, req)
        _post(client, url, action="person", person="ola-nordmann")
        _post(client, url, action="means", means="no-bankid")
        answer = _post(client, url, action="otp", otp="000000x")
        if answer.status_code == 302:
            refusals.append(error_redirect(answer, req))
    assert refusals and "locked" in refusals[-1]["error_description"]
    req = AuthRequest()  # even the right code is no longer asked for
    url = _start(client, req)
    _post(client, url, action="person", person="ola-nordmann")
    locked = error_redirect(_post(client, url, action="means", means="no-bankid"), req)
    assert locked["error"] == "access_denied" and "locked for 15 minutes" in locked["error_description"]
    other = AuthRequest()  # another person is not affected
    assert query_of(interactive_login(client, other, "aase-aerlig", "no-buypass").headers["Location"]).get("code")
