"""The SSASP's HSM: a SoftHSM2 token under the data directory, reached through python-pkcs11.

Two parts:

* :func:`provision_token` (run by ``signlab up`` before the service starts, outside the service
  process) writes a ``softhsm2.conf`` under the data directory and initialises the token with the
  label and PINs from the settings, once. It uses ``softhsm2-util``, as python-pkcs11's own CI does.
* :class:`Hsm` is the in-process handle: it loads the PKCS#11 library once per process (a second
  load with another path fails in PKCS#11), logs in once and hands out the shared session. Session
  objects (the one-time keys) live only in the process that created them.

Limits: SoftHSM reads ``SOFTHSM2_CONF`` when the library is first initialised in a process, so one
process can use one SoftHSM configuration only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from pathlib import Path

import pkcs11
from pkcs11 import Attribute, ObjectClass

from shared.errors import ConfigurationError, SignLabError
from services.signer.settings import SignerSettings

__all__ = ["Hsm", "HsmUnavailable", "provision_token", "softhsm_config_path"]


class HsmUnavailable(SignLabError):
    """The HSM (PKCS#11 library or token) cannot be used."""

    error = "temporarily_unavailable"
    status = 503
    default_description = "the HSM is unavailable"


def softhsm_config_path(settings: SignerSettings) -> Path:
    """Path of the service's own ``softhsm2.conf`` (under its data directory)."""
    return settings.data_dir / "softhsm2.conf"


def provision_token(settings: SignerSettings) -> str:
    """Create the SoftHSM2 configuration and token once; return what was done.

    Idempotent: an existing token with the configured label is kept (its keys and PIN too).

    :raises ConfigurationError: ``softhsm2-util`` is missing or refuses.
    """
    tokens = settings.service_dir("hsm-tokens")
    config = softhsm_config_path(settings)
    config.write_text(
        f"directories.tokendir = {tokens.resolve()}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    config.chmod(0o600)
    util = shutil.which("softhsm2-util")
    if util is None:
        raise ConfigurationError("softhsm2-util not found: install the Debian package softhsm2 (make does this)")
    env = {**os.environ, "SOFTHSM2_CONF": str(config.resolve())}
    slots = subprocess.run([util, "--show-slots"], env=env, capture_output=True, text=True, check=False)
    labels = {line.split(":", 1)[1].strip() for line in slots.stdout.splitlines() if line.strip().startswith("Label:")}
    if settings.hsm_token_label in labels:
        return f"HSM token {settings.hsm_token_label!r} already present in {tokens}"
    done = subprocess.run(
        [util, "--init-token", "--free", "--label", settings.hsm_token_label,
         "--so-pin", settings.hsm_so_pin.get_secret_value(), "--pin", settings.hsm_user_pin.get_secret_value()],
        env=env, capture_output=True, text=True, check=False,
    )
    if done.returncode != 0:
        # softhsm2-util never echoes PINs, so its message is safe to show.
        raise ConfigurationError(f"softhsm2-util --init-token failed: {(done.stderr or done.stdout).strip()}")
    return f"HSM token {settings.hsm_token_label!r} initialised in {tokens}"


_LIBRARY_LOCK = threading.Lock()
_LIBRARY: tuple[Path, pkcs11.lib] | None = None


def _load_library(module: Path, config: Path) -> pkcs11.lib:
    """Load the PKCS#11 library once per process; refuse a second, different module or config."""
    global _LIBRARY
    with _LIBRARY_LOCK:
        if _LIBRARY is None:
            if not module.exists():
                raise HsmUnavailable(f"PKCS#11 library {module} not found (install softhsm2)")
            os.environ["SOFTHSM2_CONF"] = str(config.resolve())
            _LIBRARY = (module, pkcs11.lib(str(module)))
        elif _LIBRARY[0] != module or os.environ.get("SOFTHSM2_CONF") != str(config.resolve()):
            raise HsmUnavailable(
                "this process already uses another PKCS#11 module or SoftHSM configuration; "
                "one process can use one HSM configuration"
            )
        return _LIBRARY[1]


class Hsm:
    """The service's handle on its HSM token: one logged-in session shared by the threads.

    :param settings: the signer's settings (module path, token label, user PIN).
    """

    def __init__(self, settings: SignerSettings) -> None:
        self.settings = settings
        self._session: pkcs11.Session | None = None
        self._lock = threading.Lock()

    def session(self) -> pkcs11.Session:
        """The shared logged-in session, opened on first use.

        python-pkcs11 serialises operations per session, and SoftHSM allows one login per token
        per process, so every thread uses this one session.
        """
        with self._lock:
            if self._session is None:
                library = _load_library(self.settings.hsm_module, softhsm_config_path(self.settings))
                try:
                    token = library.get_token(token_label=self.settings.hsm_token_label)
                    self._session = token.open(rw=True, user_pin=self.settings.hsm_user_pin.get_secret_value())
                except pkcs11.NoSuchToken:
                    raise HsmUnavailable(
                        f"no HSM token labelled {self.settings.hsm_token_label!r}; run signlab up to provision it"
                    ) from None
                except pkcs11.PinIncorrect:
                    raise HsmUnavailable("the HSM refused the configured user PIN") from None
                except pkcs11.PKCS11Error as exc:
                    raise HsmUnavailable(f"the HSM could not be opened ({exc.__class__.__name__})") from None
            return self._session

    def count_key_objects(self) -> int:
        """Number of private and public key objects visible on the token (token and session objects)."""
        session = self.session()
        total = 0
        for object_class in (ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY):
            total += sum(1 for _ in session.get_objects({Attribute.CLASS: object_class}))
        return total

    def health(self) -> str:
        """Readiness detail for ``/healthz``: the token answers and how many key objects it holds."""
        token = self.session().token
        return f"token {token.label!r} ready, {self.count_key_objects()} key objects"

    def close(self) -> None:
        """Close the shared session (which also destroys any session objects left in it)."""
        with self._lock:
            if self._session is not None:
                self._session.close()
                self._session = None
