"""SignLab on a real Docker engine: the deployment as a user runs it, proven end to end.

The stage (one module, in this order):

1. an engine — the machine's (``DOCKER_HOST``, ``/var/run/docker.sock``) or, as root, SignLab's own
   ``dockerd`` started for this module under ``var/dockerd`` and stopped by its pid at the end
   (``signlab.docker_host``);
2. the image built with no network in the build (the official Python base if the engine has or can
   pull it, else the Debian base made with debootstrap; wheels from ``compose/wheelhouse``);
3. the services brought up by the compose CLI (``docker compose`` or Debian's
   ``docker-compose`` 1.29) from ``compose/compose.yaml`` and one env file (its own project name
   and free ports, so nothing of a user's deployment is touched), fault injection on;
4. the smoke scenarios and the fault scenarios (admin APIs, a container stopped) on the containers,
   with the trace checks read through the portal's trainer API; the IdP's browser-facing
   discovery; a PDF signed on the containers and checked by ``pdfsig`` on the host, which fetches
   OCSP from the published port (trusted, then revoked); stop/pause/restart of containers;
5. switching to the SDK path (``signlab up --engine docker``) on the same volumes and env file,
   ``signlab down`` with SIGTERM, ``signlab audit verify`` on the volumes;
6. teardown: containers stopped with SIGTERM, volumes and network removed, the engine stopped.

No engine can be had (not root and none running, or docker.io not installed) → every test skips
with that reason. The stage's log is printed at the end of the session (``conftest.py``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.x509.oid import AuthorityInformationAccessOID

from services.portal.settings import PortalSettings
from services.registry import LAB_HOSTS, REGISTRY
from shared.clients.ca import CaClient
from shared.testing import browse_until, confirm_review, free_port
from shared.testing.stock_validator import pdfsig, stock_validator_problem
from signlab import docker_host
from signlab.docker_engine import COMPOSE_FILE, IMAGE, REPO_ROOT, DockerEngine, prepare_env_file
from signlab.hosts import lab_host_problems
from signlab.scenarios.loader import load_all

SIGNLAB = str(Path(sys.executable).with_name("signlab"))
FAULT_SCENARIOS = ("hsm-failure-at-step-9", "idp-failure-via-admin-api", "ca-down-at-step-7")
"""One scenario per fault path on containers: the signer's and the IdP's admin APIs, a stopped container."""

pytestmark = [pytest.mark.timeout(1800)]


@dataclass
class Lab:
    """The running stage: engine, compose CLI, env file, the SDK view of the deployment."""

    host: str
    compose: list[str]
    env_file: Path
    engine: DockerEngine
    workdir: Path
    log: object

    def environment(self, **extra: str) -> dict[str, str]:
        """This process's environment without SignLab/compose/Docker settings, plus the engine's address."""
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("SIGNLAB_", "COMPOSE_", "DOCKER_"))}
        return {**clean, "DOCKER_HOST": self.host, **extra}

    def compose_run(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """The compose CLI on this deployment (fault injection on, as ``--fault-injection``)."""
        return subprocess.run([*self.compose, "--env-file", str(self.env_file), "-f", str(COMPOSE_FILE), *args],
                              capture_output=True, text=True, timeout=timeout, cwd=self.workdir,
                              env=self.environment(SIGNLAB_FAULT_INJECTION="true"))

    def signlab(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        """``signlab ARGS --engine docker --env-file <this deployment>``."""
        return subprocess.run([SIGNLAB, "--data-dir", str(self.workdir / "var"), *args, "--engine", "docker",
                               "--env-file", str(self.env_file)], capture_output=True, text=True, timeout=timeout,
                              cwd=REPO_ROOT, env=self.environment())


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, engine_stage) -> Iterator[Lab]:  # type: ignore[no-untyped-def]
    log = engine_stage
    log("Docker stage: engine, image, compose, scenarios on containers, switching, teardown")
    try:
        lease = docker_host.acquire_engine(REPO_ROOT / "var" / "dockerd", progress=log)
    except docker_host.EngineUnavailable as exc:
        log(f"SKIPPED: no Docker engine can be had here: {exc}")
        pytest.skip(f"no Docker engine can be had here: {exc}")
    client = lease.client()
    try:
        version = client.version()
        log(f"engine: {lease.description}: Docker {version['Version']}, API {version['ApiVersion']}")
        compose = docker_host.compose_command()
        if compose is None:
            log("SKIPPED: no compose CLI (docker compose or docker-compose)")
            pytest.skip("no compose CLI here (neither 'docker compose' nor Debian's docker-compose; make test "
                        "installs docker-compose as root)")
        version_line = subprocess.run([*compose, "version"], capture_output=True, text=True, timeout=60).stdout
        log(f"compose CLI: {' '.join(compose)} ({version_line.splitlines()[0] if version_line else '?'})")
        workdir = tmp_path_factory.mktemp("docker-stage")
        env_file = workdir / "deployment.env"
        ports = {entry.info.name: free_port() for entry in REGISTRY}
        prepare_env_file(env_file, project=f"signlab-test-{os.getpid()}", ports=ports)
        engine = DockerEngine(env_file, environ={}, client=client, docker_host=lease.host)
        try:
            docker_host.ensure_wheelhouse(progress=log)
            base = docker_host.ensure_base_image(client, REPO_ROOT / "var" / "docker-base", progress=log)
            docker_host.build_image(client, IMAGE, base=base, progress=log)
            stage = Lab(lease.host, compose, env_file, engine, workdir, log)
            started = time.monotonic()
            result = stage.compose_run("up", "-d", "--no-build")
            assert result.returncode == 0, result.stdout + result.stderr
            engine.wait_healthy([e.info.name for e in REGISTRY], 300)
            states = engine.status()
            log(f"compose up: {len(states)} healthy containers in {time.monotonic() - started:.0f} s: "
                + ", ".join(f"{s.name} {s.detail.split()[1]} → {s.url}" for s in states))
            yield stage
        finally:
            for line in engine.down(remove_volumes=True):
                log(f"teardown: {line}")
    finally:
        client.close()
        lease.release(progress=log)
        if log.started is not None:
            log(f"Docker stage done in {time.monotonic() - log.started:.0f} s")


def _passed_all(result: subprocess.CompletedProcess[str], junit: Path, expected: int) -> ET.Element:
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    suite = ET.parse(junit).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")  # type: ignore[assignment]
    assert suite is not None
    counts = {key: int(suite.get(key, "0")) for key in ("tests", "failures", "errors", "skipped")}
    assert counts == {"tests": expected, "failures": 0, "errors": 0, "skipped": 0}, counts
    return suite


def test_compose_brought_up_every_service_healthy(lab: Lab) -> None:
    states = {s.name: s for s in lab.engine.status()}
    assert {name: s.state for name, s in states.items()} == {e.info.name: "healthy" for e in REGISTRY}
    for name, state in states.items():
        assert requests.get(f"{state.url}/healthz", timeout=5).status_code == 200, name
        container = lab.engine.container(name)
        assert "com.docker.compose.config-hash" in container.labels  # made by the compose CLI, found by the SDK
    status = lab.signlab("status")
    assert status.returncode == 0, status.stdout + status.stderr


def test_smoke_and_fault_scenarios_pass_on_the_containers(lab: Lab) -> None:
    junit = lab.workdir / "scenarios.xml"
    started = time.monotonic()
    result = lab.signlab("scenario", "run", "--tag", "smoke", *FAULT_SCENARIOS, "--junit", str(junit))
    catalogue = load_all(REPO_ROOT / "scenarios")
    chosen = [s for s in catalogue if "smoke" in s.tags or s.name in FAULT_SCENARIOS]
    suite = _passed_all(result, junit, expected=len(chosen))
    # The trace checks ran on the spans of all the containers (read through the portal's trainer API).
    names = sorted(case.get("name", "") for case in suite.iter("testcase"))
    with_trace = [s.name for s in chosen if s.expect.trace]
    trace_checks = [line for line in result.stdout.splitlines() if "expect   trace order" in line]
    assert len(trace_checks) == len(with_trace) >= 3, result.stdout[-4000:]
    assert all(line.strip().startswith("ok") for line in trace_checks), "\n".join(trace_checks)
    lab.log(f"scenarios on containers: {len(names)} passed in {time.monotonic() - started:.0f} s "
            f"(smoke + fault injection: {', '.join(names)}); trace order checked from the trainer API")


def test_the_idp_discovery_sends_browsers_to_the_published_port(lab: Lab) -> None:
    idp = lab.engine.url("idp")
    discovery = requests.get(f"{idp}/.well-known/openid-configuration", timeout=10).json()
    for key in ("authorization_endpoint", "end_session_endpoint", "service_documentation"):
        assert discovery[key].startswith(f"{idp}/"), (key, discovery[key])
    assert requests.get(discovery["service_documentation"], timeout=10).status_code == 200
    assert discovery["issuer"] == "http://idp:8001"  # what the signer and the CA compare iss with


def test_a_pdf_signed_on_the_containers_validates_with_pdfsig_on_the_host(lab: Lab) -> None:
    problem = stock_validator_problem() or "; ".join(lab_host_problems())
    if problem:
        pytest.skip(f"the stock validator cannot run here: {problem} (run 'sudo .venv/bin/signlab hosts')")
    portal, ca = lab.engine.url("portal"), lab.engine.url("ca")
    # The lab's partner application (HTTP Basic), with the deployment's secret.
    partner = (PortalSettings.model_fields["api_client_id"].default, lab.engine.secrets()["SIGNLAB_PORTAL_API_CLIENT_SECRET"])
    created = requests.post(f"{portal}/api/v1/sign-requests", auth=partner, timeout=60, json={
        "documents": [{"sample": "employment-contract.pdf"}], "qualifier": "qes", "format": "pades",
        "level": "B-B", "login_hint": "kari-nordmann@no-bankid"})
    assert created.status_code == 201, created.text
    body = created.json()
    session = requests.Session()
    authorize_url = confirm_review(body["review_url"], session)
    landed = session.get(browse_until(authorize_url, f"{portal}/sign/callback", session=session), timeout=120)
    assert landed.status_code == 200
    status = requests.get(body["status_url"], auth=partner, timeout=30).json()
    assert status["state"] == "completed", status
    signed = lab.workdir / "signed-on-containers.pdf"
    signed.write_bytes(requests.get(f"{portal}/api/v1/transactions/{body['transaction_id']}/documents/0", auth=partner,
                                    timeout=30).content)
    root = requests.get(f"{ca}/certs/root.crt", timeout=10).content
    serial = status["signer"]["certificate_serial"]
    leaf = x509.load_der_x509_certificate(CaClient(ca).certificate_status(serial).certificate)
    ocsp = [d.access_location.value for d in leaf.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
            if d.access_method == AuthorityInformationAccessOID.OCSP]
    assert ocsp == [f"http://{LAB_HOSTS['ca']}:{lab.engine.ports['ca']}/ocsp"]  # the published port

    first = pdfsig(signed, root, lab.workdir / "pdfsig-1")
    assert (first.signature, first.certificate) == ("Signature is Valid.", "Certificate is Trusted."), first.output
    CaClient(ca).revoke(serial, "keyCompromise", lab.engine.secrets()["SIGNLAB_CA_ADMIN_TOKEN"])
    second = pdfsig(signed, root, lab.workdir / "pdfsig-2")
    assert second.certificate == "Certificate has been Revoked.", second.output
    lab.log(f"pdfsig on the host: {first.certificate} then, after revocation, {second.certificate} "
            f"(OCSP fetched from {ocsp[0]})")


def test_outages_pause_and_restart_containers(lab: Lab) -> None:
    """A paused container hangs (requests time out) and thaws; a restarted one comes back healthy.
    (A stopped one — connection refused — is the ca-down-at-step-7 scenario above.)"""
    stack = lab.engine
    ca = next(s for s in stack.status() if s.name == "ca")
    with stack.outage("ca", "pause"):
        assert next(s for s in stack.status() if s.name == "ca").state == "paused"
        with pytest.raises(requests.Timeout):
            requests.get(f"{ca.url}/healthz", timeout=3)
    assert requests.get(f"{ca.url}/healthz", timeout=10).status_code == 200
    stack.restart_service("signer")
    assert next(s for s in stack.status() if s.name == "signer").state == "healthy"


def test_switching_from_compose_to_the_sdk_path_keeps_volumes_and_secrets(lab: Lab) -> None:
    started = time.monotonic()
    stopped = lab.compose_run("stop")
    assert stopped.returncode == 0, stopped.stderr
    codes = {e.info.name: lab.engine.container(e.info.name).attrs["State"]["ExitCode"] for e in REGISTRY}
    assert codes == {e.info.name: 0 for e in REGISTRY}, codes  # each handled SIGTERM and exited cleanly
    lab.log(f"compose stop: all {len(codes)} exited 0 after SIGTERM in {time.monotonic() - started:.1f} s")
    assert lab.compose_run("down").returncode == 0

    started = time.monotonic()
    up = lab.signlab("up", "--no-build")
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
    lab.log(f"signlab up --engine docker on the same volumes and env file: healthy in {time.monotonic() - started:.0f} s "
            "(the signer's HSM token opened with the same PINs)")
    junit = lab.workdir / "after-switch.xml"
    _passed_all(lab.signlab("scenario", "run", "qes-pades-b-b", "--junit", str(junit)), junit, expected=1)

    down = lab.signlab("down")
    assert down.returncode == 0, down.stderr
    lines = down.stdout.strip().splitlines()
    assert len(lines) == len(REGISTRY) and all("stopped with SIGTERM" in line and "(exit 0)" in line for line in lines), lines
    lab.log(f"signlab down --engine docker: {'; '.join(lines)}")
    audit = lab.signlab("audit", "verify")
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert audit.stdout.count("intact") == 2 and "database and issuance log agree" in audit.stdout, audit.stdout
    lab.log(f"signlab audit verify --engine docker: {' | '.join(audit.stdout.strip().splitlines())}")
