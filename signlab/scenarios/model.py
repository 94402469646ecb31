"""The scenario model: what one YAML file in ``scenarios/`` says, as frozen dataclasses.

The loader (:mod:`signlab.scenarios.loader`) validates a file against ``scenarios/schema.json``
and builds a :class:`Scenario`; the runner never sees raw YAML. Field meanings are documented in
``scenarios/README.md`` (the authoring guide).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "DEFAULT_INVARIANTS",
    "DocumentSpec",
    "Expectation",
    "Fault",
    "Persona",
    "Scenario",
    "SigningRequest",
    "TimelineStep",
    "ValidationExpectation",
]

DEFAULT_INVARIANTS: tuple[str, ...] = ("no-key-left-in-hsm", "audit-chain-valid", "no-document-bytes-at-signer")
"""Invariants checked after every scenario unless ``expect.invariants`` lists others."""

QUALIFIERS = {"qes": "eu_eidas_qes", "ades": "eu_eidas_aes"}
"""Scenario qualifier → CSC ``signatureQualifier``."""


@dataclass(frozen=True)
class Persona:
    """Who signs: a test person of the IdP catalogue and the eID means used."""

    person: str
    """Catalogue id (``kari-nordmann``) or national identifier."""
    eid: str | None = None
    """eID means id (``no-bankid``); None: the person's best means for the requested level."""
    device: Literal["same-device", "cross-device"] = "same-device"
    """With the EUDI Wallet (``eid: eudi-wallet``): where the wallet runs (step 4)."""


@dataclass(frozen=True)
class DocumentSpec:
    """One document of the request (before ``copies`` expansion)."""

    source: Literal["sample", "path", "text"]
    value: str
    """The sample name, the resolved file path, or the inline text."""
    name: str
    """The file name shown to the signer."""
    copies: int = 1


@dataclass(frozen=True)
class SigningRequest:
    """What the partner asks for."""

    qualifier: Literal["qes", "ades"]
    format: Literal["PAdES", "CAdES", "JAdES"]
    level: Literal["B-B", "B-T", "B-LT", "B-LTA"]
    flow: Literal["person-signing", "certificate-first"] = "person-signing"
    timestamp_fallback: bool = False

    @property
    def signature_qualifier(self) -> str:
        """CSC ``signatureQualifier`` (``eu_eidas_qes`` / ``eu_eidas_aes``)."""
        return QUALIFIERS[self.qualifier]


@dataclass(frozen=True)
class Fault:
    """One fault to inject: ``kind`` is the YAML key (``idp``, ``outage``, ``tamper`` …)."""

    kind: str
    params: dict[str, Any]
    """Normalised parameters (a bare string becomes ``{"name": value}``)."""
    line: int = 0
    """Line of the fault in the scenario file (for messages)."""

    def describe(self) -> str:
        """``idp: cancel``, ``outage: ca before step 6`` … for progress lines and reports."""
        if "name" in self.params and len(self.params) == 1:
            return f"{self.kind}: {self.params['name']}"
        inner = ", ".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.kind}: {inner}"


@dataclass(frozen=True)
class ValidationExpectation:
    """The validation result expected from the portal's validation API (every field optional)."""

    indication: str | None = None
    sub_indication: str | None = None
    level: str | None = None
    qualified: bool | None = None
    revoked: bool | None = None
    qualification: str | None = None
    """QES, AdES-QC, AdES or ``not qualified``: at the best signature time (the signing time proven)."""
    qualification_at_validation_time: str | None = None
    proof_of_existence: str | None = None
    """Text in the report's proof of existence (``signature time-stamp``), or ``none`` for no PoE."""
    timestamp_qualified: bool | None = None
    """The signature time-stamp is qualified per the trusted list at its time."""


@dataclass(frozen=True)
class TimelineStep:
    """One thing that happens after signing, in order (``timeline:`` of a scenario).

    ``kind`` is the YAML key: ``clock`` (move the lab clock by ``params["offset"]``), ``revoke``
    (the CA revokes the signer's certificate), ``trusted_list`` (a listed service changes status),
    ``validate`` (the portal validates every signed document at ``params["at"]`` and the result is
    checked against ``expect``).
    """

    kind: str
    params: dict[str, Any]
    expect: ValidationExpectation | None = None
    line: int = 0

    def describe(self) -> str:
        """``clock +1d``, ``validate at signing+10m`` … for progress lines and reports."""
        if self.kind == "clock":
            return f"move the lab clock {self.params['offset']}"
        if self.kind == "revoke":
            return f"the CA revokes the signer's certificate ({self.params.get('reason', 'keyCompromise')})"
        if self.kind == "trusted_list":
            return f"the trusted list: {self.params['service']} {self.params['status']}"
        return f"validate at {self.params.get('at', 'now')}"


@dataclass(frozen=True)
class Expectation:
    """The expected outcome, trace and invariants."""

    outcome: Literal["signed", "refused"]
    error: str | None = None
    step: int | None = None
    message_contains: str | None = None
    signatures: int | None = None
    trace: tuple[int, ...] = ()
    trace_absent: tuple[int, ...] = ()
    validation: ValidationExpectation | None = None
    invariants: tuple[str, ...] = DEFAULT_INVARIANTS


@dataclass(frozen=True)
class Scenario:
    """One scenario file, validated."""

    name: str
    """The file stem: what ``signlab scenario run NAME`` takes."""
    path: Path
    title: str
    description: str
    tags: tuple[str, ...]
    persona: Persona
    documents: tuple[DocumentSpec, ...]
    request: SigningRequest
    driver: Literal["portal", "partner"]
    faults: tuple[Fault, ...] = ()
    expect: Expectation = field(default_factory=lambda: Expectation("signed"))
    timeout_seconds: float = 120.0
    timeline: tuple[TimelineStep, ...] = ()
    """After signing: clock moves, revocations, trusted-list changes and validations, in order."""

    def faults_of(self, kind: str) -> list[Fault]:
        """The faults of one kind, in file order."""
        return [f for f in self.faults if f.kind == kind]

    @property
    def document_count(self) -> int:
        """Number of documents after ``copies`` expansion."""
        return sum(d.copies for d in self.documents)
