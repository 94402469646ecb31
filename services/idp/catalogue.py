"""The catalogues of eID means and test persons (``services/idp/data/*.yaml``).

Loaded once per app, validated strictly at start-up (unknown means, bad check digits, missing
fields fail loudly), and looked up by the login pages and the ``login_hint`` parser.

Limits: synthetic data only; the "population register" facts (deceased) and the eID status
(revoked, blocked) are fields of the catalogue, not live lookups.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from services.idp.identifiers import birthdate_from_identifier, identifier_aliases, validate_identifier
from shared.identity import LOA_NAMES, loa_rank, loa_uri

__all__ = ["Catalogue", "EidMeans", "Holding", "Person", "PersonIdentifier", "load_catalogue"]

HoldingStatus = Literal["active", "revoked", "blocked"]


@dataclass(frozen=True)
class EidMeans:
    """One eID means (BankID, MinID …) and what it proves."""

    id: str
    """Short name used in ``login_hint`` and the ``signlab_eid`` claim."""
    name: str
    """Display name."""
    country: str | None
    """ISO 3166-1 alpha-2 country of the scheme; None for a non-national means."""
    loa: str
    """eIDAS level it gives: ``low``, ``substantial`` or ``high``."""
    qes_approved: bool
    """Whether the TSP accepts it as identity evidence for a QES certificate."""
    proves_identity: bool
    """False for a self-asserted account: no identifier and no verified_claims are released."""
    amr: tuple[str, ...]
    """Authentication method references put into the ID token."""
    credential: str
    """What the simulated second login step asks for."""
    description: str
    """One sentence for the login page and the docs."""

    @property
    def acr(self) -> str:
        """The eIDAS LoA URI of the means (the ``acr`` it can give, never more)."""
        return loa_uri(self.loa)

    @property
    def rank(self) -> int:
        """The LoA as a number (low 1, substantial 2, high 3)."""
        return loa_rank(self.loa)

    def claim(self) -> dict[str, Any]:
        """The ``signlab_eid`` claim."""
        return {"id": self.id, "name": self.name, "country": self.country, "loa": self.loa,
                "qes_approved": self.qes_approved}


@dataclass(frozen=True)
class Holding:
    """That a person holds an eID means, and its status."""

    means_id: str
    status: HoldingStatus = "active"


@dataclass(frozen=True)
class PersonIdentifier:
    """ETSI EN 319 412-1 natural-person semantics identifier."""

    semantics: str
    """``PNO`` (national personal number), ``IDC`` (identity card), ``PAS``, ``TIN`` …"""
    country: str
    value: str

    def claim(self) -> dict[str, str]:
        """The ``signlab_person_id`` claim."""
        return {"semantics": self.semantics, "country": self.country, "value": self.value}

    @property
    def etsi_serial_number(self) -> str:
        """The certificate subject serialNumber, e.g. ``PNONO-14838540105``."""
        return f"{self.semantics}{self.country}-{self.value}"


@dataclass(frozen=True)
class Person:
    """A synthetic test person."""

    id: str
    given_name: str
    family_name: str
    birthdate: date
    nationality: str
    person_id: PersonIdentifier
    holdings: tuple[Holding, ...]
    edge: str
    deceased: date | None = None
    eidas_person_identifier: str | None = None
    aliases: frozenset[str] = field(default=frozenset(), repr=False)

    @property
    def display_name(self) -> str:
        """Given and family name."""
        return f"{self.given_name} {self.family_name}"

    @property
    def subject(self) -> str:
        """The stable, pseudonymous ``sub`` of the person (the same in every SignLab installation,
        so scenarios can name it; it reveals neither the catalogue id nor the national number)."""
        return _subject_of(self.id)

    def age_on(self, day: date) -> int:
        """Age in whole years on ``day``."""
        years = day.year - self.birthdate.year
        return years - ((day.month, day.day) < (self.birthdate.month, self.birthdate.day))

    def holding(self, means_id: str) -> Holding | None:
        """The person's holding of ``means_id``, if any."""
        return next((h for h in self.holdings if h.means_id == means_id), None)


@dataclass(frozen=True)
class Catalogue:
    """Both catalogues, validated against each other."""

    means: tuple[EidMeans, ...]
    persons: tuple[Person, ...]

    def get_means(self, means_id: str) -> EidMeans | None:
        """The means called ``means_id`` (case-insensitive)."""
        wanted = means_id.strip().lower()
        return next((m for m in self.means if m.id == wanted), None)

    def get_person(self, person_id: str) -> Person | None:
        """The person with catalogue id ``person_id`` (case-insensitive)."""
        wanted = person_id.strip().lower()
        return next((p for p in self.persons if p.id == wanted), None)

    def find_person(self, text: str) -> Person | None:
        """The person named by a catalogue id or a national identifier in any usual written form."""
        person = self.get_person(text)
        if person is not None:
            return person
        typed = "".join(text.split()).upper()
        return next((p for p in self.persons if typed in p.aliases), None)

    def means_of(self, person: Person) -> list[tuple[EidMeans, Holding]]:
        """The person's means with their status, in catalogue order of the holdings."""
        by_id = {m.id: m for m in self.means}  # every holding names a known means (checked at load time)
        return [(by_id[holding.means_id], holding) for holding in person.holdings]


