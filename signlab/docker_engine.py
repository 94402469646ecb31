"""The Docker engine backend: the four services as containers, and the compose file they share.

One deployment description (:func:`deployment`) is derived from the code — the service registry
(:data:`~services.registry.REGISTRY`), the settings classes, :data:`~services.registry.URL_LINKS`
and :data:`~services.registry.LINKED_SECRETS` — and has two renderings that cannot diverge:

* ``compose/compose.yaml`` (:func:`compose_document`, written by ``python -m signlab.docker_engine
  render``; a test fails when the committed file is not what the code produces), for people who
  run ``docker compose``;
* :class:`DockerEngine`, which drives the Docker Engine API through the ``docker`` Python SDK
  (``signlab up --engine docker`` and ``down``/``status``/``logs``) and gives the scenario runner
  its fault-injection primitives (stop, start, pause, unpause, restart a service's container).

URLs inside and outside the containers. Containers reach each other by service name
(``http://ca:8002``) on the ``signlab`` network; browsers on the host reach the ports published on
127.0.0.1. Every URL setting is therefore either *back-channel* (server to server, service name)
or *browser-facing* (127.0.0.1 and the published port):

* back-channel: the IdP's issuer (its ``public_url``; relying parties fetch discovery, JWKS and
  the token endpoint from it and compare the ``iss`` claim with it), the CA's ``public_url``
  (the ``aud`` of the signer's client assertions is built from it and from the signer's
  ``CA_URL``), every ``*_URL`` a service calls, the CA's JWKS URL of the signer;
* browser-facing: the signer's and the portal's ``public_url`` (OAuth2 redirect URIs are built
  from them and compared exactly), the registered redirect URIs, the IdP URL the portal only shows.

Two URLs are browser-facing but have no setting of their own yet; see :data:`BROWSER_URL_SETTINGS`.

The container entry point is this module too (``python -m signlab.docker_engine serve NAME``): it
runs the service's idempotent provisioning hook and then execs gunicorn exactly like the local
runtime (one worker process with threads: one-time HSM keys are per-process session objects).

Limits: one SignLab deployment per Docker engine (fixed network, volume and container names).
"""

from __future__ import annotations

import io
import os
import queue
import re
import sys
import tarfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from services.registry import LINKED_SECRETS, REGISTRY, URL_LINKS, ServiceEntry
from shared.flow import service
from shared.settings import secret_fields
from shared.tracing.settings import TraceSettings
from signlab.errors import EXIT_USAGE, CliError
from signlab.runtime import RuntimeError_, ServiceState, gunicorn_argv, port_free

__all__ = [
    "BACK_CHANNEL_LINKS",
    "BROWSER_FACING_LINKS",
    "BROWSER_FACING_SERVICES",
    "BROWSER_URL_SETTINGS",
    "PLAIN_HTTP_OAUTH_SERVICES",
    "COMPOSE_FILE",
    "ContainerPlan",
    "DockerControl",
    "DockerEngine",
    "compose_document",
    "ecosystem",
    "deployment",
    "interpolate",
    "render_compose",
    "secret_variables",
]

PROJECT = "signlab"
"""Compose project name; also the prefix of the containers, network and volumes the SDK creates."""
NETWORK = "signlab"
"""The one network of the deployment (same name from compose and from the SDK)."""
IMAGE = "signlab:latest"
"""The one image all four services run."""
LABEL = "org.signlab.service"
"""Container label carrying the service name: finds containers made by compose or by the SDK."""
PROJECT_LABEL = "org.signlab.project"
"""Label carrying the deployment's project name (several deployments on one engine, e.g. tests)."""
DATA_ROOT = "/var/lib/signlab"
"""Parent of the volumes' mount points inside the containers (owned by the non-root user)."""
UID = 10001
"""The non-root user the image runs as."""
REPO_ROOT = Path(__file__).resolve().parents[1]
COMPOSE_DIR = REPO_ROOT / "compose"
COMPOSE_FILE = COMPOSE_DIR / "compose.yaml"
DOCKERFILE = "compose/Dockerfile"
BUILD_CONTEXT_PATHS = ("pyproject.toml", "README.md", "shared", "services", "signlab", "compose")
"""What the image build sees (relative to the repository root); everything else stays out."""

BROWSER_FACING_LINKS: frozenset[str] = frozenset({
    "SIGNLAB_IDP_SIGNER_REDIRECT_URIS",     # the IdP sends the browser back to the signer (step 5)
    "SIGNLAB_SIGNER_PORTAL_REDIRECT_URIS",  # the signer sends the browser back to the portal (step 10)
    "SIGNLAB_PORTAL_IDP_URL",               # only shown on the portal's pages
    "SIGNLAB_IDP_WALLET_URL",               # the IdP sends the browser to the wallet (step 4, same device)
})
"""Entries of :data:`URL_LINKS` that a browser follows: filled with 127.0.0.1 and the published port."""

