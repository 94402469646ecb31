"""The scenario guide's table of fault → error → step is the catalogue's, exactly.

When this test fails, a scenario was added or its expectation changed (or the table was edited by
hand): run ``signlab docs faults`` and commit the guide. The runner checks each row against the
running services *and* the distributed trace (``trace agrees``), so the table states what happens.
"""

from __future__ import annotations

import re
from pathlib import Path

from signlab.cli import main
from signlab.commands.docs import FAULT_TABLE_END, FAULT_TABLE_START, fault_table_markdown
from signlab.scenarios.loader import load_all

GUIDE = Path(__file__).resolve().parents[2] / "scenarios" / "README.md"


def test_the_guide_has_the_generated_table() -> None:
    text = GUIDE.read_text()
    assert fault_table_markdown() in text, "scenarios/README.md: run 'signlab docs faults' and commit it"


def test_every_refusal_of_the_catalogue_is_a_row_with_its_error_and_step() -> None:
    text = GUIDE.read_text()
    table = text[text.index(FAULT_TABLE_START):text.index(FAULT_TABLE_END)]
    for scenario in load_all():
        if scenario.expect.outcome != "refused":
            continue
        row = next(line for line in table.splitlines() if f"[`{scenario.name}`]" in line)
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert cells[2] == f"`{scenario.expect.error}`" and cells[3] == str(scenario.expect.step), row


def test_the_command_checks_and_writes(tmp_path: Path) -> None:
    guide = tmp_path / "README.md"
    guide.write_text(f"# Guide\n\n{FAULT_TABLE_START}\nold\n{FAULT_TABLE_END}\n")
    assert main(["docs", "faults", "--check", "-o", str(guide)]) == 1
    assert main(["docs", "faults", "-o", str(guide)]) == 0
    assert re.search(r"\| `idp: cancel` \| refused \| `access_denied` \| 4 \|", guide.read_text())
    assert main(["docs", "faults", "--check", "-o", str(guide)]) == 0
