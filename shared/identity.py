"""Verified identities from the IPSP's ID tokens: eIDAS levels of assurance and ID-token checks.

Used by the SSASP at step 5 (it verifies the ID token it got from the IdP) and by the TSP at step 7
(it re-verifies the same token as identity evidence before issuing a certificate). Both call
:func:`verify_id_token` with the IdP's JWKS and get a :class:`VerifiedIdentity`, or an
:class:`IdentityEvidenceError` whose ``check`` names the failed check and whose description says
by how much a time check failed.

Checks, in order: algorithm (asymmetric only, never ``none``/HS*), key id known to the JWKS,
signature, ``iss``, ``aud`` (and ``azp`` with several audiences), ``exp``, ``nbf``, ``iat`` (not in
the future; optionally not older than ``max_token_age``), ``nonce``, ``auth_time`` (required with
``max_age``), ``acr`` (an eIDAS LoA URI, not above the eID means' level, optionally at least
``min_loa``), ``sub`` and the ``signlab_eid`` claim.

Limits: the clock is the caller's (pass ``now`` to test); the JWKS is whatever the caller fetched
(:class:`shared.clients.idp.IdpClient` caches it and refetches once on an unknown ``kid``).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Any, ClassVar

from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from shared.clock import lab_clock, seconds
from shared.errors import SignLabError
from shared.flow import FlowStep

__all__ = [
    "ALLOWED_ALGORITHMS",
    "LOA_HIGH",
    "LOA_LOW",
    "LOA_NAMES",
    "LOA_SUBSTANTIAL",
    "IdentityEvidenceError",
    "VerifiedIdentity",
    "loa_name",
    "loa_rank",
    "loa_uri",
    "verify_id_token",
]

LOA_LOW = "http://eidas.europa.eu/LoA/low"
LOA_SUBSTANTIAL = "http://eidas.europa.eu/LoA/substantial"
LOA_HIGH = "http://eidas.europa.eu/LoA/high"
LOA_NAMES: tuple[str, ...] = ("low", "substantial", "high")
"""The eIDAS levels, lowest first."""

_URI_BY_NAME = {"low": LOA_LOW, "substantial": LOA_SUBSTANTIAL, "high": LOA_HIGH}
_NAME_BY_URI = {uri: name for name, uri in _URI_BY_NAME.items()}

ALLOWED_ALGORITHMS: tuple[str, ...] = ("ES256", "ES384", "RS256", "PS256")
"""ID-token signature algorithms accepted (asymmetric only)."""


def loa_name(acr_or_name: str) -> str:
    """``"high"`` for ``"high"`` or ``LOA_HIGH``; raises ``ValueError`` for anything else."""
    if acr_or_name in _URI_BY_NAME:
        return acr_or_name
    if acr_or_name in _NAME_BY_URI:
        return _NAME_BY_URI[acr_or_name]
    raise ValueError(f"{acr_or_name!r} is not an eIDAS level of assurance (expected one of "
                     f"{', '.join(LOA_NAMES)} or their http://eidas.europa.eu/LoA/ URIs)")


def loa_uri(acr_or_name: str) -> str:
    """The acr URI of a level given by name or URI."""
    return _URI_BY_NAME[loa_name(acr_or_name)]


def loa_rank(acr_or_name: str) -> int:
    """low → 1, substantial → 2, high → 3 (by name or acr URI); ``ValueError`` for other values."""
    return LOA_NAMES.index(loa_name(acr_or_name)) + 1


class IdentityEvidenceError(SignLabError):
    """An ID token failed a check; nothing it claims may be used.

    :param check: the failed check (``alg``, ``kid``, ``signature``, ``iss``, ``aud``, ``exp``,
        ``nbf``, ``iat``, ``nonce``, ``auth_time``, ``acr``, ``sub``, ``signlab_eid``,
        ``signlab_person_id``, ``format``).
    """

    error: ClassVar[str] = "access_denied"
    status: ClassVar[int] = 403
    default_description = "the identity evidence (ID token) is invalid"

    def __init__(self, check: str, description: str, *, step: FlowStep | None = None,
                 error: str | None = None, status: int | None = None) -> None:
        self.check = check
        super().__init__(f"ID token rejected ({check}): {description}", step=step, error=error, status=status)


@dataclass(frozen=True)
class VerifiedIdentity:
    """The identity an ID token proves, after every check passed."""

    subject: str
    """``sub``: the IdP's stable pseudonymous subject id."""
    issuer: str
    acr: str
    """The eIDAS LoA URI the authentication gave."""
    loa: str
    """``low``, ``substantial`` or ``high``."""
    amr: tuple[str, ...]
    auth_time: int | None
    given_name: str | None
    family_name: str | None
    birthdate: str | None
    country: str | None
    """Country of the national identifier (or of the eID means when there is no identifier)."""
    person_id_semantics: str | None
    """ETSI EN 319 412-1 semantics (``PNO``, ``IDC`` …); None when the means proves no identifier."""
    person_id_value: str | None
    eid_id: str
    eid_name: str
    qes_approved: bool
    claims: dict[str, Any] = field(repr=False)
    """All claims of the token."""

    @property
    def age_over_18(self) -> bool | None:
        """The ``age_over_18`` fact the IdP released (None when absent)."""
        value = self.claims.get("age_over_18")
        return value if isinstance(value, bool) else None

    @property
    def verified_claims(self) -> dict[str, Any] | None:
        """The OpenID Connect for Identity Assurance ``verified_claims`` object, if released."""
        value = self.claims.get("verified_claims")
        return value if isinstance(value, dict) else None

    def etsi_serial_number(self) -> str:
        """The certificate subject serialNumber, e.g. ``"PNONO-14838540105"``.

        :raises IdentityEvidenceError: the eID means proved no national identifier.
        """
        if not (self.person_id_semantics and self.country and self.person_id_value):
            raise IdentityEvidenceError(
                "signlab_person_id",
                f"the eID means {self.eid_name!r} proves no national identifier (no signlab_person_id claim)",
            )
        return f"{self.person_id_semantics}{self.country}-{self.person_id_value}"


