"""The IPSP as an OpenID4VP verifier: the eID means "EUDI Wallet (PID)" (Flask-free).

When the signer logs in with the EUDI Wallet, step 4 is a presentation of the PID (OpenID for
Verifiable Presentations 1.0, profiled as HAIP does for the EUDI Wallet):

1. **Request** — for one login the IdP creates a presentation request: a fresh ``nonce`` (128 bits,
   §5.2) and ``state``, an ephemeral ECDH-ES P-256 key for the encrypted answer, and a DCQL query
   (§6) for the PID claims the IdP needs (:data:`REQUIRED_CLAIMS`). The request object is a JWT
   signed with the IdP's verifier certificate, carried in ``x5c``; the client identifier is
   ``x509_hash:<SHA-256 of that certificate>`` (§5.9.3), ``response_mode`` ``direct_post.jwt``
   (§8.3.1) with a ``response_uri`` and no ``redirect_uri`` (§8.2), ``aud``
   ``https://self-issued.me/v2`` (§5.8). The wallet is invoked with only ``client_id`` and
   ``request_uri`` (RFC 9101): on the same device by a redirect to the wallet's link, across
   devices by a QR code of the ``openid4vp://`` URL.
2. **Response** — the wallet POSTs ``response=<JWE>`` to the response URI. The IdP decrypts it with
   the key of this request (``kid``), checks ``state``, takes ``vp_token["pid"]`` (exactly one
   presentation, §8.1) and verifies it (:meth:`Verifier.verify`):

   * RFC 9901 §7.1 with the ``sd-jwt`` library plus the checks it leaves out: ``alg`` ES256 and
     ``typ`` ``dc+sd-jwt`` (SD-JWT VC §3.2.1), the issuer certificate chains to a trusted PID
     provider (:mod:`services.idp.wallet_trust`), every disclosure is referenced (§7.1 step 5),
     ``vct``, ``exp``/``nbf``/``iat``;
   * RFC 9901 §7.3, by hand over joserfc: a key-binding JWT is required (never decided by whether
     one was sent), ``typ`` ``kb+jwt``, signed by the key in ``cnf.jwk``, ``iat`` within
     :data:`KB_MAX_AGE` seconds, ``nonce`` = this request's, ``aud`` = the full client identifier
     (OpenID4VP §14, "Always Use the Full Client Identifier"), ``sd_hash`` over the issuer JWT and the
     presented disclosures;
   * the DCQL query is enforced by the verifier, not trusted to the wallet: every required claim
     must be disclosed (§8.6);
   * the Token Status List entry must be VALID (after the checks above, as the draft's §8.3 asks).

   The response endpoint answers 200 with JSON (§8.2) — with a ``redirect_uri`` carrying a fresh
   ``response_code`` in the same-device flow — also when it refused the presentation; the refusal
   is recorded and the browser, back at the IdP, is sent to the client with ``access_denied``.
3. **Identity** — the verified PID names the person by ``issuing_country`` and
   ``personal_administrative_number``; the IdP (which also plays the population register in the
   lab) finds the test person, checks that the disclosed names and birth date are the register's,
   refuses a deceased person, and completes the OIDC login with the means ``eudi-wallet`` (LoA
   high): the ID token says which means and level were used.

Session binding: the same-device return URL must carry the ``response_code`` the wallet got, and
both flows complete only in the browser that started the login (HAIP: the response code must
belong to the same browser session). The cross-device flow is open to session fixation
(OpenID4VP §14.3): a person who scans a QR code an attacker shows them logs the attacker's browser
in. The page under the QR code says so; the lab mitigates only by binding status and completion
to the browser that showed the code.

Limits (lab): the verifier certificate is self-signed (no access-certificate authority); no
registration certificate, no wallet attestation; PIDs in SD-JWT VC only (no mdoc).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from joserfc import jwe, jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey
from jwcrypto.jwk import JWK
from sd_jwt.verifier import SDJWTVerifier

from services.idp.authn import Authentication
from services.idp.catalogue import Catalogue, EidMeans, Person
from services.idp.errors import AuthorizationRefused, LoginRefused, UnmetAuthenticationRequirements
from services.idp.wallet_trust import TrustedPidProviders, TrustProblem, certificates_of
from shared.clock import lab_clock
from shared.clients.wallet import PidProviderClient
from shared.eudi import (
    KB_JWT_TYPE,
    PID_VCT,
    REQUEST_OBJECT_TYPE,
    SD_JWT_VC_FORMAT,
    SELF_ISSUED_AUDIENCE,
    X5C_JWS,
    x509_hash_client_id,
)
from shared.flow import step
from shared.identity import LOA_NAMES
from shared.lab_pki import load_or_create_pair

__all__ = [
    "KB_MAX_AGE",
    "QUERY_ID",
    "REQUIRED_CLAIMS",
    "Presentation",
    "PresentationRefused",
    "VerifiedPid",
    "Verifier",
    "identify",
    "masked_claims",
]

STEP_4 = step(4)
QUERY_ID = "pid"
"""The ``id`` of the one credential query (the key of ``vp_token``)."""
REQUIRED_CLAIMS: tuple[tuple[Any, ...], ...] = (
    ("family_name",), ("given_name",), ("birthdate",), ("nationalities", None),
    ("personal_administrative_number",), ("issuing_country",),
)
"""The PID claims the IdP asks for: what an ID token needs (names, birth date, nationality) and what
identifies the person (the personal administrative number of the issuing country)."""
LEEWAY = 30
KB_MAX_AGE = 300
"""Oldest key-binding JWT accepted, in seconds (RFC 9901 §7.3 step 5c: "an acceptable window")."""
ENCRYPTION_VALUES = ["A128GCM", "A256GCM"]


class PresentationRefused(LoginRefused):
    """The wallet's presentation failed a check; nothing it claims is used (``access_denied``, step 4).

    :param check: the failed check (``format``, ``state``, ``typ``, ``alg``, ``trust chain``,
        ``signature``, ``disclosures``, ``vct``, ``exp``, ``nbf``, ``key binding``, ``iat``,
        ``nonce``, ``aud``, ``sd_hash``, ``claims``, ``status``, ``register``).
    """

    def __init__(self, check: str, description: str) -> None:
        self.check = check
        super().__init__(f"PID presentation refused ({check}): {description}", step=STEP_4)


# -- presentations in progress ---------------------------------------------------------------------
@dataclass
class Presentation:
    """One presentation request and what became of it."""

    id: str
    rid: str
    """The login in progress this presentation belongs to (the IdP's pending login)."""
    mode: str
    """``same-device`` or ``cross-device``."""
    browser: str
    """The browser that started the login (its id in the IdP session cookie)."""
    nonce: str
    state: str
    purpose: str
    encryption_key: dict[str, Any] = field(repr=False)
    """The ephemeral private JWK for this request's encrypted answer."""
    created: float = 0.0
    deadline: float = 0.0
    """When the IdP stops waiting for the wallet."""
    status: str = "waiting"
    """``waiting``, ``fetched`` (the wallet read the request), ``verified``, ``refused``, ``declined``."""
    response_code: str | None = None
    auth: dict[str, Any] | None = None
    """The login the verified PID stands for (:meth:`Authentication.as_dict`)."""
    error: str | None = None
    error_description: str | None = None

    def expired(self, now: float) -> bool:
        """The wallet did not answer in time."""
        return self.status in ("waiting", "fetched") and now > self.deadline

    @property
    def answered(self) -> bool:
        """The wallet answered (whatever the outcome)."""
        return self.status in ("verified", "refused", "declined")


class _Presentations:
    """Presentations in progress, in ``<data_dir>/openid4vp/presentations.sqlite3``."""

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS presentations (id TEXT PRIMARY KEY, expires REAL NOT NULL, "
                         "data TEXT NOT NULL)")

    def put(self, item: Presentation, keep_until: float) -> None:
        with self._lock:
            self._db.execute("DELETE FROM presentations WHERE expires < ?", (lab_clock().time(),))
            self._db.execute("INSERT OR REPLACE INTO presentations VALUES (?, ?, ?)",
                             (item.id, keep_until, json.dumps(asdict(item))))

    def get(self, presentation_id: str) -> Presentation | None:
        with self._lock:
            row = self._db.execute("SELECT expires, data FROM presentations WHERE id = ?", (presentation_id,)).fetchone()
        if row is None or row[0] < lab_clock().time():
            return None
        return Presentation(**json.loads(row[1]))

    def delete(self, presentation_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM presentations WHERE id = ?", (presentation_id,))

    def close(self) -> None:
        with self._lock:
            self._db.close()


# -- the verified PID -------------------------------------------------------------------------------
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


class Verifier:
    """The IdP's OpenID4VP verifier: its certificate, its presentations, its checks.

    :param directory: ``<data_dir>/openid4vp`` (verifier key and certificate, pinned list operator,
        presentations).
    :param issuer: the IdP's base URL (request and response URIs, reached by the wallet).
    :param browser_url: the IdP's browser-facing base URL (the same-device return URL).
    :param wallet_url: the wallet's same-device link base.
    """

    def __init__(self, directory: Path, *, issuer: str, browser_url: str, wallet_url: str, trusted_list_url: str,
                 wait_seconds: int, timeout: float) -> None:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.certificate = load_or_create_pair(directory, "verifier", "SignLab eID provider (IPSP), OpenID4VP verifier (lab)")
        self.client_id = x509_hash_client_id(self.certificate.der)
        self.issuer = issuer.rstrip("/")
        self.browser_url = browser_url.rstrip("/")
        self.wallet_url = wallet_url.rstrip("/")
        self.wait_seconds = wait_seconds
        self.trust = TrustedPidProviders(trusted_list_url, directory, PidProviderClient(timeout=timeout))
        self.presentations = _Presentations(directory / "presentations.sqlite3")

    def close(self) -> None:
        """Release the database."""
        self.presentations.close()

    # -- 1. the request ---------------------------------------------------------------------------
    def start(self, rid: str, mode: str, *, browser: str, purpose: str, wait: float | None = None,
              now: float | None = None) -> Presentation:
        """A new presentation request for the login ``rid`` (module docstring, step 1); the
        ``response_code`` that will prove the same-device return is made now, handed out only in
        the response endpoint's answer to the wallet."""
        current = lab_clock().time() if now is None else now
        key = ECKey.generate_key("P-256", parameters={"use": "enc", "alg": "ECDH-ES"})
        key.ensure_kid()
        item = Presentation(
            id=secrets.token_urlsafe(18), rid=rid, mode=mode, browser=browser, nonce=secrets.token_urlsafe(24),
            state=secrets.token_urlsafe(18), purpose=purpose, encryption_key=key.as_dict(private=True),
            created=current, deadline=current + (self.wait_seconds if wait is None else wait),
            response_code=secrets.token_urlsafe(24))
        self._save(item)
        return item

    def _save(self, item: Presentation) -> None:
        self.presentations.put(item, item.deadline + 600)

    def get(self, presentation_id: str) -> Presentation | None:
        """A presentation in progress."""
        return self.presentations.get(presentation_id)

    def request_uri(self, item: Presentation) -> str:
        """Where the wallet fetches the request object."""
        return f"{self.issuer}/openid4vp/request/{item.id}"

    def invocation(self, item: Presentation) -> dict[str, str]:
        """The invocation: only ``client_id`` and ``request_uri`` (RFC 9101 §5.2; OpenID4VP §5.10)."""
        return {"client_id": self.client_id, "request_uri": self.request_uri(item)}

    def same_device_url(self, item: Presentation) -> str:
        """The wallet's link on this device (what the phone's OS would route ``openid4vp://`` to)."""
        return f"{self.wallet_url}/authorize?{urlencode(self.invocation(item))}"

    def cross_device_url(self, item: Presentation) -> str:
        """The ``openid4vp://`` URL of the QR code (OpenID4VP §13.1: the scheme's static wallet metadata)."""
        return f"openid4vp://?{urlencode(self.invocation(item))}"

    def request_object(self, presentation_id: str, now: float | None = None) -> tuple[str, dict[str, Any]]:
        """The signed request object (JAR) and its claims; the presentation is marked ``fetched``.

        :raises PresentationRefused: unknown, finished or expired request (check ``request``).
        """
        current = lab_clock().time() if now is None else now
        item = self.get(presentation_id)
        if item is None or item.answered or item.expired(current):
            raise PresentationRefused("request", "this presentation request is unknown, answered or expired")
        public = {k: v for k, v in item.encryption_key.items() if k != "d"}
        claims: dict[str, Any] = {
            "aud": SELF_ISSUED_AUDIENCE,
            "iat": int(current),
            "exp": int(item.deadline),
            "client_id": self.client_id,
            "response_type": "vp_token",
            "response_mode": "direct_post.jwt",
            "response_uri": f"{self.issuer}/openid4vp/response/{item.id}",
            "nonce": item.nonce,
            "state": item.state,
            "dcql_query": {"credentials": [{
                "id": QUERY_ID, "format": SD_JWT_VC_FORMAT, "meta": {"vct_values": [PID_VCT]},
                "claims": [{"path": list(path)} for path in REQUIRED_CLAIMS],
            }]},
            "client_metadata": {
                "jwks": {"keys": [public]},
                "encrypted_response_enc_values_supported": ENCRYPTION_VALUES,
                "vp_formats_supported": {SD_JWT_VC_FORMAT: {"sd-jwt_alg_values": ["ES256"], "kb-jwt_alg_values": ["ES256"]}},
            },
            "signlab_purpose": item.purpose,
        }
        header = {"alg": "ES256", "typ": REQUEST_OBJECT_TYPE, "x5c": self.certificate.x5c}
        if item.status == "waiting":
            item.status = "fetched"
            self._save(item)
        return jwt.encode(header, claims, self.certificate.jose_key, algorithms=["ES256"], registry=X5C_JWS), claims

    # -- 2. the response -----------------------------------------------------------------------------
    def receive(self, presentation_id: str, form: dict[str, str], identify: Callable[[VerifiedPid], Authentication],
                now: float | None = None) -> tuple[Presentation, VerifiedPid | None]:
        """Process the wallet's answer: decrypt, check, verify, identify (module docstring, steps 2-3).

        The outcome is stored on the presentation: ``verified`` with the login ``identify`` made of
        the PID, ``declined`` (the wallet's error response), or ``refused`` with the error.

        :raises PresentationRefused: the answer is for no waiting request (check ``request``).
        :raises AuthorizationRefused: any other refusal, after it was stored on the presentation,
            so that the caller can draw it while it answers the wallet 200 (OpenID4VP §8.2).
        """
        current = lab_clock().time() if now is None else now
        item = self.get(presentation_id)
        if item is None or item.answered:
            raise PresentationRefused("request", "this presentation request is unknown or already answered")
        if item.expired(current):
            raise PresentationRefused("request", f"the answer came after the IdP stopped waiting "
                                                 f"({int(current - item.deadline)} s late)")
        try:
            if "error" in form:
                if form.get("state") and not hmac.compare_digest(form["state"], item.state):
                    raise PresentationRefused("state", "the error response's state is not this request's")
                item.status, item.error = "declined", "access_denied"
                item.error_description = (f"the wallet answered {form['error']}: "
                                          f"{form.get('error_description') or 'no reason given'}")
                self._save(item)
                return item, None
            body = self._decrypt(item, form)
            if not isinstance(body.get("state"), str) or not hmac.compare_digest(body["state"], item.state):
                raise PresentationRefused("state", "the response's state is not this request's")
            token = body.get("vp_token")
            entries = token.get(QUERY_ID) if isinstance(token, dict) else None
            if not isinstance(entries, list) or len(entries) != 1 or not isinstance(entries[0], str):
                raise PresentationRefused("format", f"vp_token must hold exactly one presentation under {QUERY_ID!r} "
                                                    "(OpenID4VP §8.1)")
            verified = self.verify(entries[0], nonce=item.nonce, now=current)
            auth = identify(verified)
        except AuthorizationRefused as refusal:
            item.status, item.error, item.error_description = "refused", refusal.error, refusal.description
            self._save(item)
            raise
        item.status, item.auth = "verified", auth.as_dict()
        self._save(item)
        return item, verified

    def _decrypt(self, item: Presentation, form: dict[str, str]) -> dict[str, Any]:
        token = form.get("response")
        if not token:
            raise PresentationRefused("format", "direct_post.jwt sends the response as one encrypted 'response' parameter")
        try:
            decrypted = jwe.decrypt_compact(token, ECKey.import_key(item.encryption_key))
        except (JoseError, ValueError) as exc:
            raise PresentationRefused("format", f"the response does not decrypt with this request's key "
                                                f"({exc.__class__.__name__})") from None
        if decrypted.protected.get("kid") != item.encryption_key.get("kid"):
            raise PresentationRefused("format", "the response's kid is not the key of this request (OpenID4VP §8.3)")
        try:
            body = json.loads(decrypted.plaintext or b"")
        except ValueError:
            raise PresentationRefused("format", "the decrypted response is not JSON") from None
        if not isinstance(body, dict):
            raise PresentationRefused("format", "the decrypted response is not a JSON object")
        return body

    def verify(self, presentation: str, *, nonce: str, now: float) -> VerifiedPid:
        """Verify one SD-JWT VC presentation of a PID (module docstring, step 2).

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
            self.trust.check_chain(chain, now)
        except TrustProblem as problem:
            raise PresentationRefused(problem.check, problem.description) from None
        issuer_key = JWK.from_pyca(chain[0].public_key())
        try:
            sd_jwt = SDJWTVerifier(presentation, lambda _iss, _header: issuer_key)
            claims = dict(sd_jwt.get_verified_payload())
        except Exception as exc:  # noqa: BLE001 - the library raises plain exceptions for every defect
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
        self._check_validity(claims, now)
        kb_claims = self._check_key_binding(kb_jwt, claims, presentation[: -len(kb_jwt)], nonce, now)
        missing = [str(path[0]) for path in REQUIRED_CLAIMS if not _has_path(claims, path)]
        if missing:
            raise PresentationRefused("claims", f"the presentation lacks required claim(s) {', '.join(missing)} "
                                                "(the verifier enforces its DCQL query, OpenID4VP §8.6)")
        try:
            self.trust.check_status(claims.get("status"), chain[0], now)
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

    @staticmethod
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

    def _check_key_binding(self, kb_jwt: str, claims: dict[str, Any], bound: str, nonce: str, now: float) -> dict[str, Any]:
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
        if kb.get("aud") != self.client_id:
            raise PresentationRefused("aud", f"the key-binding JWT is addressed to {kb.get('aud')!r}, not to this "
                                             f"verifier {self.client_id!r}")
        expected = _b64url(hashlib.sha256(bound.encode("ascii")).digest())
        if kb.get("sd_hash") != expected:
            raise PresentationRefused("sd_hash", "the key-binding JWT's sd_hash does not match the presented PID and "
                                                 "disclosures")
        return {"header": header, "claims": kb}

    # -- 3. completion -----------------------------------------------------------------------------
    def finish(self, item: Presentation) -> None:
        """Forget a completed presentation (its key and codes)."""
        self.presentations.delete(item.id)


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

