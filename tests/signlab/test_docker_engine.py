"""The Docker engine backend: entry point and interpolation here; the real stack when an engine exists.

Without a Docker engine (this machine has only the docker CLI client) the engine tests skip with
the reason. The container entry point (``python -m signlab.docker_engine serve``) runs here as a
plain process with the exact environment the compose file gives the container (only host, port
and data directory moved to loopback and a temp dir), so provisioning and start-up in the image
are exercised for real.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from services.registry import REGISTRY
from shared.testing import free_port
from signlab.docker_engine import (
    DockerEngine,
    InterpolationError,
    REPO_ROOT,
    deployment,
    ecosystem,
    engine_problem,
    interpolate,
    secret_variables,
)
from signlab.runtime import RuntimeError_

SIGNLAB = str(Path(sys.executable).with_name("signlab"))


def _engine_unavailable() -> str | None:
    problem = engine_problem()
    return None if problem is None else f"no Docker engine reachable ({problem})"


NO_ENGINE = _engine_unavailable()
needs_engine = pytest.mark.skipif(NO_ENGINE is not None, reason=NO_ENGINE or "")


# -- interpolation (the compose rules the SDK path applies itself) ---------------------------------


def test_interpolation_follows_compose_rules() -> None:
    assert interpolate("http://127.0.0.1:${P:-8000}/x", {}) == "http://127.0.0.1:8000/x"
    assert interpolate("http://127.0.0.1:${P:-8000}/x", {"P": "9000"}) == "http://127.0.0.1:9000/x"
    assert interpolate("${P:-d}", {"P": ""}) == "d" and interpolate("${P-d}", {"P": ""}) == ""
    assert interpolate("$${P} ${Q}", {"Q": "q"}) == "${P} q"
    with pytest.raises(InterpolationError, match="S is not set"):
        interpolate("${S:?is not set}", {"S": ""})
    assert interpolate("${S?is not set}", {"S": ""}) == ""


def test_the_engine_uses_the_local_runtime_secrets_and_ports(tmp_path: Path) -> None:
    engine = DockerEngine(tmp_path, ports={"portal": 9100}, environ={})
    values = engine.variables()
    assert (tmp_path / "secrets.env").stat().st_mode & 0o777 == 0o600
    for variable in set(secret_variables().values()):
        assert values[variable]
    again = DockerEngine(tmp_path, environ={}).variables()
    assert all(again[v] == values[v] for v in secret_variables().values())  # generated once, kept
    portal = next(p for p in deployment() if p.name == "portal")
    env = engine.container_environment(portal, values)
    assert env["SIGNLAB_PORTAL_PUBLIC_URL"] == "http://127.0.0.1:9100" == engine.url("portal")
    signer = next(p for p in deployment() if p.name == "signer")
    assert '"http://127.0.0.1:9100/sign/callback"' in engine.container_environment(signer, values)[
        "SIGNLAB_SIGNER_PORTAL_REDIRECT_URIS"]


def test_the_sdk_request_bodies_carry_the_compose_settings(tmp_path: Path) -> None:
    """The exact JSON the SDK would POST to /containers/create, built by the SDK's own code (an API
    client with a fixed version does not connect until a request is made)."""
    import docker
    from docker.models.containers import _create_container_args

    engine = DockerEngine(tmp_path, ports={"ca": 9102}, environ={}, project="signlab-x")
    variables = engine.variables()
    api = docker.APIClient(base_url="unix:///nonexistent/docker.sock", version="1.41")
    try:
        for plan in deployment():
            arguments = engine.create_arguments(plan, variables, "signlab-x", "1.41")
            create = _create_container_args({**arguments, "version": "1.41"})
            assert create.pop("name") == f"signlab-x-{plan.name}"  # a query parameter, not in the body
            body = api.create_container_config(**create)
            host = body["HostConfig"]
            assert host["PortBindings"] == {f"{plan.port}/tcp": [{"HostIp": "127.0.0.1",
                                                                  "HostPort": str(engine.ports[plan.name])}]}
            assert host["RestartPolicy"] == {"Name": "unless-stopped"} and host["CapDrop"] == ["ALL"]
            assert sorted(host["Binds"]) == sorted(f"signlab-x_{v}:{m}:rw" for v, m in plan.volumes.items())
            assert host["NetworkMode"] == "signlab-x"
            aliases = body["NetworkingConfig"]["EndpointsConfig"]["signlab-x"]["Aliases"]
            assert plan.name in aliases and set(plan.aliases) <= set(aliases)
            assert body["Healthcheck"]["Test"] == plan.healthcheck_command()
            assert body["Cmd"] == list(plan.command) and body["Image"] == "signlab:latest"
            env = dict(item.split("=", 1) for item in body["Env"])
            assert env == engine.container_environment(plan, variables)
            if plan.name == "ca":
                assert host["Sysctls"] == {"net.ipv4.ip_unprivileged_port_start": "0"}
                assert "ca.signlab.example.com" in aliases
    finally:
        api.close()


@pytest.mark.skipif(NO_ENGINE is None, reason="a Docker engine is reachable here")
def test_without_an_engine_the_cli_says_so(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError_, match="no Docker engine reachable"):
        DockerEngine(tmp_path).status()
    result = subprocess.run([SIGNLAB, "--data-dir", str(tmp_path), "status", "--engine", "docker"],
                            capture_output=True, text=True, timeout=60,
                            env={**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert result.returncode == 1
    assert "no Docker engine reachable" in result.stderr and "--engine local" in result.stderr


# -- the container entry point, run as a local process ---------------------------------------------


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[object]:
    started: list[subprocess.Popen[bytes]] = []
    variables = DockerEngine(tmp_path, environ={}).variables()

    def run(name: str, *extra: str, overrides: dict[str, str] | None = None) -> tuple[int, subprocess.Popen[bytes]]:
        plan = next(p for p in deployment() if p.name == name)
        entry = next(e for e in REGISTRY if e.info.name == name)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SIGNLAB_", "OTEL_"))}
        env.update(DockerEngine(tmp_path, environ={}).container_environment(plan, variables))
        port = free_port()
        cls = entry.settings_class
        env[cls.env_name("host")] = "127.0.0.1"
        env[cls.env_name("port")] = str(port)
        for variable, value in list(env.items()):
            if value.startswith("/var/lib/signlab/"):  # the volumes' mount points -> a temp dir
                env[variable] = str(tmp_path / value.removeprefix("/var/lib/signlab/"))
        env.update(overrides or {})
        with (tmp_path / f"{name}.log").open("wb") as log:
            process = subprocess.Popen([sys.executable, "-m", "signlab.docker_engine", "serve", name, *extra],
                                       env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        started.append(process)
        return port, process

    yield run
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=15)


def _healthy(port: int, process: subprocess.Popen[bytes], log: Path, timeout: float = 60.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"exited {process.returncode}:\n{log.read_text()[-3000:]}"
        try:
            response = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
            if response.status_code == 200:
                return dict(response.json())
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise AssertionError(f"not healthy on {port}:\n{log.read_text()[-3000:]}")


@pytest.mark.processes
def test_entry_point_provisions_and_serves_the_ca_on_its_extra_port(serve, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    extra = free_port()
    port, process = serve("ca", "--also-bind", f"127.0.0.1:{extra}")
    _healthy(port, process, tmp_path / "ca.log")
    # The second address is what http://ca.signlab.example.com (port 80) becomes in the container.
    root = requests.get(f"http://127.0.0.1:{extra}/certs/root.crt", timeout=5)
    assert root.status_code == 200 and root.content[:1] == b"\x30"
    assert "provision ca: root" in (tmp_path / "ca.log").read_text()
    assert (tmp_path / "ca" / "pki").is_dir()


@pytest.mark.processes
@pytest.mark.hsm
def test_entry_point_provisions_the_hsm_token_and_serves_the_signer(serve, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    port, process = serve("signer")
    health = _healthy(port, process, tmp_path / "signer.log")
    assert "hsm" in str(health)
    assert (tmp_path / "signer" / "softhsm2.conf").exists()


@pytest.mark.processes
def test_entry_point_serves_the_idp(serve, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    port, process = serve("idp")
    _healthy(port, process, tmp_path / "idp.log")


@pytest.mark.processes
def test_entry_point_refuses_a_missing_secret_with_exit_78(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNLAB_")}
    env["SIGNLAB_CA_DATA_DIR"] = str(tmp_path / "ca")
    result = subprocess.run([sys.executable, "-m", "signlab.docker_engine", "serve", "ca"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 78
    assert "SIGNLAB_CA_ADMIN_TOKEN" in result.stderr


# -- the real stack (only with a Docker engine) ---------------------------------------------------


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerEngine]:
    data_dir = tmp_path_factory.mktemp("docker")
    # Its own project: never touches the user's signlab network, containers or data volumes.
    engine = DockerEngine(data_dir, ports={e.info.name: free_port() for e in REGISTRY},
                          project=f"signlab-test-{os.getpid()}")
    try:
        engine.up(timeout=300, progress=lambda line: None)
        yield engine
    finally:
        engine.down(remove_volumes=True)


@needs_engine
@pytest.mark.timeout(1200)
def test_stack_comes_up_healthy_and_passes_the_smoke_scenario(stack: DockerEngine) -> None:
    states = {s.name: s for s in stack.status()}
    assert {name: s.state for name, s in states.items()} == {e.info.name: "healthy" for e in REGISTRY}
    for name, state in states.items():
        assert requests.get(f"{state.url}/healthz", timeout=5).status_code == 200, name
    from signlab.cli import COMMAND_MODULES

    if not any(module.endswith(".scenario") for module in COMMAND_MODULES):
        pytest.skip("the scenario runner (signlab scenario run) is not in this tree yet; all four are healthy")
    help_text = subprocess.run([SIGNLAB, "scenario", "run", "--help"], capture_output=True, text=True).stdout
    if "--engine" in help_text:
        result = subprocess.run([SIGNLAB, "--data-dir", str(stack.data_dir), "scenario", "run", "--tag", "smoke",
                                 "--engine", "docker"], capture_output=True, text=True, timeout=900, cwd=REPO_ROOT)
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
        return
    # The CLI would start the local runtime; run the smoke scenarios against the containers directly.
    from signlab.scenarios.loader import load_all
    from signlab.scenarios.report import exit_code, summary_table
    from signlab.scenarios.runner import run_scenarios

    smoke = [s for s in load_all(REPO_ROOT / "scenarios") if "smoke" in s.tags]
    assert smoke, "no scenario tagged smoke"
    results = run_scenarios(smoke, ecosystem(stack), progress=lambda line: None)
    assert exit_code(results) == 0, summary_table(results)


@needs_engine
@pytest.mark.timeout(600)
def test_fault_injection_stops_pauses_and_restores_the_ca(stack: DockerEngine) -> None:
    ca = next(s for s in stack.status() if s.name == "ca")
    with stack.outage("ca", "stop"):
        assert next(s for s in stack.status() if s.name == "ca").state == "stopped"
        with pytest.raises(requests.RequestException):
            requests.get(f"{ca.url}/healthz", timeout=3)
    assert next(s for s in stack.status() if s.name == "ca").state == "healthy"
    with stack.outage("ca", "pause"):
        assert next(s for s in stack.status() if s.name == "ca").state == "paused"
        with pytest.raises(requests.Timeout):
            requests.get(f"{ca.url}/healthz", timeout=3)
    assert requests.get(f"{ca.url}/healthz", timeout=10).status_code == 200
    stack.restart_service("signer")
    assert next(s for s in stack.status() if s.name == "signer").state == "healthy"


@pytest.mark.processes
def test_entry_point_serves_the_portal_once_its_ca_is_up(serve, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # compose starts the portal after the CA is healthy; here the CA runs on loopback instead of ca:8002.
    ca_port, ca = serve("ca")
    _healthy(ca_port, ca, tmp_path / "ca.log")
    port, process = serve("portal", overrides={"SIGNLAB_PORTAL_CA_URL": f"http://127.0.0.1:{ca_port}"})
    _healthy(port, process, tmp_path / "portal.log")


def test_docker_control_has_every_method_of_the_scenario_runners_service_control() -> None:
    import inspect

    from signlab.docker_engine import DockerControl
    from signlab.scenarios.environment import ServiceControl

    wanted = {name for name, _ in inspect.getmembers(ServiceControl, inspect.isfunction) if not name.startswith("_")}
    assert wanted and wanted <= set(dir(DockerControl))
    for name in wanted:
        assert list(inspect.signature(getattr(DockerControl, name)).parameters) == \
            list(inspect.signature(getattr(ServiceControl, name)).parameters)
