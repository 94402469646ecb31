"""National person identifiers of the test persons: check digits and birth dates.

The catalogue's synthetic identifiers must look and validate like real ones, so that a service that
checks them (a CA putting ``PNONO-…`` into a certificate, a scenario typing an identifier at the
login page) meets realistic data. Supported formats:

* Norway: fødselsnummer / D-number / synthetic "Tenor" number (11 digits, two mod-11 check digits;
  synthetic test numbers add 80 to the month, D-numbers add 40 to the day).
* Sweden: personnummer / samordningsnummer (``YYMMDD-NNNC``, ``YYMMDD+NNNC`` for people over 100, or
  12 digits; Luhn check digit; coordination numbers add 60 to the day).
* Finland: henkilötunnus (``DDMMYYCZZZQ``; century sign, mod-31 check character; individual numbers
  900-999 are reserved for test and temporary use, which is what the catalogue uses).
* Denmark: CPR number (``DDMMYY-SSSS``; the classic mod-11 check, which synthetic numbers satisfy).
* Germany: identity card number (9 alphanumerics plus an ICAO 9303 check digit).

Limits: these are format and check-digit rules only; nothing here consults a population register.
"""

from __future__ import annotations

import re
from datetime import date

__all__ = [
    "birthdate_from_identifier",
    "dk_cpr_valid",
    "fi_hetu_check_char",
    "fi_hetu_valid",
    "icao_check_digit",
    "identifier_aliases",
    "no_fnr_check_digits",
    "no_fnr_valid",
    "se_luhn_digit",
    "se_pnr_valid",
    "validate_identifier",
]

_NO_W1 = (3, 7, 6, 1, 8, 9, 4, 5, 2)
_NO_W2 = (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)
_FI_CHARS = "0123456789ABCDEFHJKLMNPRSTUVWXY"
_FI_CENTURY = {"+": 1800, "-": 1900, "Y": 1900, "X": 1900, "W": 1900, "V": 1900, "U": 1900,
               "A": 2000, "B": 2000, "C": 2000, "D": 2000, "E": 2000, "F": 2000}
_DK_WEIGHTS = (4, 3, 2, 7, 6, 5, 4, 3, 2, 1)


def _mod11(digits: str, weights: tuple[int, ...]) -> int | None:
    rest = sum(int(d) * w for d, w in zip(digits, weights, strict=True)) % 11
    check = 0 if rest == 0 else 11 - rest
    return None if check == 10 else check


def no_fnr_check_digits(first_nine: str) -> str | None:
    """The two check digits of a Norwegian number starting with ``first_nine``; None when no valid
    number exists for these nine digits (a check digit would be 10)."""
    k1 = _mod11(first_nine, _NO_W1)
    if k1 is None:
        return None
    k2 = _mod11(first_nine + str(k1), _NO_W2)
    return None if k2 is None else f"{k1}{k2}"


def no_fnr_valid(value: str) -> bool:
    """True for an 11-digit Norwegian number whose check digits are right."""
    return bool(re.fullmatch(r"\d{11}", value)) and no_fnr_check_digits(value[:9]) == value[9:]


def se_luhn_digit(nine: str) -> int:
    """The Luhn check digit over the 9 digits ``YYMMDDNNN`` of a Swedish personnummer."""
    total = 0
    for i, char in enumerate(nine):
        product = int(char) * (2 if i % 2 == 0 else 1)
        total += product // 10 + product % 10
    return (10 - total % 10) % 10


def _se_parts(value: str) -> tuple[str, str, int | None] | None:
    """``(YYMMDD, NNNC, century or None)`` of a personnummer in any of its written forms."""
    match = re.fullmatch(r"(\d{2})?(\d{6})([-+]?)(\d{4})", value)
    if not match:
        return None
    century = int(match.group(1)) * 100 if match.group(1) else None
    return match.group(2), match.group(4), century


def se_pnr_valid(value: str) -> bool:
    """True for a Swedish personnummer/samordningsnummer with a right Luhn digit."""
    parts = _se_parts(value)
    if parts is None:
        return False
    ymd, serial = parts[0], parts[1]
    return se_luhn_digit(ymd + serial[:3]) == int(serial[3])


def fi_hetu_check_char(ddmmyy: str, individual: str) -> str:
    """The check character of a Finnish personal identity code."""
    return _FI_CHARS[int(ddmmyy + individual) % 31]


def fi_hetu_valid(value: str) -> bool:
    """True for a Finnish henkilötunnus with a right check character and known century sign."""
    match = re.fullmatch(r"(\d{6})([-+A-FU-Y])(\d{3})([0-9A-Y])", value)
    return match is not None and fi_hetu_check_char(match.group(1), match.group(3)) == match.group(4)


