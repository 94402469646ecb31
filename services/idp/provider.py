"""The IdP's domain core (no Flask): clients, catalogue, keys, state, ID tokens, userinfo, failures,
discovery metadata and the debugger's masked event log.

One :class:`IdpCore` per app (``app.extensions["signlab.idp"]``); the authlib glue
(:mod:`services.idp.oauth2`) and the views (:mod:`services.idp.http`) call it.
"""

from __future__ import annotations

import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from services.idp.authn import LoginOutcome
from services.idp.catalogue import Catalogue, load_catalogue
from services.idp.errors import AdminUnauthorized
from services.idp.failures import FAILURES, Failure
from services.idp.keys import KeyRing
from services.idp.settings import IdpSettings
from services.idp.store import IdpStore
from services.idp.tokens import IdTokenMinter, IssuedIdToken, identity_claims
from shared.clock import LabClock, lab_clock
from shared.errors import InvalidToken
from shared.flow import step
from shared.guard import SecretGuard, bearer_token
from shared.identity import LOA_HIGH, LOA_LOW, LOA_SUBSTANTIAL
from shared.personal_data import mask_personal_data

__all__ = ["IdpCore", "RegisteredClient", "load_or_create_session_secret", "mask"]

SUPPORTED_SCOPES = ("openid", "profile")
CLAIMS_SUPPORTED = (
    "iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "at_hash", "txn",
    "given_name", "family_name", "birthdate", "age_over_18", "nationalities", "signlab_eid",
    "signlab_person_id", "eidas_person_identifier", "verified_claims",
)


def mask(value: str | None, keep: int = 6) -> str | None:
    """``"abcdef…(43)"``: enough to correlate in the debugger, not enough to use."""
    if value is None:
        return None
    return value if len(value) <= keep else f"{value[:keep]}…({len(value)})"


