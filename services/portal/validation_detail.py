"""What one validation found, object by object: the *detailed report* (as the EU DSS detailed report).

The validator (:mod:`services.portal.validation`) collects, for every signature, a
:class:`SignatureFacts`: each certificate with where it came from, each piece of revocation data
with where it came from and whether it was used, each time-stamp with its chain and its
qualification, the proof of existence (PoE) that carried the decision, and the qualification at
the signing time and at the validation time. :meth:`SignatureFacts.detailed` turns it into the
JSON of the detailed report; :mod:`services.portal.etsi_report` turns the same facts into the
ETSI TS 119 102-2 XML report. Nothing here decides anything: the decisions are pyHanko's (and the
few checks :mod:`services.portal.validation` adds and names).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from typing import Any

from asn1crypto import crl, ocsp, x509

__all__ = [
    "CertificateFact",
    "ProofOfExistence",
    "RevocationFact",
    "SignatureFacts",
    "TimestampFact",
    "iso",
    "revocation_fact",
]

SOURCES = {
    "anchor": "trust anchor (validator configuration)",
    "signature": "the signature (CMS certificates / JAdES x5c)",
    "dss": "the PDF's document security store (DSS)",
    "cms": "the signature's revocation values (CMS SignedData / JAdES rVals)",
    "tsp": "the TSP, fetched for this validation",
    "timestamp": "a time-stamp token",
}
"""Where a certificate or revocation object came from (the keys are stored, the texts shown)."""


def iso(moment: dt.datetime | None) -> str | None:
    """``2026-12-07T18:05:59Z`` (UTC, whole seconds) or None."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class CertificateFact:
    """A certificate the validator knew, and where from."""

    certificate: x509.Certificate
    source: str

    @property
    def id(self) -> str:
        """Its validation-object id (``cert-`` and the first 16 hex digits of its SHA-256)."""
        return "cert-" + _sha256(self.certificate.dump())[:16]

    def summary(self) -> dict[str, Any]:
        """Subject, issuer, serial, validity, fingerprint, source."""
        cert = self.certificate
        return {"id": self.id, "subject": cert.subject.human_friendly, "issuer": cert.issuer.human_friendly,
                "serial": format(cert.serial_number, "x"), "not_before": iso(cert.not_valid_before),
                "not_after": iso(cert.not_valid_after), "sha256": _sha256(cert.dump()),
                "source": SOURCES.get(self.source, self.source)}


@dataclass
class RevocationFact:
    """One CRL or OCSP response the validator knew.

    :ivar used: handed to pyHanko for this signature (False: left out, :attr:`note` says why).
    """

    kind: str
    der: bytes
    source: str
    issuer: str
    this_update: dt.datetime | None
    next_update: dt.datetime | None
    produced_at: dt.datetime | None = None
    entries: dict[int, tuple[dt.datetime | None, str | None]] = field(default_factory=dict)
    """Serial → (revocation time, reason) for revoked serials; for OCSP also ``good`` ones as (None, 'good')."""
    issuer_name_der: bytes = b""
    used: bool = True
    note: str = ""

    @property
    def id(self) -> str:
        """Its validation-object id (``crl-``/``ocsp-`` and 16 hex digits of its SHA-256)."""
        return f"{self.kind.lower()}-" + _sha256(self.der)[:16]

    def covers(self, cert: x509.Certificate) -> bool:
        """True when this object speaks about ``cert`` (a CRL of its issuer; an OCSP answer on its serial)."""
        if self.kind == "CRL":
            return self.issuer_name_der == cert.issuer.dump()
        return cert.serial_number in self.entries

    def status_of(self, cert: x509.Certificate) -> str:
        """``good``, ``revoked at … (reason)``, ``unknown`` or ``not listed`` for ``cert``."""
        entry = self.entries.get(cert.serial_number)
        if entry is None:
            return "not listed (not revoked)" if self.kind == "CRL" else "no answer"
        when, reason = entry
        if when is None:
            return reason or "good"
        return f"revoked at {iso(when)}" + (f" ({reason})" if reason else "")

    def revoked_at(self, cert: x509.Certificate) -> dt.datetime | None:
        """The revocation time this object states for ``cert``, if it states one."""
        entry = self.entries.get(cert.serial_number)
        return entry[0] if entry else None

    def freshness(self, reference: dt.datetime | None) -> str:
        """How it relates to ``reference`` (the best signature time): issued before/after, valid until."""
        issued = self.produced_at or self.this_update
        if issued is None:
            return "no issue time"
        text = f"issued {iso(issued)}"
        if reference is not None:
            delta = issued - reference
            minutes = abs(delta.total_seconds()) / 60
            text += f" ({minutes:.0f} min {'after' if delta.total_seconds() >= 0 else 'before'} the best signature time)"
        if self.next_update is not None:
            text += f", next update {iso(self.next_update)}"
        return text

    def summary(self, reference: dt.datetime | None) -> dict[str, Any]:
        """JSON of this object for the detailed report."""
        return {"id": self.id, "type": self.kind, "issuer": self.issuer, "this_update": iso(self.this_update),
                "next_update": iso(self.next_update), "produced_at": iso(self.produced_at),
                "source": SOURCES.get(self.source, self.source), "used": self.used, "note": self.note,
                "freshness": self.freshness(reference), "sha256": _sha256(self.der)}


