"""The flow vocabulary: eIDAS roles, the services and flow steps 1-10.

This module is the single definition of the step numbering of design §2. Code, trace
spans, audit entries, error messages, pages and documents all take step numbers, names and roles
from here, so that a reader can find any step by its number everywhere.

Two flows share the numbering: the default *person-signing* flow (CSC v2 ``signDoc``; the steps
run 1 to 10 in order) and the *certificate-first* flow (CSC v1 ``signHash``; the same steps in
another order, see :data:`CERTIFICATE_FIRST_ORDER`).

Besides the four eIDAS providers, :data:`SERVICES` lists the signer's EUDI Wallet: the person's own
device (an emulator), not a provider. It takes part in step 4 when the signer logs in with the
wallet; the PID provider that issued its credential appears as its own role in traces.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from enum import StrEnum

__all__ = [
    "CERTIFICATE_FIRST_ORDER",
    "PERSON_SIGNING_ORDER",
    "SERVICES",
    "STEPS",
    "FlowStep",
    "Role",
    "ServiceInfo",
    "service",
    "step",
    "step_in_text",
]


class Role(StrEnum):
    """A participant in the ecosystem, as named in the eIDAS vocabulary (and the signer)."""

    SIGNER = "Signer"
    """The natural person who signs, with a browser."""
    SCASP = "SCASP"
    """Signature creation application service provider: the partner's document portal."""
    SSASP = "SSASP"
    """Server signing application service provider: the remote signing service (SAM + QSCD)."""
    IPSP = "IPSP"
    """Identity proofing service provider: the eID OpenID Connect provider."""
    TSP = "TSP"
    """Trust service provider: the CA for short-term certificates and the time-stamping authority."""
    HSM = "HSM"
    """The hardware security module behind the SSASP (a lane of the SSASP in diagrams)."""
    WALLET = "Wallet"
    """The signer's EUDI Wallet: the person's device holding the PID (not a provider)."""
    PIDP = "PIDP"
    """The PID provider: issued the wallet's Person Identification Data and publishes its status."""


@dataclass(frozen=True)
class FlowStep:
    """One step of the signing flow, with the two roles it connects.

    :ivar number: the step number, 1-10, as in design §2.
    :ivar name: a short name (used in span names and page headings).
    :ivar source: the role that acts or sends.
    :ivar target: the role that receives (equal to ``source`` for an internal step).
    :ivar protocol: the protocol the step uses.
    :ivar summary: one sentence saying what happens.
    """

    number: int
    name: str
    source: Role
    target: Role
    protocol: str
    summary: str

    @property
    def label(self) -> str:
        """``"step 7 (SSASP → TSP)"`` (``"step 8 (SSASP)"`` inside one role): the form used in
        error messages and logs."""
        roles = str(self.source) if self.source == self.target else f"{self.source} → {self.target}"
        return f"step {self.number} ({roles})"

    def between(self, source: Role, target: Role) -> FlowStep:
        """The same step where two other roles meet: step 10 is *SSASP → SCASP* (the signature's
        delivery) and also *SCASP → TSP* (the portal's time-stamp request) and *SCASP* alone
        (packaging). An error names the roles that actually met (``"step 10 (SCASP → TSP)"``)."""
        return replace(self, source=source, target=target)

    @property
    def span_name(self) -> str:
        """``"step-07 certificate issuance"``: the form used for trace span names."""
        return f"step-{self.number:02d} {self.name}"


