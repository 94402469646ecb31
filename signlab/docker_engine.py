"""The Docker engine backend: the services as containers, and the compose file they share.

One deployment description (:func:`deployment`) is derived from the code — the service registry
(:data:`~services.registry.REGISTRY`), the settings classes, :data:`~services.registry.URL_LINKS`,
:data:`~services.registry.LINKED_SECRETS` and :data:`~services.registry.LAB_HOSTS` — and has two
renderings that cannot diverge:

* ``compose/compose.yaml`` (:func:`compose_document`, written by ``python -m signlab.docker_engine
  render``; a test fails when the committed file is not what the code produces), for people who
  run ``docker compose`` (v2) or Debian's ``docker-compose`` (v1.29: hence no top-level ``name:``);
* :class:`DockerEngine`, which drives the Docker Engine API through the ``docker`` Python SDK
  (``signlab up --engine docker`` and ``down``/``status``/``logs``/``audit verify``) and gives the
  scenario runner its fault-injection primitives (stop, start, pause, unpause, restart a container).

Both read one **env file** per deployment (default ``compose/.env``, which compose reads by
itself): ``COMPOSE_PROJECT_NAME`` (names the volumes ``<project>_<volume>`` and the network), the
generated secrets (PINs, client secrets, admin tokens; :func:`signlab.runtime.load_or_create_secrets`)
and the published ports. Switching between the SDK path and plain compose therefore keeps the
volumes and the HSM PINs that go with them. The SDK labels its containers, network and volumes the
way compose does (``com.docker.compose.project`` / ``.service`` / ``.network`` / ``.volume``), so
each tool finds — and ``down`` stops — what the other started.

URLs inside and outside the containers. Containers reach each other by service name
(``http://ca:8002``) on the deployment's network; browsers and validators on the host reach the
ports published on 127.0.0.1. Every URL setting in :data:`URL_LINKS` is one of three kinds:

* back-channel (:data:`BACK_CHANNEL_LINKS`, ``http://<service>:<port>``), server to server: the
  IdP's issuer (its ``public_url``: relying parties fetch discovery, JWKS and the token endpoint
  from it and compare ``iss`` with it), the CA's ``public_url`` (the ``aud`` of the signer's client
  assertions), every ``*_URL`` a service calls, the CA's JWKS URL of the signer;
* browser-facing (:data:`BROWSER_FACING_LINKS`, ``http://127.0.0.1:<published port>``): the
  signer's and the portal's ``public_url`` (OAuth2 redirect URIs are built from them and compared
  exactly), the registered redirect URIs, the IdP URL the portal shows, and
  :data:`BROWSER_URL_SETTINGS` (the IdP's login endpoints in its discovery document, the signer's
  authorize endpoint the portal sends browsers to);
* lab host (:data:`LAB_HOST_LINKS`, ``http://ca.signlab.example.com:<published port>``): the base of
  every URL in certificates, CRLs and the trusted list. A validator on the host resolves the name
  to 127.0.0.1 (``signlab hosts``) and reaches the published port; inside the network the name is
  an alias of the CA container, which also listens on the published port number.

The container entry point is this module too (``python -m signlab.docker_engine serve NAME``): it
runs the service's idempotent provisioning hook and then execs gunicorn exactly like the local
runtime (one worker process with threads: one-time HSM keys are per-process session objects).

Limits: one deployment per project name and engine; the published ports are the host's, so two
deployments on one engine need different ports (the env file holds them).
"""

from __future__ import annotations

import io
import json
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

from services.registry import LAB_HOSTS, LINKED_SECRETS, REGISTRY, URL_LINKS, ServiceEntry, lab_url
from shared.flow import service
from shared.settings import secret_fields
from shared.tracing.settings import TraceSettings
from signlab.errors import EXIT_USAGE, CliError
from signlab.runtime import (
    FAULT_INJECTION_SETTINGS,
    RuntimeError_,
    ServiceState,
    gunicorn_argv,
    load_or_create_secrets,
    port_free,
    read_env_file,
    write_env_file,
)

