"""SoftHSM2 token provisioning and the in-process HSM handle, with a real SoftHSM."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from pydantic import SecretStr

from services.signer.hsm import Hsm, provision_token, softhsm_config_path
from services.signer.settings import SignerSettings
from shared.testing import random_secrets

pytestmark = pytest.mark.hsm


def test_provisioning_creates_the_token_once(tmp_path: Path) -> None:
    values = {**random_secrets(SignerSettings), "hsm_user_pin": SecretStr("user-1234"), "hsm_so_pin": SecretStr("so-5678")}
    settings = SignerSettings(data_dir=tmp_path, hsm_token_label="once", **values)
    assert "initialised" in provision_token(settings)
    assert "already present" in provision_token(settings)
    config = softhsm_config_path(settings)
    assert config.stat().st_mode & 0o777 == 0o600
    assert f"directories.tokendir = {(tmp_path / 'hsm-tokens').resolve()}" in config.read_text()
    slots = subprocess.run(["softhsm2-util", "--show-slots"], env={**os.environ, "SOFTHSM2_CONF": str(config)},
                           capture_output=True, text=True, check=True).stdout
    assert slots.count("Label:            once") == 1


def test_session_logs_in_and_reports_health(signer_settings: SignerSettings) -> None:
    hsm = Hsm(signer_settings)
    assert hsm.health().startswith(f"token {signer_settings.hsm_token_label!r} ready")
    assert hsm.session() is hsm.session()  # one shared session per process


def test_wrong_pin_is_a_clear_error(signer_settings: SignerSettings) -> None:
    wrong = signer_settings.model_copy(update={"hsm_user_pin": SecretStr("not-the-pin")})
    hsm = Hsm(wrong)
    # The suite's session is already logged in (one login per token per process), so a new
    # session inherits it; the wrong PIN is detected in a fresh process instead.
    script = (
        "from services.signer.hsm import Hsm, HsmUnavailable\n"
        "from services.signer.settings import SignerSettings\n"
        "import sys\n"
        "try:\n    Hsm(SignerSettings.from_env()).session()\n"
        "except HsmUnavailable as exc:\n    print(exc); sys.exit(3)\n"
    )
    env = {**os.environ, **{SignerSettings.env_name(name): value.get_secret_value()
                            for name, value in random_secrets(SignerSettings).items()},
           "SIGNLAB_SIGNER_DATA_DIR": str(wrong.data_dir), "SIGNLAB_SIGNER_HSM_TOKEN_LABEL": wrong.hsm_token_label,
           "SIGNLAB_SIGNER_HSM_USER_PIN": "not-the-pin"}
    result = subprocess.run([os.sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 3, result.stderr
    assert "refused the configured user PIN" in result.stdout
    assert "not-the-pin" not in result.stdout
    del hsm
