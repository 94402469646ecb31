"""A PID presentation made by the wallet emulator (the ``sd-jwt`` library) is verified here by an
independent implementation: RFC 9901 §7.1 and §7.3 written out over joserfc and cryptography, no
``sd-jwt`` code. A tampered disclosure is refused by it and by the IPSP's verifier."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from typing import Any

import pytest
from cryptography import x509
from joserfc import jws, jwt
from joserfc.jwk import ECKey

from services.wallet.holder import VerifierRequest
from services.wallet.service import WalletCore
from shared.eudi import PID_VCT, X5C_JWS

CLIENT_ID = "x509_hash:" + base64.urlsafe_b64encode(hashlib.sha256(b"test verifier").digest()).rstrip(b"=").decode()
PATHS = (("family_name",), ("given_name",), ("birthdate",), ("nationalities", None), ("personal_administrative_number",))


class Refused(Exception):
    """The independent verifier refuses the presentation."""


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _decode(segment: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def verify_independently(presentation: str, anchor: x509.Certificate, *, nonce: str, audience: str) -> dict[str, Any]:
    """RFC 9901 §7.1 + §7.3, step by step, without the sd-jwt package."""
    issuer_jwt, *disclosures, kb_jwt = presentation.split("~")
    if not kb_jwt:
        raise Refused("no key-binding JWT")
    header = jws.extract_compact(issuer_jwt.encode(), registry=X5C_JWS).protected
    if header["alg"] != "ES256" or header["typ"] != "dc+sd-jwt":
        raise Refused(f"alg/typ {header}")
    leaf = x509.load_der_x509_certificate(base64.b64decode(header["x5c"][0]))
    leaf.verify_directly_issued_by(anchor)  # §7.1 2.3: the key belongs to a trusted issuer
    payload = json.loads(jws.deserialize_compact(issuer_jwt, ECKey.import_key(leaf.public_key()), algorithms=["ES256"],
                                                 registry=X5C_JWS).payload)
    if payload.pop("_sd_alg", "sha-256") != "sha-256":
        raise Refused("hash algorithm")
    by_digest = {_b64url(hashlib.sha256(d.encode("ascii")).digest()): d for d in disclosures}
    if len(by_digest) != len(disclosures):
        raise Refused("duplicate disclosure")
    used: set[str] = set()

    def process(value: Any) -> Any:  # §7.1 step 3, recursively
        if isinstance(value, dict):
            out = {k: process(v) for k, v in value.items() if k != "_sd"}
            for digest in value.get("_sd", []):
                if digest in used:
                    raise Refused("digest used twice")
                if digest in by_digest:
                    _salt, name, claim = _decode(by_digest[digest])
                    if name in out or name in ("_sd", "..."):
                        raise Refused(f"claim {name} twice")
                    used.add(digest)
                    out[name] = process(claim)
            return out
        if isinstance(value, list):
            out_list = []
            for element in value:
                if isinstance(element, dict) and set(element) == {"..."}:
                    if element["..."] in by_digest:
                        used.add(element["..."])
                        out_list.append(process(_decode(by_digest[element["..."]])[1]))
                    continue  # a decoy or an undisclosed element is removed (step 3.4)
                out_list.append(process(element))
            return out_list
        return value

    claims = process(payload)
    if used != set(by_digest):  # §7.1 step 5
        raise Refused("a disclosure is not referenced by the issuer-signed JWT")
    if claims["exp"] < time.time():
        raise Refused("expired")
    kb = jwt.decode(kb_jwt, ECKey.import_key(claims["cnf"]["jwk"]), algorithms=["ES256"])  # §7.3 5.3
    if kb.header["typ"] != "kb+jwt":
        raise Refused("kb typ")
    if kb.claims["nonce"] != nonce or kb.claims["aud"] != audience or abs(time.time() - kb.claims["iat"]) > 300:
        raise Refused("kb nonce/aud/iat")
    if kb.claims["sd_hash"] != _b64url(hashlib.sha256(presentation[: -len(kb_jwt)].encode("ascii")).digest()):
        raise Refused("sd_hash")
    return claims


def _request(nonce: str) -> VerifierRequest:
    return VerifierRequest(invocation="", client_id=CLIENT_ID, request_uri="", verifier_name="test verifier",
                           certificate_sha256="", response_uri="", response_mode="direct_post.jwt", nonce=nonce,
                           state=None, query_id="pid", claim_paths=PATHS, purpose="test", encryption_key=None,
                           encryption_enc="A128GCM", header={}, claims={})


@pytest.fixture
def made(live_wallet: Any) -> tuple[str, str, WalletCore]:
    _server, core = live_wallet
    nonce = secrets.token_urlsafe(24)
    presentation, _disclosed = core.wallet.presentation(_request(nonce), "kari-nordmann")
    return presentation, nonce, core


def test_the_emulators_presentation_verifies_independently(made: tuple[str, str, WalletCore]) -> None:
    presentation, nonce, core = made
    claims = verify_independently(presentation, core.trust.anchor.cert, nonce=nonce, audience=CLIENT_ID)
    assert claims["vct"] == PID_VCT
    assert (claims["family_name"], claims["given_name"], claims["birthdate"]) == ("Nordmann", "Kari", "1985-03-14")
    assert claims["nationalities"] == ["NO"]
    assert claims["personal_administrative_number"] == "14838540105"
    # Selective disclosure: what was not asked for stayed hidden.
    assert not {"issuing_authority", "date_of_expiry", "date_of_issuance", "issuing_country"} & set(claims)
    # The independent check is no rubber stamp: the same presentation with another nonce is refused.
    with pytest.raises(Refused, match="nonce"):
        verify_independently(presentation, core.trust.anchor.cert, nonce="another-" + nonce, audience=CLIENT_ID)


def _tamper(presentation: str, claim: str, value: str) -> str:
    parts = presentation.split("~")
    for i, disclosure in enumerate(parts[1:-1], start=1):
        decoded = _decode(disclosure)
        if len(decoded) == 3 and decoded[1] == claim:
            decoded[2] = value
            parts[i] = _b64url(json.dumps(decoded).encode())
    return "~".join(parts)


def test_a_tampered_disclosure_is_refused_independently(made: tuple[str, str, WalletCore]) -> None:
    presentation, nonce, core = made
    tampered = _tamper(presentation, "family_name", "Impostor")
    assert tampered != presentation
    with pytest.raises(Refused, match="not referenced"):
        verify_independently(tampered, core.trust.anchor.cert, nonce=nonce, audience=CLIENT_ID)