__all__ = [
    "BACK_CHANNEL_LINKS",
    "BROWSER_FACING_LINKS",
    "BROWSER_FACING_SERVICES",
    "BROWSER_URL_SETTINGS",
    "COMPOSE_FILE",
    "ENV_FILE",
    "LAB_HOST_LINKS",
    "PLAIN_HTTP_OAUTH_SERVICES",
    "ContainerPlan",
    "DockerControl",
    "DockerEngine",
    "compose_document",
    "deployment",
    "ecosystem",
    "engine_problem",
    "interpolate",
    "render_compose",
    "secret_variables",
]

PROJECT = "signlab"
"""Default compose project name (``COMPOSE_PROJECT_NAME`` in the env file)."""
NETWORK = "signlab"
"""The deployment's one network, as the compose file names it (the engine's name is ``<project>_signlab``)."""
IMAGE = "signlab:latest"
"""The one image all the services run."""
LABEL = "com.docker.compose.service"
"""Container label carrying the service name (set by compose, and by the SDK path alike)."""
PROJECT_LABEL = "com.docker.compose.project"
"""Label carrying the compose project: several deployments on one engine (e.g. tests) stay apart."""
DATA_ROOT = "/var/lib/signlab"
"""Parent of the volumes' mount points inside the containers (owned by the non-root user)."""
UID = 10001
"""The non-root user the image runs as."""
STOP_GRACE_SECONDS = 30
"""How long a container gets after SIGTERM before the engine kills it (gunicorn finishes requests
in flight within its own 5 s graceful timeout; the SQLite databases and audit logs close cleanly)."""
REPO_ROOT = Path(__file__).resolve().parents[1]
COMPOSE_DIR = REPO_ROOT / "compose"
COMPOSE_FILE = COMPOSE_DIR / "compose.yaml"
ENV_FILE = COMPOSE_DIR / ".env"
"""The default deployment's env file: compose reads it by itself (it sits next to the compose file)."""
DOCKERFILE = "compose/Dockerfile"
BUILD_CONTEXT_PATHS = ("pyproject.toml", "README.md", "shared", "services", "signlab", "testkit", "compose")
"""What the image build sees (relative to the repository root); the root ``.dockerignore`` says the same."""
ENV_FILE_HEADER = ("SignLab on Docker: the project name, published ports and secrets of one deployment "
                   "(read by docker compose and by signlab --engine docker). Keep private; never commit.")

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
"""Entries of :data:`URL_LINKS` called server to server: filled with ``http://<service>:<port>``."""

LAB_HOST_LINKS: frozenset[str] = frozenset({
    "SIGNLAB_CA_PUBLIC_CERT_BASE",  # AIA, OCSP, CRL DP, trusted-list pointers: fetched by outside validators
})
"""Entries of :data:`URL_LINKS` written into signed documents: ``http://<lab host>:<published port>``.
Every entry of :data:`URL_LINKS` is in exactly one of the three sets (a test checks it)."""

BROWSER_FACING_SERVICES: frozenset[str] = frozenset({"signer", "portal"})
"""Services whose ``public_url`` is browser-facing. The IdP's is its issuer (back-channel: the
signer and the CA fetch discovery from it and compare ``iss`` with it); the CA's is the base of
the client-assertion audience (back-channel: the signer builds it from ``SIGNLAB_SIGNER_CA_URL``)."""

BROWSER_URL_SETTINGS: dict[str, str] = {
    "SIGNLAB_IDP_BROWSER_URL": "idp",
    "SIGNLAB_PORTAL_SIGNER_BROWSER_URL": "signer",
}
"""Browser-facing base URLs of services whose ``public_url`` or client URL is back-channel, each set
to ``http://127.0.0.1:<published port>`` of the named service: the IdP's discovery document names
its issuer ``http://idp:8001`` for the token endpoint and JWKS but its ``BROWSER_URL`` for the
authorization and logout endpoints and the test-person page; the portal calls the signer at
``http://signer:8003`` and sends browsers to its ``SIGNER_BROWSER_URL``."""

