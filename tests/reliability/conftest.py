"""Fixtures of the reliability suite (helpers in :mod:`testkit.reliability_lab`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from testkit.reliability_lab import Lab, start_lab


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """The shared ecosystem of the adversarial, load and secrets tests (nothing is killed in it).

    The IdP's admin API is enabled (so its authentication can be tested); the CA's revoke API
    is always authenticated.
    """
    started = start_lab(tmp_path_factory.mktemp("lab") / "var", {"SIGNLAB_IDP_ADMIN_API_ENABLED": "true"})
    yield started
    started.runtime.down()




def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Soak runs take many minutes: they run only when selected explicitly (``-m soak``)."""
    if "soak" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="soak run: select it with -m soak")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)
