"""A miniature four-role ecosystem for the tracing tests: real Flask apps on real loopback servers.

Each app is built by the shared frame (``create_service_app``, so it is traced exactly as a real
service is) and serves the *routes of the contract* (PAR, authorize, IdP authorize/login/token,
consent, token, signDoc, CA issuance) with real cryptography: an ES256 ID token (joserfc), an
RFC 7523 client assertion, a real CSR and X.509 certificate (cryptography), an ECDSA signature.
It is not a second implementation of the services (those have their own tests, and the real
services run in :class:`testkit.ecosystem.Ecosystem`); it exists so the tracing machinery
(``shared/tracing``: stitching, rendering, redaction, the trainer pages, ``signlab trace``) can be
tested end to end with every secret value the flow used known, which the real services never hand
out (tokens, codes, verifiers, one-time codes), while the services evolve.

Limits: for the tracing tests only; never a stand-in for a service in any other test.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from flask import Blueprint, Flask, jsonify, redirect, request
from joserfc import jwt
from joserfc.jwk import ECKey
from opentelemetry.instrumentation.utils import suppress_instrumentation
from pydantic import Field, SecretStr

from shared.client_assertion import CLIENT_ASSERTION_TYPE, create_client_assertion
from shared.errors import AccessDenied, InvalidClient
from shared.flow import service, step
from shared.http_client import ServiceClient
from shared.settings import ServiceSettings
from shared.testing import LiveServer
from shared.tracing import flow_span
from shared.web import create_service_app


class MiniSettings(ServiceSettings):
    """Settings with secrets, as the services have (the scrubber must hide these)."""

    client_secret: SecretStr = Field(description="a client secret shared with another role")
    pin: SecretStr = Field(description="an HSM-style PIN")


@dataclass
class Secrets:
    """Every secret value the flow used: none may appear in the trace store."""

    values: dict[str, str] = field(default_factory=dict)

    def new(self, name: str, nbytes: int = 24) -> str:
        value = secrets.token_urlsafe(nbytes)
        self.values[f"{name}-{len(self.values)}"] = value
        return value


@dataclass
class Ecosystem:
    """The four running apps, their URLs, the secrets they used."""

    urls: dict[str, str]
    trace_dir: Path
    used: Secrets
    servers: list[LiveServer]
    acr: dict[str, str]

    def sign(self, *, acr: str = "high") -> requests.Response:
        """Run one signing as a browser would (no traceparent: tracing suppressed in the agent)."""
        self.acr["value"] = acr
        browser = requests.Session()
        with suppress_instrumentation():
            response = browser.post(f"{self.urls['portal']}/sign", data={"qualifier": "eu_eidas_qes"})
            # The IdP login page and the consent page are forms: the agent submits them.
            assert "/login/" in response.url, response.url
            otp = self.used.new("otp", 6)
            response = browser.post(response.url, data={"person": "01017012345", "otp": otp})
            if "/oauth2/consent/" in response.url:
                response = browser.post(response.url, data={"decision": "approve"})
        return response


def _settings(name: str, port: int, data: Path, used: Secrets) -> MiniSettings:
    return MiniSettings.model_validate({
        "host": "127.0.0.1", "port": port, "data_dir": data / name,
        "client_secret": SecretStr(used.new(f"{name}-client-secret")), "pin": SecretStr(used.new(f"{name}-pin"))})


def start(tmp_path: Path) -> Ecosystem:
    """Build and start the four apps on free ports."""
    used = Secrets()
    servers = {}
    for name in ("portal", "idp", "ca", "signer"):
        servers[name] = LiveServer(Flask("placeholder"))  # bind first: the apps need each other's URLs
    urls = {name: server.url for name, server in servers.items()}
    settings = {name: _settings(name, servers[name].port, tmp_path, used) for name in servers}
    acr = {"value": "high"}
    apps = {
        "portal": _portal(settings["portal"], urls, used, settings["signer"]),
        "idp": _idp(settings["idp"], urls, used, acr),
        "ca": _ca(settings["ca"], urls, used),
        "signer": _signer(settings["signer"], urls, used, settings["idp"]),
    }
    for name, server in servers.items():
        server.app = apps[name]
        server._server.app = apps[name]
        server.start()
    return Ecosystem(urls, tmp_path / "traces", used, list(servers.values()), acr)


# ---------------------------------------------------------------- SCASP


def _portal(settings: MiniSettings, urls: dict[str, str], used: Secrets, signer: MiniSettings) -> Flask:
    app = create_service_app(__name__, service("portal"), settings)
    bp = Blueprint("mini_portal", __name__)
    client = ServiceClient(urls["signer"])
    basic = ("signlab-portal", signer.client_secret.get_secret_value())
    pending: dict[str, dict[str, str]] = {}
    digest = base64.b64encode(hashlib.sha256(b"%PDF-1.7 contract").digest()).decode()

    @bp.post("/sign")
    def sign() -> Any:
        tx, state, verifier = "tx-" + secrets.token_hex(8), used.new("state"), used.new("verifier", 48)
        pending[state] = {"tx": tx, "verifier": verifier}
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        details = [{"type": "credential", "signatureQualifier": "eu_eidas_qes", "hashAlgorithmOID": "2.16.840.1.101.3.4.2.1",
                    "documentDigests": [{"hash": digest, "label": "contract.pdf"}]}]
        import json

        pushed = client.request("POST", "/oauth2/par", step=step(2), expected=(201,), auth=basic, data={
            "response_type": "code", "client_id": "signlab-portal", "redirect_uri": f"{urls['portal']}/sign/callback",
            "state": state, "code_challenge": challenge, "code_challenge_method": "S256",
            "authorization_details": json.dumps(details)}).json()
        return redirect(f"{urls['signer']}/oauth2/authorize?" + urlencode(
            {"client_id": "signlab-portal", "request_uri": pushed["request_uri"]}), 303)

    @bp.get("/sign/callback")
    def callback() -> Any:
        entry = pending.pop(request.args.get("state", ""), None)
        if entry is None or "error" in request.args:
            return f"<html><head><title>Signing failed</title></head><body>{request.args.get('error')}</body></html>", 200
        token = client.request("POST", "/oauth2/token", step=step(5), auth=basic, data={
            "grant_type": "authorization_code", "code": request.args["code"], "code_verifier": entry["verifier"],
            "redirect_uri": f"{urls['portal']}/sign/callback"}).json()
        client.request("POST", "/csc/v2/signatures/signDoc", step=step(6),
                       headers={"Authorization": f"Bearer {token['access_token']}"},
                       json={"documentDigests": [{"hashes": [digest], "hashAlgorithmOID": "2.16.840.1.101.3.4.2.1",
                                                  "signature_format": "P", "conformance_level": "AdES-B-B"}],
                             "signatureQualifier": "eu_eidas_qes"})
        return redirect(f"/transactions/{entry['tx']}", 303)

    @bp.get("/transactions/<tx_id>")
    def result(tx_id: str) -> str:
        return f"<html><head><title>Signed · {tx_id}</title></head><body>done</body></html>"

    app.register_blueprint(bp)
    return app


# ---------------------------------------------------------------- IPSP


def _idp(settings: MiniSettings, urls: dict[str, str], used: Secrets, acr: dict[str, str]) -> Flask:
    app = create_service_app(__name__, service("idp"), settings)
    bp = Blueprint("mini_idp", __name__)
    key = ECKey.generate_key("P-256", parameters={"kid": "idp-1"})
    logins: dict[str, dict[str, str]] = {}
    codes: dict[str, dict[str, str]] = {}

    @bp.get("/authorize")
    def authorize() -> Any:
        rid = secrets.token_urlsafe(18)
        logins[rid] = dict(request.args.items())
        return redirect(f"/login/{rid}", 302)

    @bp.route("/login/<rid>", methods=["GET", "POST"])
    def login(rid: str) -> Any:
        if request.method == "GET":
            return "<html><head><title>eID login</title></head><body><form method=post></form></body></html>"
        params = logins.pop(rid)
        code = used.new("idp-code", 32)
        codes[code] = params
        return redirect(params["redirect_uri"] + "?" + urlencode({"code": code, "state": params["state"]}), 302)

    @bp.post("/token")
    def token() -> Any:
        auth = request.authorization
        if auth is None or auth.password != urls["_idp_secret"]:
            raise InvalidClient("bad client secret", step=step(5))
        params = codes.pop(request.form["code"])
        now = int(time.time())
        id_token = jwt.encode({"alg": "ES256", "kid": "idp-1"}, {
            "iss": urls["idp"], "sub": "person-1", "aud": "signlab-signer", "iat": now, "exp": now + 300,
            "auth_time": now, "nonce": params["nonce"], "acr": f"http://eidas.europa.eu/LoA/{acr['value']}",
            "given_name": "Kari", "family_name": "Nordmann",
            "signlab_person_id": {"semantics": "PNO", "country": "NO", "value": "01017012345"}}, key)
        return jsonify({"access_token": used.new("idp-access-token", 32), "token_type": "Bearer", "id_token": id_token,
                        "expires_in": 300})

    app.register_blueprint(bp)
    return app


# ---------------------------------------------------------------- TSP


def _ca(settings: MiniSettings, urls: dict[str, str], used: Secrets) -> Flask:
    app = create_service_app(__name__, service("ca"), settings)
    bp = Blueprint("mini_ca", __name__)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "SignLab Test Issuing CA")])

    @bp.post("/api/v1/certificates")
    def issue() -> Any:
        body = request.get_json()
        if body.get("client_assertion_type") != CLIENT_ASSERTION_TYPE:
            raise InvalidClient("client assertion missing", step=step(7))
        csr = x509.load_der_x509_csr(base64.b64decode(body["csr"]))
        now = dt.datetime.now(dt.UTC)
        cert = (x509.CertificateBuilder().subject_name(csr.subject).issuer_name(ca_name).public_key(csr.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
                .not_valid_after(now + dt.timedelta(minutes=15))
                .add_extension(x509.CertificatePolicies([x509.PolicyInformation(x509.ObjectIdentifier("0.4.0.194112.1.2"), None)]), False)
                .sign(ca_key, hashes.SHA256()))
        return jsonify({"serial": format(cert.serial_number, "x"),
                        "certificate": base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode(),
                        "chain": [], "profile": body["profile"], "policy_oid": "0.4.0.194112.1.2"}), 201

    app.register_blueprint(bp)
    return app


# ---------------------------------------------------------------- SSASP


def _signer(settings: MiniSettings, urls: dict[str, str], used: Secrets, idp: MiniSettings) -> Flask:
    app = create_service_app(__name__, service("signer"), settings)
    bp = Blueprint("mini_signer", __name__)
    urls["_idp_secret"] = idp.client_secret.get_secret_value()
    idp_client, ca_client = ServiceClient(urls["idp"]), ServiceClient(urls["ca"])
    assertion_key = ECKey.generate_key("P-256", parameters={"kid": "signer-1"})
    requests_by_uri: dict[str, dict[str, str]] = {}
    by_state: dict[str, dict[str, Any]] = {}
    transactions: dict[str, dict[str, Any]] = {}
    tokens: dict[str, dict[str, Any]] = {}

    def check_portal() -> None:
        auth = request.authorization
        if auth is None or auth.password != settings.client_secret.get_secret_value():
            raise InvalidClient("the portal's client secret is wrong", step=step(2))

    @bp.post("/oauth2/par")
    def par() -> Any:
        check_portal()
        uri = "urn:ietf:params:oauth:request_uri:" + used.new("request-uri", 32)
        requests_by_uri[uri] = dict(request.form.items())
        return jsonify({"request_uri": uri, "expires_in": 90}), 201

    @bp.get("/oauth2/authorize")
    def authorize() -> Any:
        pushed = requests_by_uri.pop(request.args["request_uri"])
        tx: dict[str, Any] = {"id": "tx-" + secrets.token_hex(12), "pushed": pushed, "state": used.new("idp-state"),
              "nonce": used.new("nonce"), "verifier": used.new("idp-verifier", 48)}
        by_state[tx["state"]] = tx
        challenge = base64.urlsafe_b64encode(hashlib.sha256(tx["verifier"].encode()).digest()).rstrip(b"=").decode()
        return redirect(f"{urls['idp']}/authorize?" + urlencode({
            "response_type": "code", "client_id": "signlab-signer", "redirect_uri": f"{urls['signer']}/oauth2/idp-callback",
            "scope": "openid profile", "state": tx["state"], "nonce": tx["nonce"], "acr_values": "http://eidas.europa.eu/LoA/high",
            "code_challenge": challenge, "code_challenge_method": "S256", "prompt": "login"}), 302)

    @bp.get("/oauth2/idp-callback")
    def idp_callback() -> Any:
        tx = by_state.pop(request.args["state"])
        tokens_ = idp_client.request("POST", "/token", step=step(5), auth=("signlab-signer", urls["_idp_secret"]), data={
            "grant_type": "authorization_code", "code": request.args["code"], "code_verifier": tx["verifier"],
            "redirect_uri": f"{urls['signer']}/oauth2/idp-callback"}).json()
        payload = base64.urlsafe_b64decode(tokens_["id_token"].split(".")[1] + "==")
        import json

        acr = json.loads(payload)["acr"]
        tx["id_token"] = tokens_["id_token"]
        if not acr.endswith("/high"):
            error = AccessDenied(f"the eID login reached {acr.rsplit('/', 1)[-1]}, QES needs high", step=step(5))
            return redirect(tx["pushed"]["redirect_uri"] + "?" + urlencode({
                "error": error.error, "error_description": error.error_description, "state": tx["pushed"]["state"]}), 302)
        transactions[tx["id"]] = tx
        return redirect(f"/oauth2/consent/{tx['id']}", 303)

    @bp.route("/oauth2/consent/<transaction_id>", methods=["GET", "POST"])
    def consent(transaction_id: str) -> Any:
        tx = transactions[transaction_id]
        if request.method == "GET":
            return "<html><head><title>Consent</title></head><body><form method=post></form></body></html>"
        code = used.new("signer-code", 32)
        tx["code"] = code
        return redirect(tx["pushed"]["redirect_uri"] + "?" + urlencode({"code": code, "state": tx["pushed"]["state"]}), 303)

    @bp.post("/oauth2/token")
    def token() -> Any:
        check_portal()
        tx = next(t for t in transactions.values() if t.get("code") == request.form["code"])
        access = used.new("sad", 32)
        tokens[access] = tx
        return jsonify({"access_token": access, "token_type": "Bearer", "expires_in": 300,
                        "authorization_details": tx["pushed"]["authorization_details"]})

    @bp.post("/csc/v2/signatures/signDoc")
    def sign_doc() -> Any:
        tx = tokens.pop(request.headers["Authorization"].removeprefix("Bearer "))
        digest = base64.b64decode(request.get_json()["documentDigests"][0]["hashes"][0])
        with flow_span(step(6), "C_GenerateKeyPair", summary={"algorithm": "EC P-256", "pin": settings.pin.get_secret_value()},
                       response="key handle") as span:
            key = ec.generate_private_key(ec.SECP256R1())
            span.response({"key_label": tx["id"]})
        csr = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Kari Nordmann"),
                                        x509.NameAttribute(NameOID.SERIAL_NUMBER, "PNONO-01017012345")]))
               .sign(key, hashes.SHA256()))
        assertion = create_client_assertion(assertion_key, client_id="signlab-signer",
                                            audience=f"{urls['ca']}/api/v1/certificates")
        issued = ca_client.request("POST", "/api/v1/certificates", step=step(7), expected=(201,), json={
            "csr": base64.b64encode(csr.public_bytes(serialization.Encoding.DER)).decode(), "profile": "qes",
            "id_token": tx["id_token"], "transaction_id": tx["id"], "client_assertion_type": CLIENT_ASSERTION_TYPE,
            "client_assertion": assertion}).json()
        with flow_span(step(8), "CMS signed attributes", summary={"message_digest": base64.b64encode(digest).decode()}):
            attributes = hashlib.sha256(digest + base64.b64decode(issued["certificate"])).digest()
        with flow_span(step(9), "C_Sign", summary={"digest": base64.b64encode(attributes).decode()}):
            signature = key.sign(attributes, ec.ECDSA(hashes.SHA256()))
        with flow_span(step(9), "C_DestroyObject", summary={"key_label": tx["id"]}):
            del key
        return jsonify({"SignatureObject": [base64.b64encode(signature).decode()], "transactionID": tx["id"],
                        "certificateSerial": issued["serial"], "validationInfo": {"certificates": [issued["certificate"]]}})

    app.register_blueprint(bp)
    return app