BACK_CHANNEL_LINKS: frozenset[str] = frozenset({
    "SIGNLAB_CA_IDP_URL",          # issuer + discovery/JWKS fetch at step 7
    "SIGNLAB_CA_SIGNER_JWKS_URL",  # client-assertion keys at step 7
    "SIGNLAB_SIGNER_PORTAL_JWKS_URL",  # the portal's client-assertion keys (private_key_jwt, steps 2, 5)
    "SIGNLAB_SIGNER_IDP_URL",      # issuer + discovery, token endpoint, JWKS (steps 3, 5)
    "SIGNLAB_SIGNER_CA_URL",       # issuance, TSA, CRL/OCSP (steps 7, 10)
    "SIGNLAB_PORTAL_SIGNER_URL",   # PAR, token, signDoc (steps 2, 10)
    "SIGNLAB_PORTAL_CA_URL",       # TSA, trust material (step 10)
    "SIGNLAB_IDP_WALLET_TRUSTED_LIST_URL",  # the list of trusted PID providers (step 4)
    "SIGNLAB_WALLET_IDP_URL",      # the population register at provisioning
})
"""Entries of :data:`URL_LINKS` called server to server: filled with ``http://<service>:<port>``.
Every entry of :data:`URL_LINKS` must be in exactly one of the two sets (a test checks it)."""

BROWSER_FACING_SERVICES: frozenset[str] = frozenset({"signer", "portal"})
"""Services whose ``public_url`` is browser-facing. The IdP's is its issuer (back-channel: the
signer and the CA fetch discovery from it and compare ``iss`` with it); the CA's is the base of
the client-assertion audience (back-channel: the signer builds it from ``SIGNLAB_SIGNER_CA_URL``)."""

BROWSER_URL_SETTINGS: dict[str, str] = {
    "SIGNLAB_IDP_BROWSER_URL": "idp",
    "SIGNLAB_PORTAL_SIGNER_BROWSER_URL": "signer",
}
"""Browser-facing base URLs the services do not have yet (requested from their owners): the IdP's
``authorization_endpoint`` in its discovery document is built from the issuer, which browsers
cannot reach; the portal builds the signer's ``authorize_url`` from ``SIGNLAB_PORTAL_SIGNER_URL``
(back-channel). Each is set — to ``http://127.0.0.1:<published port>`` of the named service —
only once its settings class has the field."""

PLAIN_HTTP_OAUTH_SERVICES: frozenset[str] = frozenset({"idp", "signer"})
"""Services whose authlib OAuth code talks plain http to a non-loopback host in compose (the IdP as
issuer ``http://idp:8001``, the signer as its client). authlib allows that only with
``AUTHLIB_INSECURE_TRANSPORT=1``; like the rest of the simulation, the compose network is plain
http (on loopback, the local runtime needs no such switch)."""

TRACES_VOLUME = "traces"
"""The trace store (``shared.tracing``): one volume shared by the four containers, because the
portal's trainer pages draw the spans of all four services."""


@dataclass(frozen=True)
class ContainerPlan:
    """One service's container, values in compose form (``${VAR:-default}`` interpolation).

    :ivar name: the service name (registry, compose service, DNS name on the network).
    :ivar port: the port it listens on inside the container (its default port).
    :ivar host_port_variable: the interpolation variable of the published port on 127.0.0.1.
    :ivar environment: the container's environment.
    :ivar volumes: named volume -> mount point.
    :ivar aliases: extra DNS names on the network (the CA's public certificate host).
    :ivar command: arguments of the image's entry point.
    :ivar depends_on: services that must be healthy before this one starts.
    :ivar sysctls: kernel settings of the container's network namespace.
    """

    name: str
    role: str
    port: int
    host_port_variable: str
    environment: dict[str, str]
    volumes: dict[str, str]
    aliases: tuple[str, ...] = ()
    command: tuple[str, ...] = ()
    depends_on: tuple[str, ...] = ()
    sysctls: dict[str, str] = field(default_factory=dict)

    @property
    def published(self) -> str:
        """The compose port mapping: 127.0.0.1 only."""
        return f"127.0.0.1:${{{self.host_port_variable}:-{self.port}}}:{self.port}"

    def healthcheck_command(self) -> list[str]:
        """``/healthz`` from inside the container with the standard library only (no curl in the image);
        urlopen raises on a 503, so an unhealthy answer exits non-zero."""
        code = ("import sys, urllib.request; "
                f"sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:{self.port}/healthz', timeout=4).status == 200 "
                "else 1)")
        return ["CMD", "python", "-c", code]


