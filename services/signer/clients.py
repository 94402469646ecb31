"""The partner portals (OAuth2 clients) registered with the SSASP, and how they authenticate.

Clients are registered by configuration. At the PAR, token and revocation endpoints a client
authenticates with the one method it is registered for (RFC 6749 §2.3: one method per request):

* **the partner portal** (``SIGNLAB_SIGNER_PORTAL_*``): ``private_key_jwt`` (RFC 7523 §2.2) — a
  short-lived JWT (``iss`` = ``sub`` = its client id, ``aud`` = this authorization server's issuer
  identifier or the endpoint's URL, ``exp``, single-use ``jti``) signed by the portal's key and
  checked against the portal's published JWKS (``PORTAL_JWKS_URL``), with
  :func:`shared.client_assertion.verify_client_assertion`, the same check the TSP makes of this
  service's assertions. There is no secret to guess, so nothing about it can be locked out.
* **further partners** (``SIGNLAB_SIGNER_PARTNER_CLIENTS``): a client secret, as HTTP Basic
  (``client_secret_basic``) or in the form (``client_secret_post``), compared in constant time.
  Wrong secrets are throttled by a :class:`shared.guard.SecretGuard` of that client: after
  ``client_lockout_failures`` wrong secrets from one address within ``client_lockout_seconds``
  that address is refused (429, whatever it presents) until the window has passed. The lock is
  per client: five wrong secrets presented for the portal's client id are refused (it never
  accepts a secret) without locking anything, so a guesser on the lab's shared loopback address
  cannot lock the portal out.

The HTTP layer reads the presented credentials (``services.signer.http._client_credentials``);
:meth:`ClientRegistry.authenticate` picks the check; every refusal is audited (``client.refused``,
``client.locked``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from services.signer.settings import SignerSettings
from shared.audit import AuditLog
from shared.client_assertion import CLIENT_ASSERTION_TYPE, ReplayCache, verify_client_assertion
from shared.errors import InvalidClient, InvalidRequest
from shared.flow import Role, step
from shared.guard import SecretGuard, TooManyAttempts
from shared.remote_jwks import RemoteJwks

__all__ = ["PRIVATE_KEY_JWT", "CLIENT_SECRET", "Client", "ClientCredentials", "ClientRegistry"]

PRIVATE_KEY_JWT = "private_key_jwt"
"""RFC 7523 client assertions signed by the client's key (the portal's method)."""
CLIENT_SECRET = "client_secret_basic"  # noqa: S105 - the authentication method's name, not a secret
"""A client secret, as HTTP Basic (``client_secret_basic``) or in the form (``client_secret_post``)."""

KeySource = Callable[[str], KeySet]
"""The key set a client assertion is verified with (``RemoteJwks.key_set_for``)."""


@dataclass(frozen=True)
class ClientCredentials:
    """What a request presented to authenticate its client (any of them may be missing)."""

    client_id: str | None = None
    secret: str | None = field(default=None, repr=False)
    assertion_type: str | None = None
    assertion: str | None = field(default=None, repr=False)

    @property
    def claimed_client_id(self) -> str | None:
        """The client id sent, or else the (unverified) ``sub`` of the assertion (RFC 7523 §3)."""
        if self.client_id or not self.assertion:
            return self.client_id
        try:
            claims = json.loads(jws.extract_compact(self.assertion.encode("ascii")).payload)
        except (JoseError, ValueError, UnicodeError):
            return None
        subject = claims.get("sub") if isinstance(claims, dict) else None
        return subject if isinstance(subject, str) else None


@dataclass(frozen=True)
class Client:
    """A partner registered by configuration.

    :ivar auth_method: :data:`PRIVATE_KEY_JWT` or :data:`CLIENT_SECRET`.
    :ivar guard: the secret and its throttle (secret clients only).
    :ivar keys: where its assertion keys come from (``private_key_jwt`` clients only).
    """

    client_id: str
    redirect_uris: tuple[str, ...]
    name: str
    qualifiers: tuple[str, ...]
    auth_method: str = PRIVATE_KEY_JWT
    guard: SecretGuard | None = field(default=None, repr=False, compare=False)
    keys: KeySource | None = field(default=None, repr=False, compare=False)


class ClientRegistry:
    """The registered clients and their authentication.

    :param settings: the signer's settings (registrations, lock-out limits).
    :param audit: the hash-chained audit log (refusals and locks are recorded).
    :param portal_keys: the portal's assertion keys; default: its JWKS at ``portal_jwks_url``,
        fetched ahead in the background and cached (refetched for an unknown ``kid``).
    """

    def __init__(self, settings: SignerSettings, audit: AuditLog, portal_keys: KeySource | None = None) -> None:
        self.audit = audit
        self.issuer = settings.base_url
        self.replay_cache = ReplayCache()
        self.portal_jwks: RemoteJwks | None = None
        """The portal's JWKS when fetched from its URL: the app fetches it ahead (the portal's request
        threads wait on this service during PAR, so a first fetch inside a PAR could find none of
        them free to serve the JWKS: at concurrency 8 every first PAR timed out at step 2)."""
        if portal_keys is None:
            self.portal_jwks = RemoteJwks(settings.portal_jwks_url, Role.SCASP, timeout=settings.http_timeout_seconds,
                                          step=step(2))
            portal_keys = self.portal_jwks.key_set_for
        self._clients = {
            settings.portal_client_id: Client(settings.portal_client_id, tuple(settings.portal_redirect_uris),
                                              settings.portal_name, tuple(settings.portal_qualifiers),
                                              PRIVATE_KEY_JWT, keys=portal_keys),
        }
        for partner in settings.partner_clients:
            guard = SecretGuard(partner.client_secret, f"client authentication of {partner.client_id}",
                                limit=settings.client_lockout_failures, window=settings.client_lockout_seconds)
            self._clients[partner.client_id] = Client(partner.client_id, tuple(partner.redirect_uris), partner.name,
                                                      tuple(partner.qualifiers), CLIENT_SECRET, guard=guard)

    def client(self, client_id: str | None) -> Client:
        """The registered client ``client_id``.

        :raises InvalidClient: unknown client.
        """
        client = self._clients.get(client_id or "")
        if client is None:
            raise InvalidClient(f"unknown client_id {str(client_id)[:64]!r}")
        return client

    @property
    def auth_methods(self) -> list[str]:
        """The token-endpoint authentication methods of the registered clients (RFC 8414 metadata)."""
        methods = {c.auth_method for c in self._clients.values()}
        return [PRIVATE_KEY_JWT] * (PRIVATE_KEY_JWT in methods) + (
            ["client_secret_basic", "client_secret_post"] if CLIENT_SECRET in methods else [])

    def authenticate(self, presented: ClientCredentials, peer: str = "", *, endpoint: str = "") -> Client:
        """Authenticate a client by the method it is registered for; audit and raise on failure.

        :param peer: the caller's address (the secret guard counts wrong secrets per address).
        :param endpoint: the URL that was called (an accepted assertion ``aud`` besides the issuer).
        :raises InvalidRequest: two methods at once, or a malformed assertion type (400).
        :raises InvalidClient: unknown client, wrong method, wrong secret, rejected assertion (401).
        :raises TooManyAttempts: this secret client is locked for this address (429).
        """
        client_id = presented.claimed_client_id
        try:
            if presented.secret is not None and (presented.assertion or presented.assertion_type):
                raise InvalidRequest("use one client authentication method per request (RFC 6749 §2.3)",
                                     error="invalid_request")
            client = self.client(client_id)
            if client.auth_method == PRIVATE_KEY_JWT:
                self._check_assertion(client, presented, endpoint)
            else:
                self._check_secret(client, presented, peer)
        except TooManyAttempts as exc:
            self.audit.append("client.locked", client_id=str(client_id)[:64], seconds=exc.retry_after)
            raise
        except (InvalidClient, InvalidRequest) as exc:
            self.audit.append("client.refused", client_id=str(client_id)[:64], reason=exc.description)
            raise
        return client

    def _check_assertion(self, client: Client, presented: ClientCredentials, endpoint: str) -> None:
        """RFC 7523: a JWT of this client, for this server, unexpired, not replayed."""
        if presented.secret is not None or not presented.assertion:
            raise InvalidClient(f"client {client.client_id!r} authenticates with private_key_jwt (an RFC 7523 "
                                "client assertion); it never uses a client secret")
        if presented.assertion_type != CLIENT_ASSERTION_TYPE:
            raise InvalidClient(f"client_assertion_type must be {CLIENT_ASSERTION_TYPE}")
        if client.keys is None:
            raise InvalidClient(f"client {client.client_id} has no registered keys for its client assertions")
        audiences: Sequence[str] = [self.issuer, f"{self.issuer}/oauth2/token", *([endpoint] if endpoint else [])]
        verify_client_assertion(presented.assertion, client.keys(presented.assertion), client_id=client.client_id,
                                audience=audiences, replay_cache=self.replay_cache)

    @staticmethod
    def _check_secret(client: Client, presented: ClientCredentials, peer: str) -> None:
        """The client's secret, in constant time; wrong ones are counted per address."""
        if client.guard is None:
            raise InvalidClient(f"client {client.client_id} has no client secret registered")
        if presented.assertion:
            raise InvalidClient(f"client {client.client_id!r} authenticates with a client secret "
                                "(client_secret_basic or client_secret_post)")
        if not client.guard.matches(presented.secret, peer):
            raise InvalidClient("client authentication failed (client_secret_basic or client_secret_post)")
