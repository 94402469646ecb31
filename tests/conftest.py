"""Fixtures shared by the whole suite.

SoftHSM reads its configuration once per process, so the suite uses one provisioned token for the
whole session (:func:`signer_settings`); tests that need another HSM configuration run it in a
subprocess.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.signer.hsm import provision_token
from services.signer.settings import SignerSettings
from shared.testing import random_secrets


@pytest.fixture(scope="session")
def signer_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SignerSettings]:
    """Signer settings with a freshly provisioned SoftHSM2 token under a temporary data dir."""
    if shutil.which("softhsm2-util") is None:
        pytest.fail("softhsm2-util is missing: run the tests through 'make test', which installs softhsm2")
    data_dir: Path = tmp_path_factory.mktemp("signer")
    settings = SignerSettings(data_dir=data_dir, **random_secrets(SignerSettings))
    provision_token(settings)
    yield settings
