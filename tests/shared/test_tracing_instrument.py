"""Correlation keys collected by the instrumentation (what joins the traces of one transaction)."""

from __future__ import annotations

from shared.tracing.instrument import _json_keys, _note
from shared.tracing.redact import correlation_key


def test_an_oauth_state_is_a_correlation_key() -> None:
    keys: list[str] = []
    _note("state", "Zx81-_kQp0aVbT3w9uYt", keys, [])
    assert keys == [correlation_key("Zx81-_kQp0aVbT3w9uYt")]


def test_a_lifecycle_state_in_a_status_body_joins_nothing() -> None:
    # Every completed transaction's status answer says "state": "completed"; as a key it joined
    # all flows of a run into one transaction.
    keys: list[str] = []
    ids: list[str] = []
    _json_keys({"state": "completed", "transaction_id": "tx-0123456789abcdef"}, keys, ids)
    assert keys == [correlation_key("tx-0123456789abcdef")]
    assert ids == ["tx-0123456789abcdef"]
