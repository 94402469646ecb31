"""Time-stamps inside a signature: validated to the SignLab root and qualified from the trusted list.

:func:`timestamp_fact` validates one time-stamp token (a signature time-stamp, or an archive
time-stamp of CAdES/JAdES) at the validation time and says whether its TSA was a granted
qualified time-stamping service then (:func:`tsa_qualified`). :func:`archive_level` checks the
archive time-stamps :mod:`services.portal.archive_timestamps` finds and lifts B-LT to B-LTA when
every one matches and validates.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from asn1crypto import cms, x509
from pyhanko.sign.validation.generic_cms import validate_tst_signed_data
from pyhanko.sign.validation.qualified.tsp import QTSTServiceInformation
from pyhanko_certvalidator.authority import AuthorityWithCert

from services.portal.archive_timestamps import ArchiveCheck
from services.portal.ltv import ValidationMaterial, validation_context
from services.portal.validation_detail import SignatureFacts, TimestampFact, iso
from services.portal.validation_report import Check
from services.portal.validation_run import TrustSettings, ValidationRun, leaf_first, material_of


def tsa_qualified(trust: TrustSettings, tsa: x509.Certificate | None, moment: dt.datetime | None) -> tuple[bool | None, str]:
    """Whether a time-stamp is qualified: its TSA is a QTST service granted on the trusted list at its time."""
    if tsa is None or moment is None:
        return None, "unknown"
    if trust.registry is None:
        return None, "no trusted list configured"
    services = [s for s in trust.registry.applicable_service_definitions(AuthorityWithCert(tsa), moment)
                if isinstance(s, QTSTServiceInformation)]
    if services:
        return True, f"qualified time-stamp: '{services[0].base_info.service_name}' granted on the trusted list at {iso(moment)}"
    return False, f"not a qualified time-stamp: the TSA is not a granted QTST service on the trusted list at {iso(moment)}"



async def timestamp_fact(kind: str, token: cms.ContentInfo, run: ValidationRun, knowledge: ValidationMaterial,
                          expected_imprint: Callable[[str], bytes]) -> TimestampFact:
    """Validate one time-stamp token to the root (at the validation time) and qualify it."""
    try:
        status = await validate_tst_signed_data(token["content"], validation_context(
            run.trust.root, knowledge, revocation_mode="soft-fail", retroactive_revinfo=run.point_in_time), expected_imprint)
        path = status.get("validation_path")
        ok = bool(status["intact"] and status["valid"] and status.get("trust_problem_indic") is None and path is not None)
        tsa = status["signing_cert"]
        moment = status["timestamp"]
        qualified, text = tsa_qualified(run.trust, tsa, moment)
        detail = f"{iso(moment)} by {tsa.subject.human_friendly}" + ("" if ok else " — does not validate to the SignLab root")
        return TimestampFact(kind, moment, tsa, leaf_first(path) if path is not None else [tsa], ok, detail, token.dump(),
                             qualified, text)
    except Exception as exc:  # a broken token inside an untrusted upload is a failed time-stamp, not a 500
        return TimestampFact(kind, None, None, [], False, f"could not be validated ({exc.__class__.__name__})", token.dump())



async def archive_level(find: Callable[[], list[ArchiveCheck]], name: str, rank: int, checks: list[Check],
                         run: ValidationRun, facts: SignatureFacts) -> int:
    """Check the archive time-stamps ``find`` returns (:mod:`services.portal.archive_timestamps`,
    independent of the packaging code): each imprint recomputed from the signature, each token
    validated to the SignLab root. All good lifts B-LT (2) to B-LTA (3)."""
    title = f"Archive time-stamp ({name})"
    try:
        found = find()
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:  # an untrusted upload
        checks.append(Check(title, "failed", f"could not be read ({exc.__class__.__name__}: {exc})"))
        return rank
    if not found:
        return rank
    passed = True
    for archive in found:
        problems = "; ".join(archive.problems) or "message imprint recomputed from the signature: it matches"
        fact = await timestamp_fact("archive", cms.ContentInfo.load(archive.token), run, material_of(facts),
                                     _fixed_imprint(archive.expected_imprint))
        fact.valid = fact.valid and archive.imprint_matches
        facts.timestamps.append(fact)
        checks.append(Check(title, "passed" if fact.valid else "failed", f"{fact.detail}; {problems}"))
        passed = passed and fact.valid
    return 3 if passed and rank == 2 else rank



def _fixed_imprint(imprint: bytes) -> Callable[[str], bytes]:
    """The message imprint an archive time-stamp must carry, whatever digest algorithm pyHanko asks for
    (the checker recomputed it with the token's own algorithm)."""
    return lambda _algorithm: imprint
