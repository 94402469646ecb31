"""The login decision (flow step 4): who logs in, with which eID means, at which level.

Rules (the same for the login pages and headless ``login_hint`` logins):

* ``acr_values`` lists eIDAS LoA URIs; the lowest listed level is the *minimum* (eIDAS levels are
  ordered: a higher level satisfies a lower one). Unknown values are an ``invalid_request``.
* The ID token's ``acr`` is the level of the eID means actually used — never more, and never more
  than was proven, even if the request asked for less (the relying party then knows what it got).
* A means below the minimum ends the request with ``unmet_authentication_requirements``.
* Refusals, checked in this order: injected login failures; deceased person (the population
  register wins over an eID the bank has not yet revoked); revoked or blocked eID; level too low.
* Minors log in normally; the ID token carries ``birthdate`` and ``age_over_18: false`` so that
  the signing service and CA can apply their own age policy.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import date
from typing import Any

from services.idp.catalogue import Catalogue, EidMeans, Person
from services.idp.errors import (
    InvalidAuthorizationRequest,
    LoginRefused,
    UnmetAuthenticationRequirements,
)
from services.idp.failures import Failure
from shared.flow import step
from shared.identity import LOA_HIGH, LOA_LOW, LOA_NAMES, LOA_SUBSTANTIAL, loa_name, loa_rank

__all__ = ["Authentication", "LoginOutcome", "authenticate", "choose_means", "parse_acr_values", "satisfies", "usable_means"]

STEP_4 = step(4)


@dataclass(frozen=True)
class Authentication:
    """A completed login: it becomes the ID token's subject, ``acr``, ``amr`` and ``auth_time``."""

    person_id: str
    means_id: str
    auth_time: int
    acr: str
    amr: tuple[str, ...]
    txn: str
    """Identifier of this authentication event (the ``txn`` claim; in debugger and logs)."""

    def as_dict(self) -> dict[str, Any]:
        """JSON form (stored with codes, tokens and the SSO session)."""
        return {"person_id": self.person_id, "means_id": self.means_id, "auth_time": self.auth_time,
                "acr": self.acr, "amr": list(self.amr), "txn": self.txn}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Authentication:
        """Inverse of :meth:`as_dict`."""
        return cls(str(data["person_id"]), str(data["means_id"]), int(data["auth_time"]), str(data["acr"]),
                   tuple(data.get("amr") or ()), str(data.get("txn") or ""))


def parse_acr_values(acr_values: str | None) -> int | None:
    """The minimum LoA rank an ``acr_values`` parameter asks for (None when absent).

    :raises InvalidAuthorizationRequest: a value is not an eIDAS LoA URI.
    """
    if not acr_values or not acr_values.strip():
        return None
    ranks = []
    for value in acr_values.split():
        if value not in (LOA_LOW, LOA_SUBSTANTIAL, LOA_HIGH):
            raise InvalidAuthorizationRequest(
                f"acr_values: {value!r} is not supported; use http://eidas.europa.eu/LoA/low, "
                "/substantial or /high", step=step(3))
        ranks.append(loa_rank(value))
    return min(ranks)


def usable_means(catalogue: Catalogue, person: Person, min_rank: int | None) -> list[EidMeans]:
    """The person's active means that satisfy ``min_rank``, in the person's order."""
    return [m for m, h in catalogue.means_of(person) if h.status == "active" and (min_rank is None or m.rank >= min_rank)]


def choose_means(catalogue: Catalogue, person: Person, min_rank: int | None) -> EidMeans:
    """The means a headless login uses when the hint names none: the first usable one; when there
    is none, the first held means (so that :func:`authenticate` reports the exact refusal)."""
    usable = usable_means(catalogue, person, min_rank)
    if usable:
        return usable[0]
    ranked = sorted(catalogue.means_of(person), key=lambda mh: -mh[0].rank)
    qualifying = [m for m, _ in ranked if min_rank is None or m.rank >= min_rank]
    return (qualifying or [m for m, _ in ranked])[0]


def _injected(failure: Failure, means: EidMeans) -> LoginRefused:
    texts = {
        "cancel": "the user cancelled the login",
        "wrong-password": f"authentication with {means.name} failed: wrong password or one-time code, 3 attempts",
        "locked": f"the user's {means.name} account is locked",
        "revoked": f"the {means.name} eID is revoked",
    }
    return LoginRefused(f"{texts[failure.name]} (injected failure '{failure.name}')", step=STEP_4)


def authenticate(
    catalogue: Catalogue,
    person: Person,
    means: EidMeans,
    *,
    min_rank: int | None,
    failures: tuple[Failure, ...] = (),
    now: float,
    today: date | None = None,
) -> Authentication:
    """Decide the login of ``person`` with ``means``.

    :raises InvalidAuthorizationRequest: the person does not hold the means.
    :raises LoginRefused: an injected login failure, a deceased person, a revoked or blocked eID.
    :raises UnmetAuthenticationRequirements: the means' level is below the requested minimum.
    """
    holding = person.holding(means.id)
    if holding is None:
        held = ", ".join(h.means_id for h in person.holdings)
        raise InvalidAuthorizationRequest(f"test person {person.id} does not hold eID means {means.id} (holds: {held})",
                                          step=STEP_4)
    for failure in failures:
        if failure.spec.stage == "login":
            raise _injected(failure, means)
    if person.deceased is not None and person.deceased <= (today or date.today()):
        raise LoginRefused(f"the population register lists test person {person.id} as deceased "
                           f"({person.deceased.isoformat()}); login refused", step=STEP_4)
    if holding.status != "active":
        raise LoginRefused(f"the {means.name} eID of test person {person.id} is {holding.status}", step=STEP_4)
    if min_rank is not None and means.rank < min_rank:
        raise UnmetAuthenticationRequirements(
            f"{means.name} gives level {means.loa}; the service requires {LOA_NAMES[min_rank - 1]}", step=STEP_4)
    return Authentication(person.id, means.id, int(now), means.acr, means.amr, secrets.token_hex(8))


def satisfies(auth: Authentication, min_rank: int | None) -> bool:
    """Whether an earlier authentication (SSO session) meets ``min_rank``."""
    return min_rank is None or loa_rank(loa_name(auth.acr)) >= min_rank


@dataclass(frozen=True)
class LoginOutcome:
    """What an authorization code stands for: the authentication, the failures attached to the
    request, and the minimum level the request asked for (needed by the ``acr-lower`` failure)."""

    auth: Authentication
    failures: tuple[Failure, ...] = ()
    min_rank: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"auth": self.auth.as_dict(), "failures": [f.as_dict() for f in self.failures], "min_rank": self.min_rank}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoginOutcome:
        """Inverse of :meth:`as_dict`."""
        return cls(Authentication.from_dict(data["auth"]), tuple(Failure.from_dict(f) for f in data.get("failures") or ()),
                   data.get("min_rank"))
