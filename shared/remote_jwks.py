"""JWKS a service fetches from another role to verify its signed tokens.

The TSP verifies the signing service's client assertions (step 7) and the IdP's ID tokens; the
signing service verifies the partner portal's client assertions (``private_key_jwt``, steps 2
and 5). :class:`RemoteJwks` fetches a JWKS URL when first needed (or ahead, :meth:`RemoteJwks.prefetch`),
reuses it for ``cache_seconds`` (then refreshes it in the background while still using it), and
refetches once when a token names a ``kid`` it does not know (key rotation), so a forged ``kid``
costs at most one extra fetch per call. The IdP's JWKS URL comes from its OIDC discovery document.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from shared.errors import UpstreamError, UpstreamUnavailable
from shared.flow import FlowStep, Role
from shared.http_client import ServiceClient

__all__ = ["JsonClient", "RemoteJwks", "idp_jwks_url"]

log = logging.getLogger(__name__)


class JsonClient(ServiceClient):
    """GETs JSON objects from any URL of one role (errors name the role and the flow step).

    :param step: the flow step the fetches serve (the TSP's are at step 7).
    """

    def __init__(self, role: Role, timeout: float, step: FlowStep | None = None) -> None:
        super().__init__("", timeout=timeout)
        self.role = role
        self.step = step

    def get_json(self, url: str) -> dict[str, Any]:
        """GET ``url`` and return its JSON object."""
        response = self.request("GET", url, step=self.step, headers={"Accept": "application/json"})
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise UpstreamError(self.role, "invalid_response", f"{url} did not answer a JSON object", response.status_code,
                                step=self.step)
        return body


def idp_jwks_url(idp_url: str, client: JsonClient) -> str:
    """The ``jwks_uri`` of the IdP's OIDC discovery document (fetched with ``client``)."""
    discovery = client.get_json(f"{idp_url.rstrip('/')}/.well-known/openid-configuration")
    uri = discovery.get("jwks_uri")
    if not isinstance(uri, str) or not uri:
        raise UpstreamError(Role.IPSP, "invalid_response", "the discovery document has no jwks_uri", 200,
                            step=client.step)
    return uri


class RemoteJwks:
    """A JWKS fetched over HTTP, cached, refetched on an unknown ``kid``.

    Freshness: within ``cache_seconds`` of a fetch the keys are used as they are. After that, a
    token whose ``kid`` is among the known keys is verified with them while one background
    thread refetches (stale-while-revalidate), for at most another ``cache_seconds``; later, or
    for an unknown ``kid``, or when nothing was fetched yet, the caller fetches and waits.
    Why: the JWKS owner may be the very service waiting for this answer — the signing service
    calls the TSP from its request threads, and a TSP that refetched the signer's JWKS
    synchronously while all those threads waited on it stalled every issuance until the fetch
    timed out. ``cache_seconds=0`` keeps the strict form: every call fetches.

    :param url: the JWKS URL, or a callable resolving it (e.g. through OIDC discovery).
    :param role: the role that publishes it (named in errors).
    :param step: the flow step the keys are needed at (named in errors).
    """

    def __init__(self, url: str | Callable[[], str], role: Role, *, cache_seconds: int = 300,
                 timeout: float = 10.0, step: FlowStep | None = None) -> None:
        self._url = url
        self._client = JsonClient(role, timeout, step)
        self.role = role
        self.cache_seconds = cache_seconds
        self._keys: KeySet | None = None
        self._kids: frozenset[str | None] = frozenset()
        self._fetched_at = 0.0
        self._lock = threading.Lock()
        self._refreshing = False
        self._refresh_failed_at = -1e9

    def _download(self) -> KeySet:
        """Fetch and import the key set (no lock needed; nothing is kept)."""
        url = self._url() if callable(self._url) else self._url
        body = self._client.get_json(url)
        try:
            return KeySet.import_key_set(body)  # type: ignore[arg-type]
        except (JoseError, ValueError, KeyError, TypeError) as exc:
            raise UpstreamError(self.role, "invalid_response", f"{url} is not a usable JWKS ({exc})", 200,
                                step=self._client.step) from None

    def _keep(self, keys: KeySet) -> KeySet:
        """Make ``keys`` the cached key set, fetched now (called with the lock held)."""
        self._keys, self._kids, self._fetched_at = keys, frozenset(k.kid for k in keys.keys), time.monotonic()
        return keys

    def _fetch(self) -> KeySet:
        return self._keep(self._download())

    def key_set_for(self, token: str) -> KeySet:
        """The key set to verify ``token`` with: cached, or refetched when stale or the kid is unknown."""
        try:
            kid = jws.extract_compact(token.encode("ascii")).protected.get("kid")
        except (JoseError, ValueError, UnicodeError):
            kid = None  # let the verifier report the malformed token
        with self._lock:
            keys = self._keys
            if keys is not None and (kid is None or kid in self._kids) and self.cache_seconds > 0:
                age = time.monotonic() - self._fetched_at
                if age < self.cache_seconds:
                    return keys
                if age < 2 * self.cache_seconds:
                    self._refresh_in_background()
                    return keys
            return self._fetch()

    def _refresh_in_background(self) -> None:
        """Start one refetch thread (called with the lock held); after a failed one, wait 5 s."""
        if self._refreshing or time.monotonic() - self._refresh_failed_at < 5:
            return
        self._refreshing = True
        threading.Thread(target=self._refresh, name=f"jwks-refresh-{self.role.value}", daemon=True).start()

    def _refresh(self) -> None:
        try:
            keys = self._download()
        except Exception as exc:
            log.warning("JWKS of the %s not refreshed: %s", self.role.value, exc)
            with self._lock:
                self._refreshing, self._refresh_failed_at = False, time.monotonic()
            return
        with self._lock:
            self._keep(keys)
            self._refreshing = False

    def prefetch(self, *, within_seconds: float = 60.0, interval: float = 1.0) -> threading.Thread | None:
        """Fetch the keys in a background thread, retrying until it works or ``within_seconds``
        pass (the owner may start after this service), so the first token does not have to wait
        for the fetch. Nothing happens with ``cache_seconds=0``. Returns the thread, if started.
        """
        if self.cache_seconds <= 0:
            return None

        def run() -> None:
            deadline = time.monotonic() + within_seconds
            while time.monotonic() < deadline:
                with self._lock:
                    if self._keys is not None:
                        return
                    try:
                        self._fetch()
                        return
                    except (UpstreamError, UpstreamUnavailable):
                        pass
                time.sleep(interval)

        thread = threading.Thread(target=run, name=f"jwks-prefetch-{self.role.value}", daemon=True)
        thread.start()
        return thread
