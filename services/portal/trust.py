"""What the portal trusts and the TSP data it needs (root, trusted list, CRLs, TSA).

The trust anchor is configuration: the root certificate file named by
``SIGNLAB_PORTAL_TRUST_ROOT_FILE`` (by default the copy provisioning fetched from the CA). The
trusted list is refreshed from the TSP when reachable (cached on disk, used from the cache when
not); current CRLs and the CA/TSA certificates are fetched from the TSP for packaging (B-LT) and
validation.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
import time
from pathlib import Path
from typing import Protocol

from asn1crypto import x509
from pyhanko.sign.timestamps import HTTPTimeStamper, TimeStamper

from services.portal.ltv import ValidationMaterial, load_certificate, prime_certificate
from services.portal.validation import TrustSettings, load_registry
from shared.errors import ConfigurationError, SignLabError

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
        return HTTPTimeStamper(self.tsa_url, timeout=10) if self.tsa_url else None

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
                self.tl_path.parent.mkdir(parents=True, exist_ok=True)
                self.tl_path.write_bytes(data)
                return data.decode("utf-8")
            except SignLabError as exc:
                log.warning("cannot refresh the trusted list from the TSP, using the cached copy: %s", exc)
        try:
            return self.tl_path.read_text("utf-8")
        except FileNotFoundError:
            return None

    def settings(self) -> TrustSettings:
        """Trust settings for one validation: the root, trusted list and CA certificates (cached
        for a minute, they change rarely) and the revocation data as of now."""
        with self._lock:
            if not (self._cached and time.monotonic() - self._cached[0] < self._ttl):
                xml = self._trusted_list_xml()
                registry = load_registry(xml) if xml else None
                source = f"SignLab TSP trusted list ({self.tl_path.name})" if xml else "not available"
                # primed here, in one thread, before validations in other threads share it
                self._cached = (time.monotonic(), TrustSettings(prime_certificate(self.root()), registry,
                                                                self.certificates(), source))
            cached = self._cached[1]
        material = ValidationMaterial()
        material.extend(cached.material)
        material.extend(self.revocation())
        return replace(cached, material=material)
