"""One in-process SignLab ecosystem for tests: the real services, built from ``services.registry``.

:class:`Ecosystem` starts the services a test asks for, in the registry's start order, each one the
production app (``services.<name>.create_app``) with its registry settings class, provisioned by its
registry hook, served by werkzeug in a thread on its own free 127.0.0.1 port
(:class:`~shared.testing.LiveServer`): real HTTP between the services and to the test's clients,
real SoftHSM, real keys and tokens. The settings are filled in the way ``signlab up`` fills them:
every secret field gets a random value, linked secrets (``LINKED_SECRETS``) share one value, and
each ``URL_LINKS`` setting gets the other services' loopback URLs.

What differs from ``signlab up`` (and why):

* SoftHSM reads its configuration once per process, so the signer uses the test session's one
  provisioned token (``hsm=``: its data directory, module, label and PINs); the signer's database
  and audit log go to this ecosystem's own ``state_dir``.
* The signer's background sweeper is off (``sweep_interval_seconds=0``): tests sweep explicitly.
* All services record spans into one trace store, ``<root>/traces`` unless ``trace_dir`` says
  otherwise (the signer's data directory lies elsewhere, so ``SIGNLAB_TRACE_DIR`` is set while the
  apps are built).

Limits: for tests only. It imports the services, so it sits above every service (only tests import
it; the runtime never does). Several ecosystems can run in one process (each on its own ports and
data directories), but they share the one SoftHSM token.
"""

from __future__ import annotations

import importlib
import secrets
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any
from unittest import mock

from flask import Flask
from pydantic import SecretStr

from services.registry import LAB_HOSTS, LINKED_SECRETS, REGISTRY, URL_LINKS, ServiceEntry, entry, lab_url
from shared.settings import ServiceSettings, secret_fields
from shared.testing import LiveServer, free_port

__all__ = ["FAULT_INJECTION", "HSM_TOKEN_FIELDS", "Ecosystem"]

HSM_TOKEN_FIELDS = ("data_dir", "hsm_module", "hsm_token_label", "hsm_user_pin", "hsm_so_pin")
"""The signer settings that name the SoftHSM token: taken from the session's provisioned token."""

FAULT_INJECTION: dict[str, dict[str, Any]] = {
    "idp": {"admin_api_enabled": True},
    "ca": {"faults_enabled": True},
    "signer": {"faults_enabled": True},
    "wallet": {"admin_api_enabled": True},
}
"""What ``fault_injection=True`` turns on, per service (as ``signlab up --fault-injection``)."""

TEST_DEFAULTS: dict[str, dict[str, Any]] = {"signer": {"sweep_interval_seconds": 0}}
"""Settings every test ecosystem starts with unless the test overrides them (see module docstring)."""


