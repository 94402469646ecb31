"""Acceptance: a standard OIDC client (authlib's OAuth2Session) completes the code flow with PKCE
against the IdP on a real loopback socket, for every test person and every eID means they hold,
and the ID token verifies against the published JWKS (IdpClient + shared.identity) with the right
acr, claims and verified_claims — or the person is refused with the documented error.

Also drives the interactive login pages over real HTTP with a cookie-keeping user agent
(requests.Session), the way a browser does.
"""

from __future__ import annotations

import re
import secrets
from datetime import date

import pytest
import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from idp_testkit import CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, query_of  # type: ignore[import-not-found]

from services.idp.catalogue import load_catalogue
from services.idp.settings import IdpSettings
from shared.clients.idp import IdpClient
from shared.identity import IdentityEvidenceError
from shared.testing import LiveServer

CATALOGUE = load_catalogue()
CASES = [(p, m, h) for p in CATALOGUE.persons for m, h in CATALOGUE.means_of(p)]


def _refusal(person, holding) -> str | None:  # type: ignore[no-untyped-def]
    if person.deceased:
        return "deceased"
    if holding.status != "active":
        return holding.status
    return None


def _session() -> OAuth2Session:
    return OAuth2Session(CLIENT_ID, CLIENT_SECRET, scope="openid profile", redirect_uri=REDIRECT_URI,
                         code_challenge_method="S256", token_endpoint_auth_method="client_secret_basic")


@pytest.mark.parametrize(("person", "means", "holding"), CASES, ids=[f"{p.id}@{m.id}" for p, m, _ in CASES])
def test_every_person_and_means(live_idp: tuple[LiveServer, IdpSettings], person, means, holding) -> None:  # type: ignore[no-untyped-def]
    server, _ = live_idp
    idp = IdpClient(server.url)
    metadata = idp.discovery()
    assert metadata.issuer == server.url
    verifier, nonce = generate_token(48), secrets.token_urlsafe(16)
    with _session() as oauth:
        url, state = oauth.create_authorization_url(metadata.authorization_endpoint, code_verifier=verifier, nonce=nonce,
                                                    acr_values=means.acr, login_hint=f"{person.id}@{means.id}")
        response = requests.get(url, allow_redirects=False, timeout=10)
        assert response.status_code == 302
        location = response.headers["Location"]
        refusal = _refusal(person, holding)
        if refusal is not None:
            params = query_of(location)
            assert params["error"] == "access_denied" and refusal in params["error_description"]
            assert params["state"] == state
            return
        token = oauth.fetch_token(metadata.token_endpoint, authorization_response=location, code_verifier=verifier)
    identity = idp.verify_id_token(token["id_token"], audience=CLIENT_ID, nonce=nonce, min_loa=means.loa, max_age=60)
    assert identity.acr == means.acr and identity.loa == means.loa
    assert identity.eid_id == means.id and identity.qes_approved is means.qes_approved
    assert identity.amr == means.amr
    assert identity.given_name == person.given_name and identity.family_name == person.family_name
    assert identity.birthdate == person.birthdate.isoformat()
    assert identity.age_over_18 is (person.age_on(date.today()) >= 18)
    assert identity.subject == person.subject
    if means.proves_identity:
        assert identity.etsi_serial_number() == person.person_id.etsi_serial_number
        verification = identity.verified_claims["verification"]  # type: ignore[index]
        assert verification["trust_framework"] == "eidas" and verification["assurance_level"] == means.loa
        assert identity.verified_claims["claims"]["signlab_person_id"]["value"] == person.person_id.value  # type: ignore[index]
    else:
        assert identity.verified_claims is None and identity.person_id_value is None
    assert idp.userinfo(token["access_token"])["sub"] == person.subject


def test_interactive_login_over_real_http(live_idp: tuple[LiveServer, IdpSettings]) -> None:
    server, _ = live_idp
    idp = IdpClient(server.url)
    metadata = idp.discovery()
    verifier, nonce = generate_token(48), secrets.token_urlsafe(16)
    browser = requests.Session()
    with _session() as oauth:
        url, _ = oauth.create_authorization_url(metadata.authorization_endpoint, code_verifier=verifier, nonce=nonce,
                                                acr_values="http://eidas.europa.eu/LoA/high", prompt="login",
                                                binding_message="Sign 2 documents for SignLab Demo Partner")
        page = browser.get(url, timeout=10)
        assert page.status_code == 200 and "Sign 2 documents for SignLab Demo Partner" in page.text
        login_url = page.url

        def submit(**form: str) -> requests.Response:
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', browser.get(login_url, timeout=10).text).group(1)  # type: ignore[union-attr]
            return browser.post(login_url, data={"csrf_token": csrf, **form}, allow_redirects=False, timeout=10)

        assert submit(action="person", identifier="110783-1238").status_code == 302
        assert submit(action="means", means="dk-mitid").status_code == 302
        otp = re.search(r'id="test-otp">(\d{6})<', browser.get(login_url, timeout=10).text).group(1)  # type: ignore[union-attr]
        done = submit(action="otp", otp=otp)
        assert done.status_code == 302 and done.headers["Location"].startswith(REDIRECT_URI)
        token = oauth.fetch_token(metadata.token_endpoint, authorization_response=done.headers["Location"],
                                  code_verifier=verifier)
    identity = idp.verify_id_token(token["id_token"], audience=CLIENT_ID, nonce=nonce, min_loa="high")
    assert identity.family_name == "Jørgensen" and identity.etsi_serial_number() == "PNODK-110783-1238"


def test_wrong_nonce_is_caught_by_the_client(live_idp: tuple[LiveServer, IdpSettings]) -> None:
    server, _ = live_idp
    idp = IdpClient(server.url)
    metadata = idp.discovery()
    verifier = generate_token(48)
    with _session() as oauth:
        url, _ = oauth.create_authorization_url(metadata.authorization_endpoint, code_verifier=verifier, nonce="n-1",
                                                login_hint="kari-nordmann!wrong-nonce")
        location = requests.get(url, allow_redirects=False, timeout=10).headers["Location"]
        token = oauth.fetch_token(metadata.token_endpoint, authorization_response=location, code_verifier=verifier)
    with pytest.raises(IdentityEvidenceError) as caught:
        idp.verify_id_token(token["id_token"], audience=CLIENT_ID, nonce="n-1")
    assert caught.value.check == "nonce"
