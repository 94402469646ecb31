"""JAdES validation: a detached JWS (``sigD``, ``x5c``) and its payload.

pyHanko does not parse JSON, so the steps of EN 319 102-1 run here over pyhanko-certvalidator:
the payload digest against ``sigD``, the ES256 value over the protected header, the chain at the
validation time — and, when the certificate has expired or been revoked since, at the time a
valid signature time-stamp proves (§5.5). ``rVals`` make B-LT, ``arcTst`` (checked by
:mod:`services.portal.archive_timestamps`) B-LTA.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

from asn1crypto import cms, x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.hazmat.primitives.serialization import load_der_public_key
from pyhanko_certvalidator import CertificateValidator
from pyhanko_certvalidator.errors import ExpiredError, InsufficientRevinfoError, PathBuildingError, PathValidationError, RevokedError
from pyhanko_certvalidator.path import ValidationPath

from services.portal.archive_timestamps import jades_archive_checks
from services.portal.documents import SignatureFormat
from services.portal.jades import b64url_decode, parse_jws
from services.portal.ltv import load_certificate, validation_context
from services.portal.validation_detail import SignatureFacts, TimestampFact, revocation_fact
from services.portal.validation_report import Check, Indication, ValidationReport, document_report, format_failure, no_signature
from services.portal.validation_run import ValidationRun, material_of
from services.portal.validation_timestamps import archive_level, timestamp_fact
from services.portal.validation_verdict import finish_signature_report


async def validate_jades(label: str, signature: bytes, payload: bytes | None, run: ValidationRun) -> ValidationReport:
    try:
        jws = parse_jws(signature)
        header = jws.protected_header
        chain = [load_certificate(base64.b64decode(c)) for c in header.get("x5c", [])]
        if not chain:
            raise ValueError("no x5c")
        leaf = chain[0]
        sig_d = header["sigD"]
        signature_value = b64url_decode(jws.signature)
    except Exception:  # any parse failure of an untrusted upload is a format failure
        return format_failure(label, SignatureFormat.JADES, run, "the file is not a detached JAdES signature with sigD and x5c")
    if payload is None:
        return no_signature(label, SignatureFormat.JADES, run, "A detached JAdES signature needs the signed payload too.",
                             sub="SIGNED_DATA_NOT_FOUND", indication=Indication.INDETERMINATE)
    signing_input = f"{jws.protected}.".encode("ascii")
    facts = SignatureFacts(id="signature-1", format="JAdES", signer=leaf, signature_value=signature_value,
                           dtbsr_digest=hashlib.sha256(signing_input).digest(), document_digest=hashlib.sha256(payload).digest(),
                           process="Basic")
    for cert in chain:
        facts.know_certificate(cert, "signature")
    checks: list[Check] = []
    expected = [b64url_decode(v) for v in sig_d.get("hashV", [])]
    intact = facts.document_digest in expected and sig_d.get("hashM") == "S256"
    checks.append(Check("Payload digest (sigD)", "passed" if intact else "failed",
                        "the payload matches the signed digest" if intact else "the payload does not match the signed digest"))
    valid = _jws_signature_valid(header, leaf, signing_input, signature_value)
    checks.append(Check("Signature value", "passed" if valid else "failed", f"{header.get('alg')} over the protected header"))
    has_revinfo, tst_token = False, None
    for item in jws.etsi_u():
        if "xVals" in item:
            for x in item["xVals"]:
                facts.know_certificate(load_certificate(base64.b64decode(x["x509Cert"])), "signature")
        if "rVals" in item:
            for kind, key in (("CRL", "crlVals"), ("OCSP", "ocspVals")):
                for value in item["rVals"].get(key, []):
                    fact = revocation_fact(kind, base64.b64decode(value), "cms")
                    if fact is not None:
                        facts.revocation.append(fact)
            has_revinfo = True
        if "sigTst" in item:
            tst_token = cms.ContentInfo.load(base64.b64decode(item["sigTst"]["tstTokens"][0]["val"]))
    run.tsp_facts(facts)
    imprint = hashlib.sha256(jws.signature.encode("ascii")).digest()
    signature_ts = None
    if tst_token is not None:
        signature_ts = await timestamp_fact("signature", tst_token, run, material_of(facts), lambda _md: imprint)
        facts.timestamps.append(signature_ts)
        checks.append(Check("Signature time-stamp", "passed" if signature_ts.valid else "failed", signature_ts.detail))
        facts.process = "LTVM"
    else:
        checks.append(Check("Signature time-stamp", "info", "none (level B-B)"))
    path, chain_sub = await _validate_jws_chain(leaf, facts, run, signature_ts)
    checks.append(Check("Certificate chain to the SignLab root", "passed" if path is not None else "failed",
                        " → ".join(c.subject.human_friendly for c in path) if path is not None else (chain_sub or "")))
    if not intact:
        indication, sub = Indication.TOTAL_FAILED, "HASH_FAILURE"
    elif not valid:
        indication, sub = Indication.TOTAL_FAILED, "SIG_CRYPTO_FAILURE"
    elif path is None:
        indication, sub = Indication.INDETERMINATE, chain_sub or "NO_CERTIFICATE_CHAIN_FOUND"
    else:
        indication, sub = Indication.TOTAL_PASSED, None
    rank = 0 if intact and valid and ("x5t#S256" in header or "x5c" in header) else -1
    if rank == 0 and signature_ts is not None and signature_ts.valid:
        rank = 1
    if rank == 1 and has_revinfo:
        rank = 2
        rank = await archive_level(lambda: jades_archive_checks(signature, payload), "arcTst, TS 119 182-1",
                                    rank, checks, run, facts)
    claimed = str(header.get("sigT")) if header.get("sigT") else None
    report = finish_signature_report(facts, run, indication, sub, path, checks, rank, claimed)
    return document_report(label, SignatureFormat.JADES, [report], run, [facts])


def _jws_signature_valid(header: dict[str, Any], leaf: x509.Certificate, signing_input: bytes, value: bytes) -> bool:
    if header.get("alg") != "ES256" or len(value) != 64:
        return False
    key = load_der_public_key(leaf.public_key.dump())
    der_sig = utils.encode_dss_signature(int.from_bytes(value[:32], "big"), int.from_bytes(value[32:], "big"))
    if not isinstance(key, ec.EllipticCurvePublicKey):
        return False
    try:
        key.verify(der_sig, signing_input, ec.ECDSA(hashes.SHA256()))
        return True
    except InvalidSignature:
        return False


async def _validate_jws_chain(leaf: x509.Certificate, facts: SignatureFacts, run: ValidationRun,
                              signature_ts: TimestampFact | None) -> tuple[ValidationPath | None, str | None]:
    """EN 319 102-1 §5.3 then §5.5 for a JWS over pyhanko-certvalidator: the chain at the validation
    time; when the certificate has expired since and a valid signature time-stamp proves an earlier
    time inside its validity, the chain at that time."""

    async def at(moment: dt.datetime | None) -> ValidationPath:
        context = validation_context(run.trust.root, material_of(facts), moment=moment, revocation_mode="soft-fail",
                                     retroactive_revinfo=moment is not None or run.point_in_time)
        return await CertificateValidator(leaf, validation_context=context).async_validate_usage({"non_repudiation"})

    facts.best_signature_time = run.moment
    poe = signature_ts.time if signature_ts is not None and signature_ts.valid else None
    if poe is not None:
        facts.best_signature_time = poe
    try:
        return await at(None), None
    except RevokedError as exc:
        revoked = _revocation_time(exc)
        if poe is not None and revoked is not None and poe < revoked:
            return await _retry(at, poe)
        return None, "REVOKED_NO_POE"
    except ExpiredError:
        if poe is None:
            facts.best_signature_time = run.moment
            return None, "OUT_OF_BOUNDS_NO_POE"
        return await _retry(at, poe)
    except PathBuildingError:
        return None, "NO_CERTIFICATE_CHAIN_FOUND"
    except InsufficientRevinfoError:
        return None, "TRY_LATER"
    except PathValidationError:
        return None, "CERTIFICATE_CHAIN_GENERAL_FAILURE"


async def _retry(at: Callable[[dt.datetime], Awaitable[ValidationPath]], poe: dt.datetime) -> tuple[ValidationPath | None, str | None]:
    try:
        return await at(poe), None
    except RevokedError:
        return None, "REVOKED_NO_POE"
    except ExpiredError:
        return None, "OUT_OF_BOUNDS_NO_POE"
    except (PathBuildingError, PathValidationError):
        return None, "CERTIFICATE_CHAIN_GENERAL_FAILURE"


def _revocation_time(exc: RevokedError) -> dt.datetime | None:
    return getattr(exc, "revocation_dt", None) or getattr(exc, "revocation_date", None)

