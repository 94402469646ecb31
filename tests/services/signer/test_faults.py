"""The signer's guarded fault injection: HSM failures at steps 6 and 9 through ``/admin/faults``.

Unit level: a :class:`~shared.faults.FaultBoard` on the real SoftHSM handle. End to end: the real
IdP, CA and a signer with ``faults_enabled`` on loopback; an armed fault makes the real flow fail
the way a failing HSM does (no signature, key destroyed, clear error naming the step, audited).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from pydantic import SecretStr

from services.signer.faults import SIGNER_FAULTS
from services.signer.hsm import Hsm, HsmError, operation_step
from services.signer.settings import SignerSettings
from services.signer.signing import build_csr
from shared.errors import InvalidRequest, InvalidToken, UpstreamError
from shared.faults import FaultBoard
from shared.testing.partner import Portal

pytestmark = pytest.mark.hsm


class Recorder:
    """Collects what the board would write to the audit log."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, int | None, dict[str, Any]]] = []

    def append(self, event: str, *, step: int | None = None, **data: Any) -> None:
        self.entries.append((event, step, data))


@pytest.fixture
def board(hsm: Hsm) -> Iterator[tuple[FaultBoard, Recorder]]:
    recorder = Recorder()
    made = FaultBoard(SIGNER_FAULTS, SecretStr("admin"), recorder)
    hsm.faults = made
    try:
        yield made, recorder
    finally:
        hsm.faults = None


def test_keygen_fault_fails_like_the_device_and_leaves_nothing(hsm: Hsm, board: tuple[FaultBoard, Recorder]) -> None:
    faults, recorder = board
    before = hsm.count_key_objects()
    faults.arm("hsm-keygen")
    with pytest.raises(HsmError) as caught:
        hsm.create_one_time_key("ec-p256", label="tx-fault")
    assert caught.value.error_description == "step 6 (SSASP → HSM): the HSM could not generate the key (DeviceError)"
    assert hsm.count_key_objects() == before
    key = hsm.create_one_time_key("ec-p256", label="tx-after")  # one-shot: the next generation works
    hsm.destroy_key(key.key_id)
    assert [e[0] for e in recorder.entries] == ["fault.armed", "fault.fired"]
    assert recorder.entries[1][1] == 6 and recorder.entries[1][2]["label"] == "tx-fault"


def test_sign_fault_hits_step_9_and_never_the_csr_proof_of_possession(hsm: Hsm, board: tuple[FaultBoard, Recorder]) -> None:
    faults, recorder = board
    key = hsm.create_one_time_key("ec-p256", label="tx-sign-fault")
    try:
        faults.arm("hsm-sign", count=2)
        with operation_step(7):
            assert build_csr(hsm, key, common_name="tx")  # step 7: not a document signature, not hit
        assert [a.remaining for a in faults.armed()] == [2]
        with pytest.raises(HsmError) as caught:
            hsm.sign_digest(key, bytes(32), "sha256")
        assert caught.value.error_description == "step 9 (SSASP → HSM): the HSM could not sign (DeviceError)"
        with pytest.raises(HsmError):
            hsm.sign_digest(key, bytes(32), "sha256")
        assert faults.armed() == []
        assert len(hsm.sign_digest(key, bytes(32), "sha256")) > 60  # used up: signing works again
    finally:
        hsm.destroy_key(key.key_id)
    fired = [e for e in recorder.entries if e[0] == "fault.fired"]
    assert [(e[1], e[2]["remaining"], e[2]["key_id"]) for e in fired] == [(9, 1, key.key_id), (9, 0, key.key_id)]


def test_board_refuses_unknown_names_bad_counts_and_wrong_tokens() -> None:
    faults = FaultBoard(SIGNER_FAULTS, SecretStr("the-token"), Recorder())
    with pytest.raises(InvalidRequest, match="unknown fault 'hsm-melt'; known: hsm-keygen, hsm-sign"):
        faults.arm("hsm-melt")
    for count in (0, -1, 1001, True, "1", 1.5):
        with pytest.raises(InvalidRequest, match="count must be"):
            faults.arm("hsm-sign", count)  # type: ignore[arg-type]
    for header in (None, "", "Bearer", "Bearer wrong", "Basic the-token", "the-token"):
        with pytest.raises(InvalidToken):
            faults.check_token(header)
    faults.check_token("Bearer the-token")
    forever = faults.arm("hsm-sign", None)
    for _ in range(5):
        assert faults.fire("hsm-sign") is not None
    assert faults.armed()[0].id == forever.id and faults.armed()[0].fired == 5
    assert faults.disarm(forever.id) == 1 and faults.fire("hsm-sign") is None


# ------------------------------------------------------------------ the real flow over HTTP


