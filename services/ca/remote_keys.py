"""JWKS the TSP fetches from other roles: the signing service's (client assertions) and the IdP's.

:class:`RemoteJwks` fetches a JWKS URL when first needed, reuses it for ``cache_seconds``, and
refetches once when a token names a ``kid`` it does not know (key rotation), so a forged ``kid``
costs at most one extra fetch per call. The IdP's JWKS URL comes from its OIDC discovery document.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from shared.errors import UpstreamError
from shared.flow import Role, step
from shared.http_client import ServiceClient

__all__ = ["JsonClient", "RemoteJwks", "idp_jwks_url"]


class JsonClient(ServiceClient):
    """GETs JSON objects from any URL of one role (errors name the role and step 7)."""

    def __init__(self, role: Role, timeout: float) -> None:
        super().__init__("", timeout=timeout)
        self.role = role

    def get_json(self, url: str) -> dict:  # type: ignore[type-arg]
        """GET ``url`` and return its JSON object."""
        response = self.request("GET", url, step=step(7), headers={"Accept": "application/json"})
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise UpstreamError(self.role, "invalid_response", f"{url} did not answer a JSON object", response.status_code,
                                step=step(7))
        return body


def idp_jwks_url(idp_url: str, client: Callable[[str], dict]) -> str:  # type: ignore[type-arg]
    """The ``jwks_uri`` of the IdP's OIDC discovery document."""
    discovery = client(f"{idp_url.rstrip('/')}/.well-known/openid-configuration")
    uri = discovery.get("jwks_uri")
    if not isinstance(uri, str) or not uri:
        raise UpstreamError(Role.IPSP, "invalid_response", "the discovery document has no jwks_uri", 200, step=step(7))
    return uri


class RemoteJwks:
    """A JWKS fetched over HTTP, cached, refetched on an unknown ``kid``.

    :param url: the JWKS URL, or a callable resolving it (e.g. through OIDC discovery).
    :param role: the role that publishes it (named in errors).
    """

    def __init__(self, url: str | Callable[[], str], role: Role, *, cache_seconds: int = 300,
                 timeout: float = 10.0) -> None:
        self._url = url
        self._client = JsonClient(role, timeout)
        self.role = role
        self.cache_seconds = cache_seconds
        self._keys: KeySet | None = None
        self._fetched_at = 0.0
        self._lock = threading.Lock()

    def _fetch(self) -> KeySet:
        url = self._url() if callable(self._url) else self._url
        body = self._client.get_json(url)
        try:
            keys = KeySet.import_key_set(body)  # type: ignore[arg-type]
        except (JoseError, ValueError, KeyError, TypeError) as exc:
            raise UpstreamError(self.role, "invalid_response", f"{url} is not a usable JWKS ({exc})", 200,
                                step=step(7)) from None
        self._keys, self._fetched_at = keys, time.monotonic()
        return keys

    def key_set_for(self, token: str) -> KeySet:
        """The key set to verify ``token`` with: cached, or refetched when stale or the kid is unknown."""
        try:
            kid = jws.extract_compact(token.encode("ascii")).protected.get("kid")
        except (JoseError, ValueError, UnicodeError):
            kid = None  # let the verifier report the malformed token
        with self._lock:
            keys = self._keys
            fresh = keys is not None and time.monotonic() - self._fetched_at < self.cache_seconds
            if keys is None or not fresh or (kid is not None and kid not in [k.kid for k in keys.keys]):
                keys = self._fetch()
            return keys
