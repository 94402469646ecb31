"""Fault injection: turn a scenario's ``faults:`` into login-hint directives, hooks and restores.

Every fault kind (``scenarios/README.md`` has the full table):

* ``idp`` — a named failure of the IdP (``services/idp/failures.py``): by default a ``login_hint``
  directive (``kari-nordmann@no-bankid!cancel``), or ``via: admin`` through the IdP's guarded admin
  API (``POST /admin/failures``, armed for one request, removed afterwards). Both need the IdP's
  fault injection on: without it the IdP refuses a hint with a directive (``invalid_request``).
* ``clock`` — the IdP's clock runs ahead/behind: the IdP failure ``clock-skew=<seconds>``.
* ``network`` — ``target: idp-token``: the IdP token endpoint answers late (``slow=<seconds>``);
  ``target: agent``: the user agent waits before the step (think time, lets codes/requests age).
* ``outage`` — stop (or pause) a service before a step and start it again afterwards.
* ``tamper`` — protocol-level tampering by the partner driver (see :mod:`signlab.scenarios.agent`).
* ``revoke`` — the CA revokes the signer's certificate after signing (admin API), then validation.
* ``user`` — the signer's own choices (``decline-consent``).
* ``wallet`` — a named fault of the EUDI Wallet (``services/wallet/faults.py``), asked of the wallet
  by the user agent for the presentation of step 4; ``timeout`` also shortens the IdP's wait for the
  wallet (IdP failure ``wallet-wait``) so that the scenario ends in seconds.
* ``hsm`` (step 6 or 9), ``ca: wrong-key`` and the other CA switches (step 7), ``tsa: unavailable``
  and ``ocsp: unavailable`` (step 10) — armed through the signer's and the CA's guarded admin API
  (``POST /admin/faults``, bearer ``SIGNLAB_SIGNER_ADMIN_TOKEN`` / ``SIGNLAB_CA_ADMIN_TOKEN``) before
  the flow and removed afterwards.
* ``trusted_list`` — a listed service changes status before the flow (the CA's lab admin API
  ``/admin/trusted-list``); the list is restored afterwards.

The scenario's ``timeline`` (:mod:`signlab.scenarios.timeline`) gets its undo actions here too: the
lab clock goes back to where it stood, and the trusted list loses the scenario's changes.

The admin APIs exist only when the ecosystem runs with fault injection (``signlab up
--fault-injection``, also with ``--engine docker``); otherwise :func:`unsupported` names the flag and
the runner reports the scenario as skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

from signlab.scenarios.environment import Ecosystem
from signlab.scenarios.model import Scenario

__all__ = ["FaultPlan", "plan_faults", "unsupported"]

ENABLE_HINT = ("start SignLab with 'signlab up --fault-injection' (or let 'signlab scenario run' start it); containers: "
               "'signlab up --engine docker --fault-injection', or SIGNLAB_FAULT_INJECTION=true for docker compose")

SERVICE_FAULTS: dict[str, tuple[str, str]] = {
    # fault kind → (service, admin-token variable)
    "hsm": ("signer", "SIGNLAB_SIGNER_ADMIN_TOKEN"),
    "ca": ("ca", "SIGNLAB_CA_ADMIN_TOKEN"),
    "tsa": ("ca", "SIGNLAB_CA_ADMIN_TOKEN"),
    "ocsp": ("ca", "SIGNLAB_CA_ADMIN_TOKEN"),
}
"""Fault kinds armed through a service's ``/admin/faults`` (shared.faults)."""


WALLET_TIMEOUT_WAIT = 3.0
"""Seconds the IdP waits for a wallet that never answers, in a scenario (its default is minutes)."""


def service_fault(kind: str, params: dict[str, Any]) -> tuple[str, str, int | None]:
    """``(service, fault name, count)`` of an ``hsm``/``ca``/``tsa`` fault (count None: until removed)."""
    if kind == "hsm":
        return "signer", "hsm-keygen" if int(params["fail_at_step"]) == 6 else "hsm-sign", 1
    if kind == "ca":
        return "ca", str(params["name"]), 1
    # The TSA or the OCSP responder stays down for the whole scenario (every call fails), then comes back.
    return "ca", f"{kind}-unavailable", None


