"""Check digits and birth dates of the national identifier formats."""

from __future__ import annotations

from datetime import date

import pytest

from services.idp.identifiers import (
    birthdate_from_identifier,
    dk_cpr_valid,
    fi_hetu_valid,
    icao_check_digit,
    identifier_aliases,
    no_fnr_check_digits,
    no_fnr_valid,
    se_pnr_valid,
    validate_identifier,
)


def test_norwegian_fodselsnummer_mod11() -> None:
    # A well-known published example number (01010750160) and a synthetic Tenor-style one.
    assert no_fnr_valid("01010750160")
    assert no_fnr_valid("14838540105")
    assert not no_fnr_valid("14838540106")
    assert not no_fnr_valid("1483854010")
    assert no_fnr_check_digits("148385401") == "05"


def test_norwegian_birthdate_handles_synthetic_month_and_century() -> None:
    assert birthdate_from_identifier("NO", "PNO", "14838540105") == date(1985, 3, 14)
    assert birthdate_from_identifier("NO", "PNO", "17851251251") == date(2012, 5, 17)


def test_swedish_personnummer_luhn_and_forms() -> None:
    assert se_pnr_valid("811218-9876")  # Skatteverket's documentation example
    assert se_pnr_valid("790405-2383")
    assert se_pnr_valid("197904052383")
    assert not se_pnr_valid("790405-2384")
    assert {"790405-2383", "7904052383", "197904052383", "19790405-2383"} <= identifier_aliases("SE", "PNO", "790405-2383")


def test_finnish_hetu_check_character() -> None:
    assert fi_hetu_valid("131052-308T")  # DVV's documentation example
    assert fi_hetu_valid("101001A953H")
    assert not fi_hetu_valid("101001A953J")
    assert birthdate_from_identifier("FI", "PNO", "101001A953H") == date(2001, 10, 10)


def test_danish_cpr_mod11() -> None:
    assert dk_cpr_valid("110783-1238")
    assert not dk_cpr_valid("110783-1239")
    assert birthdate_from_identifier("DK", "PNO", "250175-1459") == date(1975, 1, 25)


def test_icao_check_digit_of_german_id_card() -> None:
    # ICAO 9303 example document number L898902C3 has check digit 6.
    assert icao_check_digit("L898902C3") == 6
    validate_identifier("DE", "IDC", "T220001293")
    with pytest.raises(ValueError, match="ICAO"):
        validate_identifier("DE", "IDC", "T220001294")


@pytest.mark.parametrize(("country", "value"), [("NO", "14838540106"), ("SE", "790405-2384"),
                                                ("FI", "270293-946K"), ("DK", "110783-1230")])
def test_validate_identifier_names_the_format(country: str, value: str) -> None:
    with pytest.raises(ValueError, match="not a valid"):
        validate_identifier(country, "PNO", value)