HEALTHCHECK = {"interval": "5s", "timeout": "5s", "retries": 6, "start_period": "120s"}
"""Health-check timing (start_period covers first-start provisioning: CA hierarchy, HSM token)."""


def _host_port_variable(name: str) -> str:
    return f"SIGNLAB_DOCKER_{name.upper()}_PORT"


def browser_url(entry: ServiceEntry) -> str:
    """``http://127.0.0.1:${SIGNLAB_DOCKER_<X>_PORT:-<port>}``: how a browser on the host reaches it."""
    port = entry.info.default_port
    return f"http://127.0.0.1:${{{_host_port_variable(entry.info.name)}:-{port}}}"


def back_channel_url(entry: ServiceEntry) -> str:
    """``http://<service>:<port>``: how the other containers reach it."""
    return f"http://{entry.info.name}:{entry.info.default_port}"


def secret_variables() -> dict[str, str]:
    """Each secret setting's env var -> the variable that holds its value in the env file (one per
    :data:`LINKED_SECRETS` group, so linked secrets cannot diverge)."""
    mapping = {}
    for entry in REGISTRY:
        for name in sorted(secret_fields(entry.settings_class)):
            variable = entry.settings_class.env_name(name)
            group = next((g for g in LINKED_SECRETS if variable in g), (variable,))
            mapping[variable] = group[0]
    return mapping


def ca_public_host() -> tuple[str, int]:
    """Host name and port of the CA's public certificate base (AIA, CRL DP, OCSP URLs), read from
    the settings default that the local runtime uses too."""
    entry = next(e for e in REGISTRY if e.info.name == "ca")
    base = str(entry.settings_class.model_fields["public_cert_base"].default)
    parts = urlsplit(base)
    return str(parts.hostname), parts.port or (443 if parts.scheme == "https" else 80)


def deployment() -> list[ContainerPlan]:
    """The four containers, in start order, derived from the registry and the settings classes."""
    browser = {e.info.name: browser_url(e) for e in REGISTRY}
    back = {e.info.name: back_channel_url(e) for e in REGISTRY}
    secrets_of = secret_variables()
    order = [e.info.name for e in REGISTRY]
    plans = []
    for entry in REGISTRY:
        cls, name = entry.settings_class, entry.info.name
        fields = cls.model_fields
        env: dict[str, str] = {
            cls.env_name("host"): "0.0.0.0",  # noqa: S104 - inside the container; published on 127.0.0.1 only
            cls.env_name("port"): str(entry.info.default_port),
            cls.env_name("public_url"): browser[name] if name in BROWSER_FACING_SERVICES else back[name],
            cls.env_name("data_dir"): f"{DATA_ROOT}/{name}",
        }
        volumes = {f"{name}-data": f"{DATA_ROOT}/{name}"}
        if "state_dir" in fields:  # the signer keeps its database and audit log apart from the HSM token
            env[cls.env_name("state_dir")] = f"{DATA_ROOT}/{name}-state"
            volumes[f"{name}-state"] = f"{DATA_ROOT}/{name}-state"
        depends: list[str] = []
        for variable, template in URL_LINKS.items():
            field_name = variable.removeprefix(cls.env_prefix).lower()
            if not (variable.startswith(cls.env_prefix) and field_name in fields):
                continue
            facing = variable in BROWSER_FACING_LINKS
            env[variable] = template.format(**(browser if facing else back))
            if not facing:
                depends += [other for other in order[:order.index(name)]
                            if "{" + other + "}" in template and other not in depends]
        for variable, target in BROWSER_URL_SETTINGS.items():
            if variable.startswith(cls.env_prefix) and variable.removeprefix(cls.env_prefix).lower() in fields:
                env[variable] = browser[target]
        for field_name in sorted(secret_fields(cls)):
            variable = cls.env_name(field_name)
            source = secrets_of[variable]
            env[variable] = f"${{{source}:?is not set: put it in compose/.env (python -m signlab.docker_engine secrets)}}"
        if name in PLAIN_HTTP_OAUTH_SERVICES:
            env["AUTHLIB_INSECURE_TRANSPORT"] = "1"
        env[TraceSettings.env_name("dir")] = f"{DATA_ROOT}/{TRACES_VOLUME}"
        volumes[TRACES_VOLUME] = f"{DATA_ROOT}/{TRACES_VOLUME}"
        # Empty: no OTLP export; with the tracing profile: http://jaeger:4318/v1/traces.
        otlp = TraceSettings.env_name("otlp_endpoint")
        env[otlp] = f"${{{otlp}:-}}"
        command: tuple[str, ...] = ("serve", name)
        aliases: tuple[str, ...] = ()
        sysctls: dict[str, str] = {}
        if name == "ca":
            host, port = ca_public_host()
            aliases = (host,)
            if port != entry.info.default_port:
                # The URLs in certificates (http://ca.signlab.example.com/...) resolve on the network.
                command += ("--also-bind", f"0.0.0.0:{port}")
                if port < 1024:
                    sysctls["net.ipv4.ip_unprivileged_port_start"] = "0"  # non-root user binds port 80
        plans.append(ContainerPlan(name, str(entry.info.role), entry.info.default_port, _host_port_variable(name),
                                   env, volumes, aliases, command, tuple(depends), sysctls))
    return plans


