"""Typed settings from the environment and their start-up errors."""

from pathlib import Path
from typing import ClassVar

import pytest
from pydantic import Field, SecretStr

from shared.errors import ConfigurationError
from shared.settings import ServiceSettings, secret_fields


class IdpSettings(ServiceSettings):
    """A service's settings as the services define them: own prefix and defaults."""

    env_prefix: ClassVar[str] = "SIGNLAB_IDP_"
    port: int = Field(8001, ge=1, le=65535, description="port")
    data_dir: Path = Field(Path("var/idp"), description="data")
    clients: list[str] = Field(default_factory=list, description="a structured value")


class VaultSettings(ServiceSettings):
    """A service with secrets, which have no default."""

    env_prefix: ClassVar[str] = "SIGNLAB_SIGNER_"
    hsm_user_pin: SecretStr = Field(description="a secret")
    hsm_so_pin: SecretStr = Field(description="another secret")
    hsm_token_label: str = Field("t", max_length=32, description="a label")


class CaSettings(ServiceSettings):
    """Another service, to show that prefixes separate them."""

    env_prefix: ClassVar[str] = "SIGNLAB_CA_"


def test_defaults_are_local_and_safe() -> None:
    settings = IdpSettings.from_env({})
    assert (settings.host, settings.port, settings.data_dir) == ("127.0.0.1", 8001, Path("var/idp"))
    assert settings.base_url == "http://127.0.0.1:8001"


def test_values_come_from_the_service_prefix_only() -> None:
    env = {"SIGNLAB_IDP_PORT": "9101", "SIGNLAB_CA_PORT": "9102", "SIGNLAB_IDP_PUBLIC_URL": "http://idp.example.org/"}
    assert IdpSettings.from_env(env).port == 9101
    assert CaSettings.from_env(env).port == 9102
    assert IdpSettings.from_env(env).base_url == "http://idp.example.org"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SIGNLAB_IDP_PORT": "abc"}, "SIGNLAB_IDP_PORT: Input should be a valid integer"),
        ({"SIGNLAB_IDP_PORT": "70000"}, "SIGNLAB_IDP_PORT: Input should be less than or equal to 65535"),
        ({"SIGNLAB_IDP_LOG_LEVEL": "LOUD"}, "SIGNLAB_IDP_LOG_LEVEL: Input should be 'DEBUG'"),
        ({"SIGNLAB_IDP_HTTP_TIMEOUT_SECONDS": "0"}, "SIGNLAB_IDP_HTTP_TIMEOUT_SECONDS: Input should be greater than 0"),
    ],
)
def test_invalid_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        IdpSettings.from_env(env)


def test_missing_secret_fails_without_echoing_values() -> None:
    with pytest.raises(ConfigurationError) as caught:
        VaultSettings.from_env({"SIGNLAB_SIGNER_HSM_SO_PIN": "s3cret-so-pin"})
    text = str(caught.value)
    assert "SIGNLAB_SIGNER_HSM_USER_PIN: Field required" in text
    assert "s3cret-so-pin" not in text


def test_invalid_secret_value_is_never_echoed() -> None:
    with pytest.raises(ConfigurationError) as caught:
        VaultSettings.from_env({"SIGNLAB_SIGNER_HSM_USER_PIN": "1", "SIGNLAB_SIGNER_HSM_SO_PIN": "2",
                                 "SIGNLAB_SIGNER_HSM_TOKEN_LABEL": "x" * 40})
    assert "SIGNLAB_SIGNER_HSM_TOKEN_LABEL" in str(caught.value)


def test_secrets_are_masked_in_repr() -> None:
    settings = VaultSettings.from_env({"SIGNLAB_SIGNER_HSM_USER_PIN": "user-pin-123", "SIGNLAB_SIGNER_HSM_SO_PIN": "so-pin-456"})
    assert settings.hsm_user_pin.get_secret_value() == "user-pin-123"
    assert "user-pin-123" not in repr(settings)
    assert {"hsm_user_pin", "hsm_so_pin"} <= secret_fields(VaultSettings)


def test_settings_are_frozen() -> None:
    settings = IdpSettings.from_env({})
    with pytest.raises(ValueError):
        settings.port = 1  # type: ignore[misc]


def test_service_dir_is_private(tmp_path: Path) -> None:
    settings = IdpSettings.from_env({}, data_dir=tmp_path / "idp")
    path = settings.service_dir("keys")
    assert path.is_dir() and (path.stat().st_mode & 0o777) == 0o700


def test_structured_values_are_json() -> None:
    assert IdpSettings.from_env({"SIGNLAB_IDP_CLIENTS": '["a", "b"]'}).clients == ["a", "b"]
    with pytest.raises(ConfigurationError, match="SIGNLAB_IDP_CLIENTS: expected JSON"):
        IdpSettings.from_env({"SIGNLAB_IDP_CLIENTS": "a,b"})


def test_tracing_settings_use_the_same_environment_reader() -> None:
    from shared.settings import EnvSettings
    from shared.tracing.settings import TraceSettings

    assert issubclass(TraceSettings, EnvSettings)
    assert TraceSettings.from_env({"SIGNLAB_TRACE_DIR": ""}).dir is None
    assert TraceSettings.from_env({"SIGNLAB_TRACE_RETENTION_DAYS": "3"}).retention_days == 3
    with pytest.raises(ConfigurationError, match=r"^invalid tracing settings: SIGNLAB_TRACE_RETENTION_DAYS"):
        TraceSettings.from_env({"SIGNLAB_TRACE_RETENTION_DAYS": "0"})


def test_an_empty_variable_unsets_an_optional_path() -> None:
    from services.portal.settings import PortalSettings

    assert PortalSettings.env_name("trust_root_file") == "SIGNLAB_PORTAL_TRUST_ROOT_FILE"
    from shared.testing import random_secrets

    settings = PortalSettings.from_env({"SIGNLAB_PORTAL_TRUST_ROOT_FILE": ""}, **random_secrets(PortalSettings))
    assert settings.trust_root_file is None  # was Path("") = the working directory
