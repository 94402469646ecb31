"""The Docker engine backend without an engine: interpolation, the env file, the SDK's request bodies,
and the container entry point.

The entry point (``python -m signlab.docker_engine serve``) runs here as a plain process with the
exact environment the compose file gives the container (only host, port and data directory moved
to loopback and a temp dir), so provisioning and start-up in the image are exercised for real. The
deployment on a real engine is ``tests/compose/test_real_engine.py``.
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
    deployment,
    interpolate,
    secret_variables,
)
from signlab.runtime import RuntimeError_

SIGNLAB = str(Path(sys.executable).with_name("signlab"))


# -- interpolation (the compose rules the SDK path applies itself) ---------------------------------


def test_interpolation_follows_compose_rules() -> None:
    assert interpolate("http://127.0.0.1:${P:-8000}/x", {}) == "http://127.0.0.1:8000/x"
    assert interpolate("http://127.0.0.1:${P:-8000}/x", {"P": "9000"}) == "http://127.0.0.1:9000/x"
    assert interpolate("${P:-d}", {"P": ""}) == "d" and interpolate("${P-d}", {"P": ""}) == ""
    assert interpolate("$${P} ${Q}", {"Q": "q"}) == "${P} q"
    with pytest.raises(InterpolationError, match="S is not set"):
        interpolate("${S:?is not set}", {"S": ""})
    assert interpolate("${S?is not set}", {"S": ""}) == ""


def test_one_env_file_holds_the_project_secrets_and_ports(tmp_path: Path) -> None:
    env_file = tmp_path / "compose.env"
    engine = DockerEngine(env_file, ports={"portal": 9100}, environ={})
    values = engine.variables()
    assert env_file.stat().st_mode & 0o777 == 0o600
    for variable in set(secret_variables().values()):
        assert values[variable]
    stored = env_file.read_text()
    assert "COMPOSE_PROJECT_NAME=signlab\n" in stored and "SIGNLAB_DOCKER_PORTAL_PORT=9100\n" in stored
    # A later command (status, down, scenario run) and plain compose read the same values back.
    again = DockerEngine(env_file, environ={})
    assert again.ports["portal"] == 9100 and again.project == "signlab"
    assert all(again.variables()[v] == values[v] for v in secret_variables().values())  # generated once, kept
    portal = next(p for p in deployment() if p.name == "portal")
    env = engine.container_environment(portal, values)
    assert env["SIGNLAB_PORTAL_PUBLIC_URL"] == "http://127.0.0.1:9100" == engine.url("portal")
    signer = next(p for p in deployment() if p.name == "signer")
    assert '"http://127.0.0.1:9100/sign/callback"' in engine.container_environment(signer, values)[
        "SIGNLAB_SIGNER_PORTAL_REDIRECT_URIS"]
    # The environment wins over the file, as in compose (an operator pins a value or a project).
    pinned = DockerEngine(env_file, environ={"COMPOSE_PROJECT_NAME": "other", "SIGNLAB_SIGNER_HSM_USER_PIN": "x"})
    assert pinned.project == "other" and pinned.secrets()["SIGNLAB_SIGNER_HSM_USER_PIN"] == "x"
    linked = engine.secrets()
    assert linked["SIGNLAB_SIGNER_IDP_CLIENT_SECRET"] == linked["SIGNLAB_IDP_SIGNER_CLIENT_SECRET"]


def test_the_sdk_request_bodies_carry_the_compose_settings(tmp_path: Path) -> None:
    """The exact JSON the SDK would POST to /containers/create, built by the SDK's own code (an API
    client with a fixed version does not connect until a request is made)."""
    import docker
    from docker.models.containers import _create_container_args

    engine = DockerEngine(tmp_path / "compose.env", ports={"ca": 9102}, environ={"COMPOSE_PROJECT_NAME": "signlab-x"})
    variables = engine.variables()
    api = docker.APIClient(base_url="unix:///nonexistent/docker.sock", version="1.41")
    try:
        for plan in deployment():
            arguments = engine.create_arguments(plan, variables, engine.network_name, "1.41")
            create = _create_container_args({**arguments, "version": "1.41"})
            assert create.pop("name") == f"signlab-x-{plan.name}-1"  # a query parameter, not in the body
            body = api.create_container_config(**create)
            host = body["HostConfig"]
            assert host["PortBindings"] == {f"{plan.port}/tcp": [{"HostIp": "127.0.0.1",
                                                                  "HostPort": str(engine.ports[plan.name])}]}
            assert host["RestartPolicy"] == {"Name": "unless-stopped"} and host["CapDrop"] == ["ALL"]
            # Compose's names and labels: docker compose (v1 and v2) finds these containers as its own.
            assert sorted(host["Binds"]) == sorted(f"signlab-x_{v}:{m}:rw" for v, m in plan.volumes.items())
            assert host["NetworkMode"] == "signlab-x_signlab"
            assert body["Labels"] == {"com.docker.compose.project": "signlab-x", "com.docker.compose.service": plan.name,
                                      "com.docker.compose.oneoff": "False", "com.docker.compose.container-number": "1"}
            aliases = body["NetworkingConfig"]["EndpointsConfig"]["signlab-x_signlab"]["Aliases"]
            assert plan.name in aliases and set(plan.aliases) <= set(aliases)
            assert body["Healthcheck"]["Test"] == plan.healthcheck_command()
            assert body["Image"] == "signlab:latest"
            env = dict(item.split("=", 1) for item in body["Env"])
            assert env == engine.container_environment(plan, variables)
            if plan.name == "ca":
                assert host["Sysctls"] == {"net.ipv4.ip_unprivileged_port_start": "0"}
                assert "ca.signlab.example.com" in aliases
                assert body["Cmd"] == ["serve", "ca", "--also-bind", "0.0.0.0:9102"]  # the published port, resolved
                assert env["SIGNLAB_CA_PUBLIC_CERT_BASE"] == "http://ca.signlab.example.com:9102"
            else:
                assert body["Cmd"] == list(plan.command)
    finally:
        api.close()


def test_without_an_engine_the_cli_says_so(tmp_path: Path) -> None:
    nowhere = {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    with pytest.raises(RuntimeError_, match="no Docker engine reachable"):
        DockerEngine(tmp_path / "compose.env", environ=nowhere).status()
    result = subprocess.run([SIGNLAB, "--data-dir", str(tmp_path), "status", "--engine", "docker",
                             "--env-file", str(tmp_path / "compose.env")],
                            capture_output=True, text=True, timeout=60, env={**os.environ, **nowhere})
    assert result.returncode == 1
    assert "no Docker engine reachable" in result.stderr and "--engine local" in result.stderr


# -- the container entry point, run as a local process ---------------------------------------------


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[object]:
    started: list[subprocess.Popen[bytes]] = []
    engine = DockerEngine(tmp_path / "compose.env", environ={})
    variables = engine.variables()

    def run(name: str, *extra: str, overrides: dict[str, str] | None = None) -> tuple[int, subprocess.Popen[bytes]]:
        plan = next(p for p in deployment() if p.name == name)
        entry = next(e for e in REGISTRY if e.info.name == name)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SIGNLAB_", "OTEL_"))}
        env.update(engine.container_environment(plan, variables))
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
    port, process = serve("ca", "--also-bind", f"127.0.0.1:{extra}", "--also-bind", f"127.0.0.1:{extra}")
    _healthy(port, process, tmp_path / "ca.log")
    # The second address is what http://ca.signlab.example.com:<published port> reaches in the network
    # (given twice, bound once).
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