def _text(item: dict[str, Any], key: str, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where}: '{key}' must be a non-empty string (quote values like \"NO\")")
    return value


def _load_means(raw: Any) -> tuple[EidMeans, ...]:
    if not isinstance(raw, list):
        raise ValueError("eID means catalogue: expected a list")
    result = []
    for item in raw:
        where = f"eID means {item.get('id', '?')!r}"
        loa = _text(item, "loa", where)
        if loa not in LOA_NAMES:
            raise ValueError(f"{where}: loa must be one of {', '.join(LOA_NAMES)}")
        country = item.get("country")
        if country is not None and not (isinstance(country, str) and len(country) == 2):
            raise ValueError(f"{where}: country must be a two-letter code in quotes, or null")
        result.append(EidMeans(
            id=_text(item, "id", where), name=_text(item, "name", where), country=country, loa=loa,
            qes_approved=bool(item.get("qes_approved")), proves_identity=bool(item.get("proves_identity", True)),
            amr=tuple(str(a) for a in item.get("amr") or ()), credential=_text(item, "credential", where),
            description=_text(item, "description", where),
        ))
    ids = [m.id for m in result]
    if len(set(ids)) != len(ids):
        raise ValueError("eID means catalogue: duplicate ids")
    return tuple(result)


def _load_persons(raw: Any, means: tuple[EidMeans, ...]) -> tuple[Person, ...]:
    if not isinstance(raw, list):
        raise ValueError("person catalogue: expected a list")
    known_means = {m.id for m in means}
    result = []
    for item in raw:
        where = f"person {item.get('id', '?')!r}"
        pid_raw = item.get("person_id") or {}
        pid = PersonIdentifier(_text(pid_raw, "semantics", where), _text(pid_raw, "country", where),
                               _text(pid_raw, "value", where))
        try:
            validate_identifier(pid.country, pid.semantics, pid.value)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        born = date.fromisoformat(_text(item, "birthdate", where))
        encoded = birthdate_from_identifier(pid.country, pid.semantics, pid.value)
        if encoded is not None and encoded != born:
            raise ValueError(f"{where}: birthdate {born} differs from the one in the identifier ({encoded})")
        holdings = []
        for h in item.get("means") or ():
            if h.get("id") not in known_means:
                raise ValueError(f"{where}: unknown eID means {h.get('id')!r}")
            status = h.get("status", "active")
            if status not in ("active", "revoked", "blocked"):
                raise ValueError(f"{where}: status of {h['id']} must be active, revoked or blocked")
            holdings.append(Holding(h["id"], status))
        if not holdings:
            raise ValueError(f"{where}: holds no eID means")
        deceased = item.get("deceased")
        person_id = _text(item, "id", where)
        result.append(Person(
            id=person_id, given_name=_text(item, "given_name", where), family_name=_text(item, "family_name", where),
            birthdate=born, nationality=_text(item, "nationality", where), person_id=pid, holdings=tuple(holdings),
            edge=str(item.get("edge") or ""), deceased=date.fromisoformat(deceased) if deceased else None,
            eidas_person_identifier=item.get("eidas_person_identifier"),
            aliases=frozenset(identifier_aliases(pid.country, pid.semantics, pid.value)),
        ))
    ids = [p.id for p in result]
    if len(set(ids)) != len(ids):
        raise ValueError("person catalogue: duplicate ids")
    return tuple(result)


def load_catalogue(means_file: Path | None = None, persons_file: Path | None = None) -> Catalogue:
    """Load and validate the catalogues (default: the files shipped in ``services/idp/data``).

    :raises ValueError: the catalogue is inconsistent; the message names the entry.
    """
    data = resources.files("services.idp") / "data"
    means_text = means_file.read_text("utf-8") if means_file else (data / "eid_means.yaml").read_text("utf-8")
    persons_text = persons_file.read_text("utf-8") if persons_file else (data / "persons.yaml").read_text("utf-8")
    means = _load_means(yaml.safe_load(means_text))
    return Catalogue(means=means, persons=_load_persons(yaml.safe_load(persons_text), means))


@functools.lru_cache(maxsize=1024)
def _subject_of(person_id: str) -> str:
    """:attr:`Person.subject` of ``person_id`` (a pure function of the id, computed once)."""
    return "sl-" + hashlib.sha256(f"signlab-idp-subject:{person_id}".encode()).hexdigest()[:24]