def unsupported(scenario: Scenario, eco: Ecosystem) -> str | None:
    """Why this scenario cannot run against ``eco`` (None when it can)."""
    for fault in scenario.faults:
        if fault.kind in SERVICE_FAULTS:
            service, name, _ = service_fault(fault.kind, fault.params)
            problem = _service_admin_problem(eco, service, name)
            if problem:
                return f"fault '{fault.describe()}' cannot be injected: {problem}"
        if fault.kind == "outage" and eco.control is None:
            return f"fault '{fault.describe()}' needs control over the services (local runtime or docker engine)"
        if _needs_idp_fault_injection(fault.kind, fault.params):
            problem = _idp_admin_problem(eco)
            if problem:
                return problem
        if fault.kind == "wallet" and "wallet" not in eco.urls:
            return f"fault '{fault.describe()}' needs the wallet service (services/wallet), which this ecosystem lacks"
    actions = [(f.kind, f"fault '{f.describe()}'") for f in scenario.faults]
    actions += [(t.kind if t.kind != "clock" else "lab-clock", f"timeline step '{t.describe()}'") for t in scenario.timeline]
    for kind, label in actions:
        if kind == "lab-clock" and eco.clock_file is None:
            return f"{label} needs the lab clock file (the local runtime)"
        if kind == "revoke" and not eco.secret("SIGNLAB_CA_ADMIN_TOKEN"):
            return f"{label} needs the CA admin token (SIGNLAB_CA_ADMIN_TOKEN); run against a local runtime"
        if kind == "trusted_list":
            problem = _trusted_list_admin_problem(eco)
            if problem:
                return f"{label} cannot be done: {problem}"
    if scenario.driver == "partner":
        if scenario.request.format != "CAdES" or scenario.request.flow != "person-signing":
            return "the partner driver drives CAdES in the person-signing flow only"
        if eco.setting("portal", "client_assertion_key_path") is None:
            return "the partner driver needs the portal's client-assertion key (run against a local runtime)"
    return None


def _needs_idp_fault_injection(kind: str, params: dict[str, Any]) -> bool:
    """IdP failures — by ``login_hint`` directive or the admin API — exist only while the IdP's
    fault injection is on (its hint directives are refused otherwise)."""
    return kind in ("idp", "clock") or (kind == "network" and params.get("target", "agent") == "idp-token")


