"""Typed client of an OpenID4VP verifier, as the wallet calls it (step 4).

The wallet reaches a verifier only through URLs the verifier gave it: the ``request_uri`` of the
invocation and the ``response_uri`` of the request object. Both are absolute URLs, so this client
has no base URL of its own; the verifier in SignLab is the IPSP.
"""

from __future__ import annotations

from typing import Any

from shared.eudi import REQUEST_OBJECT_TYPE
from shared.flow import Role, step
from shared.http_client import ServiceClient

__all__ = ["VerifierClient"]


class VerifierClient(ServiceClient):
    """Calls an OpenID4VP verifier (the IPSP)."""

    role = Role.IPSP

    def __init__(self, *, timeout: float = 10.0) -> None:
        super().__init__("", timeout=timeout)

    def request_object(self, request_uri: str) -> str:
        """``GET request_uri``: the signed request object (JAR, RFC 9101 §5.2)."""
        response = self.request("GET", request_uri, step=step(4),
                                headers={"Accept": f"application/{REQUEST_OBJECT_TYPE}"})
        return response.text.strip()

    def send_response(self, response_uri: str, form: dict[str, str]) -> dict[str, Any]:
        """``POST response_uri`` (Response Mode ``direct_post`` / ``direct_post.jwt``, OpenID4VP §8.2):
        the verifier's JSON answer (``redirect_uri`` when it wants the browser back)."""
        response = self.request("POST", response_uri, step=step(4), data=form, allow_redirects=False,
                                headers={"Accept": "application/json"})
        body = response.json()
        return body if isinstance(body, dict) else {}