PLAIN_HTTP_OAUTH_SERVICES: frozenset[str] = frozenset({"idp", "signer"})
"""Services whose authlib OAuth code talks plain http to a non-loopback host in compose (the IdP as
issuer ``http://idp:8001``, the signer as its client). authlib allows that only with
``AUTHLIB_INSECURE_TRANSPORT=1``; like the rest of the simulation, the compose network is plain
http (on loopback, the local runtime needs no such switch)."""

FAULT_INJECTION_VARIABLE = "SIGNLAB_FAULT_INJECTION"
"""``true`` turns on the guarded fault-injection admin APIs in the containers (lab only):
``signlab up --engine docker --fault-injection`` sets it, plain compose reads it from the shell or
the env file; default off."""

TRACES_VOLUME = "traces"
"""The trace store (``shared.tracing``): one volume shared by all the containers, because the
portal's trainer pages draw the spans of every service."""


@dataclass(frozen=True)
class ContainerPlan:
    """One service's container, values in compose form (``${VAR:-default}`` interpolation).

    :ivar name: the service name (registry, compose service, DNS name on the network).
    :ivar port: the port it listens on inside the container (its default port).
    :ivar host_port_variable: the interpolation variable of the published port on 127.0.0.1.
    :ivar environment: the container's environment.
    :ivar volumes: named volume -> mount point.
    :ivar aliases: extra DNS names on the network (the CA's lab host).
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
        return f"127.0.0.1:{self.published_port}:{self.port}"

    @property
    def published_port(self) -> str:
        """The host port, in compose form (``${SIGNLAB_DOCKER_<X>_PORT:-<port>}``)."""
        return f"${{{self.host_port_variable}:-{self.port}}}"

    def healthcheck_command(self) -> list[str]:
        """``/healthz`` from inside the container with the standard library only (no curl in the image);
        urlopen raises on a 503, so an unhealthy answer exits non-zero."""
        code = ("import sys, urllib.request; "
                f"sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:{self.port}/healthz', timeout=4).status == 200 "
                "else 1)")
        return ["CMD", "python", "-c", code]


HEALTHCHECK = {"interval": "3s", "timeout": "5s", "retries": 10, "start_period": "120s"}
"""Health-check timing (start_period covers first-start provisioning: CA hierarchy, HSM token)."""

DNS_OPTIONS = ["timeout:1", "attempts:1"]
"""The containers' resolver: one try, one second. The services resolve only each other's names,
which the engine's embedded DNS answers at once; the name of a stopped service (an outage fault)
is forwarded to the host's DNS, which an engine without outside access never answers — glibc's
default (5 s, 2 tries) would turn "connection refused" into a 10 s stall."""


def host_port_variable(name: str) -> str:
    """``SIGNLAB_DOCKER_<NAME>_PORT``: the env-file variable of a service's published port."""
    return f"SIGNLAB_DOCKER_{name.upper()}_PORT"


def browser_url(entry: ServiceEntry) -> str:
    """``http://127.0.0.1:${SIGNLAB_DOCKER_<X>_PORT:-<port>}``: how a browser on the host reaches it."""
    port = entry.info.default_port
    return f"http://127.0.0.1:${{{host_port_variable(entry.info.name)}:-{port}}}"


def back_channel_url(entry: ServiceEntry) -> str:
    """``http://<service>:<port>``: how the other containers reach it."""
    return f"http://{entry.info.name}:{entry.info.default_port}"


def _missing(variable: str) -> str:
    return f"${{{variable}:?is not set: run 'python -m signlab.docker_engine env' (writes compose/.env)}}"


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


