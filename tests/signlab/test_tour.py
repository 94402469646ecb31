"""``signlab tour`` against the real ecosystem (four gunicorn processes on free loopback ports):
headless, and in browser mode with a real Chromium playing the class."""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.registry import REGISTRY
from signlab.cli import main
from signlab.runtime import LocalRuntime
from shared.testing import chromium, free_port
from shared.tracing import TraceStore, build_transaction, render_mermaid

sys.path.insert(0, str(Path(__file__).parents[1] / "shared"))

from test_tracing import check_mermaid  # noqa: E402


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntime]:
    runtime = LocalRuntime(tmp_path_factory.mktemp("tour") / "var", {e.info.name: free_port() for e in REGISTRY})
    runtime.up(timeout=90, progress=lambda _line: None)
    yield runtime
    runtime.down()


@pytest.mark.processes
@pytest.mark.hsm
def test_auto_tour_runs_and_explains_every_step(running: LocalRuntime, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--data-dir", str(running.data_dir), "tour", "--auto", "--delay", "0"])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    for flow_step in range(1, 11):
        assert f"━━ Step {flow_step}: " in out
    assert "Why: " in out
    assert "SCASP → SSASP  pushed authorization request (PAR)" in out
    # Every arrow is printed under the heading of its own step.
    heading = 0
    for line in out.splitlines():
        found = re.match(r"(?:━━ Step |   · step )(\d+)", line)
        heading = int(found.group(1)) if found else heading
        arrow = re.match(r"   \[ ?(\d+)\]", line)
        if arrow:
            assert int(arrow.group(1)) == heading, line
    assert "SSASP → TSP    certificate request (CSR + ID token + client assertion)" in out
    assert "Signed: 1 document(s), transaction tx-" in out
    # Decoded, and redacted: no generated secret appears on the trainer's screen.
    assert '"signatureQualifier": "eu_eidas_qes"' in out
    for line in running.secrets_file.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            assert line.split("=", 1)[1] not in out
    tx_id = out.split("Signed: 1 document(s), transaction ")[1].split(".")[0]
    group = TraceStore(running.data_dir / "traces").find(tx_id)
    assert group is not None
    transaction = build_transaction(group)
    assert transaction.outcome == "completed"
    assert {1, 2, 3, 4, 5, 6, 7, 10} <= set(transaction.steps)
    check_mermaid(render_mermaid(transaction))


def test_tour_needs_a_running_ecosystem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--data-dir", str(tmp_path), "tour", "--auto"])
    assert code == 2 and f"signlab --data-dir {tmp_path.resolve()} up" in capsys.readouterr().err


@pytest.mark.processes
@pytest.mark.hsm
def test_browser_tour_waits_for_the_class_and_narrates_each_step(running: LocalRuntime, tmp_path: Path) -> None:
    """``--browser``: the tour prints the review link, a real browser (the class) reviews, logs in
    and consents; the tour narrates steps 1-10 as they happen, wrapped at the terminal width."""
    screenshots = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
    screenshots.mkdir(parents=True, exist_ok=True)
    tour = subprocess.Popen(
        [sys.executable, "-c", "import sys; from signlab.cli import main; sys.exit(main(sys.argv[1:]))",
         "--data-dir", str(running.data_dir), "tour", "--browser", "--auto", "--delay", "0", "--timeout", "240", "--no-payloads"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "COLUMNS": "100"})
    lines: list[str] = []
    try:
        assert tour.stdout is not None
        for line in tour.stdout:
            lines.append(line.rstrip("\n"))
            if "/review/" in line and line.strip().startswith("http"):
                break
        review_url = lines[-1].strip()
        assert review_url.startswith(running.url("portal") + "/review/"), lines
        with chromium() as browser:
            page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
            page.set_default_timeout(30_000)
            page.goto(review_url)
            page.click("#confirm")
            page.wait_for_url(re.compile(re.escape(running.url("idp")) + r"/login/"))
            page.select_option("#person", "kari-nordmann")
            page.click("#continue")
            page.check("#means-no-bankid")
            page.screenshot(path=str(screenshots / "tour-browser-login.png"), full_page=True)
            page.click("#continue")
            page.fill("#otp", page.locator("#test-otp").inner_text().strip())
            page.click("#confirm")
            page.wait_for_url(re.compile(re.escape(running.url("signer")) + r"/oauth2/consent/"))
            page.screenshot(path=str(screenshots / "tour-browser-consent.png"), full_page=True)
            page.click('button[name="decision"][value="approve"]')
            page.wait_for_url(re.compile(re.escape(running.url("portal")) + r"/review/"))
            lines += [line.rstrip("\n") for line in tour.stdout]
            assert tour.wait(timeout=120) == 0, "\n".join(lines)
            out = "\n".join(lines)
            # The terminal as the class saw it, for the record.
            page.set_content(f"<pre style='font:14px monospace;margin:1rem;white-space:pre'>{html.escape(out)}</pre>")
            page.screenshot(path=str(screenshots / "tour-browser-terminal.png"), full_page=True)
    finally:
        if tour.poll() is None:
            tour.kill()
            tour.wait()
        if tour.stdout is not None:
            tour.stdout.close()
    for flow_step in range(1, 11):
        assert f"━━ Step {flow_step}: " in out, out
    assert "Signed: 1 document(s), transaction tx-" in out
    assert f"--data-dir {running.data_dir}" in out  # the closing hint works from any directory
    # Wrapped at the terminal's width on word boundaries: only a single unbreakable word is longer.
    for line in lines:
        assert len(line) <= 100 or len(line.split()) == 1, line
