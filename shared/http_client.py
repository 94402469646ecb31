"""Base of the typed HTTP clients between roles (one class per service, one method per endpoint).

:class:`ServiceClient` owns a keep-alive :class:`requests.Session`, applies a bounded timeout to
every call, injects the W3C trace context (``traceparent``) of the current span so that one
transaction is one trace across the roles, and turns failures into our own errors:

* no answer (refused, reset, timed out) → :class:`~shared.errors.UpstreamUnavailable` (503)
  naming the role and the flow step;
* an answer that broke off (truncated body) or cannot be read → :class:`~shared.errors.UpstreamAnswerBroken`
  (502), also naming role and step;
* error answers → :class:`~shared.errors.UpstreamError` carrying the other role's
  ``error``/``error_description``.

Keep-alive without races: the services' gunicorn keeps an idle connection open for
:data:`SERVER_KEEPALIVE_SECONDS`; this client closes a pooled connection that has been idle for
more than :data:`CLIENT_MAX_IDLE_SECONDS` (well inside that) instead of reusing it, so a reuse
does not meet the server's idle close. Should a reused connection still be reset (the server
restarted, or closed it just as it was reused), a request that is safe to repeat is sent once more
on a new connection: GET, HEAD, OPTIONS, PUT and DELETE, and a POST only when its caller says it
is idempotent (an internal POST that carries a request id the server deduplicates, like the CA's
issuance). Nothing else is ever retried: a signature is never sent twice.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Mapping
from typing import Any

import requests
from opentelemetry import propagate
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from shared.errors import UpstreamAnswerBroken, UpstreamError, UpstreamUnavailable
from shared.flow import FlowStep, Role

__all__ = ["CLIENT_MAX_IDLE_SECONDS", "IDEMPOTENT_METHODS", "SERVER_KEEPALIVE_SECONDS", "ServiceClient",
           "new_session"]

log = logging.getLogger(__name__)

SERVER_KEEPALIVE_SECONDS = 75
"""How long the services (gunicorn ``--keep-alive``) keep an idle keep-alive connection open."""
CLIENT_MAX_IDLE_SECONDS = 30
"""A pooled connection idle longer than this is closed, not reused (less than the server's keep-alive)."""
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
"""Methods repeated once after the reset of a reused connection (RFC 9110 idempotent methods)."""

_reuse = threading.local()
"""Whether the connection the current thread just took from a pool was a reused one."""


class _IdleLimitedPool(HTTPConnectionPool):
    """A urllib3 pool that drops connections idle longer than :data:`CLIENT_MAX_IDLE_SECONDS` and
    tells the current thread whether the connection it hands out is a reused one."""

    def _get_conn(self, timeout: float | None = None) -> Any:
        conn = super()._get_conn(timeout)
        idle_since = getattr(conn, "_signlab_idle_since", None)
        # sock: on urllib3's HTTPConnection, not on the BaseHTTPConnection protocol it is typed as
        if idle_since is not None and getattr(conn, "sock", None) is not None and time.monotonic() - idle_since > CLIENT_MAX_IDLE_SECONDS:
            conn.close()  # reconnects on use
        _reuse.reused = getattr(conn, "sock", None) is not None
        return conn

    def _put_conn(self, conn: Any) -> None:
        if conn is not None:
            conn._signlab_idle_since = time.monotonic()
        super()._put_conn(conn)


class _IdleLimitedHttpsPool(_IdleLimitedPool, HTTPSConnectionPool):
    pass


class _Adapter(HTTPAdapter):
    """requests' adapter with the idle-limited pools."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _IdleLimitedPool, "https": _IdleLimitedHttpsPool}


def new_session() -> requests.Session:
    """A session for calls between the roles: idle-limited keep-alive pools, and no proxy or
    ``.netrc`` lookup from the environment (the base URLs are configured; requests does both on
    every request otherwise)."""
    session = requests.Session()
    session.trust_env = False
    for prefix in ("http://", "https://"):
        session.mount(prefix, _Adapter())
    return session


class ServiceClient:
    """Calls one other role over HTTP.

    :param base_url: the other service's base URL.
    :param timeout: seconds to wait for a connection and for each read.
    :param session: a session to share (connection pooling); a new one (:func:`new_session`) by default.
    """

    role: Role = Role.SCASP
    """The role this client calls; subclasses set it."""

    def __init__(self, base_url: str, *, timeout: float = 10.0, session: requests.Session | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = session if session is not None else new_session()

    def request(
        self,
        method: str,
        path: str,
        *,
        step: FlowStep | None = None,
        headers: Mapping[str, str] | None = None,
        expected: tuple[int, ...] = (200,),
        idempotent: bool | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        """Send one request and return the response when its status is in ``expected``.

        :param path: path below the base URL, or an absolute URL.
        :param step: the flow step this call belongs to; named in errors.
        :param idempotent: safe to send twice (default: by method, see :data:`IDEMPOTENT_METHODS`);
            pass True for a POST the server deduplicates by a request id in it.
        :raises UpstreamUnavailable: no answer (connection failure or timeout).
        :raises UpstreamAnswerBroken: the answer broke off or could not be read.
        :raises UpstreamError: an answer with another status.
        """
        url = path if path.startswith(("http://", "https://")) else f"{self.base_url}/{path.lstrip('/')}"
        outgoing = dict(headers or {})
        propagate.inject(outgoing)  # W3C traceparent of the current span (a no-op without tracing)
        repeatable = method.upper() in IDEMPOTENT_METHODS if idempotent is None else idempotent
        for attempt in (1, 2):
            _reuse.reused = False
            try:
                response = self.session.request(method, url, headers=outgoing, timeout=self.timeout, **kwargs)
                break
            except requests.Timeout:
                raise UpstreamUnavailable(self.role, f"no answer from {url} within {self.timeout:g} s",
                                          step=step) from None
            except requests.ConnectionError as exc:
                if attempt == 1 and repeatable and _reuse.reused:
                    log.info("%s %s: the reused connection was closed (%s); sending it once more on a new one",
                             method, url, _reason(exc))
                    continue
                raise UpstreamUnavailable(self.role, _no_answer(url, exc), step=step) from None
            except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError) as exc:
                raise UpstreamAnswerBroken(self.role, f"{method} {url}: the body ended early or is garbled "
                                           f"({_reason(exc)})", step=step) from None
            except requests.RequestException as exc:
                raise UpstreamAnswerBroken(self.role, f"{method} {url}: {exc.__class__.__name__}", step=step) from None
        if response.status_code not in expected:
            error, description = _error_fields(response)
            raise UpstreamError(self.role, error, description, response.status_code, step=step)
        return response

    def request_json(self, method: str, path: str, *, step: FlowStep | None = None, **kwargs: Any) -> Any:
        """:meth:`request`, then the JSON body of the answer.

        :raises UpstreamAnswerBroken: the answer is not JSON.
        """
        response = self.request(method, path, step=step, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise UpstreamAnswerBroken(self.role, f"{method} {response.url}: expected JSON, got "
                                       f"{response.headers.get('Content-Type') or 'no content type'}",
                                       step=step) from None

    def close(self) -> None:
        """Close the pooled connections."""
        self.session.close()


def _error_fields(response: requests.Response) -> tuple[str, str]:
    """The ``error`` and ``error_description`` of an error answer, or stand-ins from the status."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return body["error"], str(body.get("error_description") or "")
    text = response.text.strip().splitlines()[0][:200] if response.text.strip() else response.reason or ""
    return "http_" + str(response.status_code), text


def _no_answer(url: str, exc: requests.ConnectionError) -> str:
    """What happened to a request that got no answer: no connection, or a connection that closed."""
    reason = _reason(exc)
    text = str(exc)
    if "NewConnectionError" in text or "Failed to resolve" in text or reason in ("connection refused",
                                                                                  "name or service not known"):
        return f"cannot connect to {url} ({reason})"
    return f"the connection to {url} closed without an answer ({reason})"


def _reason(exc: requests.RequestException) -> str:
    text = str(exc)
    incomplete = re.search(r"IncompleteRead\(([^)]*)\)", text)
    if incomplete:
        return incomplete.group(1)  # "10 bytes read, 90 more expected"
    for marker in ("Connection refused", "Name or service not known", "Connection reset", "Remote end closed",
                   "Broken pipe", "IncompleteRead", "Max retries exceeded"):
        if marker in text:
            return marker.lower()
    return exc.__class__.__name__