def revocation_fact(kind: str, der: bytes, source: str) -> RevocationFact | None:
    """Parse a DER CRL (``kind`` ``CRL``) or OCSP response (``OCSP``); None when it does not parse."""
    try:
        if kind == "CRL":
            parsed = crl.CertificateList.load(der)
            tbs = parsed["tbs_cert_list"]
            entries: dict[int, tuple[dt.datetime | None, str | None]] = {}
            for revoked in tbs["revoked_certificates"]:
                reason = None
                for ext in revoked["crl_entry_extensions"]:
                    if ext["extn_id"].native == "crl_reason":
                        reason = str(ext["extn_value"].native)
                entries[revoked["user_certificate"].native] = (revoked["revocation_date"].native, reason)
            return RevocationFact("CRL", der, source, parsed.issuer.human_friendly, tbs["this_update"].native,
                                  tbs["next_update"].native, entries=entries, issuer_name_der=parsed.issuer.dump())
        response = ocsp.OCSPResponse.load(der)
        basic = response.basic_ocsp_response
        data = basic["tbs_response_data"]
        entries = {}
        this_update = next_update = None
        for single in data["responses"]:
            status = single["cert_status"]
            if status.name == "revoked":
                info = status.chosen
                entries[single["cert_id"]["serial_number"].native] = (
                    info["revocation_time"].native, str(info["revocation_reason"].native or "") or None)
            else:
                entries[single["cert_id"]["serial_number"].native] = (None, status.name)
            this_update, next_update = single["this_update"].native, single["next_update"].native
        responder = data["responder_id"]
        issuer = responder.chosen.human_friendly if responder.name == "by_name" else "responder by key hash"
        return RevocationFact("OCSP", der, source, issuer, this_update, next_update,
                              produced_at=data["produced_at"].native, entries=entries)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


@dataclass
class TimestampFact:
    """A time-stamp of the signature: the signature time-stamp, an archive or a document time-stamp.

    :ivar kind: ``signature``, ``archive`` (CAdES/JAdES) or ``document`` (PAdES DocTimeStamp).
    :ivar qualified: per the trusted list at its own time (a QTST service granted then), None unknown.
    """

    kind: str
    time: dt.datetime | None
    tsa: x509.Certificate | None
    chain: list[x509.Certificate]
    valid: bool
    detail: str
    token: bytes = b""
    qualified: bool | None = None
    qualification_detail: str = ""

    @property
    def id(self) -> str:
        """Its validation-object id (``tst-`` and 16 hex digits of the token's SHA-256)."""
        return "tst-" + _sha256(self.token or self.detail.encode())[:16]

    def summary(self) -> dict[str, Any]:
        """JSON for the detailed report."""
        return {"id": self.id, "type": self.kind, "time": iso(self.time),
                "tsa": self.tsa.subject.human_friendly if self.tsa else None,
                "chain": [c.subject.human_friendly for c in self.chain], "valid": self.valid, "detail": self.detail,
                "qualified": self.qualified, "qualification": self.qualification_detail}


@dataclass
class ProofOfExistence:
    """A proof that an object existed at a time (EN 319 102-1 §5.6.2.3).

    :ivar of: what is proven (``signature``, ``validation data``).
    :ivar time: when it existed at the latest.
    :ivar proof: by what (``signature time-stamp by …``, ``document time-stamp by …``,
        ``validation time (no earlier proof)``).
    """

    of: str
    time: dt.datetime
    proof: str
    timestamp_id: str | None = None

    def summary(self) -> dict[str, Any]:
        """JSON for the reports."""
        return {"of": self.of, "time": iso(self.time), "proof": self.proof}


