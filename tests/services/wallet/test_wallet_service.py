"""The wallet service: the PIDs its PID provider issued (SD-JWT VC shape, trust chain, status list,
trusted-provider list), the phone's pages, the headless API's refusals, the guarded lab API, and the
wallet's own checks of a verifier's request object."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import urlencode

import pytest
import requests
from cryptography import x509
from flask import Flask, Response
from joserfc import jws, jwt
from joserfc.jwk import ECKey

from services.wallet import create_app
from services.wallet.settings import WalletSettings
from shared.eudi import PID_VCT, REQUEST_OBJECT_TYPE, TRUSTED_LIST_TYPE, X5C_JWS, x509_hash_client_id
from shared.lab_pki import load_or_create_pair
from shared.status_list import TOKEN_TYPE, status_at
from shared.testing import LiveServer, random_secrets


def _segment(token: str, index: int) -> Any:
    part = token.split(".")[index]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def test_a_pid_is_an_sd_jwt_vc_of_the_pid_rulebook(live_wallet: Any) -> None:
    _server, core = live_wallet
    pid = core.wallet.credential("kari-nordmann").sd_jwt
    issuer_jwt = pid.split("~")[0]
    header, payload = _segment(issuer_jwt, 0), _segment(issuer_jwt, 1)
    assert header["typ"] == "dc+sd-jwt" and header["alg"] == "ES256"
    chain = [x509.load_der_x509_certificate(base64.b64decode(c)) for c in header["x5c"]]
    assert chain == [core.trust.provider.cert]  # the leaf only: never the trust anchor
    chain[0].verify_directly_issued_by(core.trust.anchor.cert)
    # In the clear: only what SD-JWT VC forbids to hide; every personal claim is selectively disclosable.
    assert set(payload) == {"vct", "iat", "exp", "status", "cnf", "_sd", "_sd_alg"}
    assert payload["vct"] == PID_VCT and payload["cnf"]["jwk"]["kty"] == "EC"
    assert payload["cnf"]["jwk"]["x"] == core.wallet.device_key("kari-nordmann").as_dict(private=False)["x"]
    disclosed = {json.loads(base64.urlsafe_b64decode(d + "==="))[1] for d in pid.split("~")[1:-1]
                 if len(json.loads(base64.urlsafe_b64decode(d + "==="))) == 3}
    assert {"family_name", "given_name", "birthdate", "nationalities", "personal_administrative_number",
            "issuing_authority", "issuing_country", "date_of_issuance", "date_of_expiry"} == disclosed
    assert payload["status"]["status_list"]["uri"].endswith("/pid-provider/status-lists/1")


def test_the_status_list_and_the_trusted_list_are_signed_and_say_the_truth(live_wallet: Any) -> None:
    server, core = live_wallet
    answer = requests.get(f"{server.url}/pid-provider/status-lists/1", timeout=10)
    assert answer.headers["Content-Type"].startswith("application/statuslist+jwt")
    token = answer.text
    header = jws.extract_compact(token.encode(), registry=X5C_JWS).protected
    assert header["typ"] == TOKEN_TYPE
    claims = jwt.decode(token, ECKey.import_key(core.trust.provider.cert.public_key()), algorithms=["ES256"],
                        registry=X5C_JWS).claims
    assert claims["sub"] == core.provider.status_list_uri and claims["ttl"] > 0
    index = core.wallet.credential("ola-nordmann").status_index
    assert status_at(claims["status_list"], index) == 0
    trusted = requests.get(f"{server.url}/pid-provider/trusted-providers", timeout=10).text
    assert jws.extract_compact(trusted.encode(), registry=X5C_JWS).protected["typ"] == TRUSTED_LIST_TYPE
    body = json.loads(jws.deserialize_compact(trusted, ECKey.import_key(core.trust.list_operator.cert.public_key()),
                                              algorithms=["ES256"], registry=X5C_JWS).payload)
    anchors = [base64.b64decode(a) for e in body["entities"] for a in e["trust_anchors"]]
    assert anchors == [core.trust.anchor.der]  # the unlisted provider's anchor is not on it


def test_the_phone_shows_the_pid_and_the_provider_page_its_status(live_wallet: Any) -> None:
    server, _core = live_wallet
    home = requests.get(f"{server.url}/?holder=aase-aerlig", timeout=10)
    assert home.status_code == 200
    assert 'data-claim="family_name">Ærlig-Sæbø<' in home.text and 'data-claim="given_name">Åse Marit<' in home.text
    provider = requests.get(f"{server.url}/pid-provider/", timeout=10)
    assert provider.status_code == 200 and "aase-aerlig" in provider.text


def test_the_headless_api_refuses_bad_input_with_protocol_errors(live_wallet: Any) -> None:
    server, _core = live_wallet
    url = f"{server.url}/api/v1/presentations"
    cases = [
        ({"request_url": "https://x/?client_id=a&request_uri=https://x/r", "holder": "nobody"}, 404, "access_denied"),
        ({"request_url": "openid4vp://?client_id=a", "holder": "kari-nordmann"}, 400, "invalid_request"),
        ({"request_url": "openid4vp://?x", "holder": "kari-nordmann", "faults": ["no-such-fault"]}, 400, "invalid_request"),
        ({"holder": "kari-nordmann"}, 400, "invalid_request"),
    ]
    for body, status, error in cases:
        answer = requests.post(url, json=body, timeout=10)
        assert (answer.status_code, answer.json()["error"]) == (status, error), (body, answer.text)


def test_the_lab_api_is_guarded(live_wallet: Any, tmp_path: Any) -> None:
    server, core = live_wallet
    assert requests.post(f"{server.url}/admin/pid-status", json={"holder": "kari-nordmann", "status": "revoked"},
                         timeout=10).status_code == 401
    token = core.settings.admin_token.get_secret_value()
    answer = requests.post(f"{server.url}/admin/pid-status", json={"holder": "kari-nordmann", "status": "gone"},
                           headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert answer.status_code == 400
    closed = create_app(WalletSettings(data_dir=tmp_path, log_level="WARNING", **random_secrets(WalletSettings)))
    assert closed.test_client().get("/admin/pid-status", headers={"Authorization": "Bearer x"}).status_code == 404


def _verifier_app(typ: str, client_id_for: str) -> Flask:
    """A verifier that serves one request object, wrong in the way the test asks."""
    app = Flask("verifier-under-test")

    @app.get("/request")
    def request_object() -> Response:
        pair = load_or_create_pair(app.config["DIR"], "verifier", "Test verifier")
        claims = {"client_id": client_id_for, "response_type": "vp_token", "response_mode": "direct_post",
                  "response_uri": "http://127.0.0.1:1/response", "nonce": "n" * 24,
                  "dcql_query": {"credentials": [{"id": "pid", "format": "dc+sd-jwt", "meta": {"vct_values": [PID_VCT]},
                                                  "claims": [{"path": ["family_name"]}]}]}}
        header = {"alg": "ES256", "typ": typ, "x5c": pair.x5c}
        return Response(jwt.encode(header, claims, pair.jose_key, algorithms=["ES256"], registry=X5C_JWS))

    return app


@pytest.mark.parametrize(("typ", "mismatch", "expected"), [
    ("JWT", False, "typ"),
    (REQUEST_OBJECT_TYPE, True, "does not hash to the client_id"),
])
def test_the_wallet_refuses_a_request_object_it_cannot_trust(live_wallet: Any, tmp_path: Any, typ: str, mismatch: bool,
                                                             expected: str) -> None:
    _server, core = live_wallet
    app = _verifier_app(typ, "")
    app.config["DIR"] = tmp_path
    pair = load_or_create_pair(tmp_path, "verifier", "Test verifier")
    client_id = x509_hash_client_id(b"another certificate" if mismatch else pair.der)
    with LiveServer(app) as verifier:
        invocation = f"openid4vp://?{urlencode({'client_id': client_id, 'request_uri': f'{verifier.url}/request'})}"
        with pytest.raises(Exception, match=expected):
            core.wallet.fetch(invocation)
