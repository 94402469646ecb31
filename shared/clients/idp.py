"""Typed client of the IPSP (mock eID OpenID Connect provider).

Used by the SSASP at step 5 (code exchange, JWKS, ID-token verification) and the TSP at step 7
(JWKS to re-verify the ID token), and by scenarios and tests (catalogue, admin failure injection).

JWKS handling: :meth:`IdpClient.jwks` is cached; :meth:`IdpClient.verify_id_token` refetches it
once when the token's ``kid`` is unknown (the IdP rotated its key), never more often than that per
call, so a token signed by a truly unknown key still fails fast with check ``kid``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import requests
from joserfc.jwk import KeySet

from shared.flow import Role, step
from shared.http_client import ServiceClient
from shared.identity import IdentityEvidenceError, VerifiedIdentity, verify_id_token

__all__ = ["ArmedFailure", "IdpClient", "ProviderMetadata", "TokenResponse"]


@dataclass(frozen=True)
class ProviderMetadata:
    """The IdP's discovery document."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    userinfo_endpoint: str
    jwks_uri: str
    end_session_endpoint: str
    acr_values_supported: tuple[str, ...]
    raw: dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class TokenResponse:
    """The token endpoint's answer (step 5)."""

    access_token: str
    id_token: str
    token_type: str
    expires_in: int
    scope: str


@dataclass(frozen=True)
class ArmedFailure:
    """A failure armed through the admin API."""

    id: int
    name: str
    value: float | None
    client_id: str | None
    remaining: int | None
    """Requests it still applies to (None: until removed)."""


