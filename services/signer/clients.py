"""The partner portals (OAuth2 clients) registered with the SSASP, and how they authenticate.

Clients are registered by configuration (``SIGNLAB_SIGNER_PORTAL_*``). At the PAR, token and
revocation endpoints a client authenticates with its secret, sent as HTTP Basic
(``client_secret_basic``) or in the form (``client_secret_post``); the HTTP layer reads either
(``services.signer.http._client_credentials``) and :meth:`ClientRegistry.authenticate` checks
it, in constant time, with a lock-out against guessing.

**Seam: another client-authentication method** (for example ``private_key_jwt``, RFC 7523, for
the portal): the HTTP layer reads the assertion next to the secret; :class:`Client` gains the key
(or JWKS URL) it is checked against and a method beside :meth:`Client.authenticate`, reusing
:func:`shared.client_assertion.verify_client_assertion`; :meth:`ClientRegistry.authenticate`
picks the method the client is registered for, and the authorization server metadata
(``token_endpoint_auth_methods_supported`` in ``http.py``) names it.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field

from pydantic import SecretStr

from services.signer.settings import SignerSettings
from shared.audit import AuditLog
from shared.errors import InvalidClient
from shared.throttle import FailureThrottle

__all__ = ["Client", "ClientRegistry"]


@dataclass(frozen=True)
class Client:
    """A partner portal registered by configuration."""

    client_id: str
    secret: SecretStr = field(repr=False)
    redirect_uris: tuple[str, ...]
    name: str
    qualifiers: tuple[str, ...]

    def authenticate(self, secret: str | None) -> None:
        """Check the client secret in constant time.

        :raises InvalidClient: missing or wrong secret.
        """
        if not secret or not hmac.compare_digest(secret.encode(), self.secret.get_secret_value().encode()):
            raise InvalidClient("client authentication failed (client_secret_basic or client_secret_post)")


class ClientRegistry:
    """The registered clients, their authentication and its lock-out.

    :param settings: the signer's settings (the portal's registration, lock-out limits).
    :param audit: the hash-chained audit log (refusals and locks are recorded).
    """

    def __init__(self, settings: SignerSettings, audit: AuditLog) -> None:
        self.audit = audit
        self._clients = {
            settings.portal_client_id: Client(
                settings.portal_client_id, settings.portal_client_secret, tuple(settings.portal_redirect_uris),
                settings.portal_name, tuple(settings.portal_qualifiers)),
        }
        self.throttle = FailureThrottle(settings.client_lockout_failures, settings.client_lockout_seconds)

    def client(self, client_id: str | None) -> Client:
        """The registered client ``client_id``.

        :raises InvalidClient: unknown client.
        """
        client = self._clients.get(client_id or "")
        if client is None:
            raise InvalidClient(f"unknown client_id {str(client_id)[:64]!r}")
        return client

    def authenticate(self, client_id: str | None, secret: str | None, peer: str = "") -> Client:
        """Authenticate a client (Basic or POST credentials); audit and raise on failure.

        Brute force: after ``client_lockout_failures`` failures of one client id from one address
        within ``client_lockout_seconds``, that pair is refused (429) until the window has passed.
        """
        key = f"{str(client_id)[:64]}@{peer}"
        locked = self.throttle.locked_for(key) if client_id else 0.0
        if locked:
            self.audit.append("client.locked", client_id=str(client_id)[:64], seconds=round(locked))
            raise InvalidClient(f"client authentication is locked for {locked:.0f} s after "
                                f"{self.throttle.limit} failed attempts", status=429)
        try:
            client = self.client(client_id)
            client.authenticate(secret)
        except InvalidClient as exc:
            if client_id:
                self.throttle.failed(key)
            self.audit.append("client.refused", client_id=str(client_id)[:64], reason=exc.description)
            raise
        return client