def dk_cpr_valid(value: str) -> bool:
    """True for a Danish CPR number that passes the classic mod-11 check."""
    digits = value.replace("-", "")
    if not re.fullmatch(r"\d{10}", digits):
        return False
    return sum(int(d) * w for d, w in zip(digits, _DK_WEIGHTS, strict=True)) % 11 == 0


def icao_check_digit(text: str) -> int:
    """The ICAO 9303 check digit (weights 7, 3, 1; letters A=10 … Z=35, ``<`` = 0)."""
    total = 0
    for i, char in enumerate(text.upper()):
        if char.isdigit():
            value = int(char)
        elif "A" <= char <= "Z":
            value = ord(char) - ord("A") + 10
        elif char == "<":
            value = 0
        else:
            raise ValueError(f"character {char!r} is not allowed in an ICAO 9303 field")
        total += value * (7, 3, 1)[i % 3]
    return total % 10


def _de_idc_valid(value: str) -> bool:
    return bool(re.fullmatch(r"[CFGHJKLMNPRTVWXYZ0-9]{9}\d", value)) and icao_check_digit(value[:9]) == int(value[9])


def validate_identifier(country: str, semantics: str, value: str) -> None:
    """Check ``value`` against the format of ``semantics`` (PNO, IDC …) in ``country``.

    Formats this module does not know are accepted unchanged.

    :raises ValueError: the format or a check digit is wrong; the message says which.
    """
    checks = {
        ("NO", "PNO"): (no_fnr_valid, "Norwegian fødselsnummer: 11 digits, mod-11 check digits"),
        ("SE", "PNO"): (se_pnr_valid, "Swedish personnummer: YYMMDD-NNNC with a Luhn check digit"),
        ("FI", "PNO"): (fi_hetu_valid, "Finnish henkilötunnus: DDMMYYCZZZQ with a mod-31 check character"),
        ("DK", "PNO"): (dk_cpr_valid, "Danish CPR number: DDMMYY-SSSS passing the mod-11 check"),
        ("DE", "IDC"): (_de_idc_valid, "German identity card number: 9 characters and an ICAO check digit"),
    }
    check = checks.get((country, semantics))
    if check is not None and not check[0](value):
        raise ValueError(f"{value!r} is not a valid {check[1]}")


def birthdate_from_identifier(country: str, semantics: str, value: str) -> date | None:
    """The birth date encoded in a national identifier, where the format encodes one."""
    if semantics != "PNO":
        return None
    if country == "NO" and no_fnr_valid(value):
        day, month, yy, individual = int(value[0:2]), int(value[2:4]), int(value[4:6]), int(value[6:9])
        if day > 40:  # D-number
            day -= 40
        if month > 80:  # synthetic (Tenor) test number
            month -= 80
        elif month > 40:  # older synthetic convention (H-number style)
            month -= 40
        if individual < 500:
            year = 1900 + yy
        elif individual < 750 and yy >= 54:
            year = 1800 + yy
        elif yy <= 39:
            year = 2000 + yy
        else:
            year = 1900 + yy
        return date(year, month, day)
    if country == "SE":
        parts = _se_parts(value)
        if parts is None:
            return None
        ymd = parts[0]
        yy, month, day = int(ymd[0:2]), int(ymd[2:4]), int(ymd[4:6])
        if day > 60:  # samordningsnummer
            day -= 60
        century = parts[2]
        if century is None:
            # Short form: the person is under 100 unless written with "+".
            century = 1900 if yy > date.today().year % 100 else 2000
            if "+" in value:
                century -= 100
        return date(century + yy, month, day)
    if country == "FI" and fi_hetu_valid(value):
        return date(_FI_CENTURY[value[6]] + int(value[4:6]), int(value[2:4]), int(value[0:2]))
    if country == "DK" and dk_cpr_valid(value):
        digits = value.replace("-", "")
        day, month, yy, seventh = int(digits[0:2]), int(digits[2:4]), int(digits[4:6]), int(digits[6])
        if seventh <= 3:
            year = 1900 + yy
        elif seventh in (4, 9):
            year = 2000 + yy if yy <= 36 else 1900 + yy
        else:
            year = 2000 + yy if yy <= 57 else 1800 + yy
        return date(year, month, day)
    return None


def identifier_aliases(country: str, semantics: str, value: str) -> set[str]:
    """The written forms of an identifier a user may type (upper-cased), e.g. with and without the
    hyphen of a Swedish or Danish number, or the 12-digit Swedish form."""
    forms = {value.upper()}
    if country in ("SE", "DK") and "-" in value:
        forms.add(value.replace("-", ""))
    if country == "SE" and semantics == "PNO":
        born = birthdate_from_identifier(country, semantics, value)
        parts = _se_parts(value)
        if born is not None and parts is not None:
            forms.add(f"{born.year // 100}{parts[0]}{parts[1]}")
            forms.add(f"{born.year // 100}{parts[0]}-{parts[1]}")
    return forms
