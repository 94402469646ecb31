"""Guarded fault injection shared by the services: a board of armed faults and its admin API.

A service that can fail on purpose (the signer's HSM, the CA's issuance and TSA) names its faults
in a catalogue (:class:`FaultSpec`: name, flow step, what happens) and builds one
:class:`FaultBoard` **only when its ``FAULTS_ENABLED`` setting is true**; otherwise the service
holds ``None`` and its hooks never consult anything. Its code asks ``board.fire(name)`` at the
hook point: a fault armed for that name is consumed (one-shot by default) and the hook makes the
operation fail the way the catalogue says.

The admin API (:func:`add_fault_admin_routes`, the same on every service)::

    GET    /admin/faults        → {"armed": [...], "known": [{"name", "step", "description"}]}
    POST   /admin/faults        {"name": "...", "count": 1}  → 201 {"id", "name", "step", "remaining", ...}
                                count: how many times it fires (default 1; null = until removed)
    DELETE /admin/faults        → {"removed": n}
    DELETE /admin/faults/<id>   → {"removed": 1} (404 when unknown or already consumed)

Guards: 404 ``not_found`` while the service's faults are disabled (even with the right token);
otherwise ``Authorization: Bearer <admin token>`` compared in constant time, 401 ``invalid_token``;
wrong tokens are throttled per address (:class:`shared.guard.SecretGuard`, 429 ``too_many_attempts``).
Every armed, fired and removed fault is written to the service's hash-chained audit log
(``fault.armed``, ``fault.fired`` with the step, ``fault.disarmed``).

Limits: the board lives in the service process (the runtime runs one worker process per service;
a restart forgets armed faults). Faults are global to the process: a fault armed during someone
else's flow hits that flow — this is a lab tool.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import SecretStr

from shared.errors import InvalidRequest, InvalidToken, NotFound
from shared.guard import SecretGuard, bearer_token

__all__ = [
    "MAX_COUNT",
    "ArmedFault",
    "FaultBoard",
    "FaultInjectionDisabled",
    "FaultRecorder",
    "FaultSpec",
    "add_fault_admin_routes",
    "lab_admin",
]

MAX_COUNT = 1000
"""Largest ``count`` one arm request may ask for (use ``null`` for "until removed")."""


class FaultRecorder(Protocol):
    """Where armed/fired faults are written (``shared.audit.AuditLog.append`` fits)."""

    def append(self, event: str, *, step: int | None = None, **data: Any) -> Any:
        """Append one audit entry."""


@dataclass(frozen=True)
class FaultSpec:
    """One fault a service can inject.

    :ivar name: the name used by the admin API (``hsm-sign``).
    :ivar step: the flow step where it shows (1-10).
    :ivar description: what happens, for the docs and ``GET /admin/faults``.
    """

    name: str
    step: int
    description: str

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"name": self.name, "step": self.step, "description": self.description}


@dataclass
class ArmedFault:
    """A fault armed through the admin API; ``remaining`` None means until removed."""

    id: int
    name: str
    step: int
    remaining: int | None
    created: float
    fired: int = 0

    def as_dict(self) -> dict[str, Any]:
        """JSON form for the admin API."""
        return {"id": self.id, "name": self.name, "step": self.step, "remaining": self.remaining,
                "fired": self.fired, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.created))}


class FaultInjectionDisabled(NotFound):
    """The service's fault injection is off (its ``FAULTS_ENABLED`` setting is false)."""

    default_description = "fault injection is disabled"


