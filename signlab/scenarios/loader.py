"""Load scenario files: YAML with line numbers, JSON-Schema validation, precise errors.

Every problem is reported as ``<file>:<line>:<column>: <field>: <message>`` — the file, the line
and column of the offending node (or of its parent mapping when a key is missing) and the dotted
field path (``faults[1].idp``). PyYAML's composer keeps a start mark on every node; the loader
builds the Python value and a table from field path to mark in one walk, then runs the JSON
Schema (``scenarios/schema.json``) and a few semantic checks the schema cannot express (test
person and eID means exist in the IdP catalogue, IdP failure names exist, bundled samples exist,
tamper faults need the partner driver).

Limits: one YAML document per file; anchors and aliases are allowed (the alias's own position is
reported); duplicate keys are an error (PyYAML alone keeps the last one silently).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from yaml.constructor import SafeConstructor
from jsonschema.exceptions import ValidationError, best_match

from services.idp.catalogue import Catalogue, load_catalogue
from services.idp.failures import FAILURES
from shared.eudi import WALLET_MEANS_ID
from signlab.errors import EXIT_USAGE, CliError
from signlab.scenarios.model import (
    DEFAULT_INVARIANTS,
    DocumentSpec,
    Expectation,
    Fault,
    Persona,
    Scenario,
    SigningRequest,
    TimelineStep,
    ValidationExpectation,
)

__all__ = [
    "Problem",
    "ScenarioFormatError",
    "catalogue_dir",
    "discover",
    "load_all",
    "load_scenario",
    "parse_scenario",
    "samples_dir",
    "schema",
]

Path_ = tuple[str | int, ...]

PARTNER_TAMPERS = frozenset({"substitute-digest", "replay-sad", "reuse-code", "pkce-mismatch", "expire-sad",
                             "change-document-after-hashing"})
"""Tamper faults the partner driver does between protocol steps (the portal would not)."""


def catalogue_dir() -> Path:
    """The scenario directory: ``$SIGNLAB_SCENARIOS_DIR`` or ``<project>/scenarios``."""
    configured = os.environ.get("SIGNLAB_SCENARIOS_DIR")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[2] / "scenarios"


def samples_dir() -> Path:
    """The portal's bundled sample documents."""
    return Path(__file__).resolve().parents[2] / "services" / "portal" / "samples"


@cache
def schema() -> dict[str, Any]:
    """The JSON Schema of a scenario file (``scenarios/schema.json`` next to this project)."""
    path = Path(__file__).resolve().parents[2] / "scenarios" / "schema.json"
    return dict(json.loads(path.read_text()))


@dataclass(frozen=True)
class Problem:
    """One problem in one scenario file."""

    file: str
    line: int
    """1-based line (0 when unknown)."""
    column: int
    """1-based column (0 when unknown)."""
    field: str
    """Dotted field path (``request.format``, ``faults[2].idp``); empty for the whole document."""
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}" if self.line else self.file
        return f"{where}: {self.field or '(document)'}: {self.message}"


class ScenarioFormatError(CliError):
    """A scenario file is not valid; :attr:`problems` lists every problem found."""

    exit_code = EXIT_USAGE

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def field_name(path: Iterable[str | int]) -> str:
    """``("faults", 1, "idp")`` → ``faults[1].idp``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class _Marked:
    """Turns a composed YAML node tree into plain Python values and a path → (line, col) table."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.marks: dict[Path_, tuple[int, int]] = {}
        self.key_marks: dict[Path_, tuple[int, int]] = {}
        self.problems: list[Problem] = []
        self._constructor = SafeConstructor()

    def value(self, node: yaml.Node, path: Path_) -> Any:
        self.marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.MappingNode):
            self._constructor.flatten_mapping(node)  # merge keys (<<)
            result: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = self._constructor.construct_object(key_node, deep=True)
                if not isinstance(key, str):
                    key = str(key)
                child = (*path, key)
                if key in result:
                    line, col = key_node.start_mark.line + 1, key_node.start_mark.column + 1
                    first = self.key_marks.get(child, (0, 0))[0]
                    self.problems.append(Problem(self.file, line, col, field_name(child),
                                                 f"duplicate key {key!r} (first at line {first})"))
                    continue
                self.key_marks[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                result[key] = self.value(value_node, child)
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.value(item, (*path, i)) for i, item in enumerate(node.value)]
        return self._constructor.construct_object(node, deep=True)

    def mark(self, path: Path_, *, key: bool = False) -> tuple[int, int]:
        """The closest known mark for ``path``: its value's position (or its key's, with ``key``),
        walking up to the parent when the path does not exist (a missing field)."""
        probe = tuple(path)
        if not key and probe in self.marks:
            return self.marks[probe]
        while probe:
            if probe in self.key_marks:
                return self.key_marks[probe]
            if probe in self.marks:
                return self.marks[probe]
            probe = probe[:-1]
        return self.marks.get((), (1, 1))


