"""``docs/settings.md`` is generated from the settings classes and must match them exactly.

When this test fails, a setting was added, removed or changed in code (or the file was edited by
hand): run ``signlab docs settings`` and commit the result.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path

from pydantic import SecretStr

from services.registry import REGISTRY
from shared.navigation import LabSettings
from shared.settings import secret_fields
from shared.clock import ClockSettings
from shared.tracing.settings import TraceSettings
from signlab.cli import main
from signlab.commands.docs import SECRET_DEFAULT, settings_markdown

DOC = Path(__file__).resolve().parents[2] / "docs" / "settings.md"


def _rows() -> dict[str, list[str]]:
    """Table rows of the committed file by environment variable: [type, default, meaning]."""
    rows = {}
    for line in DOC.read_text().splitlines():
        match = re.match(r"^\| `(SIGNLAB_[A-Z0-9_]+)` \| (.*) \|$", line)
        if match:
            rows[match.group(1)] = [cell.strip() for cell in re.split(r"(?<!\\)\|", match.group(2))]
    return rows


def test_committed_file_is_up_to_date() -> None:
    expected = settings_markdown()
    current = DOC.read_text() if DOC.exists() else ""
    if current != expected:
        diff = "".join(difflib.unified_diff(current.splitlines(True), expected.splitlines(True),
                                            "docs/settings.md (committed)", "docs/settings.md (from the code)", n=1))
        raise AssertionError("docs/settings.md is out of date: run 'signlab docs settings' and commit it.\n"
                             + diff[:4000])


def test_every_setting_of_every_service_is_documented() -> None:
    rows = _rows()
    expected = {e.settings_class.env_name(name) for e in REGISTRY for name in e.settings_class.model_fields}
    expected |= {TraceSettings.env_name(name) for name in TraceSettings.model_fields}
    expected |= {LabSettings.env_name(name) for name in LabSettings.model_fields}
    expected |= {ClockSettings.env_name(name) for name in ClockSettings.model_fields}
    assert expected <= set(rows), f"missing: {sorted(expected - set(rows))}"
    assert set(rows) <= expected, f"documented but not a setting: {sorted(set(rows) - expected)}"
    for variable, cells in rows.items():
        assert len(cells) == 3 and all(cells), f"{variable}: empty type, default or meaning: {cells}"


def test_secrets_show_no_value() -> None:
    rows = _rows()
    for entry in REGISTRY:
        cls = entry.settings_class
        for name in secret_fields(cls):
            assert cls.model_fields[name].annotation is SecretStr
            assert rows[cls.env_name(name)][1] == SECRET_DEFAULT, f"{cls.env_name(name)} shows a value"
    assert len([r for r in rows.values() if r[1] == SECRET_DEFAULT]) == sum(len(secret_fields(e.settings_class))
                                                                           for e in REGISTRY)


def test_defaults_are_the_codes(tmp_path: Path) -> None:
    """Spot checks that the generator reads defaults and ranges, not a copy of them."""
    rows = _rows()
    assert rows["SIGNLAB_SIGNER_PORT"][:2] == ["integer, 1–65535", "`8003`"]
    assert rows["SIGNLAB_CA_CERT_VALIDITY_MINUTES"][1] == "`15`"
    assert rows["SIGNLAB_SIGNER_PORTAL_QUALIFIERS"][1] == '`["eu_eidas_qes", "eu_eidas_aes"]`'
    assert rows["SIGNLAB_TRACE_ENABLED"][:2] == ["boolean", "`true`"]
    assert rows["SIGNLAB_SIGNER_STATE_DIR"][1] == "empty"


def test_command_writes_and_checks(tmp_path: Path, capsys: object) -> None:
    target = tmp_path / "settings.md"
    assert main(["docs", "settings", "--check", "-o", str(target)]) == 1
    assert main(["docs", "settings", "-o", str(target)]) == 0
    assert target.read_text() == settings_markdown()
    assert main(["docs", "settings", "--check", "-o", str(target)]) == 0
    target.write_text(target.read_text().replace("`8003`", "`9003`"))
    assert main(["docs", "settings", "--check", "-o", str(target)]) == 1
