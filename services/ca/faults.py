"""The TSP's injectable faults (off unless ``SIGNLAB_CA_FAULTS_ENABLED=true``).

Armed through the guarded admin API (``/admin/faults``, bearer ``SIGNLAB_CA_ADMIN_TOKEN``, see
:mod:`shared.faults`); every armed, fired and removed fault is written to the issuance log.

=================== ==== ========================================================================
name                step what happens
=================== ==== ========================================================================
``wrong-key``        7   the next issued certificate certifies a freshly generated P-256 public
                         key instead of the CSR's (all checks still run; the certificate is
                         issued and logged as usual). The signing service must detect it.
``tsa-unavailable`` 10   ``POST /tsa`` answers 503 ``temporarily_unavailable`` while the rest of
                         the CA (issuance, OCSP, CRL, trusted list) keeps working.
``short-term-no-``   7   not a failure but a lab switch: the next certificate is issued in the
``revocation``           revocation profile ``short-term-no-revocation`` whatever
                         ``SIGNLAB_CA_REVOCATION_PROFILE`` says (so one scenario can show that
                         profile on an ecosystem running the default one).
``hold-after-log``   7   the next issuance stops for :data:`HOLD_SECONDS` after its issuance-log
                         entry is written and before the certificate is stored and answered; its
                         ``fault.fired`` entry marks the moment, so a test can kill the CA exactly
                         between log and database (then the issuance completes as usual).
``revoked-at-``       7   the next certificate is revoked (keyCompromise) the moment it is issued,
``issuance``             before it signs anything: a signature made with it is made after the
                         revocation ("revoked before signing" of the validation matrix).
``expired-``         7   the next certificate's validity ended one minute before it was issued (it
``certificate``          lasted the usual validity): the signing service must refuse it.
``unlisted-ca``      7   the next certificate is issued by a CA outside the SignLab hierarchy and
                         the trusted list (a self-signed "SignLab Unlisted CA" made in memory),
                         in the short-term-no-revocation profile: validators find no chain.
``ocsp-unavailable`` 10  the OCSP responder answers 503 ``temporarily_unavailable`` (CRLs, the TSA
                         and issuance keep working).
=================== ==== ========================================================================
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec

from services.ca.settings import CaSettings
from shared.audit import AuditLog
from shared.errors import SignLabError
from shared.faults import FaultBoard, FaultSpec
from shared.flow import Role, step

__all__ = ["CA_FAULTS", "DISABLED_HINT", "EXPIRED_CERTIFICATE", "HOLD_AFTER_LOG", "HOLD_SECONDS", "OCSP_UNAVAILABLE",
           "REVOKED_AT_ISSUANCE", "SHORT_TERM_NO_REVOCATION", "TSA_UNAVAILABLE", "UNLISTED_CA", "WRONG_KEY",
           "OcspUnavailable", "TsaUnavailable", "build_fault_board", "substitute_public_key"]

WRONG_KEY = "wrong-key"
TSA_UNAVAILABLE = "tsa-unavailable"
SHORT_TERM_NO_REVOCATION = "short-term-no-revocation"
HOLD_AFTER_LOG = "hold-after-log"
REVOKED_AT_ISSUANCE = "revoked-at-issuance"
EXPIRED_CERTIFICATE = "expired-certificate"
UNLISTED_CA = "unlisted-ca"
OCSP_UNAVAILABLE = "ocsp-unavailable"
HOLD_SECONDS = 30
"""How long ``hold-after-log`` holds an issuance between its log entry and its database commit."""

CA_FAULTS = (
    FaultSpec(WRONG_KEY, 7, "The next certificate certifies another public key than the CSR's (a fresh P-256 key); "
                            "the signing service must refuse it at step 7."),
    FaultSpec(TSA_UNAVAILABLE, 10, "POST /tsa answers 503 temporarily_unavailable (the TSA alone is down; "
                                   "issuance, OCSP and CRLs keep working)."),
    FaultSpec(SHORT_TERM_NO_REVOCATION, 7, "The next certificate is issued in the revocation profile "
                                           "short-term-no-revocation (noRevAvail + valassured-ST, no CRL DP / OCSP "
                                           "pointer), whatever SIGNLAB_CA_REVOCATION_PROFILE says."),
    FaultSpec(HOLD_AFTER_LOG, 7, f"The next issuance stops for {HOLD_SECONDS} s after its issuance-log entry and "
                                 "before the certificate is stored and answered (kill the CA then to test the "
                                 "start-up reconciliation of log and database)."),
    FaultSpec(REVOKED_AT_ISSUANCE, 7, "The next certificate is revoked (keyCompromise) the moment it is issued, so "
                                      "every signature made with it is made after its revocation."),
    FaultSpec(EXPIRED_CERTIFICATE, 7, "The next certificate's validity ended one minute before it was issued; the "
                                      "signing service must refuse it at step 7."),
    FaultSpec(UNLISTED_CA, 7, "The next certificate is issued by a CA outside the SignLab hierarchy and the trusted "
                              "list (self-signed 'SignLab Unlisted CA'): no validator trusting SignLab finds a chain."),
    FaultSpec(OCSP_UNAVAILABLE, 10, "The OCSP responder answers 503 temporarily_unavailable (CRLs, the TSA and "
                                    "issuance keep working)."),
)
"""The faults of the TSP."""

DISABLED_HINT = "set SIGNLAB_CA_FAULTS_ENABLED=true (or start SignLab with 'signlab up --fault-injection') to use it"


class TsaUnavailable(SignLabError):
    """The time-stamping authority is down (injected ``tsa-unavailable`` fault)."""

    error = "temporarily_unavailable"
    status = 503
    default_description = "the time-stamping authority is temporarily unavailable (injected fault tsa-unavailable)"

    def __init__(self) -> None:
        super().__init__(step=step(10).between(Role.SCASP, Role.TSP))  # the portal's time-stamp request


class OcspUnavailable(SignLabError):
    """The OCSP responder is down (injected ``ocsp-unavailable`` fault)."""

    error = "temporarily_unavailable"
    status = 503
    default_description = "the OCSP responder is temporarily unavailable (injected fault ocsp-unavailable)"

    def __init__(self) -> None:
        super().__init__(step=step(10))


def build_fault_board(settings: CaSettings) -> FaultBoard | None:
    """The TSP's fault board, or None when fault injection is disabled (the default).

    It writes to the issuance log (a second handle on the same hash-chained file; appends are
    serialised by the log's file lock).
    """
    if not settings.faults_enabled:
        return None
    return FaultBoard(CA_FAULTS, settings.admin_token, AuditLog(settings.issuance_log_path))


def substitute_public_key() -> ec.EllipticCurvePublicKey:
    """A public key nobody holds the private half of (the private half is dropped at once)."""
    return ec.generate_private_key(ec.SECP256R1()).public_key()