def compose_document() -> dict[str, Any]:
    """The compose file as data (what :func:`render_compose` writes)."""
    services: dict[str, Any] = {}
    for plan in deployment():
        service: dict[str, Any] = {
            "image": f"${{SIGNLAB_IMAGE:-{IMAGE}}}",
            "build": {"context": "..", "dockerfile": DOCKERFILE},
            "command": list(plan.command),
            "environment": dict(plan.environment),
            "ports": [plan.published],
            "volumes": [f"{volume}:{mount}" for volume, mount in plan.volumes.items()],
            "networks": {NETWORK: {"aliases": list(plan.aliases)}} if plan.aliases else [NETWORK],
            "healthcheck": {"test": plan.healthcheck_command(), **HEALTHCHECK},
            "restart": "unless-stopped",
            "labels": {LABEL: plan.name, PROJECT_LABEL: PROJECT},
            "security_opt": ["no-new-privileges:true"],
            "cap_drop": ["ALL"],
        }
        if plan.sysctls:
            service["sysctls"] = dict(plan.sysctls)
        if plan.depends_on:
            service["depends_on"] = {other: {"condition": "service_healthy"} for other in plan.depends_on}
        services[plan.name] = service
    services["jaeger"] = {
        "image": "jaegertracing/all-in-one:1.62.0",
        "profiles": ["tracing"],
        "environment": {"COLLECTOR_OTLP_ENABLED": "true"},
        "ports": ["127.0.0.1:${SIGNLAB_DOCKER_JAEGER_PORT:-16686}:16686"],
        "networks": [NETWORK],
        "restart": "unless-stopped",
    }
    volumes = {volume: {} for plan in deployment() for volume in plan.volumes}
    return {"name": PROJECT, "services": services, "networks": {NETWORK: {"name": NETWORK}}, "volumes": volumes}


HEADER = """\
# SignLab on docker compose: IPSP (idp), TSP (ca), SSASP (signer), SCASP (portal), the signer's EUDI Wallet (wallet).
# GENERATED from the code by `python -m signlab.docker_engine render` - do not edit by hand;
# tests/compose checks that this file is what the code produces.
# Secrets come from compose/.env (create it: python -m signlab.docker_engine secrets > compose/.env).
# Run: docker compose -f compose/compose.yaml up -d --build    (OTLP export to Jaeger: add --profile tracing
#      and SIGNLAB_TRACE_OTLP_ENDPOINT=http://jaeger:4318/v1/traces; Jaeger UI at http://127.0.0.1:16686)
"""


def render_compose() -> str:
    """The text of ``compose/compose.yaml``."""
    import yaml

    return HEADER + yaml.safe_dump(compose_document(), sort_keys=False, width=200, default_flow_style=False)


_VARIABLE = re.compile(r"\$(?:(\$)|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:-|:\?|-|\?)(?P<arg>[^}]*))?\})")


class InterpolationError(CliError, ValueError):
    """A required variable (``${NAME:?message}``) is missing."""

    exit_code = EXIT_USAGE


def interpolate(value: str, variables: Mapping[str, str]) -> str:
    """Resolve compose interpolation in ``value``: ``${NAME}``, ``${NAME:-default}``,
    ``${NAME-default}``, ``${NAME:?message}``, ``${NAME?message}`` and ``$$``.

    :raises InterpolationError: a required variable is unset (or empty, for ``:?``).
    """
    def replace(match: re.Match[str]) -> str:
        if match.group(1):
            return "$"
        name, op, arg = match.group("name"), match.group("op"), match.group("arg") or ""
        current = variables.get(name)
        empty = current is None or (current == "" and op is not None and op.startswith(":"))
        if op in (":-", "-"):
            return arg if empty else str(current)
        if op in (":?", "?"):
            if empty:
                raise InterpolationError(f"{name} {arg}".strip())
            return str(current)
        return "" if current is None else current
    return _VARIABLE.sub(replace, value)


