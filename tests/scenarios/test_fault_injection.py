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


def test_timeline_restores_the_lab_clock_and_the_trusted_list(cas: dict[bool, tuple[str, str]], tmp_path: Any) -> None:
    """A scenario that withdraws the TSA before signing and moves the lab clock afterwards: the plan
    changes the list before the flow and puts clock and list back after it, whatever happened."""
    from shared.clock import LabClock

    url, token = cas[True]
    eco = _eco(url, token)
    eco.clock_file = tmp_path / "lab-clock.json"
    clock = LabClock(eco.clock_file)
    clock.set_offset(600)  # where the trainer left it
    scenario = SCENARIOS["matrix-tsa-not-qualified"]
    assert unsupported(scenario, eco) is None
    plan = plan_faults(scenario, eco)
    [(description, change)] = plan.hooks[1]
    assert "tsa withdrawn" in description and "the tsa service is withdrawn since" in change()
    clock.advance(86400)  # what the timeline does
    headers = {"Authorization": f"Bearer {token}"}
    assert len(requests.get(f"{url}/admin/trusted-list", headers=headers, timeout=10).json()["changes"]) == 1
    for _description, undo in reversed(plan.restores):
        undo()
    assert clock.offset() == 600
    assert requests.get(f"{url}/admin/trusted-list", headers=headers, timeout=10).json()["changes"] == []
    eco.clock_file = None
    assert "needs the lab clock file" in str(unsupported(SCENARIOS["matrix-pades-b-b-after-expiry"], eco))


def test_signing_relative_validation_times() -> None:
    import datetime as dt

    from signlab.scenarios.timeline import resolve_validation_time

    signed = dt.datetime(2026, 12, 7, 12, 0, 30, tzinfo=dt.UTC)
    assert resolve_validation_time("now", signed) is None
    assert resolve_validation_time("signing", signed) == "2026-12-07T12:00:30Z"
    assert resolve_validation_time("signing+10m", signed) == "2026-12-07T12:10:30Z"
    assert resolve_validation_time("+1d", signed) == "+1d"  # the portal reads it from its lab clock