def deployment() -> list[ContainerPlan]:
    """The containers, in start order, derived from the registry and the settings classes."""
    by_name = {e.info.name: e for e in REGISTRY}
    browser = {name: browser_url(e) for name, e in by_name.items()}
    back = {name: back_channel_url(e) for name, e in by_name.items()}
    lab = {f"{name}_public": lab_url(name, f"${{{host_port_variable(name)}:-{by_name[name].info.default_port}}}")
           for name in LAB_HOSTS}
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
            if variable in LAB_HOST_LINKS:
                env[variable] = template.format(**lab)
            elif variable in BROWSER_FACING_LINKS:
                env[variable] = template.format(**browser)
            else:
                env[variable] = template.format(**back)
                depends += [other for other in order[:order.index(name)]
                            if "{" + other + "}" in template and other not in depends]
        for variable, target in BROWSER_URL_SETTINGS.items():
            if variable.startswith(cls.env_prefix):
                env[variable] = browser[target]
        for variable in FAULT_INJECTION_SETTINGS:
            if variable.startswith(cls.env_prefix):
                env[variable] = f"${{{FAULT_INJECTION_VARIABLE}:-false}}"  # lab only: off unless asked for
        for field_name in sorted(secret_fields(cls)):
            variable = cls.env_name(field_name)
            env[variable] = _missing(secrets_of[variable])
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
        if name in LAB_HOSTS:
            # The URLs in certificates (http://ca.signlab.example.com:<published port>/...) resolve on
            # the network too: the lab host is an alias and the published port number is served.
            aliases = (LAB_HOSTS[name],)
            command += ("--also-bind", f"0.0.0.0:${{{host_port_variable(name)}:-{entry.info.default_port}}}")
            sysctls["net.ipv4.ip_unprivileged_port_start"] = "0"  # the non-root user may bind a port < 1024 too
        plans.append(ContainerPlan(name, str(entry.info.role), entry.info.default_port, host_port_variable(name),
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
            "stop_grace_period": f"{STOP_GRACE_SECONDS}s",
            "dns_opt": list(DNS_OPTIONS),
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
    volumes: dict[str, dict[str, Any]] = {volume: {} for plan in deployment() for volume in plan.volumes}
    return {"services": services, "networks": {NETWORK: {}}, "volumes": volumes}


HEADER = """\
# SignLab on docker compose: IPSP (idp), TSP (ca), SSASP (signer), SCASP (portal), the signer's EUDI Wallet (wallet).
# GENERATED from the code by `python -m signlab.docker_engine render` - do not edit by hand;
# tests/compose checks that this file is what the code produces.
# Works with `docker compose` (v2) and Debian's docker-compose 1.29 (v1). The project name, secrets
# and ports come from compose/.env (create it once: python -m signlab.docker_engine env), the same
# file `signlab up --engine docker` uses. Run: docker compose -f compose/compose.yaml up -d --build
# Fault injection (lab only): SIGNLAB_FAULT_INJECTION=true. OTLP export to Jaeger: --profile tracing and
# SIGNLAB_TRACE_OTLP_ENDPOINT=http://jaeger:4318/v1/traces (UI on http://127.0.0.1:16686).
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


def prepare_env_file(path: Path, *, project: str | None = None, ports: Mapping[str, int] | None = None,
                     environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Create or complete a deployment's env file: every secret (generated once), the project name
    and the published ports given; return its values (``environ`` wins, as in compose).

    :param project: the project name to record; by default the file keeps its own (``signlab`` when it has none).
    :param ports: published host ports to record, by service name.
    """
    environ = {} if environ is None else environ
    load_or_create_secrets(path, {}, header=ENV_FILE_HEADER)
    values = read_env_file(path)
    wanted = dict(values)
    if project is not None or "COMPOSE_PROJECT_NAME" not in wanted:
        wanted["COMPOSE_PROJECT_NAME"] = project or PROJECT
    for name, port in (ports or {}).items():
        wanted[host_port_variable(name)] = str(port)
    if wanted != values:
        write_env_file(path, wanted, header=ENV_FILE_HEADER)
    return {key: environ.get(key, value) for key, value in wanted.items()}


# -- the engine --------------------------------------------------------------------------------


class DockerEngine:
    """``signlab up/down/status/logs/audit --engine docker`` and fault injection, through the Docker SDK.

    :param env_file: the deployment's env file (project name, secrets, ports); created or completed by :meth:`up`.
    :param ports: published host ports by service name (recorded in the env file by :meth:`up`);
        others come from the environment, the env file or the services' default ports.
    :param environ: the variables compose would interpolate from (default: this process's); they
        win over the env file, as in compose.
    :param client: a ``docker.DockerClient`` (default: one for ``docker_host``, created on first use).
    :param docker_host: the engine's address (default: ``DOCKER_HOST`` or the default socket).
    :param fault_injection: turn the guarded fault-injection admin APIs on for the containers :meth:`up` creates.
    """

    def __init__(self, env_file: Path = ENV_FILE, ports: Mapping[str, int] | None = None,
                 environ: Mapping[str, str] | None = None, client: Any = None, *, docker_host: str | None = None,
                 fault_injection: bool = False) -> None:
        self.env_file = env_file.resolve()
        self.environ = dict(os.environ if environ is None else environ)
        self.docker_host = docker_host
        self.fault_injection = fault_injection
        stored = read_env_file(self.env_file)
        self.project = self.environ.get("COMPOSE_PROJECT_NAME") or stored.get("COMPOSE_PROJECT_NAME") or PROJECT
        self.explicit_ports = dict(ports or {})
        self.ports = {}
        for entry in REGISTRY:
            name, variable = entry.info.name, host_port_variable(entry.info.name)
            raw = self.explicit_ports.get(name) or self.environ.get(variable) or stored.get(variable)
            self.ports[name] = int(raw) if raw else entry.info.default_port
        self._client = client

    # -- connection -----------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        """The Docker client; a missing or unreachable engine is a clear error."""
        if self._client is None:
            import docker

            host = self.docker_host or self.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
            problem = engine_problem(host)
            if problem is not None:
                raise RuntimeError_(f"no Docker engine reachable ({problem}); start Docker (as root without one: "
                                    "'signlab dockerd start') or use --engine local")
            self._client = docker.DockerClient(base_url=host, timeout=120)
        return self._client

    def url(self, name: str) -> str:
        """The URL a browser on this host uses for service ``name``."""
        return f"http://127.0.0.1:{self.ports[name]}"

    @property
    def network_name(self) -> str:
        """The engine's name of the deployment's network (compose's ``<project>_<network>``)."""
        return f"{self.project}_{NETWORK}"

    def volume_name(self, volume: str) -> str:
        """The engine's name of a compose volume (``<project>_<volume>``)."""
        return f"{self.project}_{volume}"

    def variables(self) -> dict[str, str]:
        """The interpolation variables: the env file (completed: secrets, project, explicit ports),
        the environment over it, the published ports and fault injection."""
        values = prepare_env_file(self.env_file, ports=self.explicit_ports, environ=self.environ)
        values = {**values, **{k: v for k, v in self.environ.items() if k not in values}}
        for name, port in self.ports.items():
            values[host_port_variable(name)] = str(port)
        if self.fault_injection:
            values[FAULT_INJECTION_VARIABLE] = "true"
        return values

    def secrets(self) -> dict[str, str]:
        """The deployment's secrets by setting name (both names of each linked secret)."""
        values = self.variables()
        return {variable: values[source] for variable, source in secret_variables().items() if source in values}

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
        """Build :data:`IMAGE` (``signlab.docker_host``: base image, wheelhouse, offline build).

        :raises signlab.docker_host.EngineUnavailable: no base image can be had (the reason).
        :raises RuntimeError_: the wheelhouse or the build failed (the tool's own message).
        """
        from signlab import docker_host

        progress(f"  building {IMAGE} from {REPO_ROOT / DOCKERFILE} ...")
        docker_host.ensure_wheelhouse(progress=lambda line: progress(f"  {line}"))
        base = docker_host.ensure_base_image(self.client, REPO_ROOT / "var" / "docker-base",
                                             progress=lambda line: progress(f"  {line}"))
        docker_host.build_image(self.client, IMAGE, base=base, progress=lambda line: progress(f"  {line}"))

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
            raise RuntimeError_(f"SignLab containers of project {self.project} are already running: "
                                f"{', '.join(running)}. Use 'signlab status --engine docker' or 'signlab down --engine docker'.")
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
                if stale is not None:  # an exited container of an earlier run: nothing runs in it
                    stale.remove()
                container = self.client.containers.create(
                    **self.create_arguments(plan, variables, network.name, self.client.api._version))
                container.start()
                started.append(plan.name)
                progress(f"  started {container.name}; waiting for /healthz ...")
                self.wait_healthy([plan.name], timeout)
        except BaseException:
            for name in reversed(started):
                self._stop_and_remove(name)
            raise
        return self.status()

    def create_arguments(self, plan: ContainerPlan, variables: Mapping[str, str], network: str,
                         api_version: str) -> dict[str, Any]:
        """The ``containers.create`` arguments of one service (the compose file's settings)."""
        import docker.types

        endpoint = docker.types.EndpointConfig(api_version, aliases=[plan.name, *plan.aliases])
        return {
            "image": IMAGE, "command": [interpolate(arg, variables) for arg in plan.command],
            "name": f"{self.project}-{plan.name}-1",
            "environment": self.container_environment(plan, variables),
            "ports": {f"{plan.port}/tcp": ("127.0.0.1", self.ports[plan.name])},
            "volumes": {self.volume_name(volume): {"bind": mount, "mode": "rw"} for volume, mount in plan.volumes.items()},
            "network": network, "networking_config": {network: endpoint},
            "healthcheck": _sdk_healthcheck(plan), "restart_policy": {"Name": "unless-stopped"},
            "dns_opt": list(DNS_OPTIONS),
            # Compose's own labels: docker compose sees these containers as its project's (and the
            # SDK path finds the ones compose made); oneoff and number are what v1 requires.
            "labels": {PROJECT_LABEL: self.project, LABEL: plan.name, "com.docker.compose.oneoff": "False",
                       "com.docker.compose.container-number": "1"},
            "security_opt": ["no-new-privileges:true"], "cap_drop": ["ALL"],
            "sysctls": dict(plan.sysctls) or None,
        }

    def _network(self) -> Any:
        found = [n for n in self.client.networks.list(names=[self.network_name]) if n.name == self.network_name]
        if found:
            return found[0]
        return self.client.networks.create(self.network_name, driver="bridge", labels={
            PROJECT_LABEL: self.project, "com.docker.compose.network": NETWORK})

    def _volume(self, volume: str) -> Any:
        from docker.errors import NotFound

        name = self.volume_name(volume)
        try:
            return self.client.volumes.get(name)
        except NotFound:
            return self.client.volumes.create(name, labels={PROJECT_LABEL: self.project,
                                                            "com.docker.compose.volume": volume})

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

    def _stop_and_remove(self, name: str) -> str | None:
        """Stop one service's container gracefully (SIGTERM; SIGKILL only after :data:`STOP_GRACE_SECONDS`),
        remove it, and say how it ended; None when there is no container."""
        container = self.container(name)
        if container is None:
            return None
        started = time.monotonic()
        if container.status == "paused":
            container.unpause()  # a frozen process cannot handle SIGTERM
        container.stop(timeout=STOP_GRACE_SECONDS)
        container.reload()
        code = container.attrs.get("State", {}).get("ExitCode")
        seconds = time.monotonic() - started
        container.remove()
        how = (f"stopped with SIGTERM in {seconds:.1f} s (exit {code})" if code in (0, 143)
               else f"did not stop within {STOP_GRACE_SECONDS} s of SIGTERM (exit {code})")
        return f"{name}: {how}, container {container.name} removed"

    def down(self, *, remove_volumes: bool = False) -> list[str]:
        """Stop (SIGTERM, then a grace period) and remove the containers in reverse start order, and
        the network; the volumes persist unless ``remove_volumes`` (then the deployment's data is gone)."""
        done = [line for entry in reversed(REGISTRY) if (line := self._stop_and_remove(entry.info.name))]
        for network in self.client.networks.list(names=[self.network_name]):
            network.reload()
            if network.name == self.network_name and not network.attrs.get("Containers"):
                network.remove()
        if remove_volumes:
            for volume in self.client.volumes.list(filters={"label": f"{PROJECT_LABEL}={self.project}"}):
                volume.remove()
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

    def verify_audit_logs(self) -> list[dict[str, Any]]:
        """``signlab audit verify`` on the deployment's volumes: the same check as for the local
        runtime, run in a one-off container of the image (no network; it writes nothing), so it works
        while the services run and after ``down``.

        :raises RuntimeError_: the image or the volumes are missing, or the check could not run.
        """
        from docker.errors import DockerException

        variables = self.variables()
        plans = {plan.name: plan for plan in deployment()}
        environment: dict[str, str] = {}
        mounts: dict[str, dict[str, str]] = {}
        for name in ("signer", "ca"):
            environment.update(self.container_environment(plans[name], variables))
            for volume, mount in plans[name].volumes.items():
                if volume != TRACES_VOLUME:
                    # Read-write although nothing is written: SQLite reads a WAL database through its
                    # shared-memory file beside it (the check opens it with mode=ro).
                    mounts[self.volume_name(volume)] = {"bind": mount, "mode": "rw"}
        missing = [v for v in mounts if not self.client.volumes.list(filters={"name": v})]
        if missing:
            raise RuntimeError_(f"no volume {', '.join(missing)}: has 'signlab up --engine docker' run for project "
                                f"{self.project}?")
        try:
            output = self.client.containers.run(IMAGE, ["audit"], environment=environment, volumes=mounts,
                                                network_mode="none", remove=True, stdout=True, stderr=False)
            answer = json.loads(output)
        except (DockerException, ValueError) as exc:
            raise RuntimeError_(f"the audit check could not run in a container: {exc}") from None
        if "error" in answer:
            raise RuntimeError_(str(answer["error"]))
        return list(answer["results"])

    # -- fault injection (scenarios) ------------------------------------------------------------

    def _require(self, name: str) -> Any:
        container = self.container(name)
        if container is None:
            raise RuntimeError_(f"{name}: no container; is SignLab up with --engine docker?")
        return container

    def stop_service(self, name: str, timeout: int = STOP_GRACE_SECONDS) -> None:
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
        self._require(name).restart(timeout=STOP_GRACE_SECONDS)
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

    def _name(self, name: str) -> str:
        container = self.engine.container(name)
        return container.name if container is not None else f"{self.engine.project}-{name}"

    def stop(self, name: str) -> str:
        """Stop the container of ``name``."""
        self.engine.stop_service(name)
        return f"stopped container {self._name(name)}"

    def start(self, name: str) -> str:
        """Start it again and wait until healthy."""
        self.engine.start_service(name)
        return f"started container {self._name(name)} (healthy)"

    def pause(self, name: str) -> str:
        """Freeze it (docker pause): it keeps its address but answers nothing."""
        self.engine.pause_service(name)
        return f"paused container {self._name(name)}"

    def resume(self, name: str) -> str:
        """Unfreeze it."""
        self.engine.unpause_service(name)
        return f"unpaused container {self._name(name)}"


def ecosystem(engine: DockerEngine) -> Any:
    """The scenario runner's ``Ecosystem`` for a running Docker deployment: browser URLs on
    127.0.0.1, the deployment's secrets, :class:`DockerControl`, and the traces through the portal's
    trainer API (the trace store lives in a volume). The services' data lives in volumes, so no
    settings objects are given (white-box invariants report "not checkable")."""
    from signlab.scenarios.environment import Ecosystem

    urls = {state.name: state.url for state in engine.status()}
    return Ecosystem(urls=urls, secrets=engine.secrets(), settings={}, log_files={}, control=DockerControl(engine),
                     engine="docker", trace_api=f"{urls['portal']}/trainer/api")


def engine_problem(host: str | None = None, timeout: float = 5.0) -> str | None:
    """Why no Docker engine answers at ``host`` (default ``DOCKER_HOST`` or the default socket);
    None when one does. A ping with a fixed API version.

    ``docker.from_env()`` negotiates the API version in its constructor and, when the engine is
    missing, raises there and leaks its socket; a fixed version defers the connection to the ping
    (``/_ping`` is unversioned), so the client can always be closed.
    """
    import gc
    import warnings

    import docker
    from docker.errors import DockerException

    host = host or os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if host.startswith("unix://") and not Path(host.removeprefix("unix://")).exists():
        return f"no engine socket at {host.removeprefix('unix://')} (DOCKER_HOST)"
    try:
        client = docker.DockerClient(base_url=host, version="1.41", timeout=int(timeout))
    except DockerException as exc:  # e.g. a malformed DOCKER_HOST
        return f"{exc.__class__.__name__}: {exc}"
    try:
        client.ping()
    except Exception as exc:  # docker's, and requests' ConnectionError for a dead socket
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
            "timeout": nanos(HEALTHCHECK["timeout"]), "retries": int(str(HEALTHCHECK["retries"])),
            "start_period": nanos(HEALTHCHECK["start_period"])}


def _health_of(container: Any) -> str:
    health = container.attrs.get("State", {}).get("Health")
    return str(health.get("Status")) if health else "no healthcheck"


def build_context(root: Path) -> io.BytesIO:
    """A tar of :data:`BUILD_CONTEXT_PATHS` under ``root`` (no virtualenv, data, caches, VCS or env files)."""
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
    main_bind = f"{settings.host}:{settings.port}"
    binds = [main_bind, *dict.fromkeys(b for b in also_bind if b != main_bind)]  # the same port once
    argv = gunicorn_argv(item, binds)
    os.execv(argv[0], argv)  # noqa: S606 - the container's process becomes gunicorn (its signals, its exit code)
    return 0  # pragma: no cover - execv does not return


def audit() -> int:
    """(In a one-off container) verify the audit logs named by this environment's signer and CA
    settings; print ``{"results": [...]}`` (or ``{"error": ...}``) as JSON. Exit 0 either way: the
    caller reads the verdict from the JSON (a non-zero exit would hide it behind the engine's error)."""
    from services.registry import CaSettings, SignerSettings
    from signlab.commands import CommandError
    from signlab.commands.audit import verify_installation

    try:
        print(json.dumps({"results": verify_installation(SignerSettings.from_env(), CaSettings.from_env())}))
    except CommandError as exc:
        print(json.dumps({"error": str(exc)}))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m signlab.docker_engine serve NAME | audit | render [PATH] | env [PATH]``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m signlab.docker_engine",
                                     description="SignLab container entry point and compose generator.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("serve", help="(in the container) provision the service, then run it under gunicorn")
    run.add_argument("service", choices=[e.info.name for e in REGISTRY])
    run.add_argument("--also-bind", action="append", default=[], metavar="HOST:PORT",
                     help="listen on this address too (the CA on its lab host's published port)")
    commands.add_parser("audit", help="(in a one-off container) verify the audit logs; JSON on stdout")
    render = commands.add_parser("render", help="write the compose file generated from the code")
    render.add_argument("path", nargs="?", type=Path, default=COMPOSE_FILE)
    env = commands.add_parser("env", help="create or complete a deployment's env file (project name, generated secrets)")
    env.add_argument("path", nargs="?", type=Path, default=ENV_FILE)
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve(args.service, args.also_bind)
    if args.command == "audit":
        return audit()
    if args.command == "render":
        args.path.write_text(render_compose())
        print(f"wrote {args.path}")
        return 0
    values = prepare_env_file(args.path)
    print(f"{args.path}: project {values['COMPOSE_PROJECT_NAME']}, {len(secret_variables())} secrets (mode 0600)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