def secrets_env(values: Mapping[str, str]) -> str:
    """The env-file text with one line per secret variable of the compose file."""
    lines = ["# SignLab secrets for docker compose (PINs, client secrets, admin tokens). Keep private; never commit."]
    for variable in sorted(set(secret_variables().values())):
        lines.append(f"{variable}={values[variable]}")
    return "\n".join(lines) + "\n"


# -- the engine --------------------------------------------------------------------------------


class DockerEngine:
    """``signlab up/down/status/logs --engine docker`` and fault injection, through the Docker SDK.

    :param data_dir: where the generated secrets live (``secrets.env``, shared with the local runtime).
    :param ports: published host ports by service name (default: the services' default ports).
    :param environ: the variables compose would interpolate from (default: this process's).
    :param client: a ``docker.DockerClient`` (default: ``docker.from_env()``, created on first use).
    :param project: names the network, the volumes (``<project>_<volume>``) and the containers
        (``<project>-<service>``); the default is the compose file's, so both share the data.
    """

    def __init__(self, data_dir: Path, ports: Mapping[str, int] | None = None,
                 environ: Mapping[str, str] | None = None, client: Any = None, project: str = PROJECT) -> None:
        self.project = project
        self.data_dir = data_dir.resolve()
        self.environ = dict(os.environ if environ is None else environ)
        self.ports = {e.info.name: e.info.default_port for e in REGISTRY}
        for name, port in (ports or {}).items():
            self.ports[name] = port
        self._client = client

    # -- connection -----------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        """The Docker client; a missing or unreachable engine is a clear error."""
        if self._client is None:
            import docker

            problem = engine_problem()
            if problem is not None:
                raise RuntimeError_(f"no Docker engine reachable ({problem}); start Docker or use --engine local")
            client = docker.from_env(timeout=30)
            self._client = client
        return self._client

    def url(self, name: str) -> str:
        """The URL a browser on this host uses for service ``name``."""
        return f"http://127.0.0.1:{self.ports[name]}"

    def variables(self) -> dict[str, str]:
        """The interpolation variables: the environment, the generated secrets and the host ports."""
        from signlab.runtime import LocalRuntime

        values = dict(self.environ)
        for key, value in LocalRuntime(self.data_dir, environ=self.environ).load_or_create_secrets().items():
            values.setdefault(key, value)
        for name, port in self.ports.items():
            values[_host_port_variable(name)] = str(port)
        return values

    def container_environment(self, plan: ContainerPlan, variables: Mapping[str, str]) -> dict[str, str]:
        """The resolved environment of one container (what compose would pass)."""
        return {key: interpolate(value, variables) for key, value in plan.environment.items()}

    # -- containers -----------------------------------------------------------------------------

    def container(self, name: str) -> Any | None:
        """The container of service ``name`` (made by this engine or by docker compose), or None."""
        found = self.client.containers.list(
            all=True, filters={"label": [f"{LABEL}={name}", f"{PROJECT_LABEL}={self.project}"]})
        return found[0] if found else None

    def build_image(self, progress: Callable[[str], None] = print) -> None:
        """Build :data:`IMAGE` from ``compose/Dockerfile`` with a context of only the project sources."""
        progress(f"  building {IMAGE} from {REPO_ROOT / DOCKERFILE} ...")
        context = build_context(REPO_ROOT)
        try:
            self.client.images.build(fileobj=context, custom_context=True, dockerfile=DOCKERFILE, tag=IMAGE,
                                     rm=True, pull=False)
        except Exception as exc:  # docker.errors.BuildError / APIError: keep the engine's reason
            raise RuntimeError_(f"building the image failed: {exc}") from None

    def up(self, *, timeout: float = 300.0, build: bool = True,
           progress: Callable[[str], None] = print) -> list[ServiceState]:
        """Create network and volumes, then each container in dependency order, each healthy before
        the next starts; all or nothing.

        :raises RuntimeError_: no engine, already running, a host port taken, the image build
            failed, a container that exits or stays unhealthy (its last log lines are shown).
        """
        running = [e.info.name for e in REGISTRY if (c := self.container(e.info.name)) is not None
                   and c.status in ("running", "paused", "restarting")]
        if running:
            raise RuntimeError_(f"SignLab containers are already running: {', '.join(running)}. "
                                "Use 'signlab status --engine docker' or 'signlab down --engine docker'.")
        for name, port in self.ports.items():
            if not port_free(port):
                raise RuntimeError_(f"port {port} for {name} is already in use on 127.0.0.1; stop what uses it or "
                                    f"choose another port with --port {name}=PORT", exit_code=2)
        variables = self.variables()
        plans = deployment()
        if build:
            self.build_image(progress)
        network = self._network()
        for plan in plans:
            for volume in plan.volumes:
                self._volume(volume)
        started: list[str] = []
        try:
            for plan in plans:
                stale = self.container(plan.name)
                if stale is not None:
                    stale.remove(force=True)
                container = self.client.containers.create(
                    **self.create_arguments(plan, variables, network.name, self.client.api._version))
                container.start()
                started.append(plan.name)
                progress(f"  started {self.project}-{plan.name}; waiting for /healthz ...")
                self.wait_healthy([plan.name], timeout)
        except BaseException:
            for name in reversed(started):
                found = self.container(name)
                if found is not None:
                    found.remove(force=True)
            raise
        return self.status()

    def create_arguments(self, plan: ContainerPlan, variables: Mapping[str, str], network: str,
                         api_version: str) -> dict[str, Any]:
        """The ``containers.create`` arguments of one service (the compose file's settings)."""
        import docker.types

        endpoint = docker.types.EndpointConfig(api_version, aliases=[plan.name, *plan.aliases])
        return {
            "image": IMAGE, "command": list(plan.command), "name": f"{self.project}-{plan.name}",
            "environment": self.container_environment(plan, variables),
            "ports": {f"{plan.port}/tcp": ("127.0.0.1", self.ports[plan.name])},
            "volumes": {f"{self.project}_{volume}": {"bind": mount, "mode": "rw"} for volume, mount in plan.volumes.items()},
            "network": network, "networking_config": {network: endpoint},
            "healthcheck": _sdk_healthcheck(plan), "restart_policy": {"Name": "unless-stopped"},
            "labels": {LABEL: plan.name, PROJECT_LABEL: self.project},
            "security_opt": ["no-new-privileges:true"], "cap_drop": ["ALL"],
            "sysctls": dict(plan.sysctls) or None,
        }

    def _network(self) -> Any:
        found = [n for n in self.client.networks.list(names=[self.project]) if n.name == self.project]
        if found:
            return found[0]
        return self.client.networks.create(self.project, driver="bridge", labels={PROJECT_LABEL: self.project})

    def _volume(self, volume: str) -> Any:
        from docker.errors import NotFound

        name = f"{self.project}_{volume}"
        try:
            return self.client.volumes.get(name)
        except NotFound:
            return self.client.volumes.create(name, labels={PROJECT_LABEL: self.project})

    def wait_healthy(self, names: list[str], timeout: float) -> None:
        """Wait until the containers of ``names`` report healthy.

        :raises RuntimeError_: a container is gone, exited, or not healthy within ``timeout``.
        """
        deadline = time.monotonic() + timeout
        pending = list(names)
        while pending:
            for name in list(pending):
                container = self.container(name)
                if container is None:
                    raise RuntimeError_(f"{name}: no container")
                container.reload()
                if container.status in ("exited", "dead"):
                    raise RuntimeError_(f"{name} ({service(name).role}) exited during start-up. Last lines:\n"
                                        f"{self.tail(name, 20)}")
                if _health_of(container) == "healthy":
                    pending.remove(name)
            if pending and time.monotonic() > deadline:
                raise RuntimeError_(f"not healthy after {timeout:g} s: {', '.join(pending)}. "
                                    f"Last lines of {pending[0]}:\n{self.tail(pending[0], 20)}")
            if pending:
                time.sleep(1.0)

    def down(self, *, remove_volumes: bool = False) -> list[str]:
        """Stop and remove the containers (reverse start order) and the network; the volumes persist
        unless ``remove_volumes`` (then the deployment's data is gone)."""
        done = []
        for entry in reversed(REGISTRY):
            container = self.container(entry.info.name)
            if container is None:
                continue
            container.remove(force=True)
            done.append(f"{entry.info.name}: container {container.name} removed")
        for network in self.client.networks.list(names=[self.project]):
            network.reload()
            if network.name == self.project and not network.attrs.get("Containers"):
                network.remove()
        if remove_volumes:
            for volume in self.client.volumes.list(filters={"label": f"{PROJECT_LABEL}={self.project}"}):
                volume.remove(force=True)
                done.append(f"volume {volume.name} removed")
        return done

    def status(self) -> list[ServiceState]:
        """Each service's container state and health."""
        result = []
        for entry in REGISTRY:
            name = entry.info.name
            container = self.container(name)
            port = self.ports[name]
            if container is None:
                result.append(ServiceState(name, str(entry.info.role), self.url(name), port, None, "stopped", "no container"))
                continue
            container.reload()
            bindings = (container.attrs.get("NetworkSettings", {}).get("Ports") or {}).get(f"{entry.info.default_port}/tcp")
            if bindings:
                port = int(bindings[0]["HostPort"])
            pid = container.attrs.get("State", {}).get("Pid") or None
            if container.status == "running":
                health = _health_of(container)
                state = {"healthy": "healthy", "unhealthy": "failing", "starting": "starting"}.get(health, health)
            elif container.status == "paused":
                state = "paused"
            else:
                state = "stopped"
            result.append(ServiceState(name, str(entry.info.role), f"http://127.0.0.1:{port}", port, pid, state,
                                       f"container {container.name} ({container.status})"))
        return result

    def tail(self, name: str, lines: int) -> str:
        """The last ``lines`` lines of a container's output."""
        container = self.container(name)
        if container is None:
            return "(no container)"
        return container.logs(tail=lines).decode(errors="replace").rstrip("\n")

    def follow(self, names: list[str], lines: int) -> Iterator[str]:
        """Yield the last ``lines`` lines of each container, then new lines as they come (forever)."""
        lines_queue: queue.Queue[str] = queue.Queue()

        def pump(name: str, container: Any) -> None:
            buffer = b""
            for chunk in container.logs(stream=True, follow=True, tail=lines):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    lines_queue.put(f"{name:>6} | {line.decode(errors='replace')}")

        for name in names:
            container = self.container(name)
            if container is not None:
                threading.Thread(target=pump, args=(name, container), daemon=True).start()
        while True:
            yield lines_queue.get()

    # -- fault injection (scenarios) ------------------------------------------------------------

    def _require(self, name: str) -> Any:
        container = self.container(name)
        if container is None:
            raise RuntimeError_(f"{name}: no container; is SignLab up with --engine docker?")
        return container

    def stop_service(self, name: str, timeout: int = 10) -> None:
        """Stop the service's container (SIGTERM, SIGKILL after ``timeout``): an outage until started."""
        self._require(name).stop(timeout=timeout)

    def start_service(self, name: str, *, wait: float | None = 120.0) -> None:
        """Start a stopped container again; wait for health unless ``wait`` is None."""
        self._require(name).start()
        if wait is not None:
            self.wait_healthy([name], wait)

    def pause_service(self, name: str) -> None:
        """Freeze the container (cgroup freezer): connections hang instead of being refused."""
        self._require(name).pause()

    def unpause_service(self, name: str) -> None:
        """Thaw a paused container."""
        self._require(name).unpause()

    def restart_service(self, name: str, *, wait: float | None = 120.0) -> None:
        """Restart the container (in-memory state such as one-time HSM keys is lost); wait for health."""
        self._require(name).restart(timeout=10)
        if wait is not None:
            self.wait_healthy([name], wait)

    @contextmanager
    def outage(self, name: str, kind: str = "stop") -> Iterator[None]:
        """Make service ``name`` unavailable for the ``with`` block, then bring it back healthy.

        :param kind: ``stop`` (connection refused / name gone) or ``pause`` (requests time out).
        """
        if kind not in ("stop", "pause"):
            raise ValueError(f"kind must be 'stop' or 'pause', not {kind!r}")
        (self.stop_service if kind == "stop" else self.pause_service)(name)
        try:
            yield
        finally:
            if kind == "stop":
                self.start_service(name)
            else:
                self.unpause_service(name)