CASE_INSENSITIVE = ("qualifier", "format", "level")
"""Request fields written in any case (``CAdES``, ``cades``: the portal API's spelling)."""


def _canonical_case(data: dict[str, Any]) -> None:
    """Spell the case-insensitive request fields as the schema does."""
    request = data.get("request")
    if not isinstance(request, dict):
        return
    fields = schema()["properties"]["request"]["properties"]
    for key in CASE_INSENSITIVE:
        value = request.get(key)
        if isinstance(value, str):
            request[key] = next((v for v in fields[key]["enum"] if v.lower() == value.strip().lower()), value)


def _schema_problems(data: Any, marked: _Marked) -> list[Problem]:
    validator = jsonschema.Draft202012Validator(schema())
    problems = []
    for error in validator.iter_errors(data):
        problems.append(_problem_of(error, marked))
    return sorted(problems, key=lambda p: (p.line, p.column, p.field))


def _problem_of(error: ValidationError, marked: _Marked) -> Problem:
    # oneOf/anyOf: report the most relevant sub-error instead of "is not valid under any".
    if error.context:
        deeper = best_match(error.context)
        if deeper is not None and len(deeper.absolute_path) >= len(error.absolute_path):
            error = deeper
    path = tuple(error.absolute_path)
    message = error.message
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = sorted(error.schema.get("properties", {}))
        extra = [k for k in error.instance if k not in allowed]
        if extra:
            path = (*path, extra[0])
            message = f"unknown field {extra[0]!r}; allowed here: {', '.join(allowed)}"
    elif error.validator == "required":
        missing = message.split(" is a required property")[0].strip("'\"")
        line, col = marked.mark(path)
        return Problem(marked.file, line, col, field_name((*path, missing)), "missing required field")
    elif error.validator in ("minProperties", "maxProperties") and error.schema.get("maxProperties") == 1:
        message = ("each timeline step is a mapping with exactly one key (clock, revoke, trusted_list, validate)"
                   if path[:1] == ("timeline",) else
                   "each fault is a mapping with exactly one key (idp, clock, network, outage, hsm, ca, tsa, ocsp, "
                   "trusted_list, tamper, revoke, user, wallet)")
    line, col = marked.mark(path, key=error.validator == "additionalProperties")
    return Problem(marked.file, line, col, field_name(path), message)