class FaultBoard:
    """The armed faults of one service process (thread-safe).

    :param catalogue: the faults this service knows.
    :param admin_token: the bearer token of the admin API.
    :param recorder: the audit log the armed/fired/removed faults are written to.
    """

    def __init__(self, catalogue: Sequence[FaultSpec], admin_token: SecretStr, recorder: FaultRecorder) -> None:
        self.catalogue = {spec.name: spec for spec in catalogue}
        self._guard = SecretGuard(admin_token, "the fault-injection admin API")
        self._recorder = recorder
        self._armed: list[ArmedFault] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def check_token(self, authorization: str | None, address: str | None = None) -> None:
        """Check the admin API's bearer token (``address``: the caller, for the throttle).

        :raises InvalidToken: missing or wrong (nothing about the expected token is revealed).
        :raises shared.guard.TooManyAttempts: too many wrong tokens from ``address``.
        """
        if not self._guard.matches(bearer_token(authorization), address):
            raise InvalidToken("the fault-injection admin API needs 'Authorization: Bearer <admin token>'")

    def arm(self, name: str, count: int | None = 1) -> ArmedFault:
        """Arm ``name`` for the next ``count`` operations (None: until removed).

        :raises InvalidRequest: unknown name or bad count.
        """
        spec = self.catalogue.get(name)
        if spec is None:
            raise InvalidRequest(f"unknown fault {str(name)[:40]!r}; known: {', '.join(sorted(self.catalogue))}")
        if count is not None and (isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_COUNT):
            raise InvalidRequest(f"count must be an integer 1-{MAX_COUNT}, or null for 'until removed'")
        with self._lock:
            armed = ArmedFault(next(self._ids), spec.name, spec.step, count, time.time())
            self._armed.append(armed)
        self._recorder.append("fault.armed", fault_id=armed.id, name=armed.name, fault_step=spec.step, count=count)
        return armed

    def armed(self) -> list[ArmedFault]:
        """The faults still armed, oldest first (copies)."""
        with self._lock:
            return [ArmedFault(**vars(a)) for a in self._armed]

    def disarm(self, fault_id: int | None = None) -> int:
        """Remove one armed fault (by id) or all; return how many were removed."""
        with self._lock:
            before = len(self._armed)
            self._armed = [a for a in self._armed if fault_id is not None and a.id != fault_id]
            removed = before - len(self._armed)
        if removed:
            self._recorder.append("fault.disarmed", fault_id=fault_id, removed=removed)
        return removed

    def fire(self, name: str, **context: Any) -> ArmedFault | None:
        """Consume one shot of the oldest fault armed as ``name``; None when none is armed.

        The caller makes its operation fail when a fault is returned. ``context`` (transaction
        id, serial …; never secrets) goes into the ``fault.fired`` audit entry.
        """
        with self._lock:
            armed = next((a for a in self._armed if a.name == name), None)
            if armed is None:
                return None
            armed.fired += 1
            if armed.remaining is not None:
                armed.remaining -= 1
                if armed.remaining <= 0:
                    self._armed.remove(armed)
            shot = ArmedFault(**vars(armed))
        self._recorder.append("fault.fired", step=shot.step, fault_id=shot.id, name=shot.name,
                              remaining=shot.remaining, **context)
        return shot

    def parse_arm_request(self, body: Any) -> tuple[str, int | None]:
        """``(name, count)`` from the JSON body of ``POST /admin/faults``.

        :raises InvalidRequest: not an object, no name.
        """
        if not isinstance(body, dict) or not isinstance(body.get("name"), str):
            raise InvalidRequest("expected a JSON object with a fault 'name' (and optionally 'count')")
        return body["name"], body.get("count", 1)


def lab_admin(board: FaultBoard | None, disabled_hint: str) -> FaultBoard:
    """The board of a lab admin request, after its checks: 404 while fault injection is disabled
    (before looking at the token), then the admin bearer token (401, throttled).

    :raises FaultInjectionDisabled: no board.
    """
    from flask import request

    if board is None:
        raise FaultInjectionDisabled(f"fault injection is disabled; {disabled_hint}")
    board.check_token(request.headers.get("Authorization"), request.remote_addr)
    return board


def add_fault_admin_routes(blueprint: Any, board_of: Callable[[], FaultBoard | None], disabled_hint: str) -> None:
    """Add the guarded ``/admin/faults`` API to ``blueprint`` (a Flask blueprint of the service).

    :param board_of: the app's board, or None while fault injection is disabled (then every
        route answers 404, before looking at the token).
    :param disabled_hint: how to enable it, for the 404 description (e.g. the setting's name).
    """
    from flask import jsonify, request  # the board above stays usable without Flask

    def guarded() -> FaultBoard:
        return lab_admin(board_of(), disabled_hint)

    @blueprint.get("/admin/faults", endpoint="fault_admin_list")
    def list_faults() -> Any:
        """Armed faults and the catalogue."""
        board = guarded()
        return jsonify({"armed": [a.as_dict() for a in board.armed()],
                        "known": [s.as_dict() for s in board.catalogue.values()]})

    @blueprint.post("/admin/faults", endpoint="fault_admin_arm")
    def arm_fault() -> Any:
        """Arm a fault: ``{"name", "count"?}``."""
        board = guarded()
        name, count = board.parse_arm_request(request.get_json(silent=True))
        return jsonify(board.arm(name, count).as_dict()), 201

    @blueprint.delete("/admin/faults", endpoint="fault_admin_clear")
    def clear_faults() -> Any:
        """Remove every armed fault."""
        return jsonify({"removed": guarded().disarm()})

    @blueprint.delete("/admin/faults/<int:fault_id>", endpoint="fault_admin_remove")
    def remove_fault(fault_id: int) -> Any:
        """Remove one armed fault."""
        removed = guarded().disarm(fault_id)
        if not removed:
            raise NotFound(f"no armed fault {fault_id} (unknown, or already consumed)")
        return jsonify({"removed": removed})