class DockerControl:
    """The scenario runner's ``ServiceControl`` (``signlab.scenarios.environment``) on containers:
    outages by stopping or pausing a service's container."""

    def __init__(self, engine: DockerEngine) -> None:
        self.engine = engine

    def stop(self, name: str) -> str:
        """Stop the container of ``name``."""
        self.engine.stop_service(name)
        return f"stopped container {self.engine.project}-{name}"

    def start(self, name: str) -> str:
        """Start it again and wait until healthy."""
        self.engine.start_service(name)
        return f"started container {self.engine.project}-{name} (healthy)"

    def pause(self, name: str) -> str:
        """Freeze it (docker pause): it keeps its address but answers nothing."""
        self.engine.pause_service(name)
        return f"paused container {self.engine.project}-{name}"

    def resume(self, name: str) -> str:
        """Unfreeze it."""
        self.engine.unpause_service(name)
        return f"unpaused container {self.engine.project}-{name}"


def ecosystem(engine: DockerEngine) -> Any:
    """The scenario runner's ``Ecosystem`` for a running Docker deployment: browser URLs on
    127.0.0.1, the generated secrets, and :class:`DockerControl`. The services' data lives in
    volumes, so no settings objects are given (white-box invariants report "not checkable")."""
    from signlab.runtime import LocalRuntime
    from signlab.scenarios.environment import Ecosystem

    urls = {state.name: state.url for state in engine.status()}
    secrets = LocalRuntime(engine.data_dir, environ=engine.environ).load_or_create_secrets()
    return Ecosystem(urls=urls, secrets=secrets, settings={}, log_files={}, control=DockerControl(engine),
                     engine="docker")


