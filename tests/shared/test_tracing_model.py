"""The transaction model on hand-made spans: what a transaction is, where it ends, where it failed.

Each case is a small set of span records as the services write them (``shared.tracing.instrument``
and ``flow_span``), so the rules of design §6 are checked one by one: activity is no transaction,
later views never extend one, one failure origin whose relays are drawn at its step, the outcomes.
"""

from __future__ import annotations

import hashlib
import base64
from typing import Any

from shared.tracing.model import build_transaction
from shared.tracing.redact import summarize
from shared.tracing.render import render_svg
from shared.tracing.store import TraceGroup

MS = 1_000_000
NOW = 1_800_000_000 * 1_000_000_000


def _span(span_id: str, step: int, message: str, start_ms: int, end_ms: int, *, parent: str | None = None,
          role: str = "SCASP", service: str = "portal", kind: str = "SERVER", **attributes: Any) -> dict[str, Any]:
    attrs = {"signlab.step": step, "signlab.response_step": attributes.pop("response_step", step),
             "signlab.message": message, "signlab.response": f"{message} answer", "signlab.outcome": "ok",
             "signlab.source_role": attributes.pop("source", "Signer"), "signlab.target_role": role,
             "signlab.channel": attributes.pop("channel", "front")}
    attrs.update({f"signlab.{k}": v for k, v in attributes.items()})
    return {"trace_id": "a" * 32, "span_id": span_id, "parent_id": parent, "kind": kind, "service": service, "role": role,
            "start": NOW + start_ms * MS, "end": NOW + end_ms * MS, "attributes": attrs}


def _transaction(*spans: dict[str, Any], now_ms: int = 10_000) -> Any:
    return build_transaction(TraceGroup(["a" * 32], list(spans)), now=NOW + now_ms * MS)


def test_page_views_are_activity_and_views_after_the_end_never_extend_a_signing() -> None:
    views = _transaction(_span("01", 1, "portal page", 0, 5, activity=True),
                         _span("02", 10, "validation request", 10, 20, activity=True))
    assert views.kind == "activity" and views.outcome == "ok"
    signing = _transaction(
        _span("11", 1, "signing request (API)", 0, 10),
        _span("12", 1, "review page", 20, 30, activity=True),  # before the end: part of it
        _span("13", 5, "authorization response (code, state)", 40, 400, response_step=10, completes=True,
              source="SSASP"),
        _span("14", 10, "result page", 5_000, 5_010, activity=True),  # later views
        _span("15", 10, "download", 9_000, 9_010, activity=True),
    )
    assert signing.kind == "signing" and signing.outcome == "completed"
    assert signing.duration_ms == 400.0 and [e.message for e in signing.later] == ["result page", "download"]
    drawn = render_svg(signing)
    assert "result page answer" not in drawn and "download answer" not in drawn
    assert "2 later request(s)" in drawn


def test_a_refusal_deep_inside_is_the_one_failed_step_and_its_relays_are_drawn_there() -> None:
    hsm = "step 9 (SSASP → HSM): the HSM could not sign (DeviceError)"
    tx = _transaction(
        _span("21", 1, "signing request (API)", 0, 10),
        _span("22", 5, "authorization response (code, state)", 20, 300, response_step=10, completes=True,
              source="SSASP", outcome="error", error="server_error", error_step=6,
              error_description=f"step 6 (SCASP → SSASP): the SSASP answered 500 server_error: {hsm}"),
        _span("23", 5, "portal's call", 30, 290, parent="22", kind="CLIENT"),
        _span("24", 6, "CSC signDoc (digests + SAD)", 35, 280, parent="23", role="SSASP", service="signer",
              response_step=10, channel="back", source="SCASP", outcome="error", error="server_error", error_step=9,
              error_description=hsm),
        _span("25", 8, "CMS signed attributes", 100, 110, parent="24", role="SSASP", service="signer",
              kind="INTERNAL", channel="internal", source="SSASP"),
        _span("26", 9, "C_Sign", 120, 130, parent="24", role="HSM", service="signer", kind="INTERNAL",
              channel="internal", source="SSASP", outcome="error", error="server_error", error_step=9,
              error_description=hsm),
    )
    assert tx.outcome == "refused" and tx.failure_step == 9 and tx.failure.message == "C_Sign"
    failed = [a for a in tx.arrows() if a.failed]
    assert {a.step for a in failed} == {9}
    assert [a.label for a in failed if a.origin] == ["✗ server_error: " + hsm]
    assert all(a.relay for a in failed if not a.origin)
    states = {s["step"]: s["state"] for s in tx.step_states()}
    assert states[9] == "failed" and states[10] == "not reached" and states[8] == "done"
    assert [s for s, state in states.items() if state == "failed"] == [9]


def test_an_error_arriving_at_a_redirect_uri_carries_the_earlier_step() -> None:
    cancel = "step 4 (Signer->IPSP): the user cancelled the login"
    tx = _transaction(
        _span("31", 1, "signing request (API)", 0, 10),
        _span("32", 3, "OIDC authentication request", 20, 30, role="IPSP", service="idp", response_step=4,
              outcome="error", error="access_denied", error_description=cancel),
        _span("33", 5, "OIDC authentication response (code)", 40, 50, role="SSASP", service="signer",
              outcome="error", error="access_denied", received_error=True,
              error_description=f"step 4 (Signer → IPSP): the eID provider answered access_denied: {cancel}"),
    )
    assert tx.failure_step == 4 and tx.failure.service == "idp"
    assert tx.steps == [1, 3, 4]  # the relayed error never reaches step 5
    assert {s["step"]: s["state"] for s in tx.step_states()}[5] == "not reached"


def test_a_flow_without_an_end_is_pending_then_abandoned() -> None:
    spans = (_span("41", 1, "signing request (API)", 0, 10), _span("42", 2, "the signer confirms the documents", 20, 30))
    assert _transaction(*spans, now_ms=60_000).outcome == "pending"
    abandoned = _transaction(*spans, now_ms=11 * 60_000)
    assert abandoned.outcome == "abandoned" and abandoned.current_step == 2
    assert {s["step"]: s["state"] for s in abandoned.step_states()}[2] == "stopped"


def test_a_hex_sha256_digest_is_named_sha256_like_its_base64_form() -> None:
    digest = hashlib.sha256(b"contract").digest()
    shown = summarize({"message_digest": digest.hex(), "hash": base64.b64encode(digest).decode(),
                       "hashV": digest.hex().upper()})
    assert shown["message_digest"] == shown["hash"] == shown["hashV"]
    assert shown["hash"].startswith("SHA-256 ") and digest.hex().upper()[:8] in shown["hash"]
