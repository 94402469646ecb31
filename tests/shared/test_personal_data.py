"""Masking of national identifiers and birth dates."""

from __future__ import annotations

from shared.personal_data import mask_identifier, mask_personal_data, mask_text


def test_identifiers_keep_their_type_country_and_last_two_characters() -> None:
    assert mask_identifier("14838540105") == "•••••••••05"
    assert mask_identifier("1234") == "••••"
    text = "CN=Kari Nordmann,2.5.4.5=PNONO-14838540105; IDCDE-T220001293 and serialNumber=PNOSE-790405-2383"
    assert mask_text(text) == ("CN=Kari Nordmann,2.5.4.5=PNONO-•••••••••05; IDCDE-••••••••93 and "
                               "serialNumber=PNOSE-•••••••••83")


def test_claims_are_masked_by_name_wherever_they_are() -> None:
    claims = {"given_name": "Kari", "birthdate": "1985-03-14", "age_over_18": True,
              "signlab_person_id": {"semantics": "PNO", "country": "NO", "value": "14838540105"},
              "eidas_person_identifier": "DE/NO/6f1c2e0a9b7d4c13",
              "verified_claims": {"claims": {"birthdate": "1985-03-14"}},
              "login_hint": "signlab:14838540105!cancel", "person": "kari-nordmann", "person_id": "kari-nordmann"}
    masked = mask_personal_data(claims)
    assert masked == {"given_name": "Kari", "birthdate": "••••-••-••", "age_over_18": True,
                      "signlab_person_id": {"semantics": "PNO", "country": "NO", "value": "•••••••••05"},
                      "eidas_person_identifier": "DE/NO/••••••••••••••13",
                      "verified_claims": {"claims": {"birthdate": "••••-••-••"}},
                      "login_hint": "signlab:•••••••••05!cancel", "person": "kari-nordmann",
                      "person_id": "kari-nordmann"}
    assert mask_personal_data(claims, show=True) is claims  # the lab setting shows them


def test_a_legal_persons_identifier_is_public_and_stays() -> None:
    from shared.personal_data import mask_text

    subject = "Organization Identifier: NTRNO-123456799, Serial Number: PNONO-14838540105"
    assert mask_text(subject) == "Organization Identifier: NTRNO-123456799, Serial Number: PNONO-•••••••••05"
    assert mask_text("VATNO-987654321 LEIXG-5493001KJTIIGC8Y1R12") == "VATNO-987654321 LEIXG-5493001KJTIIGC8Y1R12"
