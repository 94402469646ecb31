"""Verification of a PID presented by the EUDI Wallet (flow step 4, Flask-free): the SD-JWT VC,
its key binding, the DCQL query, the status, and the person it names in the population register.

:func:`verify_pid` checks one presentation, in this order, and stops at the first failure
(:class:`PresentationRefused` names the check):

* RFC 9901 §7.1 with the ``sd-jwt`` library plus the checks it leaves out: ``alg`` ES256 and
  ``typ`` ``dc+sd-jwt`` (SD-JWT VC §3.2.1), the issuer certificate chains to a trusted PID
  provider (:mod:`services.idp.wallet_trust`), every disclosure is referenced (§7.1 step 5),
  ``vct``, ``exp``/``nbf``/``iat``;
* RFC 9901 §7.3, by hand over joserfc: a key-binding JWT is required (never decided by whether
  one was sent), ``typ`` ``kb+jwt``, signed by the key in ``cnf.jwk``, ``iat`` within
  :data:`KB_MAX_AGE` seconds, ``nonce`` = the request's, ``aud`` = the verifier's full client
  identifier (OpenID4VP §14, "Always Use the Full Client Identifier"), ``sd_hash`` over the issuer
  JWT and the presented disclosures;
* the DCQL query is enforced by the verifier, not trusted to the wallet: every claim of
  :data:`REQUIRED_CLAIMS` must be disclosed (OpenID4VP §8.6);
* the Token Status List entry must be VALID (after the checks above, as the draft's §8.3 asks).

:func:`identify` then finds the person: by ``issuing_country`` and
``personal_administrative_number`` in the catalogue (the IdP plays the population register in the
lab), with the disclosed names and birth date equal to the register's, not deceased, at the
requested level. The request and response around it are :mod:`services.idp.openid4vp`'s.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any

from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey
from jwcrypto.jwk import JWK
from sd_jwt.verifier import SDJWTVerifier

from services.idp.authn import Authentication
from services.idp.catalogue import Catalogue, EidMeans, Person
from services.idp.errors import LoginRefused, UnmetAuthenticationRequirements
from services.idp.wallet_trust import TrustedPidProviders, TrustProblem, certificates_of
from shared.eudi import KB_JWT_TYPE, PID_VCT, SD_JWT_VC_FORMAT, X5C_JWS
from shared.flow import step
from shared.identity import LOA_NAMES

__all__ = [
    "KB_MAX_AGE",
    "REQUIRED_CLAIMS",
    "PresentationRefused",
    "VerifiedPid",
    "identify",
    "masked_claims",
    "verify_pid",
]

STEP_4 = step(4)
REQUIRED_CLAIMS: tuple[tuple[Any, ...], ...] = (
    ("family_name",), ("given_name",), ("birthdate",), ("nationalities", None),
    ("personal_administrative_number",), ("issuing_country",),
)
"""The PID claims the IdP asks for: what an ID token needs (names, birth date, nationality) and what
identifies the person (the personal administrative number of the issuing country)."""
LEEWAY = 30
KB_MAX_AGE = 300
"""Oldest key-binding JWT accepted, in seconds (RFC 9901 §7.3 step 5c: "an acceptable window")."""


class PresentationRefused(LoginRefused):
    """The wallet's presentation failed a check; nothing it claims is used (``access_denied``, step 4).

    :param check: the failed check (``format``, ``state``, ``typ``, ``alg``, ``trust chain``,
        ``signature``, ``disclosures``, ``vct``, ``exp``, ``nbf``, ``key binding``, ``iat``,
        ``nonce``, ``aud``, ``sd_hash``, ``claims``, ``status``, ``register``).
    """

    def __init__(self, check: str, description: str) -> None:
        self.check = check
        super().__init__(f"PID presentation refused ({check}): {description}", step=STEP_4)


@dataclass(frozen=True)
class VerifiedPid:
    """A PID presentation that passed every check."""

    claims: dict[str, Any]
    """The processed payload (disclosed claims plus the always-visible ones)."""
    disclosed: tuple[str, ...]
    """The names of the disclosed claims."""
    issuer: str
    """The PID provider (subject of its certificate)."""
    status_index: int
    summary: dict[str, Any]
    """What the trace shows: decoded header, disclosures (personal data masked), key-binding JWT."""


def _mask(name: str, value: Any) -> Any:
    """Personal data as a trainer may see it: names by their first letter, the birth date by its year,
    the national identity number by its last two digits (the ID token itself carries them in full)."""
    if name in ("family_name", "given_name") and isinstance(value, str) and value:
        return value[0] + "•" * (len(value) - 1)
    if name == "birthdate" and isinstance(value, str):
        return value[:4] + "-••-••"
    if name == "personal_administrative_number" and isinstance(value, str):
        return "•" * max(len(value) - 2, 0) + value[-2:]
    return value


def masked_claims(claims: dict[str, Any]) -> dict[str, Any]:
    """``claims`` with the personal data masked (see :func:`_mask`)."""
    return {name: _mask(name, value) for name, value in claims.items()}


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64url_json(segment: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def _embedded_digests(value: Any, found: list[str]) -> None:
    """Every digest in ``_sd`` arrays and ``{"...": digest}`` array elements (RFC 9901 §7.1 step 3.2)."""
    if isinstance(value, dict):
        if len(value) == 1 and isinstance(value.get("..."), str):
            found.append(value["..."])
            return
        for key, item in value.items():
            if key == "_sd" and isinstance(item, list):
                found.extend(d for d in item if isinstance(d, str))
            else:
                _embedded_digests(item, found)
    elif isinstance(value, list):
        for item in value:
            _embedded_digests(item, found)


def _has_path(payload: Any, path: tuple[Any, ...]) -> bool:
    """Whether the claims path pointer (OpenID4VP §7) selects a value in ``payload``."""
    values = [payload]
    for part in path:
        following: list[Any] = []
        for value in values:
            if isinstance(part, str) and isinstance(value, dict) and part in value:
                following.append(value[part])
            elif part is None and isinstance(value, list):
                following.extend(value)
        values = following
    return bool(values)


def verify_pid(presentation: str, *, nonce: str, now: float, audience: str, trust: TrustedPidProviders) -> VerifiedPid:
    """Verify one SD-JWT VC presentation of a PID (module docstring) for the verifier ``audience``
    (its full client identifier), with the PID providers ``trust`` lists.

    :raises PresentationRefused: the first check that fails.
    """
    parts = presentation.split("~")
    if len(parts) < 2:
        raise PresentationRefused("format", "not an SD-JWT presentation (<issuer JWT>~<disclosures>~<KB-JWT>)")
    issuer_jwt, disclosures, kb_jwt = parts[0], parts[1:-1], parts[-1]
    if not kb_jwt:  # RFC 9901 §7.3 step 2: key binding is the IdP's policy, not the wallet's choice
        raise PresentationRefused("key binding", "the presentation has no key-binding JWT; the IdP requires one")
    try:
        header = dict(jws.extract_compact(issuer_jwt.encode("ascii"), registry=X5C_JWS).protected)
        raw_payload = _b64url_json(issuer_jwt.split(".")[1])
        decoded = [_b64url_json(d) for d in disclosures]
    except (JoseError, ValueError, UnicodeError, IndexError):
        raise PresentationRefused("format", "the issuer-signed JWT or a disclosure does not decode") from None
    if header.get("alg") != "ES256":
        raise PresentationRefused("alg", f"the PID is signed with {header.get('alg')!r}; ES256 is required")
    if header.get("typ") != SD_JWT_VC_FORMAT:
        raise PresentationRefused("typ", f"the PID's typ is {header.get('typ')!r}, not {SD_JWT_VC_FORMAT!r} "
                                         "(SD-JWT VC §3.2.1)")
    try:
        chain = certificates_of(header)
        trust.check_chain(chain, now)
    except TrustProblem as problem:
        raise PresentationRefused(problem.check, problem.description) from None
    issuer_key = JWK.from_pyca(chain[0].public_key())
    try:
        sd_jwt = SDJWTVerifier(presentation, lambda _iss, _header: issuer_key)
        claims = dict(sd_jwt.get_verified_payload())
    except Exception as exc:
        text = str(exc).splitlines()[0][:200] if str(exc) else exc.__class__.__name__
        check = "signature" if "signature" in text.lower() or exc.__class__.__name__ == "InvalidJWSSignature" else "disclosures"
        raise PresentationRefused(check, f"the PID does not verify (RFC 9901 §7.1): {text}") from None
    # RFC 9901 §7.1 step 5: every disclosure must be referenced by a digest (the library ignores extras).
    embedded: list[str] = []
    _embedded_digests(raw_payload, embedded)
    for item in decoded:
        _embedded_digests(item[-1] if isinstance(item, list) and item else None, embedded)
    for disclosure in disclosures:
        if _b64url(hashlib.sha256(disclosure.encode("ascii")).digest()) not in embedded:
            raise PresentationRefused("disclosures", "a disclosure is not referenced by any digest of the PID "
                                                     "(tampered or foreign; RFC 9901 §7.1 step 5)")
    _check_validity(claims, now)
    kb_claims = _check_key_binding(kb_jwt, claims, presentation[: -len(kb_jwt)], nonce, now, audience)
    missing = [str(path[0]) for path in REQUIRED_CLAIMS if not _has_path(claims, path)]
    if missing:
        raise PresentationRefused("claims", f"the presentation lacks required claim(s) {', '.join(missing)} "
                                            "(the verifier enforces its DCQL query, OpenID4VP §8.6)")
    try:
        trust.check_status(claims.get("status"), chain[0], now)
    except TrustProblem as problem:
        raise PresentationRefused(problem.check, problem.description) from None
    names = tuple(str(item[-2]) for item in decoded if isinstance(item, list) and len(item) == 3)
    summary = {
        "issuer_jwt": {"header": {k: v for k, v in header.items() if k != "x5c"},
                       "issuer_certificates": [c.subject.rfc4514_string() for c in chain],
                       "vct": claims.get("vct"), "exp": claims.get("exp"), "status": claims.get("status")},
        "disclosures": [{"claim": item[-2] if len(item) == 3 else "(array element)",
                         "value": _mask(str(item[-2]), item[-1]) if len(item) == 3 else _mask("", item[-1])}
                        for item in decoded if isinstance(item, list)],
        "kb_jwt": kb_claims,
        "disclosed": list(names),
    }
    return VerifiedPid(claims, names, chain[0].subject.rfc4514_string(), int(claims["status"]["status_list"]["idx"]),
                       summary)


def _check_validity(claims: dict[str, Any], now: float) -> None:
    if claims.get("vct") != PID_VCT:
        raise PresentationRefused("vct", f"the credential's vct is {claims.get('vct')!r}, not the PID {PID_VCT!r}")
    exp = claims.get("exp")
    if not isinstance(exp, int | float):
        raise PresentationRefused("exp", "the PID has no exp (the lab requires a validity end)")
    if now > exp + LEEWAY:
        raise PresentationRefused("exp", f"the PID expired {int(now - exp)} s ago")
    nbf = claims.get("nbf")
    if isinstance(nbf, int | float) and nbf > now + LEEWAY:
        raise PresentationRefused("nbf", f"the PID is not valid for another {int(nbf - now)} s")
    iat = claims.get("iat")
    if isinstance(iat, int | float) and iat > now + LEEWAY:
        raise PresentationRefused("iat", f"the PID was issued {int(iat - now)} s in the future")


def _check_key_binding(kb_jwt: str, claims: dict[str, Any], bound: str, nonce: str, now: float, audience: str) -> dict[str, Any]:
    """RFC 9901 §7.3 step 5 over joserfc; returns the KB-JWT's header and claims for the trace."""
    jwk = (claims.get("cnf") or {}).get("jwk") if isinstance(claims.get("cnf"), dict) else None
    if not isinstance(jwk, dict):
        raise PresentationRefused("key binding", "the PID names no holder key (cnf.jwk)")
    try:
        header = dict(jws.extract_compact(kb_jwt.encode("ascii")).protected)
    except (JoseError, ValueError, UnicodeError):
        raise PresentationRefused("key binding", "the key-binding JWT does not decode") from None
    if header.get("typ") != KB_JWT_TYPE:
        raise PresentationRefused("key binding", f"the key-binding JWT's typ is {header.get('typ')!r}, not {KB_JWT_TYPE!r}")
    if header.get("alg") != "ES256":
        raise PresentationRefused("key binding", f"the key-binding JWT is signed with {header.get('alg')!r}; ES256 is required")
    try:
        kb = jwt.decode(kb_jwt, ECKey.import_key(jwk), algorithms=["ES256"]).claims
    except (JoseError, ValueError):
        raise PresentationRefused("key binding", "the key-binding JWT's signature does not verify with the PID's "
                                                 "holder key (cnf.jwk): not signed by the device the PID is bound to") from None
    iat = kb.get("iat")
    if not isinstance(iat, int | float) or iat > now + LEEWAY or now - iat > KB_MAX_AGE + LEEWAY:
        raise PresentationRefused("iat", f"the key-binding JWT's iat {iat!r} is outside the accepted window "
                                         f"(at most {KB_MAX_AGE} s old)")
    got_nonce = kb.get("nonce")
    if not isinstance(got_nonce, str) or not hmac.compare_digest(got_nonce.encode(), nonce.encode()):
        raise PresentationRefused("nonce", "the key-binding JWT's nonce is not this request's (replayed or made "
                                           "for another request)")
    if kb.get("aud") != audience:
        raise PresentationRefused("aud", f"the key-binding JWT is addressed to {kb.get('aud')!r}, not to this "
                                         f"verifier {audience!r}")
    expected = _b64url(hashlib.sha256(bound.encode("ascii")).digest())
    if kb.get("sd_hash") != expected:
        raise PresentationRefused("sd_hash", "the key-binding JWT's sd_hash does not match the presented PID and "
                                             "disclosures")
    return {"header": header, "claims": kb}


