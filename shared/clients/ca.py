"""Typed client of the TSP (CA, OCSP, CRL, TSA, trusted list) and URL mapping for validators.

:class:`CaClient` has one method per TSP endpoint. :class:`CaFetcherBackend` is a
pyhanko-certvalidator fetcher backend that fetches the CRL, OCSP and caIssuers URLs written in
SignLab certificates (under the public base, e.g. ``http://ca.signlab.example.com:8002``) from the real
CA URL (e.g. ``http://127.0.0.1:8002``); any other URL is fetched as written.
"""

from __future__ import annotations

import base64
import threading
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import requests
from asn1crypto import x509 as asn1_x509
from pyhanko_certvalidator.fetchers.api import FetcherBackend, Fetchers, FetchLimits
from pyhanko_certvalidator.fetchers.common_utils import FetchBudget
from pyhanko_certvalidator.fetchers.requests_fetchers.cert_fetch_client import RequestsCertificateFetcher
from pyhanko_certvalidator.fetchers.requests_fetchers.crl_client import RequestsCRLFetcher
from pyhanko_certvalidator.fetchers.requests_fetchers.ocsp_client import RequestsOCSPFetcher

from shared.client_assertion import CLIENT_ASSERTION_TYPE
from shared.errors import UpstreamError
from shared.flow import Role, step
from shared.http_client import ServiceClient

__all__ = ["CaClient", "CaFetcherBackend", "CertificateStatus", "IssuedCertificate", "UrlMapper"]


@dataclass(frozen=True)
class IssuedCertificate:
    """The answer of the issuance API (step 7); certificates are DER bytes."""

    serial: str
    certificate: bytes
    chain: tuple[bytes, ...]
    """Issuing CA, then root."""
    profile: str
    policy_oid: str
    not_before: str
    not_after: str
    ocsp_url: str | None
    """The certificate's OCSP pointer (None in the CA's short-term-no-revocation profile)."""
    crl_urls: tuple[str, ...]

    @classmethod
    def from_json(cls, answer: dict[str, Any]) -> IssuedCertificate:
        """The issuance API's JSON answer (base64 DER certificates)."""
        return cls(
            serial=str(answer["serial"]), certificate=base64.b64decode(answer["certificate"]),
            chain=tuple(base64.b64decode(c) for c in answer["chain"]), profile=str(answer["profile"]),
            policy_oid=str(answer["policy_oid"]), not_before=str(answer["not_before"]),
            not_after=str(answer["not_after"]), ocsp_url=answer.get("ocsp_url"), crl_urls=tuple(answer["crl_urls"]),
        )

    @cached_property
    def leaf(self) -> asn1_x509.Certificate:
        """The certificate, parsed (asn1crypto)."""
        return asn1_x509.Certificate.load(self.certificate)

    @cached_property
    def issuers(self) -> list[asn1_x509.Certificate]:
        """The chain above it, parsed: issuing CA, then root."""
        return [asn1_x509.Certificate.load(der) for der in self.chain]


@dataclass(frozen=True)
class CertificateStatus:
    """The lookup/revoke answer for one issued certificate."""

    serial: str
    profile: str
    status: str
    """``valid``, ``expired``, ``revoked`` or ``not yet valid``."""
    subject: str
    loa: str
    not_before: str
    not_after: str
    revoked_at: str | None
    revocation_reason: str | None
    certificate: bytes
    transaction_id: str


def _status(body: dict[str, Any]) -> CertificateStatus:
    return CertificateStatus(
        serial=body["serial"], profile=body["profile"], status=body["status"], subject=body["subject"],
        loa=body["loa"], not_before=body["not_before"], not_after=body["not_after"], revoked_at=body.get("revoked_at"),
        revocation_reason=body.get("revocation_reason"), certificate=base64.b64decode(body["certificate"]),
        transaction_id=body.get("transaction_id") or "",
    )


