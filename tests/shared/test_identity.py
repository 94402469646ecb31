"""shared.identity: LoA helpers and every check of verify_id_token, with real ES256 keys."""

from __future__ import annotations

import time
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, OctKey

from shared.identity import (
    LOA_HIGH,
    LOA_LOW,
    LOA_SUBSTANTIAL,
    IdentityEvidenceError,
    loa_name,
    loa_rank,
    loa_uri,
    verify_id_token,
)

ISSUER = "http://127.0.0.1:8001"
AUD = "signlab-signer"
NOW = 1_800_000_000.0


def _key() -> ECKey:
    key = ECKey.generate_key("P-256", parameters={"alg": "ES256", "use": "sig"})
    key.ensure_kid()
    return key


KEY = _key()
JWKS = KeySet.import_key_set({"keys": [KEY.as_dict(private=False)]})


def claims(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "iss": ISSUER, "sub": "sl-abc", "aud": AUD, "iat": int(NOW), "exp": int(NOW) + 300, "auth_time": int(NOW) - 10,
        "nonce": "n-1", "acr": LOA_HIGH, "amr": ["BankID", "mfa"], "given_name": "Kari", "family_name": "Nordmann",
        "birthdate": "1985-03-14", "age_over_18": True,
        "signlab_eid": {"id": "no-bankid", "name": "BankID", "country": "NO", "loa": "high", "qes_approved": True},
        "signlab_person_id": {"semantics": "PNO", "country": "NO", "value": "14838540105"},
        "verified_claims": {"verification": {"trust_framework": "eidas"}, "claims": {}},
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def sign(payload: dict[str, Any], key: ECKey = KEY, **header: Any) -> str:
    return jwt.encode({"alg": "ES256", "kid": key.kid, **header}, payload, key)


def check(token: str, **kw: Any) -> str:
    with pytest.raises(IdentityEvidenceError) as caught:
        verify_id_token(token, JWKS, issuer=ISSUER, audience=AUD, now=NOW, **kw)
    assert caught.value.error == "access_denied" and caught.value.status == 403
    return caught.value.check


def test_loa_helpers() -> None:
    assert [loa_rank(x) for x in ("low", LOA_SUBSTANTIAL, "high")] == [1, 2, 3]
    assert loa_name(LOA_LOW) == "low" and loa_uri("substantial") == LOA_SUBSTANTIAL
    with pytest.raises(ValueError):
        loa_rank("http://eidas.europa.eu/NotNotified/LoA/low")


def test_valid_token() -> None:
    identity = verify_id_token(sign(claims()), JWKS, issuer=ISSUER, audience=AUD, nonce="n-1", now=NOW,
                               max_age=60, max_token_age=60, min_loa="high")
    assert identity.loa == "high" and identity.etsi_serial_number() == "PNONO-14838540105"
    assert identity.eid_id == "no-bankid" and identity.qes_approved and identity.amr == ("BankID", "mfa")
    assert identity.country == "NO" and identity.age_over_18 is True and identity.verified_claims


@pytest.mark.parametrize(("payload", "kw", "expected"), [
    (claims(iss="http://evil"), {}, "iss"),
    (claims(aud="other"), {}, "aud"),
    (claims(aud=[AUD, "other"]), {}, "aud"),
    (claims(exp=int(NOW) - 31), {}, "exp"),
    (claims(exp=None), {}, "exp"),
    (claims(iat=int(NOW) + 31), {}, "iat"),
    (claims(iat=int(NOW) - 400), {"max_token_age": 300}, "iat"),
    (claims(nbf=int(NOW) + 100), {}, "nbf"),
    (claims(nonce="other"), {"nonce": "n-1"}, "nonce"),
    (claims(nonce=None), {"nonce": "n-1"}, "nonce"),
    (claims(auth_time=None), {"max_age": 60}, "auth_time"),
    (claims(auth_time=int(NOW) - 200), {"max_age": 60}, "auth_time"),
    (claims(acr="high"), {}, "acr"),
    (claims(acr="urn:x"), {}, "acr"),
    (claims(acr=LOA_SUBSTANTIAL), {"min_loa": "high"}, "acr"),
    (claims(signlab_eid={"id": "no-minid", "name": "MinID", "loa": "substantial"}), {}, "acr"),
    (claims(signlab_eid=None), {}, "signlab_eid"),
    (claims(sub=None), {}, "sub"),
    (claims(signlab_person_id={"semantics": "PNO"}), {}, "signlab_person_id"),
])
def test_each_check(payload: dict[str, Any], kw: dict[str, Any], expected: str) -> None:
    assert check(sign(payload), **kw) == expected


def test_time_errors_say_by_how_much() -> None:
    with pytest.raises(IdentityEvidenceError, match=r"expired 100 s ago \(leeway 30 s\)"):
        verify_id_token(sign(claims(exp=int(NOW) - 100)), JWKS, issuer=ISSUER, audience=AUD, now=NOW)
    with pytest.raises(IdentityEvidenceError, match=r"issued 300 s in the future"):
        verify_id_token(sign(claims(iat=int(NOW) + 300)), JWKS, issuer=ISSUER, audience=AUD, now=NOW)
    # Within the leeway is fine.
    verify_id_token(sign(claims(exp=int(NOW) - 29)), JWKS, issuer=ISSUER, audience=AUD, now=NOW)


@pytest.mark.parametrize(("offset", "said"), [(30.4, "30.4"), (30.01, "30.1"), (31.0, "31"), (30.95, "31")])
def test_a_refusal_just_beyond_the_leeway_states_the_real_offset(offset: float, said: str) -> None:
    """30.4 s beyond a 30 s leeway is not "30 s" (a refusal that contradicts itself)."""
    issued_at = 1_800_000_000
    with pytest.raises(IdentityEvidenceError, match=rf"issued {said} s in the future \(leeway 30 s\)"):
        verify_id_token(sign(claims(iat=issued_at, exp=issued_at + 300, auth_time=issued_at)), JWKS, issuer=ISSUER,
                        audience=AUD, now=issued_at - offset)


def test_key_and_algorithm_checks() -> None:
    assert check(sign(claims(), key=_key())) == "kid"
    other = _key()
    assert check(jwt.encode({"alg": "ES256", "kid": KEY.kid}, claims(), other)) == "signature"
    hmac_key = OctKey.generate_key(256)
    assert check(jwt.encode({"alg": "HS256", "kid": KEY.kid}, claims(), hmac_key)) == "alg"
    assert check("not-a-jwt") == "format"


def test_serial_number_needs_an_identifier() -> None:
    identity = verify_id_token(sign(claims(signlab_person_id=None)), JWKS, issuer=ISSUER, audience=AUD, now=NOW)
    with pytest.raises(IdentityEvidenceError) as caught:
        identity.etsi_serial_number()
    assert caught.value.check == "signlab_person_id"


def test_uses_system_clock_by_default() -> None:
    now = time.time()
    token = sign(claims(iat=int(now), exp=int(now) + 60, auth_time=int(now)))
    assert verify_id_token(token, JWKS, issuer=ISSUER, audience=AUD).subject == "sl-abc"