def engine_problem(timeout: float = 5.0) -> str | None:
    """Why no Docker engine answers (None when one does): a ping with a fixed API version.

    ``docker.from_env()`` negotiates the API version in its constructor and, when the engine is
    missing, raises there and leaks its socket; a fixed version defers the connection to the ping
    (``/_ping`` is unversioned), so the client can always be closed.
    """
    import gc
    import warnings

    import docker
    from docker.errors import DockerException

    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if host.startswith("unix://") and not Path(host.removeprefix("unix://")).exists():
        return f"no engine socket at {host.removeprefix('unix://')} (DOCKER_HOST)"
    try:
        client = docker.from_env(version="1.41", timeout=int(timeout))
    except DockerException as exc:  # e.g. a malformed DOCKER_HOST
        return f"{exc.__class__.__name__}: {exc}"
    try:
        client.ping()
    except DockerException as exc:
        return f"{exc.__class__.__name__}: {str(exc)[:200]}"
    except Exception as exc:  # requests' ConnectionError for a missing socket
        return f"{exc.__class__.__name__}: {str(exc)[:200]}"
    finally:
        client.close()
        # docker-py leaves the socket of a failed connection open; collect it here, quietly.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
    return None


def _sdk_healthcheck(plan: ContainerPlan) -> dict[str, Any]:
    def nanos(text: Any) -> int:
        return int(float(str(text).removesuffix("s")) * 1_000_000_000)

    return {"test": plan.healthcheck_command(), "interval": nanos(HEALTHCHECK["interval"]),
            "timeout": nanos(HEALTHCHECK["timeout"]), "retries": int(HEALTHCHECK["retries"]),
            "start_period": nanos(HEALTHCHECK["start_period"])}