class CaClient(ServiceClient):
    """Calls the TSP.

    :param base_url: the CA's real base URL (``SIGNLAB_*_CA_URL``).
    :param public_cert_base: the base written into its certificates (for :meth:`map_url`).
    """

    role = Role.TSP

    def __init__(self, base_url: str, *, public_cert_base: str = "http://ca.signlab.example.com:8002",
                 timeout: float = 10.0, session: requests.Session | None = None) -> None:
        super().__init__(base_url, timeout=timeout, session=session)
        self.mapper = UrlMapper(public_cert_base, self.base_url)
        self._crls: dict[str, tuple[str, bytes]] = {}
        self._crls_lock = threading.Lock()

    @property
    def issuance_url(self) -> str:
        """The issuance endpoint: also the ``aud`` a client assertion must carry."""
        return f"{self.base_url}/api/v1/certificates"

    @property
    def revocation_url(self) -> str:
        """The endpoint of :meth:`revoke_issued`: also the ``aud`` of its client assertion."""
        return f"{self.base_url}/api/v1/certificates/revocations"

    def issue_certificate(self, *, csr_der: bytes, profile: str, id_token: str, client_assertion: str,
                          transaction_id: str | None = None, request_id: str | None = None) -> IssuedCertificate:
        """Step 7: request a short-term certificate (``profile`` ``qes`` or ``ades``).

        ``client_assertion`` is an RFC 7523 JWT (:func:`shared.client_assertion.create_client_assertion`
        with ``audience=self.issuance_url``). The request carries a ``request_id`` (a fresh one by
        default), so the TSP answers a repeated request with the certificate it already issued:
        that makes the POST safe to send again after the reset of a reused connection.
        """
        body: dict[str, Any] = {"csr": base64.b64encode(csr_der).decode("ascii"), "profile": profile,
                                "id_token": id_token, "client_assertion_type": CLIENT_ASSERTION_TYPE,
                                "client_assertion": client_assertion, "request_id": request_id or uuid.uuid4().hex}
        if transaction_id is not None:
            body["transaction_id"] = transaction_id
        answer = self.request_json("POST", "/api/v1/certificates", step=step(7), json=body, expected=(201,),
                                   idempotent=True)
        return IssuedCertificate.from_json(answer)

    def revoke_issued(self, *, client_assertion: str, serial: str | None = None, transaction_id: str | None = None,
                      reason: str = "cessationOfOperation", note: str | None = None) -> list[CertificateStatus]:
        """As the signing service: revoke the certificates the TSP issued to it with ``serial``
        and/or for its ``transaction_id`` — a flow that failed after step 7 must leave no valid
        certificate behind. Idempotent (an already revoked certificate keeps its first revocation).

        ``client_assertion``: RFC 7523 JWT with ``audience=self.revocation_url``. ``reason``: an
        RFC 5280 name; ``note``: why (at most 200 characters, e.g. the failed step), kept in the
        TSP's issuance log.

        :raises UpstreamError: 404 ``not_found`` when no certificate of this client matches.
        """
        body: dict[str, Any] = {"client_assertion_type": CLIENT_ASSERTION_TYPE, "client_assertion": client_assertion,
                                "reason": reason}
        body.update((k, v) for k, v in (("serial", serial), ("transaction_id", transaction_id), ("note", note)) if v)
        answer = self.request_json("POST", "/api/v1/certificates/revocations", json=body, idempotent=True)
        return [_status(item) for item in answer["revoked"]]

    def certificate_status(self, serial: str) -> CertificateStatus:
        """Look up an issued certificate."""
        return _status(self.request_json("GET", f"/api/v1/certificates/{serial}"))

    def revoke(self, serial: str, reason: str, admin_token: str) -> CertificateStatus:
        """Revoke ``serial`` (reason: ``keyCompromise``, ``unspecified`` …) with the CA's admin token."""
        return _status(self.request_json("POST", f"/api/v1/certificates/{serial}/revoke", json={"reason": reason},
                                         headers={"Authorization": f"Bearer {admin_token}"}, idempotent=True))

    def timestamp(self, query_der: bytes) -> bytes:
        """RFC 3161: send a DER TimeStampReq, return the DER TimeStampResp."""
        return self.request("POST", "/tsa", data=query_der,
                            headers={"Content-Type": "application/timestamp-query"}).content

    def certificate(self, name: str) -> bytes:
        """A published certificate, DER: ``root``, ``issuing``, ``tsa``, ``ocsp``, ``tl-signer``."""
        return self.request("GET", f"/certs/{name}.crt").content

    def crl(self, name: str) -> bytes:
        """The current CRL, DER: ``root`` or ``issuing``.

        Every call asks the TSP (a conditional GET): the last CRL of each name is kept with its
        ``ETag`` and sent back as ``If-None-Match``; on ``304 Not Modified`` the kept bytes are
        returned, so an unchanged CRL costs neither its transfer nor its signing at the TSP, and a
        revocation still shows in the very next call (the TSP's CRL number changes with it).
        Thread-safe.
        """
        with self._crls_lock:
            kept = self._crls.get(name)
        headers = {"If-None-Match": kept[0]} if kept else None
        response = self.request("GET", f"/crl/{name}.crl", headers=headers, expected=(200, 304))
        if response.status_code == 304:
            if kept is None:  # a 304 to an unconditional request: the TSP is broken
                raise UpstreamError(self.role, "invalid_response", "304 Not Modified without If-None-Match", 304)
            return kept[1]
        etag = response.headers.get("ETag")
        with self._crls_lock:
            if etag:
                self._crls[name] = (etag, response.content)
            else:
                self._crls.pop(name, None)
        return response.content

    def ocsp(self, request_der: bytes) -> bytes:
        """RFC 6960: send a DER OCSPRequest, return the DER OCSPResponse."""
        return self.request("POST", "/ocsp", data=request_der,
                            headers={"Content-Type": "application/ocsp-request"}).content

    def trusted_list(self) -> bytes:
        """The XAdES-signed ETSI TS 119 612 trusted list (XML bytes)."""
        return self.request("GET", "/tl/trusted-list.xml").content

    def map_url(self, url: str) -> str:
        """``url`` with the public certificate base replaced by the CA's real base URL."""
        return self.mapper(url)

    def fetcher_backend(self, per_request_timeout: float | None = None) -> CaFetcherBackend:
        """A pyhanko-certvalidator fetcher backend that reaches this CA for SignLab URLs."""
        return CaFetcherBackend(self.mapper, per_request_timeout=per_request_timeout or self.timeout)


