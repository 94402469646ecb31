"""Base of the typed HTTP clients between roles (one class per service, one method per endpoint).

:class:`ServiceClient` owns a keep-alive :class:`requests.Session`, applies a bounded timeout to
every call, injects the W3C trace context (``traceparent``) of the current span so that one
transaction is one trace across the roles, and turns failures into our own errors:

* transport failures (refused, reset, timed out) → :class:`~shared.errors.UpstreamUnavailable`
  naming the role and the flow step;
* error answers → :class:`~shared.errors.UpstreamError` carrying the other role's
  ``error``/``error_description``.

Subclasses add one method per endpoint that returns typed results. Retries are never automatic:
only the caller knows whether an operation is safe to repeat (a signature never is).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import requests
from opentelemetry import propagate

from shared.errors import UpstreamError, UpstreamUnavailable
from shared.flow import FlowStep, Role

__all__ = ["ServiceClient"]


class ServiceClient:
    """Calls one other role over HTTP.

    :param base_url: the other service's base URL.
    :param timeout: seconds to wait for a connection and for each read.
    :param session: a session to share (connection pooling); a new one by default.
    """

    role: Role = Role.SCASP
    """The role this client calls; subclasses set it."""

    def __init__(self, base_url: str, *, timeout: float = 10.0, session: requests.Session | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        if session is None:
            session = requests.Session()
            # Calls between the roles go to configured base URLs: no proxy or .netrc lookup from
            # the environment (requests does both on every request otherwise).
            session.trust_env = False
        self.session = session

    def request(
        self,
        method: str,
        path: str,
        *,
        step: FlowStep | None = None,
        headers: Mapping[str, str] | None = None,
        expected: tuple[int, ...] = (200,),
        **kwargs: Any,
    ) -> requests.Response:
        """Send one request and return the response when its status is in ``expected``.

        :param path: path below the base URL, or an absolute URL.
        :param step: the flow step this call belongs to; named in errors.
        :raises UpstreamUnavailable: no answer (connection failure or timeout).
        :raises UpstreamError: an answer with another status.
        """
        url = path if path.startswith(("http://", "https://")) else f"{self.base_url}/{path.lstrip('/')}"
        outgoing = dict(headers or {})
        propagate.inject(outgoing)  # W3C traceparent of the current span (a no-op without tracing)
        try:
            response = self.session.request(method, url, headers=outgoing, timeout=self.timeout, **kwargs)
        except requests.Timeout:
            raise UpstreamUnavailable(self.role, f"no answer from {url} within {self.timeout:g} s", step=step) from None
        except requests.ConnectionError as exc:
            raise UpstreamUnavailable(self.role, f"cannot connect to {url} ({_reason(exc)})", step=step) from None
        if response.status_code not in expected:
            error, description = _error_fields(response)
            raise UpstreamError(self.role, error, description, response.status_code, step=step)
        return response

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


def _reason(exc: requests.ConnectionError) -> str:
    text = str(exc)
    for marker in ("Connection refused", "Name or service not known", "Connection reset", "Max retries exceeded"):
        if marker in text:
            return marker.lower()
    return exc.__class__.__name__
