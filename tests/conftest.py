"""Fixtures shared by the whole suite.

SoftHSM reads its configuration once per process, so the suite uses one provisioned token for the
whole session (:func:`signer_settings`); tests that need another HSM configuration run it in a
subprocess. The IdP's and the wallet's tests share one wallet with its PIDs (:func:`live_wallet`).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.idp.catalogue import load_catalogue
from services.signer.hsm import provision_token
from services.signer.settings import SignerSettings
from services.wallet import create_app as create_wallet_app
from services.wallet.pid_provider import Register, RegisterEntry
from services.wallet.service import WalletCore
from services.wallet.settings import WalletSettings
from shared.testing import LiveServer, free_port, random_secrets


@pytest.fixture(scope="session")
def signer_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SignerSettings]:
    """Signer settings with a freshly provisioned SoftHSM2 token under a temporary data dir."""
    if shutil.which("softhsm2-util") is None:
        pytest.fail("softhsm2-util is missing: run the tests through 'make test', which installs softhsm2")
    data_dir: Path = tmp_path_factory.mktemp("signer")
    settings = SignerSettings(data_dir=data_dir, **random_secrets(SignerSettings))
    provision_token(settings)
    return settings


@pytest.fixture(scope="session")
def live_wallet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, WalletCore]]:
    """The wallet service on a loopback port, holding a PID for every test person of the IdP
    catalogue (the lab's population register), its PID provider's lab API on."""
    port = free_port()
    settings = WalletSettings(data_dir=tmp_path_factory.mktemp("wallet"), port=port, admin_api_enabled=True,
                              log_level="WARNING", **random_secrets(WalletSettings))
    app = create_wallet_app(settings)
    core: WalletCore = app.extensions["signlab.wallet"]
    core.wallet.provision(Register(tuple(
        RegisterEntry.from_json({"id": p.id, "given_name": p.given_name, "family_name": p.family_name,
                                 "birthdate": p.birthdate.isoformat(), "nationality": p.nationality,
                                 "person_id": p.person_id.claim()})
        for p in load_catalogue().persons)))
    with LiveServer(app, port=port) as server:
        yield server, core
