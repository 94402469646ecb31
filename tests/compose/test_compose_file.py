"""compose/compose.yaml and compose/Dockerfile against the code, without a Docker engine.

Every expectation is derived from the code (registry, settings classes, URL_LINKS, LINKED_SECRETS,
LAB_HOSTS, pyproject.toml, the imports of the sources), so a setting renamed or added in code but
not in the compose file fails here. The file is checked against the compose specification (v2:
check-jsonschema's vendored compose-spec schema, offline) and parsed by the compose CLI this machine
has (Debian's docker-compose 1.29 or the v2 plugin; neither needs an engine for ``config``), whose
resolved environment must be exactly what the SDK path gives the containers from the same env file.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from services.registry import LAB_HOSTS, LINKED_SECRETS, REGISTRY, URL_LINKS
from shared.settings import secret_fields
from shared.tracing.settings import TraceSettings
from signlab.docker_engine import (
    BACK_CHANNEL_LINKS,
    BROWSER_FACING_LINKS,
    BROWSER_URL_SETTINGS,
    BUILD_CONTEXT_PATHS,
    COMPOSE_DIR,
    COMPOSE_FILE,
    DATA_ROOT,
    FAULT_INJECTION_VARIABLE,
    LAB_HOST_LINKS,
    PLAIN_HTTP_OAUTH_SERVICES,
    REPO_ROOT,
    DockerEngine,
    deployment,
    interpolate,
    prepare_env_file,
    render_compose,
    secret_variables,
)
from signlab.docker_host import compose_command
from signlab.runtime import FAULT_INJECTION_SETTINGS

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
    # Debian's docker-compose 1.29 rejects a top-level name: the project name is COMPOSE_PROJECT_NAME.
    assert set(compose) == {"services", "networks", "volumes"}
    for name in ENTRIES:
        spec = services[name]
        assert spec["command"][:2] == ["serve", name]
        assert "container_name" not in spec and "labels" not in spec  # compose's own names and labels
        assert spec["restart"] in ("unless-stopped", "always")
        assert spec["stop_grace_period"] == "30s"  # SIGTERM first, as signlab down does
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


def test_secrets_example_lists_exactly_the_env_file_variables(tmp_path: Path) -> None:
    lines = (COMPOSE_DIR / "secrets.env.example").read_text().splitlines()
    names = {line.split("=", 1)[0] for line in lines if "=" in line and not line.startswith("#")}
    assert names == set(secret_variables().values()) | {"COMPOSE_PROJECT_NAME"}
    generated = prepare_env_file(tmp_path / "compose.env")
    assert names <= set(generated) and generated["COMPOSE_PROJECT_NAME"] == "signlab"
    assert (tmp_path / "compose.env").stat().st_mode & 0o777 == 0o600


def test_url_links_are_all_classified_and_filled(compose: dict[str, Any], variables: dict[str, str]) -> None:
    kinds = (BROWSER_FACING_LINKS, BACK_CHANNEL_LINKS, LAB_HOST_LINKS)
    assert sum(len(kind) for kind in kinds) == len(set().union(*kinds)), "a URL_LINKS entry is in two classes"
    assert set(URL_LINKS) == set().union(*kinds), (
        "a URL_LINKS entry is not classified as browser-facing, back-channel or lab host in signlab/docker_engine.py")
    back = {name: f"http://{name}:{e.info.default_port}" for name, e in ENTRIES.items()}
    browser = {name: f"http://127.0.0.1:{e.info.default_port}" for name, e in ENTRIES.items()}
    lab = {f"{name}_public": f"http://{host}:{ENTRIES[name].info.default_port}" for name, host in LAB_HOSTS.items()}
    for name, entry in ENTRIES.items():
        cls = entry.settings_class
        env = resolved_environment(compose, name, variables)
        for variable, template in URL_LINKS.items():
            field_name = variable.removeprefix(cls.env_prefix).lower()
            if variable.startswith(cls.env_prefix) and field_name in cls.model_fields:
                urls = lab if variable in LAB_HOST_LINKS else browser if variable in BROWSER_FACING_LINKS else back
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


def test_browser_url_settings_point_browsers_at_the_published_ports(compose: dict[str, Any]) -> None:
    for variable, target in BROWSER_URL_SETTINGS.items():
        entry = next(e for e in REGISTRY if variable.startswith(e.settings_class.env_prefix))
        assert variable.removeprefix(entry.settings_class.env_prefix).lower() in entry.settings_class.model_fields
        env = compose["services"][entry.info.name]["environment"]
        assert interpolate(env[variable], {}) == f"http://127.0.0.1:{ENTRIES[target].info.default_port}"
        published = {f"SIGNLAB_DOCKER_{target.upper()}_PORT": "9555"}
        assert interpolate(env[variable], published) == "http://127.0.0.1:9555"


def test_the_idp_discovery_gives_browsers_only_browser_urls(compose: dict[str, Any], variables: dict[str, str],
                                                           tmp_path: Path) -> None:
    """The discovery document the IdP container serves: what a browser opens is on 127.0.0.1,
    what the signer and the CA fetch is the issuer on the network."""
    from services.idp import create_app
    from services.idp.provision import provision
    from services.idp.settings import IdpSettings

    env = resolved_environment(compose, "idp", variables)
    env["SIGNLAB_IDP_DATA_DIR"] = str(tmp_path / "idp")
    settings = IdpSettings.from_env(env)
    provision(settings)
    discovery = create_app(settings).test_client().get("/.well-known/openid-configuration").get_json()
    for key in ("authorization_endpoint", "end_session_endpoint", "service_documentation"):
        assert discovery[key].startswith("http://127.0.0.1:8001/"), (key, discovery[key])
    for key in ("issuer", "token_endpoint", "userinfo_endpoint", "jwks_uri"):
        assert discovery[key].startswith("http://idp:8001"), (key, discovery[key])


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


def test_certificate_urls_name_the_lab_host_and_the_published_port(compose: dict[str, Any],
                                                                    variables: dict[str, str]) -> None:
    """Validators on the host reach http://ca.signlab.example.com:<published port> (signlab hosts maps
    the name to 127.0.0.1); containers reach the same URL through the CA's network alias and its
    extra listener on that port number."""
    from services.ca.settings import CaSettings

    ca = compose["services"]["ca"]
    assert LAB_HOSTS["ca"] in ca["networks"]["signlab"]["aliases"]
    for published in ("8002", "9602", "80"):
        values = {**variables, "SIGNLAB_DOCKER_CA_PORT": published}
        env = {key: interpolate(str(value), values) for key, value in ca["environment"].items()}
        settings = CaSettings.from_env(env)
        assert settings.public_url_for("/ocsp") == f"http://{LAB_HOSTS['ca']}:{published}/ocsp"
        assert [interpolate(arg, values) for arg in ca["command"][2:]] == ["--also-bind", f"0.0.0.0:{published}"]
        mapping = interpolate(ca["ports"][0], values)
        assert mapping == f"127.0.0.1:{published}:8002"
    assert ca["sysctls"]["net.ipv4.ip_unprivileged_port_start"] == "0"  # the non-root user may bind port 80 too


def test_fault_injection_is_off_unless_asked_for(compose: dict[str, Any], variables: dict[str, str]) -> None:
    for name, entry in ENTRIES.items():
        switches = [v for v in FAULT_INJECTION_SETTINGS if v.startswith(entry.settings_class.env_prefix)]
        env = compose["services"][name]["environment"]
        for variable in switches:
            field_name = variable.removeprefix(entry.settings_class.env_prefix).lower()
            off = entry.settings_class.from_env(resolved_environment(compose, name, variables))
            on = entry.settings_class.from_env(resolved_environment(compose, name,
                                                                    {**variables, FAULT_INJECTION_VARIABLE: "true"}))
            assert getattr(off, field_name) is False and getattr(on, field_name) is True, variable
        assert not [v for v in env if v.endswith(("_FAULTS_ENABLED", "_ADMIN_API_ENABLED")) and v not in switches]
    switched = {name for name, e in ENTRIES.items() for v in FAULT_INJECTION_SETTINGS
                if v.startswith(e.settings_class.env_prefix)}
    assert switched == {v.split("_")[1].lower() for v in FAULT_INJECTION_SETTINGS}  # every switch is in the file


def test_the_root_dockerignore_lets_only_the_build_context_in() -> None:
    """Every builder reads the root .dockerignore (Dockerfile-specific ignore files need BuildKit):
    it must select what the SDK path's own context tar holds and keep env files out."""
    lines = [line.strip() for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines[0] == "*"
    assert {line[1:] for line in lines if line.startswith("!")} == set(BUILD_CONTEXT_PATHS)
    assert {"compose/.env", "compose/*.env", "**/__pycache__"} <= set(lines)
    assert not (COMPOSE_DIR / "Dockerfile.dockerignore").exists()  # would override the root file under BuildKit


@pytest.fixture(scope="module")
def compose_cli() -> list[str]:
    command = compose_command()
    if command is None:
        pytest.skip("no compose CLI here (neither 'docker compose' nor Debian's docker-compose; make test installs "
                    "docker-compose as root when no engine runs)")
    return command


def test_the_compose_cli_resolves_what_the_sdk_path_gives_the_containers(compose_cli: list[str], tmp_path: Path) -> None:
    """One env file, two readers: the compose CLI's ``config`` and :class:`DockerEngine` resolve every
    container's environment identically (same PINs, secrets, URLs), also with other ports."""
    env_file = tmp_path / "deployment.env"
    prepare_env_file(env_file, project="signlab-config-test", ports={"ca": 9602, "portal": 9600})
    result = subprocess.run([*compose_cli, "--env-file", str(env_file), "-f", str(COMPOSE_FILE), "config"],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path,
                            env={k: v for k, v in os.environ.items() if not k.startswith(("SIGNLAB_", "COMPOSE_"))})
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)
    engine = DockerEngine(env_file, environ={})
    variables = engine.variables()
    assert engine.project == "signlab-config-test" and engine.ports["ca"] == 9602
    for plan in deployment():
        spec = resolved["services"][plan.name]
        environment = spec["environment"]
        if isinstance(environment, list):
            environment = dict(item.split("=", 1) for item in environment)
        assert {k: str(v) for k, v in environment.items()} == engine.container_environment(plan, variables), plan.name
        assert [str(a) for a in spec["command"]] == [interpolate(a, variables) for a in plan.command]
        (port,) = spec["ports"]
        published = port if isinstance(port, str) else f"{port['host_ip']}:{port['published']}:{port['target']}"
        assert published.removesuffix("/tcp") == f"127.0.0.1:{engine.ports[plan.name]}:{plan.port}"


def test_tracing_profile_is_optional_and_loopback_only(compose: dict[str, Any]) -> None:
    tracing = [name for name, spec in compose["services"].items() if "tracing" in spec.get("profiles", [])]
    assert tracing == ["jaeger"]
    for name in ENTRIES:
        env = compose["services"][name]["environment"]
        otlp = TraceSettings.env_name("otlp_endpoint")
        assert interpolate(env[otlp], {}) == ""  # no OTLP export unless asked for
        assert interpolate(env[otlp], {otlp: "http://jaeger:4318/v1/traces"}) == "http://jaeger:4318/v1/traces"
