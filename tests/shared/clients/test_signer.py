"""SignerClient: wire format of the requests it sends and error mapping (the full flow is in
tests/services/signer/test_http.py, against the real signer)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from flask import Flask, jsonify, request

from shared.clients.signer import SignerClient
from shared.errors import UpstreamError, UpstreamUnavailable
from shared.testing import LiveServer, free_port


def _recorder(seen: list[dict[str, Any]]) -> Flask:
    """A loopback HTTP endpoint that records what the client sends (the client's wire format is
    under test here, not the signer) and answers in the signer's documented shapes."""
    app = Flask("recorder")

    @app.post("/oauth2/par")
    def par() -> Any:
        seen.append({"auth": request.authorization.parameters if request.authorization else None,
                     "form": dict(request.form)})
        return jsonify({"request_uri": "urn:ietf:params:oauth:request_uri:abc", "expires_in": 90}), 201

    @app.post("/csc/v2/signatures/signDoc")
    def sign_doc() -> Any:
        seen.append({"json": request.get_json(), "bearer": request.headers.get("Authorization")})
        if request.headers.get("Authorization") != "Bearer good":
            return jsonify({"error": "invalid_token", "error_description": "expired"}), 401
        return jsonify({"SignatureObject": [base64.b64encode(b"cms").decode()], "signatureObject": [],
                        "validationInfo": {"certificates": [base64.b64encode(b"leaf").decode()], "crl": [], "ocsp": []},
                        "transactionID": "tx-1", "signatureQualifier": "eu_eidas_qes", "loa": "high",
                        "certificateSerial": "0a"})

    return app


def test_par_and_sign_doc_wire_format() -> None:
    seen: list[dict[str, Any]] = []
    with LiveServer(_recorder(seen)) as server:
        client = SignerClient(server.url, client_id="signlab-portal", client_secret="s3cret")
        par = client.push_authorization_request(redirect_uri="http://p/cb", state="st", code_challenge="c" * 43,
                                                qualifier="eu_eidas_qes", documents=[(bytes(32), "a.pdf")],
                                                login_hint="kari-nordmann")
        assert par.authorize_url.startswith(f"{server.url}/oauth2/authorize?client_id=signlab-portal&request_uri=")
        form = seen[0]["form"]
        assert form["code_challenge_method"] == "S256" and form["login_hint"] == "kari-nordmann"
        detail = json.loads(form["authorization_details"])[0]
        assert detail == {"type": "credential", "signatureQualifier": "eu_eidas_qes",
                          "documentDigests": [{"hash": base64.b64encode(bytes(32)).decode(), "label": "a.pdf"}],
                          "hashAlgorithmOID": "2.16.840.1.101.3.4.2.1"}
        result = client.sign_doc("good", digests=[bytes(32)], signature_format="C")
        assert result.signature_objects == [b"cms"] and result.certificates == [b"leaf"]
        assert seen[1]["json"]["documentDigests"][0]["signature_format"] == "C"
        with pytest.raises(UpstreamError) as caught:
            client.sign_doc("bad", digests=[bytes(32)])
        assert caught.value.upstream_error == "invalid_token" and caught.value.upstream_status == 401


def test_unreachable_signer() -> None:
    client = SignerClient(f"http://127.0.0.1:{free_port()}", client_id="x", client_secret="y", timeout=2)
    with pytest.raises(UpstreamUnavailable):
        client.info()


def test_browser_facing_authorize_url() -> None:
    """The back channel may use a container name; the browser gets the published address."""
    seen: list[dict[str, Any]] = []
    with LiveServer(_recorder(seen)) as server:
        client = SignerClient(server.url, client_id="signlab-portal", client_secret="s3cret",
                              browser_url="http://127.0.0.1:8003/")
        par = client.push_authorization_request(redirect_uri="http://p/cb", state="st", code_challenge="c" * 43,
                                                qualifier="eu_eidas_qes", documents=[(bytes(32), "a.pdf")])
    assert par.authorize_url.startswith("http://127.0.0.1:8003/oauth2/authorize?client_id=signlab-portal&")