def _semantic_problems(data: dict[str, Any], marked: _Marked, base: Path) -> list[Problem]:
    problems: list[Problem] = []

    def add(path: Path_, message: str) -> None:
        line, col = marked.mark(path)
        problems.append(Problem(marked.file, line, col, field_name(path), message))

    catalogue = _idp_catalogue()
    persona = data.get("persona", {})
    if isinstance(persona, dict):
        person = catalogue.find_person(str(persona.get("person", "")))
        if person is None:
            add(("persona", "person"), f"unknown test person {persona.get('person')!r}; known: "
                f"{', '.join(p.id for p in catalogue.persons)}")
        eid = persona.get("eid")
        if eid is not None and catalogue.get_means(str(eid)) is None:
            add(("persona", "eid"), f"unknown eID means {eid!r}; known: {', '.join(m.id for m in catalogue.means)}")
    for i, doc in enumerate(data.get("documents", [])):
        if not isinstance(doc, dict):
            continue
        if "sample" in doc and not (samples_dir() / str(doc["sample"])).is_file():
            known = sorted(p.name for p in samples_dir().iterdir() if p.suffix in {".pdf", ".txt", ".json", ".xml"})
            add(("documents", i, "sample"), f"no bundled sample {doc['sample']!r}; known: {', '.join(known)}")
        if "path" in doc and not (base / str(doc["path"])).is_file():
            add(("documents", i, "path"), f"file not found: {base / str(doc['path'])}")
        if "text" in doc and "name" not in doc:
            add(("documents", i), "an inline text document needs a name")
    failures = _idp_failures()
    faults = data.get("faults", [])
    for i, fault in enumerate(faults):
        if not isinstance(fault, dict) or len(fault) != 1:
            continue
        kind, value = next(iter(fault.items()))
        if kind == "idp":
            name = value if isinstance(value, str) else value.get("failure") if isinstance(value, dict) else None
            if isinstance(name, str) and name not in failures:
                add(("faults", i, "idp"), f"unknown IdP failure {name!r}; known: {', '.join(failures)}")
    for i, fault in enumerate(faults):
        if isinstance(fault, dict) and "wallet" in fault and isinstance(persona, dict) and persona.get("eid") != WALLET_MEANS_ID:
            add(("faults", i, "wallet"), f"a wallet fault needs the persona to log in with the EUDI Wallet (eid: {WALLET_MEANS_ID})")
    for i, fault in enumerate(faults):
        if isinstance(fault, dict) and fault.get("tamper") in PARTNER_TAMPERS and data.get("driver") == "portal":
            add(("faults", i, "tamper"), f"tamper {fault['tamper']!r} acts between protocol steps and needs driver: partner")
    expect = data.get("expect", {})
    if data.get("timeline") and isinstance(expect, dict) and expect.get("outcome") != "signed":
        add(("timeline",), "a timeline happens after signing: it needs expect.outcome: signed")
    if isinstance(expect, dict) and expect.get("outcome") == "signed":
        for key in ("error", "step", "message_contains"):
            if key in expect:
                add(("expect", key), f"{key!r} only applies to outcome: refused")
    return problems


@cache
def _idp_catalogue() -> Catalogue:
    return load_catalogue()


@cache
def _idp_failures() -> dict[str, Any]:
    return dict(FAILURES)


def parse_scenario(text: str, *, file: str, name: str, base: Path) -> Scenario:
    """Validate ``text`` (the content of ``file``) and build the scenario.

    :raises ScenarioFormatError: with every problem found (syntax, schema, semantics).
    """
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        raise ScenarioFormatError([Problem(file, line, col, "", f"YAML syntax: {exc.problem or exc}")]) from None
    except yaml.YAMLError as exc:
        raise ScenarioFormatError([Problem(file, 0, 0, "", f"YAML: {exc}")]) from None
    if node is None:
        raise ScenarioFormatError([Problem(file, 1, 1, "", "the file is empty")])
    marked = _Marked(file)
    data = marked.value(node, ())
    problems = list(marked.problems)
    if not isinstance(data, dict):
        problems.append(Problem(file, 1, 1, "", "a scenario is a YAML mapping (title:, description:, …)"))
        raise ScenarioFormatError(problems)
    _canonical_case(data)
    problems += _schema_problems(data, marked)
    if not problems:
        problems += _semantic_problems(data, marked, base)
    if problems:
        raise ScenarioFormatError(problems)
    return _build(data, marked, name=name, path=Path(file), base=base)