def _admin_get(eco: Ecosystem, service: str, path: str, variable: str,
               api: str) -> tuple[requests.Response | None, str | None]:
    """``GET path`` on ``service``'s admin API with the bearer token ``variable`` from the secrets.

    Returns ``(response, None)`` for an answer other than 404, else ``(None, why it cannot be used)``.
    """
    token = eco.secret(variable)
    if not token:
        return None, f"{api} needs {variable} (run against a local runtime)"
    try:
        response = requests.get(f"{eco.url(service)}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=5)
    except requests.RequestException as exc:
        return None, f"{api} does not answer ({exc.__class__.__name__})"
    if response.status_code == 404:
        return None, f"fault injection is off in the running ecosystem (the {service} answers 404 at {path}): {ENABLE_HINT}"
    return response, None


def _idp_admin_problem(eco: Ecosystem) -> str | None:
    """Probe the IdP's admin API (``GET /admin/failures``); None when usable."""
    response, problem = _admin_get(eco, "idp", "/admin/failures", "SIGNLAB_IDP_ADMIN_TOKEN", "the IdP admin API")
    if response is None or response.status_code == 200:
        return problem
    return f"the IdP admin API is not usable (HTTP {response.status_code}): {ENABLE_HINT}"


def _trusted_list_admin_problem(eco: Ecosystem) -> str | None:
    """Probe the CA's trusted-list admin API (``GET /admin/trusted-list``); None when usable."""
    response, problem = _admin_get(eco, "ca", "/admin/trusted-list", "SIGNLAB_CA_ADMIN_TOKEN", "the CA's trusted-list admin API")
    if response is None or response.status_code == 200:
        return problem
    return f"the CA's trusted-list admin API is not usable (HTTP {response.status_code})"


def _service_admin_problem(eco: Ecosystem, service: str, name: str) -> str | None:
    """Probe a service's fault admin API (``GET /admin/faults``); None when ``name`` can be armed."""
    variable = SERVICE_FAULTS["hsm" if service == "signer" else "ca"][1]
    response, problem = _admin_get(eco, service, "/admin/faults", variable, f"the {service}'s fault admin API")
    if response is None:
        return problem
    if response.status_code != 200:
        return f"the {service}'s fault admin API is not usable (HTTP {response.status_code}; is {variable} right?)"
    known = {str(k.get("name")) for k in response.json().get("known", [])}
    if name not in known:
        return f"the {service} does not know the fault {name!r} (known: {', '.join(sorted(known))})"
    return None


@dataclass
class FaultPlan:
    """What the runner does for the faults of one scenario."""

    hint_directives: list[str] = field(default_factory=list)
    """``!name[=value]`` parts appended to the login_hint."""
    delays: dict[int, float] = field(default_factory=dict)
    """User-agent waits before a step."""
    hooks: dict[int, list[tuple[str, Callable[[], str]]]] = field(default_factory=dict)
    """Actions before a step (``1``: before the flow starts): (description, action)."""
    restores: list[tuple[str, Callable[[], str]]] = field(default_factory=list)
    """Undo actions, run in reverse order after the scenario, whatever happened."""
    tampers: set[str] = field(default_factory=set)
    wallet_faults: list[str] = field(default_factory=list)
    """Faults the wallet applies to its presentation (step 4)."""
    decision: str = "approve"
    revoke_reason: str | None = None

    def login_hint(self, scenario: Scenario) -> str:
        """The login hint: ``person[@eid]`` plus failure directives."""
        hint = scenario.persona.person + (f"@{scenario.persona.eid}" if scenario.persona.eid else "")
        return hint + "".join(f"!{d}" for d in self.hint_directives)


def _directive(name: str, value: Any) -> str:
    return name if value is None else f"{name}={float(value):g}"


def plan_faults(scenario: Scenario, eco: Ecosystem) -> FaultPlan:
    """Build the plan; arming happens in the hooks (step 1 = before the flow)."""
    plan = FaultPlan()
    for fault in scenario.faults:
        p = fault.params
        if fault.kind == "idp":
            if p.get("via", "login_hint") == "login_hint":
                plan.hint_directives.append(_directive(p["name"], p.get("value")))
            else:
                _plan_idp_admin(plan, eco, p["name"], p.get("value"))
        elif fault.kind == "clock":
            plan.hint_directives.append(_directive("clock-skew", p["skew_seconds"]))
        elif fault.kind == "network":
            if p.get("target", "agent") == "idp-token":
                plan.hint_directives.append(_directive("slow", p["delay_seconds"]))
            else:
                plan.delays[int(p.get("before_step", 5))] = float(p["delay_seconds"])
        elif fault.kind == "outage":
            _plan_outage(plan, eco, p["service"], int(p.get("before_step", 1)), p.get("mode", "stop"))
        elif fault.kind == "tamper":
            plan.tampers.add(p["name"])
        elif fault.kind == "user":
            if p["name"] == "decline-consent":
                plan.decision = "decline"
        elif fault.kind == "revoke":
            plan.revoke_reason = p.get("reason", "keyCompromise")
        elif fault.kind == "wallet":
            plan.wallet_faults.append(p["name"])
            if p["name"] == "timeout":
                plan.hint_directives.append(_directive("wallet-wait", WALLET_TIMEOUT_WAIT))
        elif fault.kind in SERVICE_FAULTS:
            service, name, count = service_fault(fault.kind, p)
            _plan_service_fault(plan, eco, service, name, count)
        elif fault.kind == "trusted_list":
            plan.hooks.setdefault(1, []).append((f"the trusted list: {p['service']} {p['status']} (lab admin API)",
                                                 lambda p=p: _change_trusted_list(eco, p["service"], p["status"], scenario.name)))
    if any(f.kind == "trusted_list" for f in scenario.faults) or any(t.kind == "trusted_list" for t in scenario.timeline):
        plan.restores.append(("restore the trusted list (forget the scenario's status changes)", lambda: _clear_trusted_list(eco)))
    if any(t.kind == "clock" for t in scenario.timeline) and eco.clock_file is not None:
        _plan_clock_restore(plan, eco)
    return plan


def _ca_admin_headers(eco: Ecosystem) -> dict[str, str]:
    return {"Authorization": f"Bearer {eco.secret('SIGNLAB_CA_ADMIN_TOKEN') or ''}"}


def _change_trusted_list(eco: Ecosystem, service: str, status: str, scenario: str) -> str:
    response = requests.post(f"{eco.url('ca')}/admin/trusted-list/{service}", json={"status": status, "note": f"scenario {scenario}"},
                             headers=_ca_admin_headers(eco), timeout=10)
    if response.status_code != 201:
        raise RuntimeError(f"the CA refused the trusted-list change: HTTP {response.status_code} {response.text[:200]}")
    return f"the {service} service is {status} since {response.json().get('since')}"


def _clear_trusted_list(eco: Ecosystem) -> str:
    response = requests.delete(f"{eco.url('ca')}/admin/trusted-list", headers=_ca_admin_headers(eco), timeout=10)
    if response.status_code != 200:
        raise RuntimeError(f"the CA did not restore the trusted list: HTTP {response.status_code}")
    return f"{response.json().get('removed')} status change(s) removed; every service granted again"


def _plan_clock_restore(plan: FaultPlan, eco: Ecosystem) -> None:
    """Put the lab clock back where it stood before the scenario."""
    from shared.clock import LabClock, format_offset

    assert eco.clock_file is not None
    clock = LabClock(eco.clock_file)
    before = clock.offset()

    def restore() -> str:
        if abs(before) < 0.5:
            clock.reset()
        else:
            clock.set_offset(before, note="restored after a scenario")
        return f"lab clock back at the machine time {format_offset(before)}"

    plan.restores.append(("put the lab clock back", restore))


def _plan_service_fault(plan: FaultPlan, eco: Ecosystem, service: str, name: str, count: int | None) -> None:
    """Arm ``name`` at ``service``'s ``/admin/faults`` before the flow; remove it afterwards."""
    url = f"{eco.url(service)}/admin/faults"
    variable = SERVICE_FAULTS["hsm" if service == "signer" else "ca"][1]
    headers = {"Authorization": f"Bearer {eco.secret(variable) or ''}"}
    armed: dict[str, Any] = {}

    def arm() -> str:
        response = requests.post(url, json={"name": name, "count": count}, headers=headers, timeout=10)
        if response.status_code != 201:
            raise RuntimeError(f"the {service} refused to arm {name!r}: HTTP {response.status_code} {response.text[:200]}")
        armed.update(response.json())
        shots = "until removed" if count is None else f"for {count} operation(s)"
        return f"armed {service} fault {name!r} (step {armed.get('step')}, id {armed.get('id')}) {shots}"

    def disarm() -> str:
        if "id" not in armed:
            return "nothing armed"
        response = requests.delete(f"{url}/{armed['id']}", headers=headers, timeout=10)
        if response.status_code == 404:
            return f"{service} fault {name!r} already consumed"
        if response.status_code != 200:
            raise RuntimeError(f"the {service} did not remove fault {armed['id']}: HTTP {response.status_code}")
        return f"removed {service} fault {name!r} (id {armed['id']})"

    plan.hooks.setdefault(1, []).append((f"arm the {service} fault {name} (admin API)", arm))
    plan.restores.append((f"disarm the {service} fault {name}", disarm))


def _plan_idp_admin(plan: FaultPlan, eco: Ecosystem, name: str, value: Any) -> None:
    url = f"{eco.url('idp')}/admin/failures"
    headers = {"Authorization": f"Bearer {eco.secret('SIGNLAB_IDP_ADMIN_TOKEN') or ''}"}
    armed: dict[str, Any] = {}

    def arm() -> str:
        body = {"name": name, "value": value, "count": 1,
                "client_id": eco.setting("signer", "idp_client_id") or "signlab-signer"}
        response = requests.post(url, json=body, headers=headers, timeout=10)
        if response.status_code != 201:
            raise RuntimeError(f"the IdP admin API refused to arm {name!r}: HTTP {response.status_code} {response.text[:200]}")
        armed.update(response.json())
        return f"armed IdP failure {name!r} through the admin API (id {armed.get('id')})"

    def disarm() -> str:
        if "id" not in armed:
            return "nothing armed"
        response = requests.delete(f"{url}/{armed['id']}", headers=headers, timeout=10)
        return "IdP failure already consumed" if response.status_code == 404 else f"removed IdP failure {armed['id']}"

    plan.hooks.setdefault(1, []).append((f"arm IdP failure {name} (admin API)", arm))
    plan.restores.append(("disarm the IdP failure", disarm))


def _plan_outage(plan: FaultPlan, eco: Ecosystem, service: str, before_step: int, mode: str) -> None:
    control = eco.control
    assert control is not None
    state = {"done": False}

    def down() -> str:
        state["done"] = True
        return control.pause(service) if mode == "pause" else control.stop(service)

    def up() -> str:
        if not state["done"]:
            return f"{service} was never taken down"
        # start() is a no-op for a running service, so this also repairs a half-done stop.
        return control.resume(service) if mode == "pause" else control.start(service)

    plan.hooks.setdefault(before_step, []).append((f"{mode} the {service} before step {before_step}", down))
    plan.restores.append((f"bring the {service} back", up))