def identify(verified: VerifiedPid, catalogue: Catalogue, means: EidMeans, *, min_rank: int | None,
             now: float) -> Authentication:
    """The login a verified PID stands for (module docstring, step 3).

    :raises PresentationRefused: the register does not know the person, or the PID disagrees with it.
    :raises LoginRefused: the register lists the person as deceased.
    :raises UnmetAuthenticationRequirements: the wallet's level is below the requested one.
    """
    claims = verified.claims
    number, country = claims.get("personal_administrative_number"), claims.get("issuing_country")
    person: Person | None = catalogue.find_person(str(number)) if number else None
    if person is None or person.person_id.country != country or person.person_id.semantics != "PNO":
        raise PresentationRefused("register", f"the population register knows no person with the PID's number "
                                              f"{_mask('personal_administrative_number', str(number))} from {country}")
    register = {"family_name": person.family_name, "given_name": person.given_name,
                "birthdate": person.birthdate.isoformat()}
    differing = [name for name, value in register.items() if claims.get(name) != value]
    if differing:
        raise PresentationRefused("register", f"the PID's {', '.join(differing)} differ from the population register")
    if person.deceased is not None:
        raise LoginRefused(f"the population register lists the person of this PID as deceased "
                           f"({person.deceased.isoformat()}); login refused", step=STEP_4)
    if min_rank is not None and means.rank < min_rank:
        raise UnmetAuthenticationRequirements(f"{means.name} gives level {means.loa}; the service requires "
                                              f"{LOA_NAMES[min_rank - 1]}", step=STEP_4)
    return Authentication(person.id, means.id, int(now), means.acr, means.amr, secrets.token_hex(8))
