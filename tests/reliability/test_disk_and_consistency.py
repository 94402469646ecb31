"""Full disks, a CA killed between its issuance log and its database, orphan certificates, keep-alive
reuse and single-service restarts, against real processes.

How the chosen moments are hit without timing:

* **disk fills during flows** — the signer's data directory is a small tmpfs this test mounts;
  the CA fetches the signer's JWKS for every issuance (cache 0 s) through a :class:`FaultProxy`
  that holds it, so once the signer has written ``csr.sent`` for each flow, the flows are provably
  in flight (past their keys, before their certificates) when the test fills the filesystem to the
  last byte; releasing the proxy lets each flow go on writing on a full disk.
* **CA killed between log and database** — the CA's ``hold-after-log`` lab fault stops the next
  issuance right after its issuance-log entry; the test waits for that fault's ``fault.fired``
  entry in the issuance log and SIGKILLs the CA then.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.x509 import ocsp

from services.ca.issuance_log import EVENT_ISSUED, EVENT_WITHDRAWN, cross_check
from services.ca.store import CertificateStore
from services.registry import REGISTRY, entry
from services.signer.settings import SignerSettings
from shared.audit import AuditLog
from shared.client_assertion import create_client_assertion
from shared.clients.ca import CaClient
from shared.jose_keys import load_or_create_ec_key
from shared.testing import fill_filesystem, small_filesystem
from signlab.load import partner_flow
from testkit.reliability_lab import Lab, ocsp_answer, revoked_everywhere, start_lab

pytestmark = [pytest.mark.processes, pytest.mark.hsm]


def _signlab(lab: Lab, *args: str) -> subprocess.CompletedProcess[str]:
    """The real CLI on the lab's data directory, in the lab's environment (its seeded secrets)."""
    return subprocess.run([sys.executable, "-m", "signlab.cli", "--data-dir", str(lab.runtime.data_dir), *args],
                          capture_output=True, text=True, timeout=120, check=False, env=lab.runtime.environ)


def _wait(condition: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"waited {timeout} s for {what}"
        time.sleep(0.05)


# ----------------------------------------------------------------------------------- a full disk


@pytest.fixture(scope="module")
def disk_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    data_dir = tmp_path_factory.mktemp("disk") / "var"
    with small_filesystem(data_dir / "signer", size_mib=12):
        lab = start_lab(data_dir, {"SIGNLAB_SIGNER_DISK_MIN_FREE_MB": "2", "SIGNLAB_SIGNER_HTTP_TIMEOUT_SECONDS": "30",
                                   "SIGNLAB_CA_JWKS_CACHE_SECONDS": "0"},
                        proxies={"ca_jwks": ("signer", "SIGNLAB_CA_SIGNER_JWKS_URL")})
        try:
            yield lab
        finally:
            lab.runtime.down()
            for proxy in lab.proxies.values():
                proxy.close()


def test_a_disk_filled_during_flows_tears_nothing_and_heals_by_itself(disk_lab: Lab) -> None:
    """Six flows are in flight at step 7 when the signer's filesystem fills up: every answer is a
    clear refusal (no 500, no signature), /healthz and 'signlab status' say degraded and why, new
    requests get a plain 507. Once space is freed: no torn line, the failed appends are recorded in
    a recovery entry, 'signlab audit verify' says intact, no key is left, and flows work again —
    without a restart or a repair."""
    lab, proxy = disk_lab, disk_lab.proxies["ca_jwks"]
    disk = lab.runtime.data_dir / "signer"
    partner_flow(lab.eco, b"before the disk fills")
    since = lab.audit_count()
    sads = [lab.authorize(f"document {i} of a run on a filling disk".encode()) for i in range(6)]
    proxy.set("/", "hold", 120)
    answers: dict[int, requests.Response] = {}
    workers = [threading.Thread(target=lambda i=i, sad=sad: answers.__setitem__(i, lab.sign_doc(*sad, timeout=90)))
               for i, sad in enumerate(sads)]
    for worker in workers:
        worker.start()
    _wait(lambda: len([e for e in lab.audit(since) if e.event == "csr.sent"]) == 6, "six flows at step 7")
    filler = fill_filesystem(disk)
    try:
        health = requests.get(f"{lab.urls['signer']}/healthz", timeout=10).json()
        assert health["status"] == "degraded" and health["checks"]["disk"]["status"] == "degraded"
        assert f"free on the filesystem of {disk}" in health["checks"]["disk"]["detail"]
        state = lab.runtime.status_of("signer")
        assert state.state == "degraded" and "disk:" in state.detail
        status = _signlab(lab, "status")
        assert status.returncode == 1 and "signer is degraded: disk: 0.0 MiB free" in status.stdout

        client = lab.eco.signer_client(timeout=30)
        refused = client.session.post(f"{lab.urls['signer']}/oauth2/par", timeout=30,
                                      data={"response_type": "code", **lab.eco.portal_authentication()})
        client.close()
        assert refused.status_code == 507 and refused.json()["error"] == "temporarily_unavailable"
        assert refused.json()["error_description"].startswith("the SSASP (signer) cannot store anything right now")

        proxy.release()
        for worker in workers:
            worker.join(120)
        for number, answer in sorted(answers.items()):
            assert answer.status_code in (200, 503, 507), (number, answer.status_code, answer.text[:400])
            if answer.status_code != 200:
                body = answer.json()
                assert body["error"] == "temporarily_unavailable" and "signatures" not in body, (number, body)
    finally:
        proxy.release()
        filler.unlink()

    _wait(lambda: requests.get(f"{lab.urls['signer']}/healthz", timeout=10).json()["status"] == "ok", "health ok")
    assert lab.runtime.status_of("signer").state == "healthy"
    result, _ = partner_flow(lab.eco, b"after the disk was freed")
    assert result.certificate_serial
    raw = lab.eco.signer_audit.read_bytes()
    assert raw.endswith(b"\n") and all(json.loads(line) for line in raw.splitlines())
    verification = AuditLog(lab.eco.signer_audit).verify()
    assert verification.ok and verification.torn_bytes == 0
    recoveries = [r for r in verification.recoveries if r.seq > since]
    assert recoveries and all(r.data["failed_appends"] >= 1 for r in recoveries)
    assert recoveries[0].data["error"] == "No space left on device"
    assert lab.hsm_keys() == 0
    verified = _signlab(lab, "audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "signer (SSASP) audit log:" in verified.stdout and ", intact; recovery at entry" in verified.stdout
    assert "database and issuance log agree" in verified.stdout


# ------------------------------------------------------------------- the CA between log and database


@pytest.fixture(scope="module")
def fault_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lab = start_lab(tmp_path_factory.mktemp("faults") / "var",
                    {"SIGNLAB_CA_FAULTS_ENABLED": "true", "SIGNLAB_SIGNER_HTTP_TIMEOUT_SECONDS": "10"})
    yield lab
    lab.runtime.down()


def _ca_admin(lab: Lab) -> dict[str, str]:
    return {"Authorization": f"Bearer {lab.secrets['SIGNLAB_CA_ADMIN_TOKEN']}"}


def test_ca_killed_between_its_issuance_log_and_its_database(fault_lab: Lab) -> None:
    """SIGKILL exactly after the issuance-log entry, before the database commit: the signer's flow
    ends with a clear step-7 outage; after the restart the certificate is in the log and recorded
    as withdrawn (never stored, never answered: OCSP does not know it), and the cross-check of
    'signlab audit verify' is clean."""
    lab = fault_lab
    armed = requests.post(f"{lab.urls['ca']}/admin/faults", json={"name": "hold-after-log"}, headers=_ca_admin(lab),
                          timeout=10)
    assert armed.status_code == 201, armed.text
    sad, digest = lab.authorize(b"the CA dies between log and database")
    before = len(lab.ca_log())
    outcome: dict[str, requests.Response] = {}
    worker = threading.Thread(target=lambda: outcome.setdefault("answer", lab.sign_doc(sad, digest, timeout=60)))
    worker.start()
    _wait(lambda: any(e.event == "fault.fired" for e in lab.ca_log()[before:]), "the hold-after-log fault to fire")
    issued = [e for e in lab.ca_log()[before:] if e.event == EVENT_ISSUED]
    assert len(issued) == 1
    serial = str(issued[0].data["serial"])
    lab.kill("ca")
    worker.join(60)

    answer = outcome["answer"]
    assert answer.status_code == 503 and answer.json()["error"] == "temporarily_unavailable", answer.text
    assert "step 7" in answer.json()["error_description"] and "TSP" in answer.json()["error_description"]
    lab.restart("ca")

    events = [e.event for e in lab.ca_log()[before:] if e.data.get("serial") == serial]
    assert events == [EVENT_ISSUED, "fault.fired", EVENT_WITHDRAWN]
    assert ocsp_answer(lab, serial).certificate_status == ocsp.OCSPCertStatus.UNKNOWN
    database = lab.runtime.data_dir / "ca" / "ca.sqlite3"
    assert serial not in CertificateStore.read_states(database)
    assert cross_check(CertificateStore.read_states(database), lab.ca_log()).ok
    verified = _signlab(lab, "audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "database and issuance log agree" in verified.stdout
    assert lab.hsm_keys() == 0
    result, _ = partner_flow(lab.eco, b"after the CA came back")
    assert result.certificate_serial


def test_the_signing_service_revokes_the_certificate_of_a_failed_flow(fault_lab: Lab) -> None:
    """The SSASP's revocation request (its client assertion, reason cessationOfOperation) revokes
    the certificate of a flow; the CA's CRL and OCSP say so at once, and the issuance log records
    who asked and why."""
    lab = fault_lab
    result, _ = partner_flow(lab.eco, b"a flow that the signer will call failed")
    serial, transaction = str(result.certificate_serial), str(result.signer_transaction_id)
    assert ocsp_answer(lab, serial).certificate_status == ocsp.OCSPCertStatus.GOOD
    signer = SignerSettings.from_env(lab.runtime.service_environment(entry("signer")))
    ca = CaClient(lab.urls["ca"])
    assertion = create_client_assertion(load_or_create_ec_key(signer.client_assertion_key_path),
                                        client_id=signer.ca_client_id, audience=ca.revocation_url)
    revoked = ca.revoke_issued(client_assertion=assertion, transaction_id=transaction,
                               note="step 10: time-stamp failed after the signature")
    assert [(r.serial, r.status, r.revocation_reason) for r in revoked] == [(serial, "revoked", "cessationOfOperation")]
    answer = ocsp_answer(lab, serial)
    assert answer.certificate_status == ocsp.OCSPCertStatus.REVOKED
    assert answer.revocation_reason == x509.ReasonFlags.cessation_of_operation
    crl = x509.load_der_x509_crl(ca.crl("issuing"))
    listed = crl.get_revoked_certificate_by_serial_number(int(serial, 16))
    assert listed is not None
    assert listed.extensions.get_extension_for_class(x509.CRLReason).value.reason == \
        x509.ReasonFlags.cessation_of_operation
    logged = [e for e in lab.ca_log() if e.data.get("serial") == serial][-1]
    assert (logged.event, logged.data["requester"], logged.data["note"]) == (
        "certificate.revoked", signer.ca_client_id, "step 10: time-stamp failed after the signature")


# ------------------------------------------------------------------ no orphans: the signer revokes


@pytest.fixture(scope="module")
def orphan_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """The signer's HSM faults on, a quick sweep, and its calls to the CA through a fault proxy
    (which can drop the revocation requests: the CA "unreachable" for them only). The CA's public
    URL is the proxy's too: the signer's client assertions name the URL it calls as audience."""
    lab = start_lab(tmp_path_factory.mktemp("orphans") / "var",
                    {"SIGNLAB_SIGNER_FAULTS_ENABLED": "true", "SIGNLAB_SIGNER_SWEEP_INTERVAL_SECONDS": "1",
                     "SIGNLAB_SIGNER_HTTP_TIMEOUT_SECONDS": "5"},
                    proxies={"signer_to_ca": ("ca", "SIGNLAB_SIGNER_CA_URL", "SIGNLAB_CA_PUBLIC_URL")})
    yield lab
    lab.runtime.down()
    for proxy in lab.proxies.values():
        proxy.close()


def _fail_at_step_9(lab: Lab, document: bytes) -> tuple[str, requests.Response]:
    """A flow whose HSM fails at step 9, after its certificate was issued; (transaction id, answer)."""
    admin = {"Authorization": f"Bearer {lab.secrets['SIGNLAB_SIGNER_ADMIN_TOKEN']}"}
    armed = requests.post(f"{lab.urls['signer']}/admin/faults", json={"name": "hsm-sign"}, headers=admin, timeout=10)
    assert armed.status_code == 201, armed.text
    since = lab.audit_count()
    answer = lab.sign_doc(*lab.authorize(document))
    assert answer.status_code == 500 and "step 9" in answer.json()["error_description"], answer.text
    issued = next(e for e in lab.audit(since) if e.event == "certificate.issued")
    return str(issued.data["transaction_id"]), answer


def test_a_flow_that_fails_after_step_7_leaves_its_certificate_revoked(orphan_lab: Lab) -> None:
    """#25: the HSM fails at step 9 after the TSP issued the certificate: the key is destroyed, then
    the SSASP has the certificate revoked (its client assertion, cessationOfOperation, the failure
    as the note); CRL and OCSP say so at once, both logs record it."""
    lab = orphan_lab
    transaction, _ = _fail_at_step_9(lab, b"the HSM fails after the certificate")
    revoked = next(e for e in lab.audit() if e.event == "certificate.revoked" and e.data["transaction_id"] == transaction)
    [serial] = revoked.data["serials"]
    events = [e.event for e in lab.audit() if e.data.get("transaction_id") == transaction]
    assert events.index("key.destroyed") < events.index("certificate.revoked")
    assert "step 9" in revoked.data["note"]
    assert lab.signer_transaction(transaction)["certificate_revocation"] == "revoked"
    revoked_everywhere(lab, serial)
    logged = [e for e in lab.ca_log() if e.data.get("serial") == serial]
    assert [e.event for e in logged] == [EVENT_ISSUED, "certificate.revoked"]
    assert logged[-1].data["requester"] == "signlab-signer" and "step 9" in logged[-1].data["note"]


def test_a_revocation_the_ca_cannot_take_is_pending_and_retried_by_the_sweep(orphan_lab: Lab) -> None:
    """#25: the CA unreachable for the revocation: the transaction stays "revocation pending"
    (audited); once the CA answers again the sweeper revokes it, CRL and OCSP say so."""
    lab, proxy = orphan_lab, orphan_lab.proxies["signer_to_ca"]
    proxy.set("/api/v1/certificates/revocations", "drop")
    try:
        transaction, _ = _fail_at_step_9(lab, b"the CA drops the revocation")
        lab.wait_audit(lambda e: e.event == "certificate.revocation_failed" and e.data["transaction_id"] == transaction)
        assert lab.signer_transaction(transaction)["certificate_revocation"] == "pending"
        issued = [e for e in lab.ca_log() if e.event == EVENT_ISSUED and e.data["transaction_id"] == transaction]
        serial = str(issued[0].data["serial"])
        assert ocsp_answer(lab, serial).certificate_status == ocsp.OCSPCertStatus.GOOD  # not yet
    finally:
        proxy.release()
    lab.wait_audit(lambda e: e.event == "certificate.revoked" and e.data["transaction_id"] == transaction)
    assert lab.signer_transaction(transaction)["certificate_revocation"] == "revoked"
    revoked_everywhere(lab, serial)


# ----------------------------------------------------------------------------- transport, restarts


def test_idle_keep_alive_connections_outlive_the_old_two_seconds(fault_lab: Lab) -> None:
    """The services keep an idle connection open longer than gunicorn's default 2 s: the client
    reuses it after 3 s idle instead of racing the server's close (one connection for both)."""
    client = CaClient(fault_lab.urls["ca"])
    client.certificate("root")
    time.sleep(3)  # longer than gunicorn's default keep-alive, well under SignLab's
    client.certificate("issuing")
    manager = client.session.get_adapter(fault_lab.urls["ca"]).poolmanager
    keys = manager.pools.keys()  # a locked snapshot: urllib3 refuses to iterate its pool container itself
    pools = [manager.pools[key] for key in keys]
    assert [(pool.num_connections, pool.num_requests) for pool in pools] == [(1, 2)]


def test_one_service_restarts_while_the_others_keep_running(fault_lab: Lab) -> None:
    """'signlab restart signer': a new signer process on the same port, the other three untouched,
    flows work at once (the portal's pooled connections to the old process are not an error)."""
    lab = fault_lab
    from signlab.load import portal_flow

    portal_flow(lab.eco, b"before the restart")
    before = lab.runtime.running()
    restarted = _signlab(lab, "restart", "signer")
    assert restarted.returncode == 0, restarted.stderr
    assert f"signer: stopped (pid {before['signer']})" in restarted.stdout
    after = lab.runtime.running()
    assert after["signer"] != before["signer"]
    assert {k: v for k, v in after.items() if k != "signer"} == {k: v for k, v in before.items() if k != "signer"}
    assert lab.runtime.status_of("signer").port == lab.runtime.ports["signer"]
    for number in range(3):
        assert portal_flow(lab.eco, f"after the restart {number}".encode()).certificate_serial
    assert {e.info.name for e in REGISTRY} == set(lab.runtime.running())