def _number(claims: dict[str, Any], name: str, *, required: bool) -> float | None:
    value = claims.get(name)
    if value is None:
        if required:
            raise IdentityEvidenceError(name, f"the '{name}' claim is missing")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise IdentityEvidenceError(name, f"the '{name}' claim must be a number, not {value!r}")
    return float(value)


def verify_id_token(
    id_token: str,
    jwks: KeySet,
    *,
    issuer: str,
    audience: str,
    nonce: str | None = None,
    leeway: int = 30,
    now: float | None = None,
    max_age: int | None = None,
    max_token_age: int | None = None,
    min_loa: str | None = None,
) -> VerifiedIdentity:
    """Verify an ID token from the IPSP and return the identity it proves.

    :param jwks: the IdP's published keys.
    :param issuer: the expected ``iss`` (the IdP's base URL).
    :param audience: the expected ``aud`` (the relying party's client id).
    :param nonce: the nonce sent in the authentication request; when given, the token must carry it.
    :param leeway: clock skew tolerated in every time check, in seconds.
    :param now: the current time (UNIX seconds); default: the system clock.
    :param max_age: when given, ``auth_time`` is required and must be at most this many seconds ago.
    :param max_token_age: when given, ``iat`` must be at most this many seconds ago.
    :param min_loa: when given (name or URI), the ``acr`` must be at least this level.
    :raises IdentityEvidenceError: a check failed; ``check`` names it.
    """
    current = lab_clock().time() if now is None else now
    try:
        compact = jws.extract_compact(id_token.encode("ascii"))
    except (JoseError, ValueError, UnicodeError) as exc:
        raise IdentityEvidenceError("format", f"not a compact JWS ({exc.__class__.__name__})") from None
    header = compact.protected
    alg = header.get("alg")
    if alg not in ALLOWED_ALGORITHMS:
        raise IdentityEvidenceError("alg", f"algorithm {alg!r} is not accepted (allowed: {', '.join(ALLOWED_ALGORITHMS)})")
    kid = header.get("kid")
    known = [key.kid for key in jwks.keys]
    if not isinstance(kid, str) or kid not in known:
        raise IdentityEvidenceError("kid", f"signing key {kid!r} is not in the IdP's JWKS (known: {', '.join(map(str, known)) or 'none'})")
    try:
        token = jwt.decode(id_token, jwks.get_by_kid(kid), algorithms=[alg])
    except JoseError as exc:
        raise IdentityEvidenceError("signature", f"the signature does not verify with key {kid} ({exc.error})") from None
    except ValueError as exc:
        raise IdentityEvidenceError("format", f"the token cannot be decoded ({exc})") from None
    claims = dict(token.claims)

    if claims.get("iss") != issuer:
        raise IdentityEvidenceError("iss", f"issuer is {claims.get('iss')!r}, expected {issuer!r}")
    aud = claims.get("aud")
    audiences = aud if isinstance(aud, list) else [aud]
    if audience not in audiences:
        raise IdentityEvidenceError("aud", f"audience {aud!r} does not name {audience!r}")
    if len(audiences) > 1 and claims.get("azp") != audience:
        raise IdentityEvidenceError("aud", f"several audiences and azp {claims.get('azp')!r} is not {audience!r}")

    exp = _number(claims, "exp", required=True)
    assert exp is not None
    if current > exp + leeway:
        raise IdentityEvidenceError("exp", f"expired {seconds(current - exp)} s ago (leeway {leeway} s)")
    nbf = _number(claims, "nbf", required=False)
    if nbf is not None and nbf > current + leeway:
        raise IdentityEvidenceError("nbf", f"not valid for another {seconds(nbf - current)} s (leeway {leeway} s)")
    iat = _number(claims, "iat", required=True)
    assert iat is not None
    if iat > current + leeway:
        raise IdentityEvidenceError("iat", f"issued {seconds(iat - current)} s in the future (leeway {leeway} s); "
                                           "the IdP's clock or ours is skewed")
    if max_token_age is not None and current - iat > max_token_age + leeway:
        raise IdentityEvidenceError("iat", f"issued {seconds(current - iat)} s ago, more than the {max_token_age} s allowed "
                                           f"(leeway {leeway} s)")

    if nonce is not None:
        got = claims.get("nonce")
        if not isinstance(got, str):
            raise IdentityEvidenceError("nonce", "the token carries no nonce but the request sent one")
        if not hmac.compare_digest(got.encode(), nonce.encode()):
            raise IdentityEvidenceError("nonce", "the nonce differs from the one sent in the authentication request")

    auth_time = _number(claims, "auth_time", required=max_age is not None)
    if auth_time is not None:
        if auth_time > current + leeway:
            raise IdentityEvidenceError("auth_time", f"authentication {seconds(auth_time - current)} s in the future "
                                                     f"(leeway {leeway} s)")
        if max_age is not None and current - auth_time > max_age + leeway:
            raise IdentityEvidenceError("auth_time", f"authenticated {seconds(current - auth_time)} s ago, more than "
                                                     f"max_age {max_age} s (leeway {leeway} s)")

    eid = claims.get("signlab_eid")
    if not isinstance(eid, dict) or not isinstance(eid.get("id"), str) or not isinstance(eid.get("name"), str):
        raise IdentityEvidenceError("signlab_eid", "the signlab_eid claim (the eID means used) is missing or malformed")
    acr = claims.get("acr")
    try:
        level = loa_name(str(acr))
        if acr != loa_uri(level):
            raise ValueError(f"acr must be a URI, not the bare name {acr!r}")
    except ValueError as exc:
        raise IdentityEvidenceError("acr", str(exc)) from None
    try:
        means_rank = loa_rank(str(eid.get("loa")))
    except ValueError:
        raise IdentityEvidenceError("signlab_eid", f"the eID means' level {eid.get('loa')!r} is not an eIDAS level") from None
    if loa_rank(level) > means_rank:
        raise IdentityEvidenceError("acr", f"acr claims {level} but the eID means {eid['name']!r} only gives {eid.get('loa')}")
    if min_loa is not None and loa_rank(level) < loa_rank(min_loa):
        raise IdentityEvidenceError("acr", f"level of assurance {level} is below the required {loa_name(min_loa)}")

    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise IdentityEvidenceError("sub", "the sub claim is missing")

    person = claims.get("signlab_person_id")
    semantics = value = None
    country = eid.get("country") if isinstance(eid.get("country"), str) else None
    if person is not None:
        if not isinstance(person, dict) or not all(isinstance(person.get(k), str) for k in ("semantics", "country", "value")):
            raise IdentityEvidenceError("signlab_person_id", "the signlab_person_id claim is malformed")
        semantics, country, value = person["semantics"], person["country"], person["value"]
    amr = claims.get("amr")
    return VerifiedIdentity(
        subject=sub, issuer=issuer, acr=str(acr), loa=level,
        amr=tuple(str(a) for a in amr) if isinstance(amr, list) else (),
        auth_time=int(auth_time) if auth_time is not None else None,
        given_name=claims.get("given_name"), family_name=claims.get("family_name"), birthdate=claims.get("birthdate"),
        country=country, person_id_semantics=semantics, person_id_value=value,
        eid_id=eid["id"], eid_name=eid["name"], qes_approved=eid.get("qes_approved") is True, claims=claims,
    )
