"""The code map of ``docs/architecture.md`` names only code that exists.

Every ``module:qualname`` cell must import and resolve, every endpoint must be a route of that
service's Flask blueprints, and each flow must show every step 1-10 (in the flow's order for the
certificate-first table). When this fails after a rename or a move, update the map.
"""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest
from flask import Flask

from shared.flow import CERTIFICATE_FIRST_ORDER, PERSON_SIGNING_ORDER

DOC = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"
CODE = re.compile(r"`([a-z_][\w.]*):([A-Za-z_][\w.]*)`")
ENDPOINT = re.compile(r"`(GET|POST|PUT|DELETE) (/[^`]*)`")
FLOWS = {"Person signing": PERSON_SIGNING_ORDER, "Certificate first": CERTIFICATE_FIRST_ORDER}
BLUEPRINTS = {
    "portal": ["services.portal.http.signing:pages", "services.portal.http.signing:api",
               "services.portal.http.validation:pages", "services.portal.http.validation:api"],
    "signer": ["services.signer.http:oauth_blueprint", "services.signer.http:csc_blueprint"],
    "idp": ["services.idp.http:bp"],
    "ca": ["services.ca.http:api", "services.ca.http:pki", "services.ca.http:pages"],
}


def _resolve(module: str, qualname: str) -> object:
    target: object = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    return target


def code_map() -> dict[str, list[tuple[int, str, str, str]]]:
    """``{flow heading: [(step, service, endpoint cell, code cell), …]}`` from the document."""
    tables: dict[str, list[tuple[int, str, str, str]]] = {}
    section = None
    in_map = False
    for line in DOC.read_text().splitlines():
        if line.startswith("## "):
            in_map = line.strip() == "## Code map"
            section = None
        elif in_map and line.startswith("### "):
            section = next((name for name in FLOWS if line[4:].startswith(name)), None)
        elif section and re.match(r"^\| \d+ \|", line):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            assert len(cells) == 4, f"a code-map row needs 4 cells: {line}"
            tables.setdefault(section, []).append((int(cells[0]), cells[1], cells[2], cells[3]))
    return tables


def _routes(service: str) -> set[tuple[str, str]]:
    app = Flask(f"code-map-{service}")
    for spec in BLUEPRINTS[service]:
        app.register_blueprint(_resolve(*spec.split(":")))  # type: ignore[arg-type]
    return {(method, rule.rule) for rule in app.url_map.iter_rules() for method in rule.methods or ()}


TABLES = code_map()
ROWS = [pytest.param(flow, row, id=f"{flow}-step{row[0]}-{row[1]}") for flow, rows in TABLES.items() for row in rows]


def test_both_flows_have_a_table() -> None:
    assert set(TABLES) == set(FLOWS), f"code-map tables found: {sorted(TABLES)}"


@pytest.mark.parametrize("flow", sorted(FLOWS))
def test_every_step_appears(flow: str) -> None:
    steps = [row[0] for row in TABLES[flow]]
    assert set(steps) == set(range(1, 11)), f"{flow}: steps missing: {sorted(set(range(1, 11)) - set(steps))}"
    order = list(dict.fromkeys(steps))
    assert tuple(order) == FLOWS[flow], f"{flow}: rows in step order {order}, the flow's order is {FLOWS[flow]}"


@pytest.mark.parametrize(("flow", "row"), ROWS)
def test_named_code_exists(flow: str, row: tuple[int, str, str, str]) -> None:
    number, service, _endpoints, code = row
    assert service in BLUEPRINTS, f"{flow} step {number}: unknown service {service!r}"
    names = CODE.findall(code)
    assert names, f"{flow} step {number} ({service}): no `module:qualname` in {code!r}"
    leftovers = CODE.sub("", code).replace(",", "").strip()
    assert not leftovers, f"{flow} step {number} ({service}): unparsed text in the code cell: {leftovers!r}"
    for module, qualname in names:
        try:
            target = _resolve(module, qualname)
        except (ImportError, AttributeError) as exc:
            raise AssertionError(f"{flow} step {number} ({service}): {module}:{qualname} does not exist "
                                 f"({exc.__class__.__name__}: {exc}); update docs/architecture.md") from None
        assert inspect.isroutine(target) or inspect.isclass(target), f"{module}:{qualname} is not a function or class"
        assert module.startswith(("services.", "shared.")), f"{module}: the map names service or shared code only"


@pytest.mark.parametrize(("flow", "row"), [p for p in ROWS if p.values[1][2]])  # type: ignore[index]
def test_named_endpoints_are_routes(flow: str, row: tuple[int, str, str, str]) -> None:
    number, service, endpoints, _ = row
    found = ENDPOINT.findall(endpoints)
    assert found, f"{flow} step {number} ({service}): no `METHOD /path` in {endpoints!r}"
    assert not ENDPOINT.sub("", endpoints).replace(",", "").strip(), f"unparsed endpoint text: {endpoints!r}"
    routes = _routes(service)
    for method, path in found:
        assert (method, path) in routes, (f"{flow} step {number}: {method} {path} is not a route of the {service} "
                                          f"service; update docs/architecture.md")


def test_the_checks_can_fail() -> None:
    with pytest.raises((ImportError, AttributeError)):
        _resolve("services.signer.service", "SignerCore.no_such_method")
    assert ("POST", "/csc/v2/signatures/signDoc") in _routes("signer")
    assert ("GET", "/csc/v2/signatures/signDoc") not in _routes("signer")
