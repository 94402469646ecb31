"""Settings of flow tracing, common to the four services (``SIGNLAB_TRACE_*``).

Tracing is on by default and needs no setting in a local run: every service writes its spans to
the *trace store*, a directory shared by the four services, ``<data_dir of the service>/../traces``
unless ``SIGNLAB_TRACE_DIR`` names another one. ``signlab up`` gives each service
``<SIGNLAB_DATA_DIR>/<service>`` as data directory, so the store is ``<SIGNLAB_DATA_DIR>/traces``,
which is where the portal's trainer pages and ``signlab trace`` read it. In compose, mount one
volume at the same path in every container and set ``SIGNLAB_TRACE_DIR`` to it.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field

from shared.settings import EnvSettings

__all__ = ["TraceSettings"]


class TraceSettings(EnvSettings):
    """Where and how spans are recorded and exported."""

    env_prefix: ClassVar[str] = "SIGNLAB_TRACE_"
    error_label: ClassVar[str] = "invalid tracing settings"

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

    def store_dir(self, service_data_dir: Path) -> Path:
        """The trace store for a service whose data directory is ``service_data_dir``."""
        return (self.dir or Path(service_data_dir).absolute().parent / "traces").absolute()
