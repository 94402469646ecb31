"""The shortcuts that keep tracing cheap give the same traces as the work they save."""

from __future__ import annotations

import base64
import datetime
import json
import os
import secrets
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from flask import Flask, jsonify, request

from shared.flow import SERVICES
from shared.settings import ServiceSettings
from shared.tracing import redact
from shared.tracing.instrument import instrument_app, sanitized_attributes
from shared.tracing.redact import Scrubber, summarize, summarize_der
from shared.tracing.settings import TraceSettings
from shared.tracing.store import SpanWriter


def _certificate() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "SignLab test CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER)


def test_a_cached_certificate_summary_equals_a_fresh_one_and_cannot_be_changed_by_a_reader() -> None:
    der = _certificate()
    fresh = redact._summarize_der("application/pkix-cert", der)
    first = summarize_der("application/pkix-cert", der)
    assert first == fresh
    first["key_usage"].append("tampered")
    first["subject"] = "tampered"
    assert summarize_der("application/pkix-cert", der) == fresh


def test_unique_messages_are_decoded_every_time() -> None:
    # OCSP and time-stamp bodies are never the same twice: they are not cached.
    before = redact._summarize_der_cached.cache_info().currsize
    summarize_der("application/ocsp-request", secrets.token_bytes(40))
    assert redact._summarize_der_cached.cache_info().currsize == before


def test_a_repeated_blob_has_the_same_summary_and_large_blobs_are_not_kept() -> None:
    small = base64.b64encode(secrets.token_bytes(3000)).decode()
    body = {"SignatureObject": [small], "signatureObject": [small]}
    first = summarize(body)
    assert first["SignatureObject"] == first["signatureObject"] == [redact._blob_text.__wrapped__(small)]
    assert summarize(json.loads(json.dumps(body))) == first
    large = base64.b64encode(secrets.token_bytes(redact._MAX_CACHED_BLOB)).decode()
    redact._blob_text.cache_clear()
    assert summarize({"document": large})["document"].startswith(f"{redact._MAX_CACHED_BLOB} bytes (sha256:")
    assert redact._blob_text.cache_info().currsize == 0


@pytest.mark.parametrize("key", ["client_secret", "X-Client-Secret", "user_pin", "code_verifier", "csrf_token",
                                 "password", "admin_token", "id_token", "code", "state", "client_assertion"])
def test_secrets_stay_masked_when_their_field_name_was_seen_before(key: str) -> None:
    value = secrets.token_urlsafe(24)
    for _ in range(3):  # the field name's classification is cached after the first time
        shown = json.dumps(summarize({key: value, "nested": [{key: value}]}))
        assert value not in shown


def test_sanitized_attributes_are_the_same_the_second_time() -> None:
    scrub = Scrubber(["s3cr3t-value-123"])
    attributes = {"signlab.summary": '{"x":"s3cr3t-value-123"}', "http.target": "/cb?code=abc&client_id=p",
                  "http.url": 5, "http.user_agent": "curl", "http.status_code": 200,
                  "signlab.correlation": ["k1", "s3cr3t-value-123"]}
    first = sanitized_attributes(attributes, scrub)
    assert first == sanitized_attributes(attributes, scrub) == {
        "signlab.summary": '{"x":"•••• (masked secret)"}', "http.target": "/cb?code=…&client_id=p",
        "http.status_code": 200, "signlab.correlation": ["k1", "•••• (masked secret)"]}


# ------------------------------------------------------------------------------- the span writer


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_writer_keeps_one_file_open_and_appends_whole_lines(tmp_path: Path) -> None:
    writer = SpanWriter(tmp_path, "signer")
    for n in range(5):
        writer.write({"n": n, "text": "ø"})
    files = sorted(tmp_path.iterdir())
    assert [f.name for f in files] == [writer.path_for(writer._day).name]
    assert [r["n"] for r in _lines(files[0])] == [0, 1, 2, 3, 4]
    assert oct(files[0].stat().st_mode & 0o777) == "0o600"
    writer.close()
    writer.write({"n": 5})  # a closed writer opens the file again
    assert [r["n"] for r in _lines(files[0])] == [0, 1, 2, 3, 4, 5]


def test_the_writer_opens_the_file_again_when_it_was_removed(tmp_path: Path) -> None:
    writer = SpanWriter(tmp_path, "ca")
    writer._RECHECK_SECONDS = 0.0  # check at every span (the default: once a second)
    writer.write({"n": 1})
    path = writer.path_for(writer._day)
    path.unlink()
    writer.write({"n": 2})
    assert _lines(path) == [{"n": 2}]