class IdpClient(ServiceClient):
    """Calls the IPSP.

    :param base_url: the IdP's base URL (= its issuer).
    :param admin_token: the IdP's admin token (``SIGNLAB_IDP_ADMIN_TOKEN``), for the admin methods.
    """

    role = Role.IPSP

    def __init__(self, base_url: str, *, timeout: float = 10.0, session: requests.Session | None = None,
                 admin_token: str | None = None) -> None:
        super().__init__(base_url, timeout=timeout, session=session)
        self.admin_token = admin_token
        self._lock = threading.Lock()
        self._metadata: ProviderMetadata | None = None
        self._jwks: KeySet | None = None

    # -- discovery and keys ------------------------------------------------------------------
    def discovery(self, *, refresh: bool = False) -> ProviderMetadata:
        """``GET /.well-known/openid-configuration`` (cached)."""
        with self._lock:
            if self._metadata is not None and not refresh:
                return self._metadata
        body = self.request("GET", "/.well-known/openid-configuration", step=step(5)).json()
        metadata = ProviderMetadata(
            issuer=body["issuer"], authorization_endpoint=body["authorization_endpoint"],
            token_endpoint=body["token_endpoint"], userinfo_endpoint=body["userinfo_endpoint"],
            jwks_uri=body["jwks_uri"], end_session_endpoint=body.get("end_session_endpoint", ""),
            acr_values_supported=tuple(body.get("acr_values_supported") or ()), raw=body,
        )
        with self._lock:
            self._metadata = metadata
        return metadata

    def jwks(self, *, refresh: bool = False) -> KeySet:
        """The IdP's published keys from the discovery's ``jwks_uri`` (cached)."""
        with self._lock:
            if self._jwks is not None and not refresh:
                return self._jwks
        body = self.request("GET", self.discovery().jwks_uri, step=step(5)).json()
        keys = KeySet.import_key_set(body)
        with self._lock:
            self._jwks = keys
        return keys

    def verify_id_token(self, id_token: str, *, audience: str, nonce: str | None = None, leeway: int = 30,
                        now: float | None = None, max_age: int | None = None, max_token_age: int | None = None,
                        min_loa: str | None = None) -> VerifiedIdentity:
        """:func:`shared.identity.verify_id_token` against this IdP's issuer and JWKS, refetching
        the JWKS once if the token's ``kid`` is unknown."""
        issuer = self.discovery().issuer
        kwargs: dict[str, Any] = {"issuer": issuer, "audience": audience, "nonce": nonce, "leeway": leeway, "now": now,
                                  "max_age": max_age, "max_token_age": max_token_age, "min_loa": min_loa}
        try:
            return verify_id_token(id_token, self.jwks(), **kwargs)
        except IdentityEvidenceError as exc:
            if exc.check != "kid":
                raise
        return verify_id_token(id_token, self.jwks(refresh=True), **kwargs)

    # -- step 5 --------------------------------------------------------------------------------
    def exchange_code(self, code: str, *, client_id: str, client_secret: str, redirect_uri: str,
                      code_verifier: str) -> TokenResponse:
        """``POST /token`` (authorization_code + PKCE, client_secret_basic)."""
        body = self.request(
            "POST", self.discovery().token_endpoint, step=step(5), auth=(client_id, client_secret),
            data={"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
                  "code_verifier": code_verifier},
        ).json()
        return TokenResponse(access_token=body["access_token"], id_token=body["id_token"],
                             token_type=body.get("token_type", "Bearer"), expires_in=int(body.get("expires_in", 0)),
                             scope=body.get("scope", ""))

    def userinfo(self, access_token: str) -> dict[str, Any]:
        """``GET /userinfo`` with the bearer access token."""
        result: dict[str, Any] = self.request("GET", self.discovery().userinfo_endpoint,
                                              headers={"Authorization": f"Bearer {access_token}"}).json()
        return result

    # -- catalogue -----------------------------------------------------------------------------
    def persons(self) -> list[dict[str, Any]]:
        """``GET /api/v1/persons``: the test persons and their login hints."""
        result: list[dict[str, Any]] = self.request("GET", "/api/v1/persons").json()
        return result

    def eid_means(self) -> list[dict[str, Any]]:
        """``GET /api/v1/eid-means``."""
        result: list[dict[str, Any]] = self.request("GET", "/api/v1/eid-means").json()
        return result

    def failure_names(self) -> list[dict[str, Any]]:
        """``GET /api/v1/failures``: every named failure with its step and error."""
        result: list[dict[str, Any]] = self.request("GET", "/api/v1/failures").json()
        return result

    # -- admin API (guarded by SIGNLAB_IDP_ADMIN_API_ENABLED and the admin token) ------------------
    def _admin_headers(self) -> dict[str, str]:
        if not self.admin_token:
            raise ValueError("IdpClient was built without admin_token; the admin API needs SIGNLAB_IDP_ADMIN_TOKEN")
        return {"Authorization": f"Bearer {self.admin_token}"}

    def arm_failure(self, name: str, *, value: float | None = None, count: int | None = 1,
                    client_id: str | None = None) -> ArmedFailure:
        """``POST /admin/failures``: arm ``name`` for the next ``count`` authorization requests
        (None: until removed), optionally only for ``client_id``."""
        body = self.request("POST", "/admin/failures", headers=self._admin_headers(), expected=(201,),
                            json={"name": name, "value": value, "count": count, "client_id": client_id}).json()
        return _armed(body)

    def armed_failures(self) -> list[ArmedFailure]:
        """``GET /admin/failures``."""
        body = self.request("GET", "/admin/failures", headers=self._admin_headers()).json()
        return [_armed(item) for item in body["armed"]]

    def remove_failure(self, failure_id: int) -> None:
        """``DELETE /admin/failures/<id>``."""
        self.request("DELETE", f"/admin/failures/{failure_id}", headers=self._admin_headers())

    def clear_failures(self) -> int:
        """``DELETE /admin/failures``; returns how many were removed."""
        return int(self.request("DELETE", "/admin/failures", headers=self._admin_headers()).json()["removed"])

    def rotate_keys(self) -> str:
        """``POST /admin/keys/rotate``; returns the new signing key's kid."""
        return str(self.request("POST", "/admin/keys/rotate", headers=self._admin_headers()).json()["kid"])


def _armed(body: dict[str, Any]) -> ArmedFailure:
    return ArmedFailure(id=int(body["id"]), name=str(body["name"]), value=body.get("value"),
                        client_id=body.get("client_id"), remaining=body.get("remaining"))