def _bearer_values_masked(value: Any) -> Any:
    """A debugger event with every ``nonce`` and ``state`` (also inside decoded claims) shortened."""
    if isinstance(value, dict):
        return {k: mask(v) if k in ("nonce", "state") and isinstance(v, str) else _bearer_values_masked(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_bearer_values_masked(v) for v in value]
    return value


def load_or_create_session_secret(path: Path) -> bytes:
    """The key that signs the login-session cookie, created once (mode 0600)."""
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_bytes()
        with os.fdopen(fd, "wb") as handle:
            handle.write(secrets.token_bytes(32))
    return path.read_bytes()


@dataclass(frozen=True)
class RegisteredClient:
    """An OIDC client registered from configuration."""

    client_id: str
    secret: SecretStr
    redirect_uris: tuple[str, ...]
    name: str
    post_logout_redirect_uris: tuple[str, ...] = ()

    def secret_matches(self, candidate: str) -> bool:
        """Constant-time comparison with the registered secret."""
        return hmac.compare_digest(candidate.encode(), self.secret.get_secret_value().encode())


class IdpCore:
    """Everything the IdP knows and does, independent of HTTP."""

    def __init__(self, settings: IdpSettings, catalogue: Catalogue | None = None, clock: LabClock | None = None) -> None:
        self.settings = settings
        self.clock = clock or lab_clock()
        """Where every part of the IdP takes the time (the lab clock; tests give one with a fake time)."""
        self.issuer = settings.base_url
        self.catalogue = catalogue or load_catalogue()
        self.keys = KeyRing(settings.service_dir("keys"), retain=settings.key_retention)
        self.keys.ensure()
        self.store = IdpStore(settings.service_dir() / "idp.sqlite3", event_limit=settings.debugger_events,
                             clock=self.clock)
        self.minter = IdTokenMinter(self.keys, self.issuer, lifetime=settings.id_token_lifetime_seconds, clock=self.clock)
        self.admin_guard = SecretGuard(settings.admin_token, "the IdP admin API")
        clients = [RegisteredClient(settings.signer_client_id, settings.signer_client_secret,
                                    tuple(settings.signer_redirect_uris), settings.signer_client_name,
                                    tuple(settings.signer_post_logout_redirect_uris))]
        clients += [RegisteredClient(c.client_id, c.client_secret, tuple(c.redirect_uris), c.name or c.client_id,
                                     tuple(c.post_logout_redirect_uris)) for c in settings.extra_clients]
        self.clients = {c.client_id: c for c in clients}
        if len(self.clients) != len(clients):
            raise ValueError("SIGNLAB_IDP_EXTRA_CLIENTS repeats a client_id")

    def close(self) -> None:
        """Release the database."""
        self.store.close()

    # -- clients and failures ----------------------------------------------------------------
    def client(self, client_id: str | None) -> RegisteredClient | None:
        """The registered client ``client_id``."""
        return self.clients.get(client_id or "")

    def failures_for_request(self, client_id: str, from_hint: tuple[Failure, ...]) -> tuple[Failure, ...]:
        """The failures attached to one authorization request: the hint's directives plus the
        armed ones (which are consumed by this request)."""
        armed = tuple(Failure(a.name, a.value) for a in self.store.consume_armed(client_id))
        merged: dict[str, Failure] = {f.name: f for f in armed}
        merged.update({f.name: f for f in from_hint})  # the request's own directive wins
        return tuple(merged.values())

    def check_admin(self, authorization: str | None, address: str | None) -> None:
        """Check the admin API's bearer token (``address``: the caller, for the throttle).

        :raises AdminUnauthorized: missing or wrong token.
        :raises shared.guard.TooManyAttempts: too many wrong tokens from ``address``.
        """
        if not self.admin_guard.matches(bearer_token(authorization), address):
            raise AdminUnauthorized()

    # -- tokens --------------------------------------------------------------------------------
    def issue_id_token(self, outcome: LoginOutcome, client_id: str, *, nonce: str | None,
                       access_token: str | None) -> IssuedIdToken:
        """Sign the ID token of a redeemed code (step 5) and record it for the debugger."""
        person = self.catalogue.get_person(outcome.auth.person_id)
        means = self.catalogue.get_means(outcome.auth.means_id)
        if person is None or means is None:  # the catalogue changed between login and redemption
            raise InvalidToken("the person or eID means of this login is no longer in the catalogue", step=step(5))
        issued = self.minter.mint(auth=outcome.auth, person=person, means=means, client_id=client_id, nonce=nonce,
                                  access_token=access_token, min_rank=outcome.min_rank, failures=outcome.failures)
        self.record("id_token", {"client_id": client_id, "header": issued.header, "claims": issued.claims,
                                 "failures": [str(f) for f in outcome.failures if f.spec.stage == "id_token"],
                                 "access_token": mask(access_token)})
        return issued

    def save_access_token(self, token: dict[str, Any], client_id: str, outcome: LoginOutcome) -> None:
        """Remember an access token for the userinfo endpoint."""
        expires = self.clock.time() + int(token.get("expires_in") or self.settings.access_token_lifetime_seconds)
        self.store.put_token(token["access_token"], client_id, expires,
                             {"outcome": outcome.as_dict(), "scope": token.get("scope", "")})

    def userinfo(self, access_token: str) -> dict[str, Any]:
        """The claims for a valid access token.

        :raises InvalidToken: unknown or expired token.
        """
        stored = self.store.get_token(access_token)
        if stored is None:
            raise InvalidToken("the access token is unknown or expired")
        outcome = LoginOutcome.from_dict(stored.data["outcome"])
        person = self.catalogue.get_person(outcome.auth.person_id)
        means = self.catalogue.get_means(outcome.auth.means_id)
        if person is None or means is None:
            raise InvalidToken("the person or eID means of this token is no longer in the catalogue")
        claims = {"sub": person.subject, **identity_claims(person, means, outcome.auth)}
        self.record("userinfo", {"client_id": stored.client_id, "access_token": mask(access_token), "claims": claims})
        return claims

    # -- metadata ------------------------------------------------------------------------------
    def discovery(self) -> dict[str, Any]:
        """OpenID Provider metadata (OIDC Discovery 1.0, RFC 8414, OIDC IA, RP-initiated logout)."""
        base = self.issuer
        browser = self.settings.browser_base_url  # browsers may reach the IdP under another name
        return {
            "issuer": base,
            "authorization_endpoint": f"{browser}/authorize",
            "token_endpoint": f"{base}/token",
            "userinfo_endpoint": f"{base}/userinfo",
            "jwks_uri": f"{base}/.well-known/jwks.json",
            "end_session_endpoint": f"{browser}/logout",
            "scopes_supported": list(SUPPORTED_SCOPES),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
            "acr_values_supported": [LOA_LOW, LOA_SUBSTANTIAL, LOA_HIGH],
            "prompt_values_supported": ["none", "login"],
            "claims_supported": list(CLAIMS_SUPPORTED),
            "claims_parameter_supported": False,
            "request_parameter_supported": False,
            "request_uri_parameter_supported": False,
            "verified_claims_supported": True,
            "trust_frameworks_supported": ["eidas"],
            "evidence_supported": ["electronic_record"],
            "claims_in_verified_claims_supported": ["given_name", "family_name", "birthdate", "nationalities",
                                                    "signlab_person_id", "eidas_person_identifier"],
            "service_documentation": f"{browser}/persons",  # a page for people: browser-facing
            "signlab_login_hint_format": "[signlab:][<person id or national identifier>][@<eID means id>][!<failure>[=<number>]]…",
            "signlab_failures": list(FAILURES),
        }

    # -- debugger ------------------------------------------------------------------------------
    def record(self, kind: str, data: dict[str, Any]) -> None:
        """Append a debugger event (the caller has masked secrets). Nonces and states are kept as
        their first characters; national identifiers and birth dates are masked before they are
        stored unless ``show_personal_data`` is on (docs/design.md §6)."""
        if self.settings.debugger_enabled:
            self.store.record(kind, mask_personal_data(_bearer_values_masked(data), show=self.settings.show_personal_data))