STEPS: tuple[FlowStep, ...] = (
    FlowStep(1, "document selection", Role.SIGNER, Role.SCASP, "browser",
             "The signer opens the portal, uploads documents and picks QES or AdES, format and level."),
    FlowStep(2, "signing request (PAR)", Role.SCASP, Role.SSASP, "OAuth2 PAR (RFC 9126), PKCE",
             "The portal computes the DTBS/R of each document and pushes an authorization request "
             "carrying only the digests, the signature qualifier and the hash algorithm."),
    FlowStep(3, "eID authentication request", Role.SSASP, Role.IPSP, "OpenID Connect code flow",
             "The signer's browser is redirected to the signing service, which redirects it to the "
             "eID provider with the required level of assurance, a nonce and PKCE."),
    FlowStep(4, "eID login", Role.SIGNER, Role.IPSP, "browser",
             "The signer chooses an identity and eID means at the eID provider and sees what is asked."),
    FlowStep(5, "identity verification and consent (SAD)", Role.IPSP, Role.SSASP, "OIDC, OAuth2 token",
             "The signing service verifies the ID token (signature, nonce, freshness, level of "
             "assurance), shows the consent page and issues a token bound to exactly these digests: "
             "the signature activation data."),
    FlowStep(6, "one-time key generation", Role.SSASP, Role.HSM, "CSC v2 signDoc, PKCS#11",
             "The signing service checks the token against the digests and creates a fresh, "
             "non-extractable key pair in the HSM."),
    FlowStep(7, "certificate issuance", Role.SSASP, Role.TSP, "CA issuance API",
             "The signing service sends a CSR and the identity evidence to the CA, which issues a "
             "short-term certificate with the QES or AdES profile."),
    FlowStep(8, "signed attributes (DTBS)", Role.SSASP, Role.SSASP, "CMS / JWS",
             "The signing service builds the CMS signed attributes (or JAdES header) over the "
             "document digest and the new certificate, and hashes them."),
    FlowStep(9, "HSM signature and key destruction", Role.SSASP, Role.HSM, "PKCS#11",
             "The HSM signs; the one-time key is destroyed immediately, on success and on failure."),
    FlowStep(10, "signature delivery and packaging", Role.SSASP, Role.SCASP, "CSC v2 signDoc response",
             "The signature objects and validation data return to the portal, which embeds them "
             "(PAdES, CAdES, JAdES), adds time-stamps and validation data, and validates the result."),
)

PERSON_SIGNING_ORDER: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
"""Step order of the default person-signing flow (CSC v2 signDoc)."""

CERTIFICATE_FIRST_ORDER: tuple[int, ...] = (1, 3, 4, 5, 6, 7, 2, 8, 9, 10)
"""Step order of the certificate-first flow (CSC v1 signHash): key and certificate (6-7) exist
before the portal computes the DTBS/R (2), because the signed attributes must reference the
certificate (ESS signing-certificate-v2)."""


_STEP_NAMED = re.compile(r"\bstep (\d{1,2})\b")


def step_in_text(text: str | None) -> int | None:
    """The innermost flow step an error description names, or None.

    An error relayed by several roles is prefixed by each (``"step 6 (SCASP → SSASP): the SSASP
    answered 500 server_error: step 9 (SSASP → HSM): the HSM could not sign"``); the last step named
    is where it happened. The scenario runner and the trace model both read descriptions with this
    one function, so they name the same step.
    """
    found = [int(n) for n in _STEP_NAMED.findall(text or "") if 1 <= int(n) <= len(STEPS)]
    return found[-1] if found else None


def step(number: int) -> FlowStep:
    """Return flow step ``number`` (1-10); raise ``ValueError`` for any other number."""
    if not 1 <= number <= len(STEPS):
        raise ValueError(f"flow steps are numbered 1-{len(STEPS)}, not {number}")
    return STEPS[number - 1]


@dataclass(frozen=True)
class ServiceInfo:
    """One of the services and the role it plays.

    :ivar name: the service's short name (folder under ``services/``, settings prefix).
    :ivar role: its eIDAS role.
    :ivar title: a human title.
    :ivar default_port: the loopback port it listens on by default.
    :ivar who: who this role is in a real ecosystem.
    :ivar receives: what it receives, one item per line.
    :ivar sends: what it sends, one item per line.
    """

    name: str
    role: Role
    title: str
    default_port: int
    who: str
    receives: tuple[str, ...]
    sends: tuple[str, ...]

    @property
    def env_prefix(self) -> str:
        """The environment prefix of this service's settings, e.g. ``SIGNLAB_IDP_``."""
        return f"SIGNLAB_{self.name.upper()}_"

    @property
    def steps(self) -> tuple[FlowStep, ...]:
        """The flow steps this service takes part in (as source or target)."""
        if self.role is Role.WALLET:  # the signer's device: it presents the PID inside the eID login
            return (step(4),)
        roles = {self.role, Role.HSM} if self.role is Role.SSASP else {self.role}
        return tuple(s for s in STEPS if s.source in roles or s.target in roles)