@dataclass
class SignatureFacts:
    """Everything the validator saw and decided for one signature (input of both detailed reports)."""

    id: str
    format: str
    signature_value: bytes = b""
    dtbsr_digest: bytes = b""
    """SHA-256 of the data to be signed as signed (CMS signed attributes, JWS signing input)."""
    document_digest: bytes = b""
    document_digest_algorithm: str = "sha256"
    signer: x509.Certificate | None = None
    chain: list[x509.Certificate] = field(default_factory=list)
    """The validated path, signer first, trust anchor last (empty when none was found)."""
    certificates: dict[str, CertificateFact] = field(default_factory=dict)
    revocation: list[RevocationFact] = field(default_factory=list)
    timestamps: list[TimestampFact] = field(default_factory=list)
    validation_time: dt.datetime | None = None
    best_signature_time: dt.datetime | None = None
    process: str = "Basic"
    """The EN 319 102-1 process run: ``Basic`` (§5.3), ``LTVM`` (with time, §5.5), ``LTA`` (§5.6.3)."""
    indication: str = "INDETERMINATE"
    sub_indication: str | None = None
    pyhanko_message: str | None = None
    adjustment: str | None = None
    """A check SignLab applies on top of pyHanko's verdict, when it changed it (see validation.py)."""
    poe: list[ProofOfExistence] = field(default_factory=list)
    decided_by: str = ""
    qualification_at_signing: str = "not qualified"
    qualification_at_validation: str = "not qualified"
    qualification_detail: str = ""
    claimed_signing_time: dt.datetime | None = None

    def know_certificate(self, cert: x509.Certificate, source: str) -> None:
        """Record ``cert`` and its source (the first source seen wins)."""
        fact = CertificateFact(cert, source)
        self.certificates.setdefault(fact.id, fact)

    def source_of(self, cert: x509.Certificate) -> str:
        """Where ``cert`` came from (shown text)."""
        fact = self.certificates.get(CertificateFact(cert, "").id)
        return SOURCES.get(fact.source, fact.source) if fact else "unknown"

    def _certificate_status(self, cert: x509.Certificate, anchor: bool) -> str:
        if anchor:
            return "trust anchor"
        moment = self.validation_time
        revoked = [r.revoked_at(cert) for r in self.revocation if r.covers(cert) and r.revoked_at(cert)]
        if revoked:
            return f"revoked at {iso(min(t for t in revoked if t))}"
        if moment is not None and moment > cert.not_valid_after:
            return "expired at the validation time"
        if moment is not None and moment < cert.not_valid_before:
            return "not yet valid at the validation time"
        return "valid at the validation time"

    def chain_report(self, chain: list[x509.Certificate]) -> list[dict[str, Any]]:
        """Each certificate of ``chain`` (leaf first) with its status, source and the revocation data on it."""
        rows = []
        for position, cert in enumerate(chain):
            anchor = position == len(chain) - 1 and cert.self_signed != "no"
            row = CertificateFact(cert, "").summary()
            row["source"] = self.source_of(cert) if not anchor else SOURCES["anchor"]
            row["status"] = self._certificate_status(cert, anchor)
            row["revocation"] = [] if anchor else [
                {"id": r.id, "type": r.kind, "issuer": r.issuer, "status": r.status_of(cert),
                 "source": SOURCES.get(r.source, r.source), "used": r.used, "note": r.note,
                 "freshness": r.freshness(self.best_signature_time)}
                for r in self.revocation if r.covers(cert)]
            if not anchor and not row["revocation"]:
                row["revocation_note"] = _no_revocation_note(cert)
            rows.append(row)
        return rows

    def detailed(self) -> dict[str, Any]:
        """The detailed report of this signature (JSON-ready)."""
        chain = self.chain or ([self.signer] if self.signer else [])
        return {
            "id": self.id, "format": self.format, "indication": self.indication, "sub_indication": self.sub_indication,
            "validation_process": _PROCESS_NAMES.get(self.process, self.process),
            "validation_time": iso(self.validation_time), "best_signature_time": iso(self.best_signature_time),
            "claimed_signing_time": iso(self.claimed_signing_time),
            "pyhanko_message": self.pyhanko_message, "signlab_adjustment": self.adjustment,
            "proof_of_existence": [p.summary() for p in self.poe], "decided_by": self.decided_by,
            "certificate_chain": self.chain_report(chain),
            "revocation_data": [r.summary(self.best_signature_time) for r in self.revocation],
            "timestamps": [dict(t.summary(), chain_status=self.chain_report(t.chain)) for t in self.timestamps],
            "qualification": {"at_signing_time": self.qualification_at_signing,
                              "at_validation_time": self.qualification_at_validation,
                              "signing_time_used": iso(self.best_signature_time), "detail": self.qualification_detail},
        }


_PROCESS_NAMES = {
    "Basic": "validation process for basic signatures (EN 319 102-1 §5.3)",
    "LTVM": "validation process for signatures with time (EN 319 102-1 §5.5)",
    "LTA": "validation process for signatures providing long-term availability and integrity of validation "
           "material (EN 319 102-1 §5.6.3)",
}


def _no_revocation_note(cert: x509.Certificate) -> str:
    extensions = {e["extn_id"].dotted for e in cert["tbs_certificate"]["extensions"]}
    if "2.5.29.56" in extensions:
        return "none needed: the certificate carries noRevAvail (short-term, no revocation information by design)"
    return "no revocation data on this certificate was available to the validator"
