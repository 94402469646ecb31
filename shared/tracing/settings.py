"""Settings of flow tracing, common to the four services (``SIGNLAB_TRACE_*``).

Tracing is on by default and needs no setting in a local run: every service writes its spans to
the *trace store*, a directory shared by the four services, ``<data_dir of the service>/../traces``
unless ``SIGNLAB_TRACE_DIR`` names another one. ``signlab up`` gives each service
``<SIGNLAB_DATA_DIR>/<service>`` as data directory, so the store is ``<SIGNLAB_DATA_DIR>/traces``,
which is where the portal's trainer pages and ``signlab trace`` read it. In compose, mount one
volume at the same path in every container and set ``SIGNLAB_TRACE_DIR`` to it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.errors import ConfigurationError

__all__ = ["TraceSettings"]


class TraceSettings(BaseModel):
    """Where and how spans are recorded and exported."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    env_prefix: ClassVar[str] = "SIGNLAB_TRACE_"

    enabled: bool = Field(True, description="Record flow traces (spans with step, roles and redacted payloads).")
    dir: Path | None = Field(
        None, description="The trace store shared by the four services (JSON lines); empty means "
        "DATA_DIR/../traces of each service, i.e. <SIGNLAB_DATA_DIR>/traces under 'signlab up'."
    )
    otlp_endpoint: str = Field(
        "", description="Also export spans over OTLP/HTTP to this collector URL (e.g. "
        "http://127.0.0.1:4318/v1/traces for Jaeger); empty: no OTLP export."
    )
    retention_days: int = Field(7, ge=1, le=365, description="Days the trace store keeps span files.")
    payloads: bool = Field(True, description="Record redacted payload summaries (off: steps, roles and outcomes only).")

    @classmethod
    def env_name(cls, field: str) -> str:
        """The environment variable that sets ``field``."""
        return f"{cls.env_prefix}{field.upper()}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Self:
        """Read the settings from ``environ`` (default: the process environment).

        :raises ConfigurationError: a value is invalid; the message names the variable.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {name: env[cls.env_name(name)] for name in cls.model_fields if cls.env_name(name) in env}
        if values.get("dir") == "":
            values["dir"] = None
        values.update(overrides)
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            problems = [f"{cls.env_name(str(e['loc'][0]))}: {e['msg']} (got {json.dumps(e['input'], default=str)})"
                        for e in exc.errors() if e["loc"]]
            raise ConfigurationError("invalid tracing settings: " + "; ".join(problems)) from None

    def store_dir(self, service_data_dir: Path) -> Path:
        """The trace store for a service whose data directory is ``service_data_dir``."""
        return (self.dir or Path(service_data_dir).absolute().parent / "traces").absolute()
