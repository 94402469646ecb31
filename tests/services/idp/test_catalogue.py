"""The catalogues: size, coverage of edge cases, valid identifiers, strict loading."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from services.idp.catalogue import load_catalogue
from services.idp.identifiers import birthdate_from_identifier, validate_identifier

CATALOGUE = load_catalogue()


def test_at_least_seven_means_with_all_levels_and_qes_flags() -> None:
    assert len(CATALOGUE.means) >= 7
    assert {m.loa for m in CATALOGUE.means} == {"low", "substantial", "high"}
    assert any(m.qes_approved for m in CATALOGUE.means) and any(not m.qes_approved for m in CATALOGUE.means)
    for means in CATALOGUE.means:
        assert means.amr and means.credential and means.description
        # design §4: QES only from an eID at LoA high.
        assert not means.qes_approved or means.loa == "high"


def test_at_least_twelve_persons_across_countries() -> None:
    assert len(CATALOGUE.persons) >= 12
    assert len({p.person_id.country for p in CATALOGUE.persons}) >= 4


@pytest.mark.parametrize("person", CATALOGUE.persons, ids=lambda p: p.id)
def test_identifiers_valid_and_consistent_with_birthdate(person) -> None:  # type: ignore[no-untyped-def]
    validate_identifier(person.person_id.country, person.person_id.semantics, person.person_id.value)
    encoded = birthdate_from_identifier(person.person_id.country, person.person_id.semantics, person.person_id.value)
    assert encoded in (None, person.birthdate)
    assert CATALOGUE.find_person(person.person_id.value) is person
    assert person.subject.startswith("sl-") and person.id not in person.subject


def test_edge_cases_are_present() -> None:
    today = date.today()
    persons = CATALOGUE.persons
    assert any(p.age_on(today) < 18 for p in persons), "a minor"
    assert any(p.deceased for p in persons), "a deceased person"
    assert any(h.status == "revoked" for p in persons for h in p.holdings), "a revoked eID"
    assert any(h.status == "blocked" for p in persons for h in p.holdings), "a blocked eID"
    assert any(all(CATALOGUE.get_means(h.means_id).loa == "substantial" for h in p.holdings) for p in persons)  # type: ignore[union-attr]
    assert any(p.eidas_person_identifier for p in persons), "an eIDAS cross-border person"
    assert any(not (p.given_name + p.family_name).isascii() for p in persons), "non-ASCII names"


def test_loader_rejects_bad_check_digit(tmp_path: Path) -> None:
    persons = tmp_path / "persons.yaml"
    persons.write_text('- {id: x, given_name: A, family_name: B, birthdate: "1985-03-14", nationality: "NO",\n'
                       '   person_id: {semantics: PNO, country: "NO", value: "14838540106"}, means: [{id: no-bankid}]}\n')
    with pytest.raises(ValueError, match=r"person 'x'.*not a valid"):
        load_catalogue(persons_file=persons)


def test_loader_rejects_unknown_means_and_unquoted_country(tmp_path: Path) -> None:
    persons = tmp_path / "persons.yaml"
    persons.write_text('- {id: x, given_name: A, family_name: B, birthdate: "1985-03-14", nationality: "NO",\n'
                       '   person_id: {semantics: PNO, country: "NO", value: "14838540105"}, means: [{id: nope}]}\n')
    with pytest.raises(ValueError, match="unknown eID means 'nope'"):
        load_catalogue(persons_file=persons)
    means = tmp_path / "means.yaml"
    means.write_text("- {id: m, name: M, country: NO, loa: high, credential: c, description: d}\n")
    with pytest.raises(ValueError, match="two-letter code in quotes"):
        load_catalogue(means_file=means)
