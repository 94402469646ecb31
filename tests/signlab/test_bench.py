"""``signlab bench`` on a real ecosystem (four gunicorn processes on free loopback ports): a small
run completes, every signature verifies, and the numbers are sane. No timing assertions: the
targets are checked by running the bench (`docs/performance.md`), never in the suite."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.registry import REGISTRY
from shared.testing import free_port
from signlab.bench import TARGETS, percentiles, run_bench
from signlab.cli import main
from signlab.runtime import LocalRuntime

pytestmark = [pytest.mark.processes, pytest.mark.hsm]


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntime]:
    environ = {**os.environ, "SIGNLAB_SIGNER_MAX_DOCUMENTS": "100"}
    environ.pop("SIGNLAB_DATA_DIR", None)
    runtime = LocalRuntime(tmp_path_factory.mktemp("bench") / "var", {e.info.name: free_port() for e in REGISTRY},
                           environ=environ)
    runtime.up(timeout=90, progress=lambda _line: None)
    yield runtime
    runtime.down()


def test_percentiles_nearest_rank() -> None:
    stats = percentiles([5.0, 1.0, 3.0, 2.0, 4.0])
    assert stats["n"] == 5 and stats["p50"] == 3.0 and stats["min"] == 1.0 and stats["max"] == 5.0
    assert stats["p95"] == 5.0 and stats["p99"] == 5.0
    assert percentiles([]) == {"n": 0}


def test_a_small_bench_completes_with_sane_numbers(running: LocalRuntime) -> None:
    lines: list[str] = []
    report = run_bench(running, flows=20, concurrency=4, signatures=12, batch=10, progress=lines.append)
    assert report.ok, report.table()
    e2e, signer, batch = report.e2e, report.signer, report.batch
    # e2e: every flow completed and verified; percentiles ordered; local pyHanko measured.
    assert e2e["completed"] == 20 and e2e["flows_per_second"] > 0
    lat = e2e["latency_ms"]
    assert 0 < lat["min"] <= lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    assert 0 < e2e["local_ms"]["p50"] < lat["p50"]  # a remote flow does strictly more than a local signature
    assert e2e["ratio"] == pytest.approx(lat["p50"] / e2e["local_ms"]["p50"], rel=0.01)
    assert e2e["ratio_alone"] == pytest.approx(e2e["sequential_latency_ms"]["p50"] / e2e["local_ms"]["p50"], rel=0.01)
    # Per-step medians come from the trace store: the steps the wire shows, each positive.
    steps = {int(k): v for k, v in e2e["steps_ms"].items()}
    assert {1, 2, 3, 5, 6, 7, 10} <= set(steps), steps
    assert all(v >= 0 for v in steps.values())
    assert set(e2e["cpu_ms_per_flow"]) == {e.info.name for e in REGISTRY} | {"bench"}
    # signer: every signDoc made a verified signature; the floor has every operation.
    assert signer["completed"] == 12 and signer["signatures_per_second"] > 0
    assert set(signer["floor_ms"]) == {"keygen", "csr", "certificate", "cms", "destroy", "total"}
    assert all(signer["floor_ms"][k]["p50"] > 0 for k in signer["floor_ms"])
    assert signer["ratio"] > 0
    # one exchange without crypto (CSC info): the signer's and the bench's CPU per call.
    assert set(signer["exchange_cpu_ms"]) == {"bench", "signer"} and sum(signer["exchange_cpu_ms"].values()) > 0
    # batch: one authorization, ten signed PDFs, phases add up to the total.
    assert batch["documents"] == 10 and batch["seconds"] > 0
    assert sum(batch["phases_s"].values()) == pytest.approx(batch["seconds"], abs=0.01)
    # memory of every service, in MiB (a Python service needs more than 20 MiB and less than 2 GiB).
    assert set(report.rss_peak_mib) == {e.info.name for e in REGISTRY}
    assert all(20 < v < 2048 for v in report.rss_peak_mib.values())
    targets = {t["target"]: t for t in report.targets()}
    assert set(targets) == set(TARGETS)
    assert targets["batch_seconds"]["met"] is None  # a batch of 10 is not the target's 100
    assert targets["e2e_throughput"]["met"] is None  # concurrency 4 is not the target's 8
    # The CPU budget: what each needed throughput leaves per item on these CPUs, against the measured CPU.
    cpus = report.machine["cpus"]
    budget = {b["what"]: b for b in report.budget()}
    e2e_cpu, signer_cpu = sum(e2e["cpu_ms_per_flow"].values()), signer["cpu_ms_per_signature"]
    little = budget["e2e median ≤ 1.5 × local at concurrency 4 (Little's law)"]
    # the report rounds to 0.1/s: on a slow machine the figure is small and the rounding dominates
    assert little["needs_per_second"] == pytest.approx(4 / (1.5 * e2e["local_ms"]["p50"] / 1000), rel=0.01, abs=0.05)
    assert little["allowed_cpu_ms"] == pytest.approx(1000 * cpus / little["needs_per_second"], rel=0.01)
    assert little["measured_cpu_ms"] == pytest.approx(e2e_cpu, abs=0.01)
    assert budget["e2e ≥ 20 flows/s"]["allowed_cpu_ms"] == pytest.approx(1000 * cpus / 20)
    assert budget["signer ≥ 300 signatures/s"]["measured_cpu_ms"] == pytest.approx(sum(signer_cpu.values()), abs=0.01)
    own = budget["signer ≥ 300/s: the signer's own process"]
    assert own["allowed_cpu_ms"] == pytest.approx(1000 / 300, abs=0.01)
    assert own["measured_cpu_ms"] == signer_cpu["signer"]
    assert "CPU budget on" in report.table() and report.as_dict()["budget"] == report.budget()
    assert any(line.startswith("e2e: ") for line in lines) and any(line.startswith("signer: ") for line in lines)


def test_the_cli_writes_a_table_and_json(running: LocalRuntime, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_file = tmp_path / "bench.json"
    code = main(["--data-dir", str(running.data_dir), "bench", "--parts", "e2e", "--flows", "4", "--concurrency", "2",
                 "--json", str(out_file)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "e2e: 4 flows (PAdES B-B, QES, steps 1-10) at concurrency 2" in out
    assert "ratio e2e median / local median" in out and out.rstrip().endswith("OK")
    data = json.loads(out_file.read_text())
    assert data["ok"] is True and data["e2e"]["completed"] == 4 and data["signer"] == {}
    assert data["machine"]["cpus"] >= 1


def test_unknown_part_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--data-dir", str(tmp_path), "bench", "--parts", "e2e,warp"]) == 2
    assert "unknown part(s) warp" in capsys.readouterr().err
