"""A strict checker of the Mermaid sequence diagrams SignLab draws (trace renderer, tour).

Limits: for tests only. The line grammar below is the subset the renderer emits; Mermaid's own
parser (mermaid + jsdom from the npm registry, cached per user under ``~/.cache/signlab``) runs as
well when Node and npm are available.
"""

from __future__ import annotations

import fcntl
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

__all__ = ["MERMAID_CACHE", "MERMAID_SCRIPT", "check_mermaid"]

MERMAID_CACHE = Path.home() / ".cache" / "signlab" / "mermaid-check"
"""Where Mermaid's parser is installed (once per user, shared by test runs)."""
MERMAID_SCRIPT = Path(__file__).with_name("mermaid_check.mjs")
"""The Node script that parses a diagram from stdin with Mermaid and prints ``{"ok", "type"}``."""


_ID = r"(Signer|SCASP|SSASP|HSM|IPSP|TSP)"
_TEXT = r"[^\n;#<>%{}\"`]*(?:#\d+;[^\n;#<>%{}\"`]*)*"
_LINES = [
    re.compile(r"^sequenceDiagram$"),
    re.compile(rf"^    title {_TEXT}$"),
    re.compile(rf"^ {{4,8}}participant {_ID} as [A-Za-z][A-Za-z ()]*$"),
    re.compile(r"^    box [A-Za-z ]+$"),
    re.compile(r"^    end$"),
    re.compile(r"^    rect rgb\(\d{1,3}, \d{1,3}, \d{1,3}\)$"),
    re.compile(rf"^ {{4,8}}{_ID}(->>|-\)|-->>|--x|-x){_ID}: \d{{1,2}} · {_TEXT}$"),
    re.compile(rf"^ {{4,8}}Note over {_ID}: {_TEXT}$"),
]


def check_mermaid(text: str) -> None:
    """The subset of Mermaid's sequenceDiagram grammar the renderer emits, checked line by line,
    with balanced box/rect … end blocks, known participants only, and (when Node and the mermaid
    package are available) Mermaid's own parser."""
    lines = text.rstrip("\n").split("\n")
    assert lines[0] == "sequenceDiagram"
    depth = 0
    declared: set[str] = set()
    for number, line in enumerate(lines, start=1):
        assert any(p.match(line) for p in _LINES), f"line {number} is outside the grammar: {line!r}"
        if line.strip().startswith(("box ", "rect ")):
            depth += 1
        elif line.strip() == "end":
            depth -= 1
            assert depth >= 0, f"line {number}: 'end' without an open block"
        elif line.strip().startswith("participant "):
            declared.add(line.split()[1])
        else:
            for actor in re.findall(_ID, line.split(":", 1)[0]):
                assert actor in declared, f"line {number}: {actor} not declared"
    assert depth == 0, "unclosed box/rect block"
    _mermaid_parse(text)


def _mermaid_parse(text: str) -> None:
    """Mermaid's own parser (mermaid + jsdom from the npm registry, cached per user); skipped
    when Node or the registry is unavailable — the strict check above always runs."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        return
    cache = MERMAID_CACHE
    cache.parent.mkdir(parents=True, exist_ok=True)
    # Several test runs may share the per-user cache: one installs under a lock, into a fresh
    # folder renamed into place, so nobody ever sees a half-installed node_modules.
    with (cache.parent / "mermaid-check.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (cache / "node_modules" / "jsdom" / "package.json").exists():
            staging = Path(tempfile.mkdtemp(prefix="mermaid-check-", dir=cache.parent))
            (staging / "package.json").write_text('{"name": "signlab-mermaid-check", "private": true}')
            try:
                subprocess.run([npm, "install", "--no-audit", "--no-fund", "mermaid@11", "jsdom@26"], cwd=staging,
                               capture_output=True, timeout=240, check=True)
            except (subprocess.SubprocessError, OSError):
                shutil.rmtree(staging, ignore_errors=True)
                return
            shutil.rmtree(cache, ignore_errors=True)
            staging.rename(cache)
    script = cache / "check.mjs"  # beside its node_modules: ES modules resolve imports from their own folder
    shutil.copyfile(MERMAID_SCRIPT, script)
    result = subprocess.run([node, str(script)], input=text, capture_output=True, check=False, text=True, timeout=120, cwd=cache)
    assert result.returncode == 0, f"Mermaid rejected the diagram: {result.stdout}{result.stderr}"
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"ok": True, "type": "sequence"}