def test_a_forked_child_writes_its_own_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writer = SpanWriter(tmp_path, "portal")
    writer.write({"who": "parent"})
    parent_file = writer.path_for(writer._day)
    real_pid = os.getpid()
    monkeypatch.setattr(os, "getpid", lambda: real_pid + 1)  # as in a child after fork()
    writer.write({"who": "child"})
    child_file = writer.path_for(writer._day)
    assert child_file != parent_file
    assert _lines(parent_file) == [{"who": "parent"}]
    assert _lines(child_file) == [{"who": "child"}]


def test_a_new_day_gets_a_new_file_and_prunes_old_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import time as time_module

    old = tmp_path / "20000101-idp-1.jsonl"
    tmp_path.mkdir(exist_ok=True)
    old.write_text("{}\n")
    writer = SpanWriter(tmp_path, "idp", retention_days=7)
    day = 86400 * 20000  # 2024-10-04
    monkeypatch.setattr(time_module, "time", lambda: day + 10.0)
    writer.write({"n": 1})
    assert not old.exists()
    monkeypatch.setattr(time_module, "time", lambda: day + 86400 + 10.0)
    writer.write({"n": 2})
    assert sorted(p.name[:8] for p in tmp_path.iterdir()) == ["20241004", "20241005"]


# ------------------------------------------------------------------------------- request summaries


def _traced_app(tmp_path: Path) -> Flask:
    app = Flask(__name__)
    info = next(s for s in SERVICES if s.name == "signer")
    instrument_app(app, info, ServiceSettings(data_dir=tmp_path / "svc"),
                   TraceSettings.from_env({"SIGNLAB_TRACE_ENABLED": "true", "SIGNLAB_TRACE_DIR": str(tmp_path / "traces")}))

    @app.post("/echo")
    def echo() -> object:
        return jsonify({"form": dict(request.form), "json": request.get_json(silent=True)})

    return app


def _stored_summaries(tmp_path: Path) -> list[dict[str, object]]:
    records = [json.loads(line) for f in sorted((tmp_path / "traces").iterdir()) for line in f.read_text().splitlines()]
    return [json.loads(r["attributes"]["signlab.summary"]) for r in records if "signlab.summary" in r["attributes"]]


def test_form_json_and_authorization_summaries(tmp_path: Path) -> None:
    client = _traced_app(tmp_path).test_client()
    secret = secrets.token_urlsafe(24)
    client.post("/echo", data={"client_secret": secret, "state": "Zx81-_kQp0aVbT3w9uYt"})
    client.post("/echo", json={"code_verifier": secret, "n": 1})
    basic = base64.b64encode(f"portal:{secret}".encode()).decode()
    client.post("/echo", data=b"\x00\x01", headers={"Content-Type": "application/octet-stream", "Authorization": f"Basic {basic}"})
    form, body, other = _stored_summaries(tmp_path)
    assert set(form) == {"form"} and form["form"]["client_secret"].startswith("••••")
    assert set(body) == {"json"} and body["json"]["code_verifier"].startswith("••••") and body["json"]["n"] == 1
    assert other == {"authorization": {"scheme": "Basic", "client_id": "portal", "client_secret": redact.mask(secret)}}
    stored = "".join(f.read_text() for f in (tmp_path / "traces").iterdir())
    assert secret not in stored and basic not in stored


def test_the_scrubber_finds_secrets_in_long_texts_too() -> None:
    secret = "Kq7-" + secrets.token_urlsafe(24)
    scrub = Scrubber([secret])
    from urllib.parse import quote_plus

    for text in ("x" * 1000 + secret + "y" * 1000, "ø" * 300 + quote_plus(secret), secret + "z" * 400):
        assert secret not in scrub(text) and quote_plus(secret) not in scrub(text)
        assert "•••• (masked secret)" in scrub(text)
    clean = "a" * 5000
    assert scrub(clean) is clean


def test_the_page_title_of_a_large_html_answer(tmp_path: Path) -> None:
    app = _traced_app(tmp_path)

    @app.get("/page")
    def page() -> object:
        return f"<html><head><title>Signert – {'æøå'}\n dokument</title></head><body>{'ø' * 50000}</body></html>"

    app.test_client().get("/page")
    records = [json.loads(line) for f in (tmp_path / "traces").iterdir() for line in f.read_text().splitlines()]
    summary = json.loads(records[-1]["attributes"]["signlab.response_summary"])
    assert summary == {"status": 200, "page": "Signert – æøå dokument"}
