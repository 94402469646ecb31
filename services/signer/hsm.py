"""The SSASP's HSM: a SoftHSM2 token under the data directory, reached through python-pkcs11.

Two parts:

* :func:`provision_token` (run by ``signlab up`` before the service starts, outside the service
  process) writes a ``softhsm2.conf`` under the data directory and initialises the token with the
  label and PINs from the settings, once. It uses ``softhsm2-util``, as python-pkcs11's own CI does.
* :class:`Hsm` is the in-process handle: it loads the PKCS#11 library once per process (a second
  load with another path fails in PKCS#11), logs in once and hands out the shared session. Session
  objects (the one-time keys) live only in the process that created them.

One-time keys (steps 6 and 9): :meth:`Hsm.create_one_time_key` makes a fresh key pair as PKCS#11
*session* objects (``CKA_TOKEN`` false: never written to the token directory), private half
``CKA_SENSITIVE`` and not extractable, with a random 16-byte ``CKA_ID``; :meth:`Hsm.sign_digest`
signs a digest exactly as given (never hashed again: raw ``CKM_ECDSA`` with r||s converted to DER,
or ``CKM_RSA_PKCS`` over a DigestInfo); :meth:`Hsm.destroy_key` destroys both halves by id.

Fault injection (lab only): with ``SIGNLAB_SIGNER_FAULTS_ENABLED`` the service attaches a
:class:`shared.faults.FaultBoard` as :attr:`Hsm.faults`; an armed ``hsm-keygen`` / ``hsm-sign``
fault (:mod:`services.signer.faults`) raises ``CKR_DEVICE_ERROR`` inside the PKCS#11 call, so the
ordinary failure path runs. Signatures count as step 9 unless made inside
:func:`operation_step` (the CSR's proof of possession runs as step 7 and is never hit).

Limits: SoftHSM reads ``SOFTHSM2_CONF`` when the library is first initialised in a process, so one
process can use one SoftHSM configuration only. Session objects live in the process (and session)
that created them, so a one-time key's life (create, sign, destroy) stays in one process.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pkcs11
from asn1crypto import keys as asn1_keys
from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass
from pkcs11.types import SignMixin
from pkcs11.util.ec import encode_ec_public_key, encode_ecdsa_signature, encode_named_curve_parameters
from pkcs11.util.rsa import encode_rsa_public_key

from services.signer.settings import SignerSettings
from shared.errors import ConfigurationError, SignLabError
from shared.flow import step

if TYPE_CHECKING:
    from shared.faults import FaultBoard

__all__ = [
    "DIGEST_INFO_PREFIX",
    "DIGEST_SIZES",
    "Hsm",
    "HsmError",
    "HsmUnavailable",
    "OneTimeKey",
    "operation_step",
    "provision_token",
    "softhsm_config_path",
]

DIGEST_SIZES: dict[str, int] = {"sha256": 32, "sha384": 48, "sha512": 64}
"""Digest length in bytes per hash algorithm (asn1crypto names)."""

DIGEST_INFO_PREFIX: dict[str, bytes] = {
    # DER of DigestInfo{AlgorithmIdentifier{oid, NULL}, OCTET STRING(len)} without the digest (RFC 8017 §9.2).
    "sha256": bytes.fromhex("3031300d060960864801650304020105000420"),
    "sha384": bytes.fromhex("3041300d060960864801650304020205000430"),
    "sha512": bytes.fromhex("3051300d060960864801650304020305000440"),
}
"""DigestInfo prefixes for RSA PKCS#1 v1.5 signatures over a given digest."""


class HsmUnavailable(SignLabError):
    """The HSM (PKCS#11 library or token) cannot be used."""

    error = "temporarily_unavailable"
    status = 503
    default_description = "the HSM is unavailable"


class HsmError(SignLabError):
    """A PKCS#11 operation failed (key generation, signing); the PKCS#11 error class is named."""

    error = "server_error"
    status = 500
    default_description = "the HSM operation failed"


@dataclass(frozen=True)
class OneTimeKey:
    """Handle on a one-time key pair in the HSM (no key material, only its id and public key).

    :ivar key_id: the random ``CKA_ID`` (hex) shared by both halves.
    :ivar algorithm: ``ec-p256`` or ``rsa-3072``.
    :ivar public_key_info: the public key as an asn1crypto ``PublicKeyInfo`` (for the CSR).
    """

    key_id: str
    algorithm: str
    public_key_info: asn1_keys.PublicKeyInfo

    @property
    def key_size(self) -> int:
        """Key length in bits."""
        return int(self.public_key_info.bit_size)

    @property
    def is_ec(self) -> bool:
        """True for an ECDSA key."""
        return self.algorithm.startswith("ec-")


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


