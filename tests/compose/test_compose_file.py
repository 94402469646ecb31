"""compose/compose.yaml and compose/Dockerfile against the code, without a Docker engine.

Every expectation is derived from the code (registry, settings classes, URL_LINKS, LINKED_SECRETS,
pyproject.toml, the imports of the sources), so a setting renamed or added in code but not in the
compose file fails here. The schema check uses check-jsonschema's vendored compose-spec schema
(offline), as ``docker compose config`` is not available on this machine.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from services.registry import LINKED_SECRETS, REGISTRY, URL_LINKS
from shared.settings import secret_fields
from shared.tracing.settings import TraceSettings
from signlab.docker_engine import (
    BACK_CHANNEL_LINKS,
    PLAIN_HTTP_OAUTH_SERVICES,
    BROWSER_FACING_LINKS,
    BROWSER_URL_SETTINGS,
    COMPOSE_DIR,
    COMPOSE_FILE,
    DATA_ROOT,
    LABEL,
    PROJECT_LABEL,
    ca_public_host,
    interpolate,
    render_compose,
    secret_variables,
)

DOCKERFILE = COMPOSE_DIR / "Dockerfile"
ENTRIES = {e.info.name: e for e in REGISTRY}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def variables() -> dict[str, str]:
    """What compose would interpolate from: a generated compose/.env and no port overrides."""
    return {variable: secrets.token_urlsafe(24) for variable in set(secret_variables().values())}


def resolved_environment(compose: dict[str, Any], name: str, variables: dict[str, str]) -> dict[str, str]:
    return {key: interpolate(str(value), variables) for key, value in compose["services"][name]["environment"].items()}


def test_the_committed_file_is_what_the_code_generates() -> None:
    assert COMPOSE_FILE.read_text() == render_compose(), (
        "compose/compose.yaml is out of date with the code: run `python -m signlab.docker_engine render`")


def _check_jsonschema(path: Path) -> subprocess.CompletedProcess[str]:
    tool = Path(sys.executable).with_name("check-jsonschema")
    return subprocess.run([str(tool), "--builtin-schema", "vendor.compose-spec", str(path)],
                          capture_output=True, text=True, timeout=60)


def test_compose_file_is_valid_against_the_compose_spec_schema(tmp_path: Path, compose: dict[str, Any]) -> None:
    result = _check_jsonschema(COMPOSE_FILE)
    assert result.returncode == 0, result.stdout + result.stderr
    # The same validator rejects a typo, so the pass above means something.
    broken = json.loads(json.dumps(compose))
    broken["services"]["ca"]["healthcheck"]["intervall"] = "5s"
    (tmp_path / "broken.yaml").write_text(yaml.safe_dump(broken))
    refused = _check_jsonschema(tmp_path / "broken.yaml")
    assert refused.returncode == 1 and "intervall" in refused.stdout + refused.stderr


def test_every_registry_service_is_a_compose_service(compose: dict[str, Any]) -> None:
    services = compose["services"]
    always_on = {name for name, spec in services.items() if not spec.get("profiles")}
    assert always_on == set(ENTRIES)
    for name in ENTRIES:
        spec = services[name]
        assert spec["command"][:2] == ["serve", name]
        assert spec["labels"] == {LABEL: name, PROJECT_LABEL: compose["name"]}
        assert spec["restart"] in ("unless-stopped", "always")
        assert "build" in spec and spec["build"]["dockerfile"] == "compose/Dockerfile"
        # Back-channel: the other containers reach it by its service name on the one network.
        assert "signlab" in spec["networks"]


def test_environment_names_are_settings_of_that_service(compose: dict[str, Any]) -> None:
    for name, entry in ENTRIES.items():
        cls = entry.settings_class
        known = {cls.env_name(field) for field in cls.model_fields}
        known |= {TraceSettings.env_name(field) for field in TraceSettings.model_fields}  # common to all four
        if name in PLAIN_HTTP_OAUTH_SERVICES:  # authlib's own switch for plain http between containers
            known.add("AUTHLIB_INSECURE_TRANSPORT")
        for key in compose["services"][name]["environment"]:
            assert key in known, f"{name}: {key} is not a setting of {cls.__name__} (renamed or removed in code?)"


def test_every_required_setting_is_provided_and_the_settings_load(compose: dict[str, Any],
                                                                   variables: dict[str, str]) -> None:
    for name, entry in ENTRIES.items():
        cls = entry.settings_class
        env = resolved_environment(compose, name, variables)
        for field_name, info in cls.model_fields.items():
            if info.is_required():
                assert cls.env_name(field_name) in env, f"{name}: required {cls.env_name(field_name)} missing"
        for field_name in secret_fields(cls):
            assert cls.env_name(field_name) in env, f"{name}: secret {cls.env_name(field_name)} missing"
        settings = cls.from_env(env)  # types, JSON lists and URL validators of the real classes
        TraceSettings.from_env(env)
        assert settings.host == "0.0.0.0"  # noqa: S104 - inside the container
        assert settings.port == entry.info.default_port


def test_a_missing_secret_stops_compose_with_a_message(compose: dict[str, Any]) -> None:
    value = compose["services"]["signer"]["environment"]["SIGNLAB_SIGNER_HSM_USER_PIN"]
    with pytest.raises(ValueError, match="SIGNLAB_SIGNER_HSM_USER_PIN is not set"):
        interpolate(value, {})


def test_secrets_are_interpolated_never_literal(compose: dict[str, Any]) -> None:
    mapping = secret_variables()
    for name, entry in ENTRIES.items():
        env = compose["services"][name]["environment"]
        for field_name in secret_fields(entry.settings_class):
            variable = entry.settings_class.env_name(field_name)
            assert re.fullmatch(r"\$\{" + mapping[variable] + r":\?[^}]+\}", env[variable]), env[variable]


def test_linked_secrets_share_one_variable(compose: dict[str, Any], variables: dict[str, str]) -> None:
    values: dict[str, str] = {}
    for name in ENTRIES:
        values.update(resolved_environment(compose, name, variables))
    for group in LINKED_SECRETS:
        present = [variable for variable in group if variable in values]
        assert len(present) == len(group), f"{group}: not every side is in the compose file"
        assert len({values[v] for v in group}) == 1, group


def test_secrets_example_lists_exactly_the_secret_variables() -> None:
    lines = (COMPOSE_DIR / "secrets.env.example").read_text().splitlines()
    names = {line.split("=", 1)[0] for line in lines if "=" in line and not line.startswith("#")}
    assert names == set(secret_variables().values())


def test_url_links_are_all_classified_and_filled(compose: dict[str, Any], variables: dict[str, str]) -> None:
    assert BROWSER_FACING_LINKS.isdisjoint(BACK_CHANNEL_LINKS)
    assert set(URL_LINKS) == BROWSER_FACING_LINKS | BACK_CHANNEL_LINKS, (
        "a URL_LINKS entry is not classified as browser-facing or back-channel in signlab/docker_engine.py")
    back = {name: f"http://{name}:{e.info.default_port}" for name, e in ENTRIES.items()}
    browser = {name: f"http://127.0.0.1:{e.info.default_port}" for name, e in ENTRIES.items()}
    for name, entry in ENTRIES.items():
        cls = entry.settings_class
        env = resolved_environment(compose, name, variables)
        for variable, template in URL_LINKS.items():
            field_name = variable.removeprefix(cls.env_prefix).lower()
            if variable.startswith(cls.env_prefix) and field_name in cls.model_fields:
                urls = browser if variable in BROWSER_FACING_LINKS else back
                assert env[variable] == template.format(**urls), variable
            else:
                assert variable not in env


def test_public_urls_split_browser_and_back_channel(compose: dict[str, Any], variables: dict[str, str]) -> None:
    env = {name: resolved_environment(compose, name, variables) for name in ENTRIES}
    # The IdP's issuer must be what its relying parties call and compare iss with.
    issuer = env["idp"]["SIGNLAB_IDP_PUBLIC_URL"]
    assert issuer == env["signer"]["SIGNLAB_SIGNER_IDP_URL"] == env["ca"]["SIGNLAB_CA_IDP_URL"] == "http://idp:8001"
    # The client-assertion audience: the signer builds it from CA_URL, the CA from its public URL.
    assert env["ca"]["SIGNLAB_CA_PUBLIC_URL"] == env["signer"]["SIGNLAB_SIGNER_CA_URL"]
    # OAuth2 redirect URIs are compared exactly with what the signer and the portal build from
    # their public URLs, and the browser follows them.
    signer_public = env["signer"]["SIGNLAB_SIGNER_PUBLIC_URL"]
    portal_public = env["portal"]["SIGNLAB_PORTAL_PUBLIC_URL"]
    assert urlsplit(signer_public).hostname == urlsplit(portal_public).hostname == "127.0.0.1"
    assert json.loads(env["idp"]["SIGNLAB_IDP_SIGNER_REDIRECT_URIS"]) == [f"{signer_public}/oauth2/idp-callback"]
    assert json.loads(env["signer"]["SIGNLAB_SIGNER_PORTAL_REDIRECT_URIS"]) == [f"{portal_public}/sign/callback"]


def test_browser_url_settings_are_set_once_the_services_have_them(compose: dict[str, Any]) -> None:
    for variable, target in BROWSER_URL_SETTINGS.items():
        entry = next(e for e in REGISTRY if variable.startswith(e.settings_class.env_prefix))
        field_name = variable.removeprefix(entry.settings_class.env_prefix).lower()
        env = compose["services"][entry.info.name]["environment"]
        if field_name in entry.settings_class.model_fields:
            assert interpolate(env[variable], {}) == f"http://127.0.0.1:{ENTRIES[target].info.default_port}"
        else:
            assert variable not in env


def test_ports_are_published_on_loopback_only(compose: dict[str, Any]) -> None:
    for name, spec in compose["services"].items():
        for mapping in spec.get("ports", []):
            assert str(mapping).startswith("127.0.0.1:"), f"{name}: {mapping} is not bound to 127.0.0.1"
    for name, entry in ENTRIES.items():
        (mapping,) = compose["services"][name]["ports"]
        host, published, container = interpolate(mapping, {}).split(":")
        assert (host, int(published), int(container)) == ("127.0.0.1", entry.info.default_port, entry.info.default_port)


def test_health_checks_call_healthz_on_the_service_port(compose: dict[str, Any]) -> None:
    from shared.flow import service
    from shared.web import create_service_app

    from shared.testing import random_secrets

    cls = ENTRIES["idp"].settings_class
    app = create_service_app("signlab_compose_test", service("idp"), cls(**random_secrets(cls)))
    assert "/healthz" in {rule.rule for rule in app.url_map.iter_rules()}
    for name, entry in ENTRIES.items():
        check = compose["services"][name]["healthcheck"]
        assert check["test"][0] == "CMD"
        assert f"http://127.0.0.1:{entry.info.default_port}/healthz" in " ".join(check["test"])
    for name, spec in compose["services"].items():
        for other, condition in spec.get("depends_on", {}).items():
            assert condition == {"condition": "service_healthy"}, (name, other)


def test_dependencies_follow_the_start_order(compose: dict[str, Any]) -> None:
    order = [e.info.name for e in REGISTRY]
    for name in order:
        for other in compose["services"][name].get("depends_on", {}):
            assert order.index(other) < order.index(name), f"{name} depends on {other}, which starts later"
    assert set(compose["services"]["signer"]["depends_on"]) >= {"idp", "ca"}
    assert set(compose["services"]["portal"]["depends_on"]) >= {"signer", "ca"}


def test_each_service_keeps_its_data_in_named_volumes(compose: dict[str, Any], variables: dict[str, str]) -> None:
    declared = set(compose["volumes"])
    used = set()
    dockerfile = DOCKERFILE.read_text()
    for name, entry in ENTRIES.items():
        cls = entry.settings_class
        env = resolved_environment(compose, name, variables)
        mounts = {}
        for item in compose["services"][name]["volumes"]:
            volume, mount = item.split(":")[:2]
            mounts[mount] = volume
            used.add(volume)
            assert volume in declared, f"{name}: volume {volume} not declared"
            # The image creates the mount point owned by the non-root user (a fresh volume copies it).
            assert mount in dockerfile, f"{mount} is not created in compose/Dockerfile"
        directories = [cls.env_name("data_dir")] + ([cls.env_name("state_dir")] if "state_dir" in cls.model_fields else [])
        for variable in directories:
            assert env[variable] in mounts, f"{name}: {variable}={env[variable]} is not on a named volume"
            assert env[variable].startswith(f"{DATA_ROOT}/")
    assert used == declared


def test_the_four_services_share_one_trace_store_volume(compose: dict[str, Any], variables: dict[str, str]) -> None:
    stores = set()
    for name, entry in ENTRIES.items():
        env = resolved_environment(compose, name, variables)
        store = TraceSettings.from_env(env).store_dir(entry.settings_class.from_env(env).data_dir)
        mounts = {item.split(":")[1]: item.split(":")[0] for item in compose["services"][name]["volumes"]}
        assert store.as_posix() in mounts, f"{name}: trace store {store} is not on a volume"
        stores.add((store.as_posix(), mounts[store.as_posix()]))
    assert len(stores) == 1, stores


def test_the_ca_answers_to_its_public_certificate_host(compose: dict[str, Any]) -> None:
    host, port = ca_public_host()
    ca = compose["services"]["ca"]
    assert host in ca["networks"]["signlab"]["aliases"]
    default = ENTRIES["ca"].info.default_port
    if port != default:
        assert ["--also-bind", f"0.0.0.0:{port}"] == ca["command"][2:4]
        if port < 1024:  # the non-root user binds a low port
            assert ca["sysctls"]["net.ipv4.ip_unprivileged_port_start"] == "0"


def test_tracing_profile_is_optional_and_loopback_only(compose: dict[str, Any]) -> None:
    tracing = [name for name, spec in compose["services"].items() if "tracing" in spec.get("profiles", [])]
    assert tracing == ["jaeger"]
    for name in ENTRIES:
        env = compose["services"][name]["environment"]
        otlp = TraceSettings.env_name("otlp_endpoint")
        assert interpolate(env[otlp], {}) == ""  # no OTLP export unless asked for
        assert interpolate(env[otlp], {otlp: "http://jaeger:4318/v1/traces"}) == "http://jaeger:4318/v1/traces"
