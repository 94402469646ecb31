"""signlab.errors: one error root for the command line, and the exit codes it documents."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from signlab import cli
from signlab.errors import EXIT_FAILED, EXIT_USAGE, CliError

SOURCE = Path(__file__).resolve().parents[2] / "signlab"


def _exception_classes() -> list[tuple[str, str]]:
    """Every class in signlab/ whose name or bases say it is an exception."""
    found = []
    for path in sorted(SOURCE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                bases = [ast.unparse(b) for b in node.bases]
                if any(b.endswith(("Error", "Exception", "Error_")) or b in ("Refused", "FlowFailed") for b in bases) or \
                        node.name.endswith(("Error", "Error_")):
                    found.append((str(path.relative_to(SOURCE.parent)), node.name))
    return found


@pytest.mark.parametrize(("module_path", "name"), _exception_classes())
def test_every_cli_error_descends_from_the_one_root(module_path: str, name: str) -> None:
    import importlib

    module = importlib.import_module(module_path.removesuffix(".py").replace("/", "."))
    assert issubclass(getattr(module, name), CliError), f"{module_path}:{name} is not a signlab.errors.CliError"


def test_the_seven_former_roots_are_found() -> None:
    names = {name for _, name in _exception_classes()}
    assert {"RuntimeError_", "CommandError", "ScenarioFormatError", "AgentError", "Refused", "FlowFailed",
            "InterpolationError"} <= names


def test_main_prints_the_message_and_returns_the_error_exit_code(monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from signlab.scenarios.loader import ScenarioFormatError

    def failing(_args: object) -> int:
        raise ScenarioFormatError([])

    import signlab.commands.runtime as runtime_commands

    monkeypatch.setattr(runtime_commands, "_status", failing)  # the parser binds the handler when it is built
    assert cli.main(["status"]) == EXIT_USAGE
    assert capsys.readouterr().err.startswith("signlab: ")


def test_default_and_explicit_exit_codes() -> None:
    assert CliError("x").exit_code == EXIT_FAILED
    assert CliError("x", exit_code=EXIT_USAGE).exit_code == EXIT_USAGE