class Ecosystem:
    """Real SignLab services on loopback ports; use as a context manager or call :meth:`stop`.

    :param root: a directory of its own: each service's data directory is ``root/<name>``.
    :param services: which services to run (any of ``idp wallet ca signer portal``); started in
        the registry's order whatever the order given here.
    :param hsm: the session's provisioned signer settings (required when the signer runs).
    :param settings: per-service field overrides, e.g. ``{"portal": {"transaction_ttl_seconds": 2}}``;
        they win over everything the ecosystem fills in.
    :param ports: ports to bind (default: free ones), when a test must name a URL in a setting
        before the service starts.
    :param outside: base URLs of services running outside this ecosystem (e.g. the session's
        wallet), used for the ``URL_LINKS`` that name them.
    :param trace_dir: the one trace store of the services (default ``root/traces``).
    :param fault_injection: turn on the guarded fault and admin APIs (:data:`FAULT_INJECTION`).
    """

    def __init__(self, root: Path, services: Iterable[str] = ("idp", "ca", "signer", "portal"), *,
                 hsm: ServiceSettings | None = None, settings: Mapping[str, Mapping[str, Any]] | None = None,
                 ports: Mapping[str, int] | None = None, outside: Mapping[str, str] | None = None, trace_dir: Path | None = None,
                 fault_injection: bool = False) -> None:
        wanted = set(services)
        entries = [item for item in REGISTRY if item.info.name in wanted]
        if unknown := wanted - {item.info.name for item in entries}:
            raise KeyError(f"unknown services {sorted(unknown)}; known: {', '.join(e.info.name for e in REGISTRY)}")
        if "signer" in wanted and hsm is None:
            raise ValueError("the signer needs hsm= (the session's provisioned SoftHSM token settings)")
        self.base_dir = Path(root)
        self.trace_dir = trace_dir or self.base_dir / "traces"
        self.servers: dict[str, LiveServer] = {}
        """The running servers by instance name (emptied by :meth:`stop`)."""
        self._apps: dict[str, Flask] = {}
        self._service_of: dict[str, str] = {}
        self._settings: dict[str, ServiceSettings] = {}
        ports = {item.info.name: free_port() for item in entries} | dict(ports or {})
        urls = dict(outside or {}) | {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        urls |= {f"{name}_public": lab_url(name, ports[name]) for name in LAB_HOSTS if name in ports}
        shared_secrets = _linked_secrets()
        try:
            for item in entries:
                name = item.info.name
                overrides: dict[str, Any] = {"host": "127.0.0.1", "port": ports[name], "data_dir": self.base_dir / name,
                                             "log_level": "WARNING"}
                if name == "signer":
                    overrides |= {field: getattr(hsm, field) for field in HSM_TOKEN_FIELDS}
                    overrides["state_dir"] = self.base_dir / name
                overrides |= TEST_DEFAULTS.get(name, {})
                overrides |= FAULT_INJECTION.get(name, {}) if fault_injection else {}
                overrides |= dict((settings or {}).get(name, {}))
                self._settings[name] = _settings(item, urls, shared_secrets, overrides)
                self.start_instance(name, name, port=ports[name])
        except BaseException:
            self.stop()
            raise

    # ------------------------------------------------------------------ building

    def start_instance(self, service: str, instance: str, *, port: int | None = None, **overrides: Any) -> LiveServer:
        """Provision and serve one instance of ``service`` under the name ``instance``.

        For a second instance (e.g. a portal with another transaction lifetime), the settings are
        the first instance's with a data directory ``root/<instance>``, ``port`` (default: a free
        one) and ``overrides``.
        """
        item = entry(service)
        if instance != service:
            port = port or free_port()
            self._settings[instance] = self._settings[service].model_copy(
                update={"port": port, "data_dir": self.base_dir / instance, **overrides})
        settings = self._settings[instance]
        self._service_of[instance] = service
        shared_key = getattr(self._settings[service], "client_assertion_key_path", None)
        own_key = getattr(settings, "client_assertion_key_path", None)
        if instance != service and shared_key is not None and own_key is not None and shared_key.exists():
            # One partner, one key: a second instance signs its client assertions with the key the
            # signing service already knows (the first instance's JWKS).
            own_key.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(shared_key, own_key)
        item.provision(settings)
        with mock.patch.dict("os.environ", {"SIGNLAB_TRACE_DIR": str(self.trace_dir)}):
            app = importlib.import_module(f"services.{service}").create_app(settings)
        self._apps[instance] = app
        self.servers[instance] = LiveServer(app, settings.port).start()
        return self.servers[instance]

    # ------------------------------------------------------------------ handles

    def url(self, instance: str) -> str:
        """The base URL of a service (or instance)."""
        return f"http://127.0.0.1:{self._settings[instance].port}"

    def settings_of(self, instance: str) -> Any:
        """The settings a running service (or instance) was built with."""
        return self._settings[instance]

    def app(self, instance: str) -> Flask:
        """The Flask app of a service (or instance), also after :meth:`stop`."""
        return self._apps[instance]

    def core(self, instance: str) -> Any:
        """The domain core of a service (``app.extensions["signlab.<service>"]``): for checking side
        effects (store, audit log, HSM), never for driving the flow."""
        return self.app(instance).extensions[f"signlab.{self._service_of[instance]}"]

    @property
    def idp_url(self) -> str:
        return self.url("idp")

    @property
    def ca_url(self) -> str:
        return self.url("ca")

    @property
    def signer_url(self) -> str:
        return self.url("signer")

    @property
    def portal_url(self) -> str:
        return self.url("portal")

    @property
    def signer_service(self) -> Any:
        """The signer's core (store, audit log, HSM)."""
        return self.core("signer")

    @property
    def partner(self) -> tuple[str, str]:
        """The lab's partner application at the portal, as HTTP Basic credentials."""
        portal = self.settings_of("portal")
        return portal.api_client_id, portal.api_client_secret.get_secret_value()

    def hsm_key_objects(self) -> list[Any]:
        """The key objects on the signer's SoftHSM token right now (one-time keys alive)."""
        return list(self.signer_service.hsm.key_objects())

    def expire_signer_state(self) -> None:
        """Sweep the signer as if a day had passed: every credential and transaction expires and
        its one-time key is destroyed (the HSM holds no key of this ecosystem afterwards)."""
        service = self.signer_service
        real = service.clock
        service.clock = lambda: real() + 24 * 3600
        try:
            service.sweep()
        finally:
            service.clock = real

    # ------------------------------------------------------------------ stopping

    def stop(self) -> None:
        """Stop the servers, last started first."""
        for server in reversed(list(self.servers.values())):
            server.stop()
        self.servers.clear()

    def __enter__(self) -> Ecosystem:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def _linked_secrets() -> dict[str, SecretStr]:
    """One random value per group of ``LINKED_SECRETS`` (by environment variable)."""
    values: dict[str, SecretStr] = {}
    for group in LINKED_SECRETS:
        value = SecretStr(secrets.token_urlsafe(24))
        values |= dict.fromkeys(group, value)
    return values


def _settings(item: ServiceEntry, urls: Mapping[str, str], linked: Mapping[str, SecretStr],
              overrides: Mapping[str, Any]) -> ServiceSettings:
    """The settings of one service as ``signlab up`` fills them: random secrets (linked ones
    shared), the ``URL_LINKS`` whose services are known, then ``overrides``."""
    cls = item.settings_class
    env: dict[str, str] = {}
    for variable, template in URL_LINKS.items():
        field = variable.removeprefix(cls.env_prefix).lower()
        if variable.startswith(cls.env_prefix) and field in cls.model_fields:
            try:
                env[variable] = template.format(**urls)
            except KeyError:  # names a service that is not running here: the default stays
                continue
    values: dict[str, Any] = {name: linked.get(cls.env_name(name), SecretStr(secrets.token_urlsafe(24)))
                              for name in secret_fields(cls)}
    return cls.from_env(env, **(values | dict(overrides)))
