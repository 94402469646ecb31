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
   presentation, §8.1) and verifies it (:func:`services.idp.pid_presentation.verify_pid`: the
   SD-JWT VC and its issuer's trust chain, the key binding to this request's ``nonce`` and this
   verifier, the claims the DCQL query asks for, the status list entry).

   The response endpoint answers 200 with JSON (§8.2) — with a ``redirect_uri`` carrying a fresh
   ``response_code`` in the same-device flow — also when it refused the presentation; the refusal
   is recorded and the browser, back at the IdP, is sent to the client with ``access_denied``.
3. **Identity** — the verified PID names the person (:func:`services.idp.pid_presentation.identify`:
   the population register's person, not deceased); the OIDC login completes with the means
   ``eudi-wallet`` (LoA high): the ID token says which means and level were used.

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

import hmac
import json
import secrets
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from joserfc import jwe, jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey

from services.idp.authn import Authentication
from services.idp.errors import AuthorizationRefused
from services.idp.pid_presentation import REQUIRED_CLAIMS, PresentationRefused, VerifiedPid, verify_pid
from services.idp.wallet_trust import TrustedPidProviders
from shared.clients.wallet import PidProviderClient
from shared.clock import LabClock, lab_clock
from shared.eudi import (
    PID_VCT,
    REQUEST_OBJECT_TYPE,
    SD_JWT_VC_FORMAT,
    SELF_ISSUED_AUDIENCE,
    X5C_JWS,
    x509_hash_client_id,
)
from shared.lab_pki import load_or_create_pair

__all__ = ["QUERY_ID", "Presentation", "Verifier"]

QUERY_ID = "pid"
"""The ``id`` of the one credential query (the key of ``vp_token``)."""
ENCRYPTION_VALUES = ["A128GCM", "A256GCM"]


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

    def __init__(self, path: Path, clock: LabClock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS presentations (id TEXT PRIMARY KEY, expires REAL NOT NULL, "
                         "data TEXT NOT NULL)")

    def put(self, item: Presentation, keep_until: float) -> None:
        with self._lock:
            self._db.execute("DELETE FROM presentations WHERE expires < ?", (self._clock.time(),))
            self._db.execute("INSERT OR REPLACE INTO presentations VALUES (?, ?, ?)",
                             (item.id, keep_until, json.dumps(asdict(item))))

    def get(self, presentation_id: str) -> Presentation | None:
        with self._lock:
            row = self._db.execute("SELECT expires, data FROM presentations WHERE id = ?", (presentation_id,)).fetchone()
        if row is None or row[0] < self._clock.time():
            return None
        return Presentation(**json.loads(row[1]))

    def delete(self, presentation_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM presentations WHERE id = ?", (presentation_id,))

    def close(self) -> None:
        with self._lock:
            self._db.close()


class Verifier:
    """The IdP's OpenID4VP verifier: its certificate, its presentations, its checks.

    :param directory: ``<data_dir>/openid4vp`` (verifier key and certificate, pinned list operator,
        presentations).
    :param issuer: the IdP's base URL (request and response URIs, reached by the wallet).
    :param browser_url: the IdP's browser-facing base URL (the same-device return URL).
    :param wallet_url: the wallet's same-device link base.
    :param clock: the time (the lab clock by default).
    """

    def __init__(self, directory: Path, *, issuer: str, browser_url: str, wallet_url: str, trusted_list_url: str,
                 wait_seconds: int, timeout: float, clock: LabClock | None = None) -> None:
        self.clock = clock or lab_clock()
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.certificate = load_or_create_pair(directory, "verifier", "SignLab eID provider (IPSP), OpenID4VP verifier (lab)")
        self.client_id = x509_hash_client_id(self.certificate.der)
        self.issuer = issuer.rstrip("/")
        self.browser_url = browser_url.rstrip("/")
        self.wallet_url = wallet_url.rstrip("/")
        self.wait_seconds = wait_seconds
        self.trust = TrustedPidProviders(trusted_list_url, directory, PidProviderClient(timeout=timeout), clock=self.clock)
        self.presentations = _Presentations(directory / "presentations.sqlite3", self.clock)

    def close(self) -> None:
        """Release the database."""
        self.presentations.close()

    # -- 1. the request ---------------------------------------------------------------------------
    def start(self, rid: str, mode: str, *, browser: str, purpose: str, wait: float | None = None,
              now: float | None = None) -> Presentation:
        """A new presentation request for the login ``rid`` (module docstring, step 1); the
        ``response_code`` that will prove the same-device return is made now, handed out only in
        the response endpoint's answer to the wallet."""
        current = self.clock.time() if now is None else now
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
        current = self.clock.time() if now is None else now
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
        current = self.clock.time() if now is None else now
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
        """Verify one SD-JWT VC presentation of a PID for this verifier (:func:`verify_pid`)."""
        return verify_pid(presentation, nonce=nonce, now=now, audience=self.client_id, trust=self.trust)

    # -- 3. completion -----------------------------------------------------------------------------
    def finish(self, item: Presentation) -> None:
        """Forget a completed presentation (its key and codes)."""
        self.presentations.delete(item.id)