@dataclass(frozen=True)
class UrlMapper:
    """Maps URLs under ``public_base`` to the same path under ``real_base``."""

    public_base: str
    real_base: str

    def __call__(self, url: str) -> str:
        """The mapped URL (unchanged when it is not under the public base)."""
        public = self.public_base.rstrip("/")
        if url == public or url.startswith(public + "/"):
            return self.real_base.rstrip("/") + url[len(public):]
        return url


class _MappedFetching:
    """Mixin for pyhanko-certvalidator's requests fetchers: rewrite the URL before each fetch."""

    mapper: UrlMapper

    def _get(self, url: str, *, acceptable_content_types: Any) -> Awaitable[requests.Response]:
        # a mixin: super() is the requests fetcher it is mixed into, which mypy cannot see here
        return super()._get(self.mapper(url), acceptable_content_types=acceptable_content_types)  # type: ignore[misc]

    def _post(self, url: str, data: Any, *, content_type: str,
              acceptable_content_types: Any) -> Awaitable[requests.Response]:
        return super()._post(self.mapper(url), data, content_type=content_type,  # type: ignore[misc]  # as _get
                             acceptable_content_types=acceptable_content_types)


class _MappedOcspFetcher(_MappedFetching, RequestsOCSPFetcher):
    pass


class _MappedCrlFetcher(_MappedFetching, RequestsCRLFetcher):
    pass


class _MappedCertFetcher(_MappedFetching, RequestsCertificateFetcher):
    pass


class CaFetcherBackend(FetcherBackend):
    """Fetchers (OCSP, CRL, caIssuers) for ``ValidationContext(fetcher_backend=...)`` that map
    SignLab's public certificate base to the real CA URL.

    :param mapper: the URL mapping (see :meth:`CaClient.fetcher_backend`).
    """

    def __init__(self, mapper: UrlMapper, *, per_request_timeout: float = 10.0,
                 limits: FetchLimits = FetchLimits()) -> None:  # noqa: B008 - FetchLimits is a frozen dataclass
        self.mapper = mapper
        self.per_request_timeout = per_request_timeout
        self.limits = limits

    def get_fetchers(self) -> Fetchers:
        """Fresh fetchers sharing one fetch budget."""
        budget = FetchBudget(self.limits)
        ocsp = _MappedOcspFetcher(per_request_timeout=self.per_request_timeout, budget=budget)
        crl = _MappedCrlFetcher(per_request_timeout=self.per_request_timeout, budget=budget)
        cert = _MappedCertFetcher(per_request_timeout=self.per_request_timeout, budget=budget)
        ocsp.mapper = crl.mapper = cert.mapper = self.mapper
        return Fetchers(ocsp_fetcher=ocsp, crl_fetcher=crl, cert_fetcher=cert)

    async def close(self) -> None:
        """Nothing to release (requests opens a connection per call)."""
