"""Claims and ID tokens (ES256, joserfc), with the ``id_token``-stage failure injections.

The identity claims are the same in the ID token and at the userinfo endpoint:

* ``given_name``, ``family_name``, ``birthdate``, ``age_over_18`` (computed on the login day);
* ``signlab_eid`` — the eID means used (id, name, country, loa, qes_approved);
* when the means proves identity: ``signlab_person_id`` (ETSI EN 319 412-1 semantics identifier),
  ``nationalities``, ``eidas_person_identifier`` (cross-border persons) and OpenID Connect for
  Identity Assurance ``verified_claims`` (trust framework ``eidas``, the means' level, evidence of
  type ``electronic_record`` checked by ``vcrypt``, procedure per ETSI TS 119 461);
* a social login (no proofing) releases names and birthdate only, unverified.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from authlib.oidc.core.util import create_half_hash
from joserfc import jwt

from services.idp.authn import Authentication
from services.idp.catalogue import EidMeans, Person
from services.idp.failures import Failure
from services.idp.keys import KeyRing
from shared.clock import lab_clock
from shared.identity import LOA_NAMES

__all__ = ["IssuedIdToken", "IdTokenMinter", "identity_claims"]

_NOT_NOTIFIED_LOW = "http://eidas.europa.eu/NotNotified/LoA/low"


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def identity_claims(person: Person, means: EidMeans, auth: Authentication, today: date | None = None) -> dict[str, Any]:
    """The identity claims of ``person`` as proven by ``means`` (see the module docstring)."""
    day = today or datetime.fromtimestamp(auth.auth_time, UTC).date()
    claims: dict[str, Any] = {
        "given_name": person.given_name,
        "family_name": person.family_name,
        "birthdate": person.birthdate.isoformat(),
        "age_over_18": person.age_on(day) >= 18,
        "signlab_eid": means.claim(),
    }
    if not means.proves_identity:
        return claims
    claims["signlab_person_id"] = person.person_id.claim()
    claims["nationalities"] = [person.nationality]
    if person.eidas_person_identifier:
        claims["eidas_person_identifier"] = person.eidas_person_identifier
    verified: dict[str, Any] = {
        "given_name": person.given_name,
        "family_name": person.family_name,
        "birthdate": person.birthdate.isoformat(),
        "nationalities": [person.nationality],
        "signlab_person_id": person.person_id.claim(),
    }
    if person.eidas_person_identifier:
        verified["eidas_person_identifier"] = person.eidas_person_identifier
    claims["verified_claims"] = {
        "verification": {
            "trust_framework": "eidas",
            "assurance_level": means.loa,
            "assurance_process": {"policy": "ETSI TS 119 461", "procedure": "eid-means-authentication"},
            "time": _iso(auth.auth_time),
            "verification_process": auth.txn,
            "evidence": [{
                "type": "electronic_record",
                "check_details": [{"check_method": "vcrypt", "organization": means.name, "time": _iso(auth.auth_time)}],
                "time": _iso(auth.auth_time),
                "record": {"type": "eid_means", "source": {"name": means.name, "country_code": means.country}},
            }],
        },
        "claims": verified,
    }
    return claims


@dataclass(frozen=True)
class IssuedIdToken:
    """An ID token and its decoded parts (for the debugger)."""

    token: str
    header: dict[str, Any]
    claims: dict[str, Any]


class IdTokenMinter:
    """Signs ID tokens with the active key of the ring.

    :param lifetime: seconds from ``iat`` to ``exp``.
    """

    def __init__(self, keys: KeyRing, issuer: str, *, lifetime: int = 300) -> None:
        self.keys = keys
        self.issuer = issuer
        self.lifetime = lifetime

    def mint(
        self,
        *,
        auth: Authentication,
        person: Person,
        means: EidMeans,
        client_id: str,
        nonce: str | None,
        access_token: str | None,
        min_rank: int | None,
        failures: tuple[Failure, ...] = (),
        now: float | None = None,
    ) -> IssuedIdToken:
        """Build and sign the ID token of ``auth`` for ``client_id``, applying ``id_token`` failures."""
        current = int(lab_clock().time() if now is None else now)
        names = {f.name: f for f in failures}
        skew = int(names["clock-skew"].amount()) if "clock-skew" in names else 0
        iat = current + skew
        exp = iat + self.lifetime
        if "expired" in names:
            exp = current - 600
            iat = exp - self.lifetime
        claims: dict[str, Any] = {
            "iss": "http://idp.attacker.example" if "wrong-issuer" in names else self.issuer,
            "sub": person.subject,
            "aud": "signlab-some-other-client" if "wrong-audience" in names else client_id,
            "iat": iat,
            "exp": exp,
            "auth_time": auth.auth_time + skew,
            "acr": auth.acr,
            "amr": list(auth.amr),
            "txn": auth.txn,
        }
        if nonce is not None:
            claims["nonce"] = nonce
        if "wrong-nonce" in names:
            claims["nonce"] = "injected-" + secrets.token_urlsafe(12)
        if "acr-lower" in names:
            target = (min_rank or means.rank) - 1
            claims["acr"] = _NOT_NOTIFIED_LOW if target < 1 else f"http://eidas.europa.eu/LoA/{LOA_NAMES[target - 1]}"
        if access_token:
            half = create_half_hash(access_token, "ES256")
            if half is not None:
                claims["at_hash"] = half.decode("ascii")
        claims.update(identity_claims(person, means, auth))
        key = self.keys.rogue if "unknown-key" in names else self.keys.active()
        header = {"alg": "ES256", "typ": "JWT", "kid": key.kid}
        return IssuedIdToken(jwt.encode(header, claims, key, algorithms=["ES256"]), header, claims)