_OPERATION_STEP: ContextVar[int] = ContextVar("signlab_hsm_operation_step", default=9)


@contextmanager
def operation_step(number: int) -> Iterator[None]:
    """Mark the HSM signatures made in this block as flow step ``number`` (default: 9).

    Used for errors (they name the step) and fault targeting (``hsm-sign`` hits step 9 only).
    The value is a context variable, so it follows the code into ``asyncio.run`` (pyHanko).
    """
    token = _OPERATION_STEP.set(number)
    try:
        yield
    finally:
        _OPERATION_STEP.reset(token)


_LIBRARY_LOCK = threading.Lock()
_LIBRARY: tuple[Path, Any] | None = None  # python-pkcs11's lib object (its Cython class is untyped)


def _load_library(module: Path, config: Path) -> Any:
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


_SESSIONS_LOCK = threading.Lock()
_SESSIONS: dict[str, pkcs11.Session] = {}
# One logged-in session per token label per process (a second C_Login would fail).
# The sign/keygen lock is process-wide for the same reason.
_OPERATION_LOCK = threading.RLock()


class Hsm:
    """The service's handle on its HSM token: one logged-in session shared by the threads.

    :param settings: the signer's settings (module path, token label, user PIN).
    """

    def __init__(self, settings: SignerSettings) -> None:
        self.settings = settings
        # python-pkcs11 serialises calls per session; this lock also keeps find-then-use atomic.
        self._lock = _OPERATION_LOCK
        self.faults: FaultBoard | None = None
        """Armed lab faults (``services.signer.faults``); None unless fault injection is enabled."""

    def _inject(self, name: str, **context: object) -> None:
        """Raise the PKCS#11 error a failing device gives when fault ``name`` is armed (lab only)."""
        if self.faults is not None and self.faults.fire(name, **context):
            raise pkcs11.exceptions.DeviceError("injected fault")

    def session(self) -> pkcs11.Session:
        """The shared logged-in session, opened on first use.

        python-pkcs11 serialises operations per session, and SoftHSM allows one login per token
        per process, so every thread (and every app object of the process) uses this one session.
        """
        with _SESSIONS_LOCK:
            session = _SESSIONS.get(self.settings.hsm_token_label)
            if session is None:
                library = _load_library(self.settings.hsm_module, softhsm_config_path(self.settings))
                try:
                    token = library.get_token(token_label=self.settings.hsm_token_label)
                    session = token.open(rw=True, user_pin=self.settings.hsm_user_pin.get_secret_value())
                except pkcs11.NoSuchToken:
                    raise HsmUnavailable(
                        f"no HSM token labelled {self.settings.hsm_token_label!r}; run signlab up to provision it"
                    ) from None
                except pkcs11.PinIncorrect:
                    raise HsmUnavailable("the HSM refused the configured user PIN") from None
                except pkcs11.PKCS11Error as exc:
                    raise HsmUnavailable(f"the HSM could not be opened ({exc.__class__.__name__})") from None
                _SESSIONS[self.settings.hsm_token_label] = session
            return session

    def count_key_objects(self) -> int:
        """Number of private and public key objects visible on the token (token and session objects)."""
        return len(self.key_objects())

    def health(self) -> str:
        """Readiness detail for ``/healthz``: the token answers and how many key objects it holds."""
        token = self.session().token
        return f"token {token.label!r} ready, {self.count_key_objects()} key objects"

    def create_one_time_key(self, algorithm: str, *, label: str) -> OneTimeKey:
        """Generate a one-time key pair as session objects; return its handle (step 6).

        Private half: ``CKA_SENSITIVE`` true, ``CKA_EXTRACTABLE`` false, sign only. Both halves share
        a fresh random 16-byte ``CKA_ID``.

        :param algorithm: ``ec-p256`` (default of the service) or ``rsa-3072``.
        :param label: ``CKA_LABEL`` (the transaction id, so leftovers can be traced).
        :raises HsmError: the HSM refused.
        """
        key_id = secrets.token_bytes(16)
        private_template = {Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False, Attribute.TOKEN: False}
        public_template = {Attribute.TOKEN: False}
        session = self.session()
        try:
            with self._lock:
                self._inject("hsm-keygen", label=label)
                if algorithm == "ec-p256":
                    params = session.create_domain_parameters(
                        KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")}, local=True
                    )
                    public, _private = params.generate_keypair(
                        id=key_id, label=label, store=False,
                        capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
                        public_template=public_template, private_template=private_template,
                    )
                    info = asn1_keys.PublicKeyInfo.load(encode_ec_public_key(public))
                elif algorithm == "rsa-3072":
                    public, _private = session.generate_keypair(
                        KeyType.RSA, 3072, id=key_id, label=label, store=False,
                        capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
                        public_template=public_template, private_template=private_template,
                    )
                    info = asn1_keys.PublicKeyInfo({
                        "algorithm": {"algorithm": "rsa"},
                        "public_key": asn1_keys.RSAPublicKey.load(encode_rsa_public_key(public)),
                    })
                else:
                    raise HsmError(f"unsupported one-time key algorithm {algorithm!r} (ec-p256 or rsa-3072)")
        except pkcs11.PKCS11Error as exc:
            # Nothing may survive a half-finished generation.
            self.destroy_key(key_id.hex())
            raise HsmError(f"the HSM could not generate the key ({exc.__class__.__name__})", step=step(6)) from None
        return OneTimeKey(key_id.hex(), algorithm, info)

    def sign_digest(self, key: OneTimeKey, digest: bytes, hash_algorithm: str) -> bytes:
        """Sign ``digest`` (already hashed with ``hash_algorithm``) with the one-time key (step 9).

        ECDSA: ``CKM_ECDSA`` over the digest; the raw r||s is returned DER-encoded
        (ECDSA-Sig-Value), ready for a CMS SignerInfo. RSA: ``CKM_RSA_PKCS`` over the DigestInfo.

        :raises HsmError: unknown key (destroyed or never made), wrong digest length, HSM failure.
        """
        if len(digest) != DIGEST_SIZES.get(hash_algorithm, -1):
            raise HsmError(f"a {hash_algorithm} digest has {DIGEST_SIZES.get(hash_algorithm)} bytes, got {len(digest)}")
        raw = self.sign_raw(key, DIGEST_INFO_PREFIX[hash_algorithm] + digest if not key.is_ec else digest)
        return encode_ecdsa_signature(raw) if key.is_ec else raw

    def sign_raw(self, key: OneTimeKey, data: bytes) -> bytes:
        """The raw mechanism output over ``data`` (r||s for ECDSA; for RSA ``data`` is the DigestInfo)."""
        session = self.session()
        with self._lock:
            try:
                found = list(session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY,
                                                  Attribute.ID: bytes.fromhex(key.key_id)}))
                if len(found) != 1:
                    raise HsmError(f"one-time key {key.key_id} is not in the HSM (destroyed or never created)")
                mechanism = Mechanism.ECDSA if key.is_ec else Mechanism.RSA_PKCS
                if _OPERATION_STEP.get() == 9:
                    self._inject("hsm-sign", key_id=key.key_id)
                private_key = found[0]
                if not isinstance(private_key, SignMixin):
                    raise HsmError(f"one-time key {key.key_id} is not a private key object")
                return bytes(private_key.sign(data, mechanism=mechanism))
            except pkcs11.PKCS11Error as exc:
                raise HsmError(f"the HSM could not sign ({exc.__class__.__name__})",
                               step=step(_OPERATION_STEP.get())) from None

    def destroy_key(self, key_id: str) -> int:
        """Destroy every object with ``CKA_ID`` = ``key_id`` (both halves); return how many were destroyed.

        Never raises for a key that is already gone, so it is safe in ``finally`` blocks.
        """
        session = self.session()
        destroyed = 0
        with self._lock:
            objects = list(session.get_objects({Attribute.ID: bytes.fromhex(key_id)}))
            for obj in objects:
                try:
                    obj.destroy()
                    destroyed += 1
                except pkcs11.PKCS11Error:
                    pass  # already gone: the goal is reached
        return destroyed

    def key_objects(self) -> list[dict[str, object]]:
        """Every key object on the token: class, ``CKA_ID`` (hex), label, token/session object."""
        session = self.session()
        rows: list[dict[str, object]] = []
        with self._lock:
            for object_class in (ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY):
                for obj in session.get_objects({Attribute.CLASS: object_class}):
                    rows.append({
                        "class": object_class.name.lower(),
                        "id": bytes(obj[Attribute.ID] or b"").hex(),
                        "label": obj[Attribute.LABEL],
                        "token_object": bool(obj[Attribute.TOKEN]),
                    })
        return rows

    def destroy_all_keys(self) -> list[dict[str, object]]:
        """Destroy every key object on the token (start-up sweep); return what was destroyed."""
        rows = self.key_objects()
        for key_id in sorted({str(row["id"]) for row in rows}):
            if key_id:
                self.destroy_key(key_id)
        # Objects without an id cannot be found by id: destroy them directly.
        session = self.session()
        with self._lock:
            for object_class in (ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY):
                for obj in list(session.get_objects({Attribute.CLASS: object_class})):
                    obj.destroy()
        return rows

    def close(self) -> None:
        """Close the shared session (which also destroys any session objects left in it)."""
        with _SESSIONS_LOCK:
            session = _SESSIONS.pop(self.settings.hsm_token_label, None)
            if session is not None:
                session.close()