@pytest.fixture(scope="module")
def eco(start_ecosystem: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """IdP + CA + a signer with fault injection enabled."""
    with start_ecosystem(tmp_path_factory.mktemp("faults"), faults_enabled=True) as env:
        yield env


def _admin(eco: Any, method: str, path: str = "", token: str | None = None, **kwargs: Any) -> requests.Response:
    token = eco.settings.admin_token.get_secret_value() if token is None else token
    return requests.request(method, f"{eco.signer_url}/admin/faults{path}", timeout=10,
                            headers={"Authorization": f"Bearer {token}"}, **kwargs)


def _events(eco: Any, transaction_id: str) -> list[tuple[str, int | None]]:
    """The transaction's audit entries; fault entries name the HSM key (step 9) or its label (step 6)."""
    entries = list(eco.service.audit.entries())
    keys = {e.data["key_id"] for e in entries if e.event == "key.created" and e.data["transaction_id"] == transaction_id}
    return [(e.event, e.step) for e in entries
            if e.data.get("transaction_id") == transaction_id or e.data.get("label") == transaction_id
            or (e.event == "fault.fired" and e.data.get("key_id") in keys)]


def _failed_sign_doc(eco: Any, label: bytes) -> tuple[UpstreamError, str]:
    portal = Portal(eco)
    digest = hashlib.sha256(label).digest()
    token = portal.token(documents=[(digest, "contract.pdf")])
    with pytest.raises(UpstreamError) as caught:
        portal.client.sign_doc(token.access_token, digests=[digest])
    failed = [e for e in eco.service.audit.entries() if e.event == "signing.failed"][-1]
    return caught.value, failed.data["transaction_id"]


def test_hsm_failure_at_step_9_over_http(eco: Any) -> None:
    armed = _admin(eco, "POST", json={"name": "hsm-sign"})
    assert armed.status_code == 201 and armed.json()["remaining"] == 1 and armed.json()["step"] == 9
    error, tx = _failed_sign_doc(eco, b"hsm fails at step 9 " + secrets.token_bytes(4))
    assert (error.upstream_status, error.upstream_error) == (500, "server_error")
    assert error.upstream_description == "step 9 (SSASP → HSM): the HSM could not sign (DeviceError)"
    events = _events(eco, tx)
    assert ("certificate.issued", 7) in events  # the CSR was signed: step 7 is not hit
    assert events.index(("fault.fired", 9)) < events.index(("signing.failed", 9)) < events.index(("key.destroyed", 9))
    assert ("signature.created", 9) not in events
    assert eco.service.store.transaction(tx).state == "failed"
    assert eco.service.hsm.key_objects() == []
    assert _admin(eco, "GET").json()["armed"] == []  # consumed
    assert _admin(eco, "DELETE", f"/{armed.json()['id']}").status_code == 404
    # one-shot: the next flow signs
    portal = Portal(eco)
    digest = hashlib.sha256(b"after the fault").digest()
    signed = portal.client.sign_doc(portal.token(documents=[(digest, "a.pdf")]).access_token, digests=[digest])
    assert len(signed.signature_objects) == 1
    assert eco.service.audit.verify().ok


def test_hsm_failure_at_step_6_over_http(eco: Any) -> None:
    assert _admin(eco, "POST", json={"name": "hsm-keygen", "count": 1}).status_code == 201
    error, tx = _failed_sign_doc(eco, b"hsm fails at step 6 " + secrets.token_bytes(4))
    assert (error.upstream_status, error.upstream_error) == (500, "server_error")
    assert error.upstream_description.startswith("step 6 (SSASP → HSM): the HSM could not generate the key")
    events = [name for name, _ in _events(eco, tx)]
    assert "fault.fired" in events and "key.refused" in events and "signing.failed" in events
    assert "key.created" not in events and "csr.sent" not in events and "signature.created" not in events
    assert eco.service.hsm.key_objects() == []


def test_admin_api_needs_the_token_and_validates_input(eco: Any) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic eDp5"}):
        answer = requests.post(f"{eco.signer_url}/admin/faults", json={"name": "hsm-sign"}, headers=headers, timeout=10)
        assert answer.status_code == 401 and answer.json()["error"] == "invalid_token"
    assert _admin(eco, "GET").json()["armed"] == []  # nothing was armed by the refused calls
    bad = _admin(eco, "POST", json={"name": "hsm-explode"})
    assert bad.status_code == 400 and "known: hsm-keygen, hsm-sign" in bad.json()["error_description"]
    assert _admin(eco, "POST", data="not json").status_code == 400
    listing = _admin(eco, "GET").json()
    assert {(k["name"], k["step"]) for k in listing["known"]} == {("hsm-keygen", 6), ("hsm-sign", 9)}
    for _ in range(2):
        assert _admin(eco, "POST", json={"name": "hsm-sign", "count": None}).status_code == 201
    assert _admin(eco, "DELETE").json() == {"removed": 2}
    events = [e.event for e in eco.service.audit.entries()]
    assert events.count("fault.disarmed") >= 1


def test_fault_injection_is_absent_by_default(fresh_settings: SignerSettings) -> None:
    """A signer with default settings: /admin/faults is a 404 even with the right token; no board."""
    from services.signer import create_app

    assert fresh_settings.faults_enabled is False
    app = create_app(fresh_settings)
    assert app.extensions["signlab.signer"].faults is None and app.extensions["signlab.hsm"].faults is None
    client = app.test_client()
    token = {"Authorization": f"Bearer {fresh_settings.admin_token.get_secret_value()}"}
    for method, path in (("GET", "/admin/faults"), ("POST", "/admin/faults"), ("DELETE", "/admin/faults"),
                         ("DELETE", "/admin/faults/1")):
        answer = client.open(path, method=method, headers=token, json={"name": "hsm-sign"})
        assert answer.status_code == 404, (method, path)
        assert "SIGNLAB_SIGNER_FAULTS_ENABLED" in answer.get_json()["error_description"]
