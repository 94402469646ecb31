"""The trace store's incremental stitching and index (no services: span files written directly)."""

from __future__ import annotations

import json
import random
from pathlib import Path

from shared.tracing.redact import correlation_key
from shared.tracing.store import TraceStore, _stitch


def _span(trace: int, start: int, keys: list[str] = (), ids: list[str] = (), step: int = 2) -> dict[str, object]:  # type: ignore[assignment]
    return {"trace_id": f"{trace:032x}", "span_id": f"{start:016x}", "start": start, "end": start + 5,
            "attributes": {"signlab.correlation": [correlation_key(k) for k in keys], "signlab.transaction_ids": list(ids),
                           "signlab.step": step}}


def _write(directory: Path, name: str, spans: list[dict[str, object]]) -> None:
    with (directory / name).open("a") as handle:
        for span in spans:
            handle.write(json.dumps(span) + "\n")


def _flows(first: int, count: int) -> list[dict[str, object]]:
    """``count`` flows of three traces each, joined by a state and a code (like a browser chain)."""
    spans = []
    for n in range(first, first + count):
        base = n * 100
        spans += [_span(3 * n, base, [f"state-{n:08d}"], [f"tx-{n:012d}"]),
                  _span(3 * n + 1, base + 10, [f"state-{n:08d}", f"code-{n:08d}"]),
                  _span(3 * n + 2, base + 20, [f"code-{n:08d}"])]
    return spans


def test_incremental_reading_finds_the_same_transactions_as_a_full_stitch(tmp_path: Path) -> None:
    store = TraceStore(tmp_path)
    spans = _flows(0, 30)
    random.Random(7).shuffle(spans)
    _write(tmp_path, "20260101-signer-1.jsonl", spans[:40])
    store.refresh()  # a partial view first: the rest arrives in a later refresh
    _write(tmp_path, "20260101-portal-2.jsonl", spans[40:])
    expected = {tuple(g.trace_ids) for g in _stitch(store.spans())}
    assert {tuple(g.trace_ids) for g in store.groups()} == expected
    assert len(expected) == 30
    group = store.find("tx-000000000004")
    assert group is not None and group.trace_ids == [f"{12:032x}", f"{13:032x}", f"{14:032x}"]
    assert store.find("code-00000004") == group  # a correlation value
    assert store.find(f"{13:032x}") == group  # a trace id
    assert store.find("latest") == store.groups()[0] == store.transactions()[0]
    assert store.find("tx-unknown-000") is None
    # The reader keeps lines and parses a transaction's records when it is viewed: the same records.
    written = {(s["trace_id"], s["start"]): s for s in spans}
    assert all({k: v for k, v in record.items() if k != "_file"} == written[(record["trace_id"], record["start"])]
               for record in group.spans)
    assert {record["_file"] for record in group.spans} <= {"20260101-signer-1.jsonl", "20260101-portal-2.jsonl"}


def test_a_capped_reader_keeps_the_newest_spans(tmp_path: Path) -> None:
    store = TraceStore(tmp_path, max_spans=60)
    _write(tmp_path, "20260101-signer-1.jsonl", _flows(0, 40))
    store.refresh()
    assert len(store.spans()) <= 75
    assert store.find("tx-000000000039") is not None  # the newest flow is whole
    assert store.find("tx-000000000000") is None  # the oldest dropped out of this view
    assert all(len(g.trace_ids) == 3 for g in store.groups()[:10])


def test_latest_is_the_latest_signing_never_a_page_view(tmp_path: Path) -> None:
    signing = _flows(0, 1)
    views = [{**_span(100 + n, 1_000 + n), "attributes": {"signlab.step": 1, "signlab.activity": True}} for n in range(10)]
    metadata = [{**_span(200, 2_000), "attributes": {"signlab.step": 5, "signlab.inherit_step": True}}]
    unlabelled = [{**_span(300, 3_000), "attributes": {}}]
    _write(tmp_path, "20260101-portal-1.jsonl", signing + views + metadata + unlabelled)
    store = TraceStore(tmp_path)
    assert len(store.groups()) == 13 and store.groups()[0].trace_ids == [f"{300:032x}"]
    assert [g.trace_ids for g in store.transactions()] == [[f"{0:032x}", f"{1:032x}", f"{2:032x}"]]
    assert store.find("latest") == store.transactions()[0]
    assert len(store.activity()) == 12
