"""The simulated PID provider: trust anchor, signing certificate, PID issuance, Token Status List
and the lab's list of trusted PID providers. Flask-free.

Why it lives in the wallet service: SignLab provisions PIDs directly into the wallet (no
OpenID4VCI issuance protocol), so the provider and the wallet share that one provisioning step. It
keeps its own keys (under ``<data_dir>/pid-provider/``), its own URL prefix (``/pid-provider/``)
and its own role (PIDP) in traces, so a trainer sees two parties, not one.

Trust, as a verifier sees it:

* the **trust anchor** ("SignLab PID provider trust anchor (lab)", a self-signed CA) certifies the
  **PID provider's signing certificate**; a PID carries that leaf in its ``x5c`` header, never the
  anchor (HAIP: the verifier has the anchor from its trust list);
* the **list of trusted PID providers** names the anchor. It stands in for the EU list of trusted
  entities: a JSON document signed (JWS, ``x5c``) by a separate **list operator** key;
* an **untrusted provider** (its own anchor and leaf, never on the list) exists only for the
  failure injection ``untrusted-provider``.

PIDs follow the EUDI PID Rulebook encoding for SD-JWT VC: ``vct`` ``urn:eudi:pid:1``, header
``typ`` ``dc+sd-jwt``, every personal claim and every array element selectively disclosable,
``iss``/``exp``/``cnf``/``vct``/``status`` in the clear (SD-JWT VC §3.2.2.2), holder binding to the
wallet's device key (``cnf.jwk``), and ``status.status_list`` pointing at this provider's list
(Token Status List §6.2) with a random index per credential.

Limits (lab): static lab CAs instead of the EU trusted lists; one status list of
:data:`STATUS_LIST_SIZE` entries; http on loopback.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from joserfc import jws, jwt
from jwcrypto.jwk import JWK
from sd_jwt.common import SDObj
from sd_jwt.issuer import SDJWTIssuer

from services.wallet.store import StatusStore
from shared.clock import lab_clock
from shared.eudi import PID_VCT, SD_JWT_VC_FORMAT, TRUSTED_LIST_TYPE
from shared.lab_pki import KeyPair, load_or_create_pair
from shared.status_list import TOKEN_TYPE, Status, encode_list

__all__ = [
    "PROVIDER_NAME",
    "STATUS_LIST_SIZE",
    "IssuedPid",
    "PidProvider",
    "Register",
    "RegisterEntry",
    "TrustMaterial",
]

PROVIDER_NAME = "SignLab PID Provider (lab)"
UNTRUSTED_NAME = "Unlisted PID Provider (lab, never trusted)"
STATUS_LIST_SIZE = 4096
"""Entries of the one status list (2 bits each: VALID, INVALID, SUSPENDED)."""
STATUS_BITS = 2
ISSUING_AUTHORITIES = {
    "NO": "Norwegian Digitalisation Agency (simulated PID provider)",
    "SE": "Swedish Agency for Digital Government (simulated PID provider)",
    "FI": "Finnish Digital and Population Data Services Agency (simulated PID provider)",
    "DK": "Danish Agency for Digital Government (simulated PID provider)",
    "DE": "German Federal Office for Information Security (simulated PID provider)",
}
"""``issuing_authority`` by issuing country (all PIDs are signed by the one lab provider)."""

Variant = Literal["valid", "expired", "revoked", "untrusted"]


# -- the population register the provider issues from -----------------------------------------------
@dataclass(frozen=True)
class RegisterEntry:
    """One person of the population register (the IdP's test persons, as the IdP publishes them)."""

    id: str
    given_name: str
    family_name: str
    birthdate: str
    nationality: str
    personal_administrative_number: str | None
    """The national identity number where the person's country has one (``PNO`` identifiers);
    None for persons known by an identity-card number only (the German PID has no such number)."""

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> RegisterEntry:
        """From one element of the IdP's ``/api/v1/persons``."""
        person_id = item.get("person_id") or {}
        number = person_id.get("value") if person_id.get("semantics") == "PNO" else None
        return cls(str(item["id"]), str(item["given_name"]), str(item["family_name"]), str(item["birthdate"]),
                   str(item["nationality"]), number)


@dataclass(frozen=True)
class Register:
    """The persons the provider can issue a PID for."""

    entries: tuple[RegisterEntry, ...]

    def get(self, holder: str) -> RegisterEntry | None:
        """The entry of ``holder`` (a person id)."""
        return next((e for e in self.entries if e.id == holder), None)


# -- keys and certificates -----------------------------------------------------------------------------
@dataclass(frozen=True)
class TrustMaterial:
    """The lab trust framework of PIDs: anchor and provider, the unlisted provider, the list operator."""

    anchor: KeyPair
    provider: KeyPair
    untrusted_anchor: KeyPair
    untrusted_provider: KeyPair
    list_operator: KeyPair

    @classmethod
    def load_or_create(cls, directory: Path) -> TrustMaterial:
        """Load the keys and certificates under ``directory``, creating the missing ones (keys 0600)."""
        anchor = load_or_create_pair(directory, "anchor", "SignLab PID provider trust anchor (lab)", ca=True)
        provider = load_or_create_pair(directory, "provider", PROVIDER_NAME, anchor)
        rogue_anchor = load_or_create_pair(directory, "untrusted-anchor", "Unlisted PID provider anchor (lab)", ca=True)
        rogue = load_or_create_pair(directory, "untrusted-provider", UNTRUSTED_NAME, rogue_anchor)
        operator = load_or_create_pair(directory, "list-operator", "SignLab list of trusted PID providers operator (lab)")
        return cls(anchor, provider, rogue_anchor, rogue, operator)


# -- issuance ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class IssuedPid:
    """A PID as the provider hands it to the wallet: the SD-JWT (issuer-signed JWT ~ disclosures ~)."""

    holder: str
    sd_jwt: str
    status_index: int
    issued_at: int
    expires_at: int
    variant: Variant


def _iso_day(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).date().isoformat()


class PidProvider:
    """Issues PIDs, keeps their status and publishes the status list and the trusted-provider list.

    :param base_url: the PID provider's public base URL (``<wallet service>/pid-provider``).
    :param validity_days: ``exp - iat`` of a PID.
    :param status_ttl: the ``ttl`` claim of the Status List Token.
    """

    def __init__(self, trust: TrustMaterial, store: StatusStore, *, base_url: str, validity_days: int,
                 status_ttl: int) -> None:
        self.trust = trust
        self.store = store
        self.base_url = base_url.rstrip("/")
        self.validity_days = validity_days
        self.status_ttl = status_ttl

    @property
    def status_list_uri(self) -> str:
        """The ``uri`` every PID's ``status.status_list`` names (and the token's ``sub``)."""
        return f"{self.base_url}/status-lists/1"

    @property
    def trusted_list_uri(self) -> str:
        """Where the list of trusted PID providers is published."""
        return f"{self.base_url}/trusted-providers"

    def issue(self, entry: RegisterEntry, device_key: dict[str, Any], *, variant: Variant = "valid",
              now: float | None = None) -> IssuedPid:
        """Issue a PID for ``entry`` bound to ``device_key`` (the wallet's public JWK).

        ``variant`` makes the PID wrong in one way, for failure injection: ``expired`` (validity
        ended yesterday), ``revoked`` (its status list entry says INVALID), ``untrusted`` (signed by a
        provider that is on no trusted list). A valid PID gets a fresh random status index; the
        revoked sample reuses one index per holder.
        """
        current = lab_clock().time() if now is None else now
        iat = int(current)
        exp = iat + self.validity_days * 86400
        if variant == "expired":
            exp = iat - 86400
            iat = exp - self.validity_days * 86400
        if variant == "revoked":
            index = self.store.sample_index(f"revoked-sample:{entry.id}", Status.INVALID, STATUS_LIST_SIZE)
        else:
            index = self.store.allocate(entry.id, f"pid:{variant}", STATUS_LIST_SIZE)
        claims: dict[Any, Any] = {
            "vct": PID_VCT,
            "iat": iat,
            "exp": exp,
            "status": {"status_list": {"idx": index, "uri": self.status_list_uri}},
            SDObj("family_name"): entry.family_name,
            SDObj("given_name"): entry.given_name,
            SDObj("birthdate"): entry.birthdate,
            SDObj("nationalities"): [SDObj(entry.nationality)],
            SDObj("issuing_authority"): ISSUING_AUTHORITIES.get(entry.nationality, f"{entry.nationality} (simulated)"),
            SDObj("issuing_country"): entry.nationality,
            SDObj("date_of_issuance"): _iso_day(iat),
            SDObj("date_of_expiry"): _iso_day(exp),
        }
        if entry.personal_administrative_number:
            claims[SDObj("personal_administrative_number")] = entry.personal_administrative_number
        signer = self.trust.untrusted_provider if variant == "untrusted" else self.trust.provider
        issuer = SDJWTIssuer(claims, JWK.from_pyca(signer.key), holder_key=JWK(**device_key), sign_alg="ES256",
                             add_decoy_claims=True,
                             extra_header_parameters={"typ": SD_JWT_VC_FORMAT, "x5c": signer.x5c})
        return IssuedPid(entry.id, issuer.sd_jwt_issuance, index, iat, exp, variant)

    # -- status --------------------------------------------------------------------------------
    def set_status(self, index: int, status: Status) -> None:
        """Set the status of the PID at ``index`` (revoke, suspend, restore)."""
        self.store.set_status(index, status)

    def status_list_token(self, now: float | None = None) -> str:
        """The Status List Token (JWT, ``typ`` ``statuslist+jwt``, draft §5.1), signed by the provider
        key with its ``x5c`` (the same key as the PIDs: draft §11.3, same issuer)."""
        current = int(lab_clock().time() if now is None else now)
        statuses = [Status.VALID] * STATUS_LIST_SIZE
        for index, status in self.store.statuses():
            statuses[index] = status
        header = {"alg": "ES256", "typ": TOKEN_TYPE, "x5c": self.trust.provider.x5c}
        claims = {"sub": self.status_list_uri, "iat": current, "exp": current + 24 * 3600, "ttl": self.status_ttl,
                  "status_list": encode_list(statuses, STATUS_BITS)}
        return jwt.encode(header, claims, self.trust.provider.jose_key, algorithms=["ES256"])

    def trusted_list(self, now: float | None = None) -> str:
        """The signed list of trusted PID providers: one entry, this provider's trust anchor."""
        current = int(lab_clock().time() if now is None else now)
        body = {
            "list": "SignLab list of trusted PID providers (lab; stands in for the EU list of trusted entities)",
            "iat": current,
            "next_update": current + 7 * 86400,
            "entities": [{
                "name": PROVIDER_NAME,
                "entity_type": "PID provider",
                "status": "notified",
                "trust_anchors": [base64.b64encode(self.trust.anchor.der).decode("ascii")],
            }],
        }
        header = {"alg": "ES256", "typ": TRUSTED_LIST_TYPE, "x5c": self.trust.list_operator.x5c}
        return jws.serialize_compact(header, json.dumps(body).encode(), self.trust.list_operator.jose_key,
                                     algorithms=["ES256"])
