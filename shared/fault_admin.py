"""The admin API of :mod:`shared.faults` as Flask routes (``/admin/faults``), with its guard.

The board itself (:class:`shared.faults.FaultBoard`) is Flask-free; only this adapter, used by a
service's HTTP layer, touches the request. The routes and guards are described in
:mod:`shared.faults`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import jsonify, request

from shared.errors import NotFound
from shared.faults import FaultBoard, FaultInjectionDisabled

__all__ = ["add_fault_admin_routes", "lab_admin"]


def lab_admin(board: FaultBoard | None, disabled_hint: str) -> FaultBoard:
    """The board of a lab admin request, after its checks: 404 while fault injection is disabled
    (before looking at the token), then the admin bearer token (401, throttled).

    :raises FaultInjectionDisabled: no board.
    """
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
