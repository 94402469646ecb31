"""What the portal trusts and the TSP data it needs (root, trusted list, CRLs, TSA).

The trust anchor is configuration: the root certificate file named by
``SIGNLAB_PORTAL_TRUST_ROOT_FILE`` (by default the copy provisioning fetched from the CA). The
trusted list is read from the TSP for every validation (cached on disk, used from the cache when
the TSP cannot be reached; parsed again only when it changed); current CRLs and the CA/TSA
certificates are fetched from the TSP for packaging (B-LT) and validation.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import replace
import time
from pathlib import Path
from typing import Protocol

from asn1crypto import x509
from pyhanko.sign.timestamps import HTTPTimeStamper, TimeStamper
from pyhanko.sign.validation.qualified.tsp import TSPRegistry

from services.portal.ltv import ValidationMaterial, fully_parsed, load_certificate
from services.portal.validation import TrustSettings, load_registry
from shared.errors import ConfigurationError, SignLabError
from shared.tracing import trace_headers

__all__ = ["TspSource", "TrustStore"]

log = logging.getLogger(__name__)


class TspSource(Protocol):
    """The TSP endpoints the portal reads (``shared.clients.ca.CaClient`` has these methods)."""

    def certificate(self, name: str) -> bytes: ...  # noqa: D102 - protocol
    def crl(self, name: str) -> bytes: ...  # noqa: D102
    def trusted_list(self) -> bytes: ...  # noqa: D102


class TrustStore:
    """Trust anchor + trusted list + current TSP validation data, with a short cache.

    :param root_path: the configured root certificate (DER or PEM).
    :param tl_path: the trusted-list cache file.
    :param tsp: where to refresh from (``None``: offline, files only).
    :param tsa_url: the RFC 3161 endpoint for B-T/B-LTA.
    """

    def __init__(self, root_path: Path, tl_path: Path, tsp: TspSource | None, tsa_url: str | None,
                 *, timestamper: TimeStamper | None = None, ttl_seconds: float = 60.0) -> None:
        self.root_path = root_path
        self.tl_path = tl_path
        self.tsp = tsp
        self.tsa_url = tsa_url
        self._timestamper = timestamper
        self._ttl = ttl_seconds
        self._lock = threading.Lock()
        self._cached: tuple[float, TrustSettings] | None = None
        self._parsed: tuple[bytes, TSPRegistry] | None = None
        self._written: bytes | None = None

    def root(self) -> x509.Certificate:
        """The configured trust anchor."""
        try:
            return load_certificate(self.root_path.read_bytes())
        except FileNotFoundError:
            raise ConfigurationError(
                f"the portal's trust root {self.root_path} is missing: run provisioning (signlab up) or set "
                "SIGNLAB_PORTAL_TRUST_ROOT_FILE"
            ) from None

    def root_der(self) -> bytes:
        """The root certificate as DER (for the Acrobat download)."""
        return self.root().dump()

    def timestamper(self) -> TimeStamper | None:
        """The TSA client (pyHanko's ``HTTPTimeStamper`` against the TSP)."""
        if self._timestamper is not None:
            return self._timestamper
        # pyHanko calls the TSA with aiohttp, which the tracing does not instrument: the trace context
        # goes in the headers, so the TSA's span joins the signing's trace (step 10).
        return HTTPTimeStamper(self.tsa_url, timeout=10, headers=trace_headers()) if self.tsa_url else None

    def certificates(self) -> ValidationMaterial:
        """The current CA and TSA certificates from the TSP (empty when it cannot be reached)."""
        material = ValidationMaterial()
        if self.tsp is None:
            return material
        for name in ("root", "issuing", "tsa"):
            try:
                material.certificates.append(self.tsp.certificate(name))
            except SignLabError as exc:
                log.warning("cannot fetch %s from the TSP: %s", name, exc)
        return material

    def revocation(self) -> ValidationMaterial:
        """The TSP's CRLs as of now: asked for on every validation, so a revocation shows in the next
        one (``CaClient.crl`` revalidates its copy with ``If-None-Match``: an unchanged CRL is a 304)."""
        material = ValidationMaterial()
        if self.tsp is None:
            return material
        for name in ("root", "issuing"):
            try:
                material.crls.append(self.tsp.crl(name))
            except SignLabError as exc:
                log.warning("cannot fetch %s from the TSP: %s", name, exc)
        return material

    def _trusted_list_xml(self) -> str | None:
        if self.tsp is not None:
            try:
                data = self.tsp.trusted_list()
                digest = hashlib.sha256(data).digest()
                if digest != self._written:  # the cached copy is rewritten only when the list changed
                    self.tl_path.parent.mkdir(parents=True, exist_ok=True)
                    self.tl_path.write_bytes(data)
                    self._written = digest
                return data.decode("utf-8")
            except SignLabError as exc:
                log.warning("cannot refresh the trusted list from the TSP, using the cached copy: %s", exc)
        try:
            return self.tl_path.read_text("utf-8")
        except FileNotFoundError:
            return None

    def _registry(self) -> tuple[TSPRegistry | None, str]:
        """The trusted list as of now, parsed again only when its bytes changed (a status change
        at the TSP — a CA withdrawn — shows in the very next validation)."""
        xml = self._trusted_list_xml()
        if xml is None:
            return None, "not available"
        digest = hashlib.sha256(xml.encode("utf-8")).digest()
        with self._lock:
            if self._parsed is None or self._parsed[0] != digest:
                self._parsed = (digest, load_registry(xml))
            return self._parsed[1], f"SignLab TSP trusted list ({self.tl_path.name})"

    def settings(self) -> TrustSettings:
        """Trust settings for one validation: the root and CA certificates (cached for a minute,
        they change rarely), and the trusted list and revocation data as of now."""
        with self._lock:
            if not (self._cached and time.monotonic() - self._cached[0] < self._ttl):
                # fully parsed here, in one thread, before validations in other threads share it
                self._cached = (time.monotonic(), TrustSettings(fully_parsed(self.root()), None,
                                                                self.certificates()))
            cached = self._cached[1]
        registry, source = self._registry()
        material = ValidationMaterial()
        material.extend(cached.material)
        material.extend(self.revocation())
        return replace(cached, registry=registry, trusted_list_source=source, material=material)