def _build(data: dict[str, Any], marked: _Marked, *, name: str, path: Path, base: Path) -> Scenario:
    persona = Persona(data["persona"]["person"], data["persona"].get("eid"), data["persona"].get("device", "same-device"))
    documents = []
    for doc in data["documents"]:
        if "sample" in doc:
            spec = DocumentSpec("sample", doc["sample"], doc.get("name", doc["sample"]), doc.get("copies", 1))
        elif "path" in doc:
            resolved = (base / doc["path"]).resolve()
            spec = DocumentSpec("path", str(resolved), doc.get("name", resolved.name), doc.get("copies", 1))
        else:
            spec = DocumentSpec("text", doc["text"], doc["name"], doc.get("copies", 1))
        documents.append(spec)
    req = data["request"]
    request = SigningRequest(req["qualifier"], req["format"], req["level"], req.get("flow", "person-signing"),
                             bool(req.get("timestamp_fallback", False)))
    faults = []
    for i, raw in enumerate(data.get("faults", [])):
        kind, value = next(iter(raw.items()))
        params = dict(value) if isinstance(value, dict) else {"name": value}
        if kind == "idp" and "failure" in params:
            params["name"] = params.pop("failure")
        faults.append(Fault(kind, params, marked.mark(("faults", i))[0]))
    exp = data["expect"]
    validation = _validation(exp["validation"]) if "validation" in exp else None
    timeline = []
    for i, raw in enumerate(data.get("timeline", [])):
        kind, value = next(iter(raw.items()))
        line = marked.mark(("timeline", i))[0]
        if kind == "validate":
            timeline.append(TimelineStep(kind, {"at": value.get("at", "now")}, _validation(value["expect"]), line))
        else:
            timeline.append(TimelineStep(kind, dict(value) if isinstance(value, dict) else {"offset": value}, None, line))
    expectation = Expectation(
        outcome=exp["outcome"], error=exp.get("error"), step=exp.get("step"),
        message_contains=exp.get("message_contains"), signatures=exp.get("signatures"),
        trace=tuple(exp.get("trace", ())), trace_absent=tuple(exp.get("trace_absent", ())),
        validation=validation, invariants=tuple(exp.get("invariants", DEFAULT_INVARIANTS)),
    )
    needs_partner = any(f.kind == "tamper" and f.params["name"] in PARTNER_TAMPERS for f in faults)
    driver = data.get("driver") or ("partner" if needs_partner else "portal")
    return Scenario(
        name=name, path=path, title=data["title"], description=data["description"].strip(),
        tags=tuple(data["tags"]), persona=persona, documents=tuple(documents), request=request,
        driver=driver, faults=tuple(faults), expect=expectation,
        timeout_seconds=float(data.get("timeout_seconds", 120)), timeline=tuple(timeline),
    )


def _validation(v: dict[str, Any]) -> ValidationExpectation:
    return ValidationExpectation(v.get("indication"), v.get("sub_indication"), v.get("level"), v.get("qualified"),
                                 v.get("revoked"), v.get("qualification"), v.get("qualification_at_validation_time"),
                                 v.get("proof_of_existence"), v.get("timestamp_qualified"))


def load_scenario(path: Path) -> Scenario:
    """Load and validate one scenario file.

    :raises ScenarioFormatError: the file is invalid (every problem, with line and field).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioFormatError([Problem(str(path), 0, 0, "", f"cannot read: {exc}")]) from None
    return parse_scenario(text, file=str(path), name=path.stem, base=path.parent)


def discover(directory: Path | None = None) -> list[Path]:
    """The scenario files of a directory (``*.yaml`` / ``*.yml``), sorted by name."""
    root = directory or catalogue_dir()
    return sorted(p for p in root.iterdir() if p.suffix in {".yaml", ".yml"} and p.is_file())


def load_all(directory: Path | None = None) -> list[Scenario]:
    """Load every scenario of a directory.

    :raises ScenarioFormatError: with the problems of every invalid file (all files are checked).
    """
    scenarios, problems = [], []
    for path in discover(directory):
        try:
            scenarios.append(load_scenario(path))
        except ScenarioFormatError as exc:
            problems += exc.problems
    if problems:
        raise ScenarioFormatError(problems)
    return scenarios
