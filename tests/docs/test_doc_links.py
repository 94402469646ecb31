"""The pages and files the documents point trainers and users at exist.

Every ``http://127.0.0.1:800N/…`` URL in the README and the pages of ``docs/`` must be a route of
the service on that default port (its blueprints plus the frame of ``shared.web``: ``/``,
``/role``, ``/healthz``; ``/trainer/…`` is checked against the trainer blueprint of
``shared.tracing``, which the portal is to mount). Relative Markdown links
must point at files of the repository, and the scenarios named in ``signlab scenario run NAME``
must exist.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from flask import Flask
from werkzeug.exceptions import MethodNotAllowed, NotFound

from shared.flow import SERVICES
from shared.tracing import trainer_blueprint
from signlab.scenarios.loader import catalogue_dir

ROOT = Path(__file__).resolve().parents[2]
DOCS = ["README.md", "scenarios/README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]
URL = re.compile(r"http://127\.0\.0\.1:(800\d)(/[^\s`)\"'>]*)?")
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
BLUEPRINTS = {
    "portal": ["services.portal.http.signing:pages", "services.portal.http.signing:api",
               "services.portal.http.validation:pages", "services.portal.http.validation:api"],
    "signer": ["services.signer.http:oauth_blueprint", "services.signer.http:csc_blueprint"],
    "idp": ["services.idp.http:bp", "services.idp.openid4vp_http:bp"],
    "ca": ["services.ca.http:api", "services.ca.http:pki", "services.ca.http:pages"],
    "wallet": ["services.wallet.http:bp"],
}


def _app(service: str) -> Flask:
    import importlib

    app = Flask(f"links-{service}")
    for spec in BLUEPRINTS[service]:
        module, name = spec.split(":")
        app.register_blueprint(getattr(importlib.import_module(module), name))
    # The frame of shared.web.create_service_app, and the trainer sign-in of shared.trainer_access.
    for path in ("/", "/role", "/healthz", *(("/trainer/sign-in",) if service in ("portal", "idp", "ca") else ())):
        if not any(rule.rule == path for rule in app.url_map.iter_rules()):
            app.add_url_rule(path, f"frame{path}", lambda: "")
    if service == "portal":
        app.register_blueprint(trainer_blueprint())
    return app


def _urls() -> list[tuple[str, str, str]]:
    found = []
    for doc in DOCS:
        path = ROOT / doc
        if not path.exists():
            continue
        for port, url_path in URL.findall(path.read_text()):
            found.append((doc, port, (url_path or "/").split("?")[0].rstrip(".,;:")))
    return sorted(set(found))


@pytest.mark.parametrize(("doc", "port", "path"), _urls())
def test_url_is_a_route(doc: str, port: str, path: str) -> None:
    service = next((s.name for s in SERVICES if s.default_port == int(port)), None)
    assert service is not None, f"{doc}: no service listens on {port} by default"
    adapter = _app(service).url_map.bind("127.0.0.1")
    try:
        adapter.match(path, method="GET")
    except MethodNotAllowed:
        pass  # a POST-only endpoint named for reference
    except NotFound:
        raise AssertionError(f"{doc}: http://127.0.0.1:{port}{path} is not a page of the {service} service") from None


@pytest.mark.parametrize("doc", [d for d in DOCS if (ROOT / d).exists()])
def test_relative_links_resolve(doc: str) -> None:
    path = ROOT / doc
    base = path.parent
    for target in LINK.findall(path.read_text()):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        assert (base / target).resolve().exists(), f"{doc}: broken link {target}"


def test_named_scenarios_exist() -> None:
    text = "".join((ROOT / d).read_text() for d in DOCS if (ROOT / d).exists())
    names = set(re.findall(r"signlab scenario run ([a-z0-9][a-z0-9-]*)", text)) | set(re.findall(r"scenarios? `([a-z0-9-]+)`", text))
    names |= set(re.findall(r"`(sad-[a-z-]+|digest-substitution|idp-acr-lower|loa-too-low-for-qes)`", text))
    assert names, "no scenario named"
    for name in names:
        assert (catalogue_dir() / f"{name}.yaml").exists(), f"scenario {name} is named in the docs but does not exist"


@pytest.mark.parametrize("doc", DOCS)
def test_no_document_cites_a_file_outside_the_repository(doc: str) -> None:
    """The repository explains itself: the contract is docs/design.md, not a file beside the checkout."""
    text = (ROOT / doc).read_text()
    for outside in ("DESIGN.md", "shared/reference", "reference/"):
        assert outside not in text, f"{doc} cites {outside!r}, which is not in the repository"


def test_no_code_cites_a_file_outside_the_repository() -> None:
    """Docstrings and comments point at docs/design.md, never at the design file or reference notes
    that sit beside a developer's checkout."""
    outside = re.compile(r"\bDESIGN\b|shared/reference|reference/[a-z-]+\.md")
    found = []
    for folder in ("services", "shared", "signlab", "testkit", "tests", "scenarios", "compose"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in {".py", ".html", ".js", ".yaml", ".yml", ".toml"} and path.name != "test_doc_links.py":
                for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                    if outside.search(line):
                        found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:100]}")
    assert not found, "citations of files outside the repository:\n" + "\n".join(found)


def test_readme_fits_on_a_few_screens() -> None:
    lines = (ROOT / "README.md").read_text().count("\n")
    assert lines < 300, f"README.md has {lines} lines; the reference belongs in docs/"
