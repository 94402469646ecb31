"""The SSASP's injectable HSM faults (off unless ``SIGNLAB_SIGNER_FAULTS_ENABLED=true``).

Armed through the guarded admin API (``/admin/faults``, bearer ``SIGNLAB_SIGNER_ADMIN_TOKEN``,
see :mod:`shared.faults`); the hooks are in :class:`services.signer.hsm.Hsm`, so a fired fault
takes exactly the path a real PKCS#11 failure takes: the HSM raises ``CKR_DEVICE_ERROR``
(python-pkcs11 ``DeviceError``), the service answers ``server_error`` naming the step, the
one-time key is destroyed, no signature leaves the service, and the audit log shows
``fault.fired`` then ``signing.failed`` and ``key.destroyed``.

=============  ====  =================================================================
name           step  what fails
=============  ====  =================================================================
``hsm-keygen``  6    the next ``C_GenerateKeyPair`` of a one-time key
``hsm-sign``    9    the next ``C_Sign`` of a document signature (DTBS/R); the CSR's
                     proof-of-possession signature at step 7 is never hit
=============  ====  =================================================================
"""

from __future__ import annotations

from services.signer.settings import SignerSettings
from shared.audit import AuditLog
from shared.faults import FaultBoard, FaultSpec

__all__ = ["DISABLED_HINT", "HSM_KEYGEN", "HSM_SIGN", "SIGNER_FAULTS", "build_fault_board"]

HSM_KEYGEN = "hsm-keygen"
HSM_SIGN = "hsm-sign"

SIGNER_FAULTS = (
    FaultSpec(HSM_KEYGEN, 6, "The HSM fails the next one-time key generation (C_GenerateKeyPair → CKR_DEVICE_ERROR): "
                             "no key, no certificate, server_error at step 6."),
    FaultSpec(HSM_SIGN, 9, "The HSM fails the next document signature (C_Sign → CKR_DEVICE_ERROR): no signature, "
                           "the one-time key is destroyed, server_error at step 9."),
)
"""The faults of the signing service."""

DISABLED_HINT = ("set SIGNLAB_SIGNER_FAULTS_ENABLED=true (or start SignLab with 'signlab up --fault-injection') "
                 "to use it")


def build_fault_board(settings: SignerSettings, audit: AuditLog) -> FaultBoard | None:
    """The signer's fault board, or None when fault injection is disabled (the default)."""
    if not settings.faults_enabled:
        return None
    return FaultBoard(SIGNER_FAULTS, settings.admin_token, audit)
