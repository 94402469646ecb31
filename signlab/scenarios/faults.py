"""Fault injection: turn a scenario's ``faults:`` into login-hint directives, hooks and restores.

Every fault kind (``scenarios/README.md`` has the full table):

* ``idp`` — a named failure of the IdP (``services/idp/failures.py``): by default a ``login_hint``
  directive (``kari-nordmann@no-bankid!cancel``), or ``via: admin`` through the IdP's guarded admin
  API (``POST /admin/failures``, armed for one request, removed afterwards).
* ``clock`` — the IdP's clock runs ahead/behind: the IdP failure ``clock-skew=<seconds>``.
* ``network`` — ``target: idp-token``: the IdP token endpoint answers late (``slow=<seconds>``);
  ``target: agent``: the user agent waits before the step (think time, lets codes/requests age).
* ``outage`` — stop (or pause) a service before a step and start it again afterwards.
* ``tamper`` — protocol-level tampering by the partner driver (see :mod:`signlab.scenarios.agent`).
* ``revoke`` — the CA revokes the signer's certificate after signing (admin API), then validation.
* ``user`` — the signer's own choices (``decline-consent``).
* ``hsm``, ``ca: wrong-key``, ``tsa: unavailable`` — need hooks the services do not offer (yet);
  :func:`unsupported` names what is missing and the runner reports the scenario as skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

from signlab.scenarios.environment import Ecosystem
from signlab.scenarios.model import Scenario

__all__ = ["FaultPlan", "plan_faults", "unsupported"]

MISSING_HOOKS = {
    "hsm": "the signer offers no HSM failure hook (needed: a guarded admin/test hook that makes the next "
           "PKCS#11 sign (step 9) or key generation (step 6) fail)",
    "ca": "the CA offers no 'issue for the wrong key' hook (needed: a guarded admin fault that makes the next "
          "issuance certify a different public key than the CSR's)",
    "tsa": "the TSA cannot be stopped apart from the CA (needed: a guarded admin fault on the CA that makes "
           "POST /tsa answer 503, or a separate TSA URL setting for the portal)",
}


def unsupported(scenario: Scenario, eco: Ecosystem) -> str | None:
    """Why this scenario cannot run against ``eco`` (None when it can)."""
    for fault in scenario.faults:
        if fault.kind in MISSING_HOOKS:
            return f"fault '{fault.describe()}' cannot be injected: {MISSING_HOOKS[fault.kind]}"
        if fault.kind == "outage" and eco.control is None:
            return f"fault '{fault.describe()}' needs control over the services (local runtime or docker engine)"
        if fault.kind == "idp" and fault.params.get("via") == "admin":
            problem = _idp_admin_problem(eco)
            if problem:
                return problem
        if fault.kind == "revoke" and not eco.secret("SIGNLAB_CA_ADMIN_TOKEN"):
            return "the revoke fault needs the CA admin token (SIGNLAB_CA_ADMIN_TOKEN); run against a local runtime"
    if scenario.driver == "partner":
        if scenario.request.format != "CAdES" or scenario.request.flow != "person-signing":
            return "the partner driver drives CAdES in the person-signing flow only"
        if not (eco.secret("SIGNLAB_PORTAL_SIGNER_CLIENT_SECRET") or eco.secret("SIGNLAB_SIGNER_PORTAL_CLIENT_SECRET")):
            return "the partner driver needs the portal's client secret (run against a local runtime)"
    return None


def _idp_admin_problem(eco: Ecosystem) -> str | None:
    """Probe the IdP's admin API (``GET /admin/failures``); None when usable."""
    token = eco.secret("SIGNLAB_IDP_ADMIN_TOKEN")
    if not token:
        return "a fault via the IdP admin API needs SIGNLAB_IDP_ADMIN_TOKEN (run against a local runtime)"
    try:
        response = requests.get(f"{eco.url('idp')}/admin/failures", headers={"Authorization": f"Bearer {token}"},
                                timeout=5)
    except requests.RequestException as exc:
        return f"the IdP admin API does not answer ({exc.__class__.__name__})"
    if response.status_code == 200:
        return None
    return (f"the IdP admin API is not usable (HTTP {response.status_code}); start SignLab with "
            "SIGNLAB_IDP_ADMIN_API_ENABLED=true")


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
    return plan


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