SERVICES: tuple[ServiceInfo, ...] = (
    ServiceInfo(
        "portal", Role.SCASP, "Partner document portal", 8000,
        "The partner (a bank, an employer, a public agency) whose application asks a person to sign. "
        "It keeps the documents and chooses QES or AdES; it never lets the documents leave.",
        ("documents from the signer (step 1)", "signature objects and validation data from the SSASP (step 10)",
         "time-stamps, CRLs and OCSP responses from the TSP"),
        ("the digests of the documents (DTBS/R) in an OAuth2 pushed authorization request (step 2)",
         "the signed documents and a validation report to the signer"),
    ),
    ServiceInfo(
        "idp", Role.IPSP, "Mock eID provider (OpenID Connect)", 8001,
        "The electronic identification scheme (BankID, Buypass ID, MinID, an eIDAS node) that proves "
        "who the signer is, at a level of assurance: low, substantial or high.",
        ("OpenID Connect authentication requests from the SSASP (step 3)", "the signer's login (step 4)"),
        ("signed ID tokens with the verified identity, the level of assurance (acr) and the eID means (step 5)",),
    ),
    ServiceInfo(
        "ca", Role.TSP, "CA and time-stamping authority", 8002,
        "The (qualified) trust service provider: it issues the signer's short-term certificate, "
        "answers revocation queries, time-stamps signatures and is listed in the trusted list.",
        ("certificate signing requests with identity evidence from the SSASP (step 7)",
         "time-stamp requests, CRL and OCSP queries"),
        ("short-term QES or AdES certificates (step 7)", "CRLs, OCSP responses, time-stamp tokens, the trusted list"),
    ),
    ServiceInfo(
        "signer", Role.SSASP, "Remote signing service (CSC API)", 8003,
        "The remote QSCD operator: its signature activation module (SAM) checks the signature "
        "activation data, and its HSM holds a one-time key for each transaction.",
        ("signing requests with document digests from the SCASP (steps 2, 6)", "ID tokens from the IPSP (step 5)",
         "short-term certificates from the TSP (step 7)"),
        ("authentication requests to the IPSP (step 3)", "CSRs with identity evidence to the TSP (step 7)",
         "signature objects and validation data to the SCASP (step 10)"),
    ),
    ServiceInfo(
        "wallet", Role.WALLET, "EUDI Wallet emulator (the signer's phone)", 8004,
        "Not a provider: the signer's own device. It holds each test person's PID (an SD-JWT VC bound "
        "to a key of the device) and presents it to the eID provider with OpenID4VP when the signer "
        "logs in with the EUDI Wallet. The same service hosts the simulated PID provider that issued "
        "the PIDs, its Token Status List and the lab's list of trusted PID providers.",
        ("OpenID4VP presentation requests from the IPSP (step 4), opened on the same device or scanned from a QR code",
         "the signer's approval or refusal"),
        ("PID presentations (selected claims + key-binding JWT), encrypted to the IPSP (step 4)",
         "the PID provider's status list and trusted-provider list, to the IPSP (step 4)"),
    ),
)


def service(name: str) -> ServiceInfo:
    """Return the service called ``name`` (``portal``, ``idp``, ``ca``, ``signer`` or ``wallet``)."""
    for info in SERVICES:
        if info.name == name:
            return info
    raise KeyError(f"unknown service {name!r}; known: {', '.join(s.name for s in SERVICES)}")
