"""Masking of personal data in what SignLab shows and keeps (docs/design.md §6, "Personal data").

National identifiers and birth dates of the (synthetic) test persons are masked in every page, API
answer, log line and trace a person other than the signer could read — the trainer dashboard, the
IdP debugger, the CA's certificate list, the portal's reports — unless a lab setting
(``SHOW_PERSONAL_DATA`` of that service) shows them. What is masked:

* an ETSI EN 319 412-1 semantics identifier of a natural person (§5.1.3: ``PAS``, ``IDC``,
  ``PNO``, ``TIN``) anywhere in a text (``PNONO-14838540105``, as in a certificate's subject
  serialNumber) keeps its type and country: ``PNONO-•••••••••05``; a legal person's identifier
  (§5.1.4: ``VAT``, ``NTR``, ``LEI``, e.g. the TSP's own ``organizationIdentifier``) is public
  and stays;
* the values of the claims ``birthdate``, ``signlab_person_id`` (its ``value``) and
  ``eidas_person_identifier``, wherever they appear in a JSON-like structure;
* identifier-like digit runs in a ``login_hint`` (``signlab:14838540105``).

An identifier keeps its last two characters (enough to tell two test persons apart on a
screen, not enough to recover the number or the birth date a Nordic number encodes); a birth date
keeps nothing. Names stay: a sequence diagram says who signed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["BIRTHDATE_MASK", "PERSONAL_KEYS", "mask_birthdate", "mask_field", "mask_identifier", "mask_personal_data",
           "mask_text"]

MASK_CHAR = "•"
BIRTHDATE_MASK = "••••-••-••"

_ETSI_IDENTIFIER = re.compile(r"\b((?:PNO|IDC|PAS|TIN)[A-Z]{2}[-:])([0-9A-Za-z+\-]{3,40})")
"""A natural person's semantics identifier: type, country, hyphen, the number (EN 319 412-1 §5.1.3)."""
_DIGIT_RUN = re.compile(r"\d{6}[-+A]?\d{4,6}")
"""A national-identifier-like run of digits (NO, SE, FI, DK forms) inside a free text."""
_EIDAS_IDENTIFIER = re.compile(r"^([A-Z]{2}/[A-Z]{2}/)(.+)$")

BIRTHDATE_KEYS = frozenset({"birthdate", "birth_date", "date_of_birth"})
IDENTIFIER_KEYS = frozenset({"eidas_person_identifier", "person_identifier", "national_identifier",
                             "etsi_serial_number", "serial_number_attribute"})
PERSON_ID_KEYS = frozenset({"signlab_person_id", "person_id"})
HINT_KEYS = frozenset({"login_hint"})
PERSONAL_KEYS = BIRTHDATE_KEYS | IDENTIFIER_KEYS | PERSON_ID_KEYS | HINT_KEYS
"""Field names whose value is personal data (or may carry it)."""


def mask_identifier(value: str) -> str:
    """``14838540105`` → ``•••••••••05`` (short values are masked completely)."""
    text = str(value)
    if len(text) <= 4:
        return MASK_CHAR * len(text)
    return MASK_CHAR * (len(text) - 2) + text[-2:]


def mask_birthdate(value: object) -> str:
    """Any birth date → ``••••-••-••`` (its form is kept out too: nothing of it is shown)."""
    return BIRTHDATE_MASK if value else ""


def mask_text(text: str) -> str:
    """``text`` with every semantics identifier (``PNONO-14838540105``) masked."""
    if "-" not in text and ":" not in text:
        return text
    return _ETSI_IDENTIFIER.sub(lambda m: m.group(1) + mask_identifier(m.group(2)), text)


def _mask_hint(text: str) -> str:
    return _DIGIT_RUN.sub(lambda m: mask_identifier(m.group(0)), text)


def _mask_person_id(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: (mask_identifier(str(v)) if k == "value" and v else mask_personal_data(v)) for k, v in value.items()}
    if isinstance(value, str) and sum(c.isdigit() for c in value) >= 6:
        return mask_identifier(value)  # a number, not a catalogue id such as "kari-nordmann"
    return mask_personal_data(value)


def mask_field(key: str, value: Any) -> Any:
    """``value`` as shown under the field name ``key`` (personal fields masked, others searched)."""
    lowered = key.lower()
    if lowered in BIRTHDATE_KEYS and isinstance(value, str):
        return mask_birthdate(value)
    if lowered in PERSON_ID_KEYS:
        return _mask_person_id(value)
    if lowered in IDENTIFIER_KEYS and isinstance(value, str):
        eidas = _EIDAS_IDENTIFIER.match(value)
        if eidas:
            return eidas.group(1) + mask_identifier(eidas.group(2))
        masked = mask_text(value)
        return masked if masked != value else mask_identifier(value)
    if lowered in HINT_KEYS and isinstance(value, str):
        return _mask_hint(value)
    return mask_personal_data(value)


def mask_personal_data(value: Any, *, show: bool = False) -> Any:
    """A copy of ``value`` (dicts, lists, strings) with the personal data above masked.

    :param show: the lab setting that shows personal data: ``value`` is returned unchanged.
    """
    if show:
        return value
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, Mapping):
        return {k: mask_field(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_personal_data(v) for v in value]
    return value