def _health_of(container: Any) -> str:
    health = container.attrs.get("State", {}).get("Health")
    return str(health.get("Status")) if health else "no healthcheck"


def build_context(root: Path) -> io.BytesIO:
    """A tar of :data:`BUILD_CONTEXT_PATHS` under ``root`` (no virtualenv, data, caches or VCS)."""
    buffer = io.BytesIO()

    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        parts = Path(info.name).parts
        if "__pycache__" in parts or info.name.endswith((".pyc", ".env")) or any(p.startswith(".") for p in parts):
            return None
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        return info

    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in BUILD_CONTEXT_PATHS:
            tar.add(root / path, arcname=path, filter=keep)
    buffer.seek(0)
    return buffer


# -- container entry point ---------------------------------------------------------------------


def serve(name: str, also_bind: list[str]) -> int:
    """Provision service ``name`` (idempotent) from its environment and exec gunicorn."""
    from services.registry import entry as registry_entry
    from shared.errors import ConfigurationError

    item = registry_entry(name)
    try:
        settings = item.settings_class.from_env()
        for line in item.provision(settings):
            print(f"provision {name}: {line}", flush=True)
    except (ConfigurationError, OSError) as exc:
        print(f"{name} ({item.info.role}) cannot start: {exc}", file=sys.stderr, flush=True)
        return 78  # EX_CONFIG: the restart policy retries; the log says why
    argv = gunicorn_argv(item, [f"{settings.host}:{settings.port}", *also_bind])
    os.execv(argv[0], argv)
    return 0  # pragma: no cover - execv does not return


def main(argv: list[str] | None = None) -> int:
    """``python -m signlab.docker_engine serve NAME | render [PATH] | secrets``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m signlab.docker_engine",
                                     description="SignLab container entry point and compose generator.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("serve", help="(in the container) provision the service, then run it under gunicorn")
    run.add_argument("service", choices=[e.info.name for e in REGISTRY])
    run.add_argument("--also-bind", action="append", default=[], metavar="HOST:PORT",
                     help="listen on this address too (the CA on its public certificate host port)")
    render = commands.add_parser("render", help="write the compose file generated from the code")
    render.add_argument("path", nargs="?", type=Path, default=COMPOSE_FILE)
    commands.add_parser("secrets", help="print a compose env file with freshly generated secrets")
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve(args.service, args.also_bind)
    if args.command == "render":
        args.path.write_text(render_compose())
        print(f"wrote {args.path}")
        return 0
    import secrets as random_secrets

    values = {variable: random_secrets.token_urlsafe(24) for variable in set(secret_variables().values())}
    sys.stdout.write(secrets_env(values))
    return 0


if __name__ == "__main__":
    sys.exit(main())
