"""Fault injection seen from the runner and the runtime: ``--fault-injection`` sets the services'
switches, a running ecosystem without it makes the runner skip with a reason naming the flag, and
an enabled one is armed and disarmed through the real admin API (a real CA app on loopback)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from services.ca import create_app
from services.ca.provision import provision
from services.ca.settings import CaSettings
from services.registry import REGISTRY
from shared.testing import LiveServer, random_secrets
from signlab.runtime import FAULT_INJECTION_SETTINGS, LocalRuntime
from signlab.scenarios.environment import Ecosystem
from signlab.scenarios.faults import plan_faults, unsupported
from signlab.scenarios.loader import load_all

SCENARIOS = {s.name: s for s in load_all()}


def _switches(runtime: LocalRuntime) -> dict[str, str]:
    found = {}
    for entry in REGISTRY:
        env = runtime.service_environment(entry)
        # each switch as its own service sees it
        found.update({k: env[k] for k in FAULT_INJECTION_SETTINGS if k in env and k.startswith(entry.settings_class.env_prefix)})
    return found


def test_the_flag_turns_on_exactly_the_three_switches(tmp_path: Path) -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SIGNLAB_")}
    assert _switches(LocalRuntime(tmp_path, environ=base)) == {}
    on = LocalRuntime(tmp_path, environ=base, fault_injection=True)
    assert _switches(on) == FAULT_INJECTION_SETTINGS
    assert _switches(LocalRuntime(tmp_path, environ={**base, "SIGNLAB_FAULT_INJECTION": "1"})) == FAULT_INJECTION_SETTINGS
    # the flag wins over a stray "false"; an explicit False wins over the environment variable
    stray = {**base, "SIGNLAB_CA_FAULTS_ENABLED": "false", "SIGNLAB_FAULT_INJECTION": "yes"}
    assert _switches(LocalRuntime(tmp_path, environ=stray))["SIGNLAB_CA_FAULTS_ENABLED"] == "true"
    assert _switches(LocalRuntime(tmp_path, environ=stray, fault_injection=False)) == {"SIGNLAB_CA_FAULTS_ENABLED": "false"}
    # a runtime made later (outage restarts) follows what the running ecosystem was started with
    on.run_dir.mkdir(parents=True)
    on.fault_injection_marker.write_text("SIGNLAB_FAULT_INJECTION=1\n")
    assert LocalRuntime(tmp_path, environ=base).fault_injection is True


@pytest.fixture(scope="module")
def cas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[bool, tuple[str, str]]]:
    """Two real CAs: fault injection off and on → (url, admin token)."""
    servers, found = [], {}
    for enabled in (False, True):
        settings = CaSettings(data_dir=tmp_path_factory.mktemp(f"ca-{enabled}"), faults_enabled=enabled,
                              **random_secrets(CaSettings))
        provision(settings)
        server = LiveServer(create_app(settings)).start()
        servers.append(server)
        found[enabled] = (server.url, settings.admin_token.get_secret_value())
    try:
        yield found
    finally:
        for server in servers:
            server.stop()


def _eco(url: str, token: str | None) -> Ecosystem:
    secrets = {"SIGNLAB_CA_ADMIN_TOKEN": token} if token else {}
    return Ecosystem(urls={"ca": url, "signer": "http://127.0.0.1:9", "idp": "http://127.0.0.1:9",
                           "portal": "http://127.0.0.1:9"}, secrets=secrets)


@pytest.mark.parametrize("name", ["ca-wrong-key", "tsa-down-for-b-t"])
def test_skipped_with_the_flag_named_when_fault_injection_is_off(cas: dict[bool, tuple[str, str]], name: str) -> None:
    url, token = cas[False]
    reason = unsupported(SCENARIOS[name], _eco(url, token))
    assert reason is not None and "fault injection is off" in reason and "signlab up --fault-injection" in reason
    assert "SIGNLAB_CA_ADMIN_TOKEN" in str(unsupported(SCENARIOS[name], _eco(url, None)))
    url, _ = cas[True]
    assert "HTTP 401" in str(unsupported(SCENARIOS[name], _eco(url, "wrong")))


def test_armed_before_the_flow_and_removed_after(cas: dict[bool, tuple[str, str]]) -> None:
    url, token = cas[True]
    eco = _eco(url, token)
    scenario = SCENARIOS["tsa-down-for-b-t"]
    assert unsupported(scenario, eco) is None
    plan = plan_faults(scenario, eco)
    [(description, arm)] = plan.hooks[1]
    assert "tsa-unavailable" in description
    assert "until removed" in arm()
    query_type = {"Content-Type": "application/timestamp-query"}
    assert requests.post(f"{url}/tsa", data=b"0", headers=query_type, timeout=10).status_code == 503
    assert requests.post(f"{url}/tsa", data=b"0", headers=query_type, timeout=10).status_code == 503
    [(_, disarm)] = plan.restores
    assert "removed ca fault 'tsa-unavailable'" in disarm()
    assert requests.post(f"{url}/tsa", data=b"0", headers=query_type, timeout=10).status_code == 200
    listing: Any = requests.get(f"{url}/admin/faults", headers={"Authorization": f"Bearer {token}"}, timeout=10).json()
    assert listing["armed"] == []
