"""Typed settings read from the environment, one prefix per service.

Each service defines a frozen pydantic model that subclasses :class:`ServiceSettings` and names its
prefix (``SIGNLAB_IDP_`` …). A field ``port`` of the IdP is read from ``SIGNLAB_IDP_PORT``.
:meth:`ServiceSettings.from_env` is the only place that reads ``os.environ`` for settings; invalid
values fail at start-up with a :class:`~shared.errors.ConfigurationError` naming the variable.

Conventions:

* Every field has a ``description`` (it feeds the settings reference in the docs).
* Defaults are safe for a local run on 127.0.0.1. Secrets (PINs, client secrets, admin tokens) are
  :class:`pydantic.SecretStr` fields **without a default**: ``signlab up`` generates them once into
  the data directory, compose reads them from an env file, tests pass them explicitly.
* List and mapping fields are given as JSON in the environment.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal, Self, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from shared.errors import ConfigurationError

__all__ = ["EnvSettings", "SecretStr", "ServiceSettings", "secret_fields"]

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


class EnvSettings(BaseModel):
    """Frozen settings read from environment variables ``<env_prefix><FIELD>``: the one reader of
    ``os.environ`` for settings (services' and tracing's alike)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    env_prefix: ClassVar[str] = "SIGNLAB_"
    """Environment prefix of the subclass, e.g. ``SIGNLAB_IDP_``."""

    error_label: ClassVar[str] = "invalid settings"
    """How a :class:`~shared.errors.ConfigurationError` from :meth:`from_env` starts."""

    @classmethod
    def env_name(cls, field: str) -> str:
        """The environment variable that sets ``field``."""
        return f"{cls.env_prefix}{field.upper()}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Self:
        """Read the settings from ``environ`` (default: the process environment).

        :param overrides: field values that take precedence over the environment (used by the
            runtime and by tests).
        :raises ConfigurationError: a value is invalid or a required value is missing; the message
            names each environment variable concerned.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, field in cls.model_fields.items():
            raw = env.get(cls.env_name(name))
            if raw is None:
                continue
            if _is_structured(field.annotation):
                try:
                    values[name] = json.loads(raw)
                except json.JSONDecodeError as exc:
                    raise ConfigurationError(f"{cls.env_name(name)}: expected JSON ({exc.msg})") from None
            elif raw == "" and _is_optional(field.annotation):
                values[name] = None  # an empty variable unsets an optional field
            else:
                values[name] = raw
        values.update(overrides)
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            problems = []
            for item in exc.errors():
                field_name = str(item["loc"][0]) if item["loc"] else "?"
                # Never echo a secret's value back; echo other inputs so the user sees the typo.
                shown = "" if field_name in _secret_field_names(cls) or item["type"] == "missing" else f" (got {item['input']!r})"
                problems.append(f"{cls.env_name(field_name)}: {item['msg']}{shown}")
            raise ConfigurationError(f"{cls.error_label}: " + "; ".join(problems)) from None


class ServiceSettings(EnvSettings):
    """Settings every service has; subclasses set :attr:`env_prefix` and their own defaults."""

    host: str = Field("127.0.0.1", description="Address the service listens on.")
    port: int = Field(8000, ge=1, le=65535, description="TCP port the service listens on.")
    public_url: str = Field(
        "", description="Base URL under which other roles and browsers reach this service; "
        "empty means http://HOST:PORT."
    )
    data_dir: Path = Field(Path("var"), description="Directory for this service's state (databases, keys, logs).")
    log_level: LogLevel = Field("INFO", description="Lowest level written to the JSON log.")
    max_body_bytes: int = Field(
        2 * 1024 * 1024, ge=1024, description="Largest request body accepted, in bytes; larger bodies get HTTP 413."
    )
    http_timeout_seconds: float = Field(
        10.0, gt=0, le=300, description="Timeout of every outbound HTTP call to another role, in seconds."
    )
    show_personal_data: bool = Field(
        False, description="Lab setting: show national identifiers and birth dates unmasked in this service's "
        "trainer and debugger views and reports (masked by default; traces never keep them)."
    )
    disk_min_free_mb: int = Field(
        32, ge=0, le=1024 * 1024,
        description="Free space (MiB) the filesystem of DATA_DIR must keep: below it /healthz reports degraded "
        "with the reason, requests that write get 507 and log lines below WARNING are held back, until space "
        "returns (checked on every such request); 0 turns the check off.",
    )

    @property
    def base_url(self) -> str:
        """The URL other roles and browsers use to reach this service (no trailing slash)."""
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    def service_dir(self, *parts: str) -> Path:
        """A path under :attr:`data_dir`, created (mode 0700) when missing."""
        path = self.data_dir.joinpath(*parts)
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        return path


def _is_structured(annotation: Any) -> bool:
    origin = get_origin(annotation) or annotation
    return origin in (list, dict, tuple, set, frozenset)


def _is_optional(annotation: Any) -> bool:
    return type(None) in get_args(annotation)


def _secret_field_names(cls: type[BaseModel]) -> set[str]:
    return {name for name, field in cls.model_fields.items() if field.annotation in (SecretStr, SecretStr | None)}


def secret_fields(cls: type[ServiceSettings]) -> set[str]:
    """Names of the fields of ``cls`` that hold secrets (typed :class:`SecretStr`)."""
    return _secret_field_names(cls)
