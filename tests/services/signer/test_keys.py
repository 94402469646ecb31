"""One-time key handles on the real SoftHSM token: created at step 6, destroyed at step 9, audited."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from services.signer.faults import HSM_KEYGEN
from services.signer.hsm import Hsm, HsmError
from services.signer.keys import OneTimeKeys
from shared.audit import AuditLog

pytestmark = pytest.mark.hsm


@pytest.fixture
def keys(own_hsm: Hsm, tmp_path: Path) -> OneTimeKeys:
    return OneTimeKeys(own_hsm, AuditLog(tmp_path / "audit.jsonl"), "ec-p256")


def on_token(keys: OneTimeKeys, label: str) -> list[dict[str, object]]:
    return [row for row in keys.hsm.key_objects() if row["label"] == label]


def test_a_key_lives_from_step_6_to_step_9(keys: OneTimeKeys) -> None:
    key = keys.step6_create("tx-keys-1")
    assert keys.get(key.key_id) == key and key.algorithm == "ec-p256"
    assert {row["class"] for row in on_token(keys, "tx-keys-1")} == {"private_key", "public_key"}
    assert not any(row["token_object"] for row in on_token(keys, "tx-keys-1"))  # session objects only
    keys.step9_destroy(key.key_id, "tx-keys-1")
    keys.step9_destroy(key.key_id, "tx-keys-1")  # already gone: safe in a finally block
    assert keys.get(key.key_id) is None and on_token(keys, "tx-keys-1") == []
    entries = [(e.event, e.step, e.data.get("objects")) for e in keys.audit.entries()]
    assert entries == [("key.created", 6, None), ("key.destroyed", 9, 2), ("key.destroyed", 9, 0)]


def test_a_refused_generation_is_audited_and_leaves_nothing(keys: OneTimeKeys, failing_hsm: Any) -> None:
    failing_hsm.arm(HSM_KEYGEN)
    with pytest.raises(HsmError):
        keys.step6_create("tx-keys-2")
    assert on_token(keys, "tx-keys-2") == []
    assert [(e.event, e.step) for e in keys.audit.entries()] == [("key.refused", 6)]


def test_leftovers_of_a_previous_process_are_destroyed_and_recorded(keys: OneTimeKeys) -> None:
    leftover = keys.hsm.create_one_time_key("ec-p256", label="tx-keys-leftover")  # not registered here
    keys.destroy_leftovers()
    assert on_token(keys, "tx-keys-leftover") == []
    recorded = [e.data["key_id"] for e in keys.audit.entries() if e.event == "hsm.leftover_destroyed"]
    assert recorded.count(leftover.key_id) == 2  # the private and the public half
