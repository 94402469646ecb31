"""The real ecosystem the scenario catalogue runs against: the services as processes.

One session-wide :class:`~signlab.runtime.LocalRuntime` on free loopback ports with a temporary data
directory. Two things differ from a default ``signlab up``, both to exercise more of the catalogue
in CI time: it runs with fault injection, as ``signlab up --fault-injection`` (the IdP admin API and
the signer's and CA's ``/admin/faults``, for the HSM, wrong-key, TSA and admin-API scenarios), and a
SAD lives 10 s (so ``sad-expired`` waits 12 s instead of 5 minutes).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.registry import REGISTRY
from shared.testing import free_port
from signlab.runtime import LocalRuntime
from signlab.scenarios.environment import Ecosystem, ecosystem_from_runtime


@pytest.fixture(scope="session")
def scenario_runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntime]:
    """A running SignLab (every service of the registry); stopped at the end."""
    data_dir: Path = tmp_path_factory.mktemp("scenario-ecosystem")
    ports = {entry.info.name: free_port() for entry in REGISTRY}
    environ = {**os.environ, "SIGNLAB_SIGNER_SAD_LIFETIME_SECONDS": "10"}
    runtime = LocalRuntime(data_dir, ports, environ, fault_injection=True)
    runtime.up(timeout=120, progress=lambda _line: None)
    try:
        yield runtime
    finally:
        runtime.down()


@pytest.fixture(scope="session")
def ecosystem(scenario_runtime: LocalRuntime) -> Ecosystem:
    """The runner's view of :func:`scenario_runtime`."""
    return ecosystem_from_runtime(scenario_runtime)
