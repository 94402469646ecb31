"""Validation of signed documents at a chosen time, decided by pyHanko's AdES processes.

For every signature in an uploaded PDF, ``.p7s`` + file, or JAdES JSON + payload, and at a
validation time that is "now" on the lab clock or any time the caller names:

* **one verdict** — ``TOTAL_PASSED``, ``INDETERMINATE`` or ``TOTAL_FAILED`` — with the ETSI EN 319
  102-1 sub-indication, decided by the EN 319 102-1 process the signature's level calls for, as
  pyHanko implements it (``pyhanko.sign.validation.ades``): a signature without a signature
  time-stamp (B-B) goes through the validation process for basic signatures (§5.3,
  ``ades_basic_validation``), a time-stamped one (B-T) through the process for signatures with
  time (§5.5, ``ades_with_time_validation``), one with long-term validation data (B-LT, B-LTA)
  through the process for long-term availability (§5.6.3, ``ades_lta_validation``; for CAdES,
  which pyHanko's LTA process does not read, the process with time plus the archive time-stamp
  checks of :mod:`services.portal.archive_timestamps`). JAdES is JSON, which pyHanko does not
  parse: the same steps run over pyhanko-certvalidator (chain at the validation time, then at the
  signature time-stamp's time when the certificate has expired since);
* **proof of existence**: the report names the PoE that carried the decision — the signature
  time-stamp, the document or archive time-stamp that protects the validation data, or none (the
  validation time itself, for a B-B signature);
* **qualification** at the best signature time (the signing time the PoE proves) and at the
  validation time, from the trusted list (pyHanko's ``QualificationAssessor`` reads its service
  history: a CA withdrawn after the signing leaves a time-stamped QES a QES, while an un-stamped
  signature validated after the withdrawal is only AdES);
* the simple report (:mod:`services.portal.validation_report`), the detailed report
  (:mod:`services.portal.validation_detail`) and the ETSI TS 119 102-2 XML report
  (:mod:`services.portal.etsi_report`).

This module is the entry: :func:`validate_document` picks the format's validator
(:mod:`~services.portal.validation_pades`, :mod:`~services.portal.validation_cades`,
:mod:`~services.portal.validation_jades`), which read the signature and run pyHanko; the pieces
they share are the run at a chosen time (:mod:`~services.portal.validation_run`), the time-stamp
checks (:mod:`~services.portal.validation_timestamps`) and the verdict
(:mod:`~services.portal.validation_verdict`).

**Time.** pyHanko reads the machine's clock in places no argument reaches (past certificate
validation starts from "now"; the proof-of-existence manager dates unknown objects "now").
Validation therefore runs inside :func:`shared.clock.pinned_at` with the validation time, and
pyHanko's modules read that pin (:func:`shared.clock.route_library_clocks`) — per validation and
thread-safe. Validating "at" a time earlier than the lab clock is a point-in-time validation:
revocation data issued later is accepted as a statement about that time (``retroactive_revinfo``).

**Validation data.** The validator trusts exactly the root in :class:`TrustSettings` (never a root
embedded in the document) and fetches nothing itself: it uses the document's own data (DSS, CMS,
JAdES ``rVals``) and what the portal fetched from the TSP for this validation (its current CRLs
and certificates). Revocation data about the signer's certificate issued after that certificate
expired is left out (RFC 5280 §3.3 lets a CA drop expired certificates from its CRLs, so such a
CRL proves nothing about them, and given to pyHanko's past validation it turns a good B-LT or
B-LTA into OUT_OF_BOUNDS_NO_POE); the detailed report lists it as *not used*.

**Checks SignLab adds** (each named in the report when it changes the verdict): pyHanko 0.38's
process with time stops looking at a certificate once it has expired (it checks only the start of
its validity), so a time-stamped signature made *after* its certificate expired, or *after* its
revocation, would pass. EN 319 102-1 §5.5.4 says otherwise, so a PASSED result becomes
INDETERMINATE / OUT_OF_BOUNDS_NO_POE when the best signature time is after the certificate's
notAfter, and INDETERMINATE / REVOKED_NO_POE when any available revocation data states a revocation
at or before the best signature time.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json

from services.portal.documents import SignatureFormat
from services.portal.jades import parse_jws
from services.portal.validation_cades import validate_cades
from services.portal.validation_detail import iso
from services.portal.validation_jades import validate_jades
from services.portal.validation_pades import validate_pades
from services.portal.validation_report import Check, Indication, SignatureReport, ValidationReport
from services.portal.validation_run import TrustSettings, ValidationRun, load_registry
from shared.clock import lab_clock, pinned_at

__all__ = [
    "Check",
    "Indication",
    "SignatureReport",
    "TrustSettings",
    "ValidationReport",
    "detect_format",
    "load_registry",
    "validate_document",
]


async def validate_document(label: str, signed: bytes, trust: TrustSettings, *, original: bytes | None = None,
                            at: dt.datetime | None = None) -> ValidationReport:
    """Validate one signed document; ``original`` is the signed file/payload for detached CAdES/JAdES.

    :param at: the validation time; default: now on the lab clock. Earlier than now: a
        point-in-time validation (revocation data issued since is read as a statement about then).
    """
    now = lab_clock().now()
    moment = (at.astimezone(dt.UTC) if at.tzinfo else at.replace(tzinfo=dt.UTC)) if at is not None else now
    run = ValidationRun(trust, moment, point_in_time=moment < now - dt.timedelta(seconds=1))
    fmt = detect_format(signed)
    with pinned_at(moment):
        if fmt is SignatureFormat.PADES:
            report = await validate_pades(label, signed, run)
        elif fmt is SignatureFormat.JADES:
            report = await validate_jades(label, signed, original, run)
        else:
            report = await validate_cades(label, signed, original, run)
    report.validation_time = iso(moment) or ""
    return report



def detect_format(content: bytes) -> SignatureFormat:
    """Guess the signature format of an uploaded signed file."""
    head = content.lstrip()[:5]
    if head == b"%PDF-":
        return SignatureFormat.PADES
    if head[:1] == b"{" or (content.count(b".") == 2 and b"{" not in content[:10]):
        with contextlib.suppress(Exception):  # not a JWS: fall through
            parse_jws(content)
            return SignatureFormat.JADES
    try:
        json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return SignatureFormat.CADES
    return SignatureFormat.JADES

