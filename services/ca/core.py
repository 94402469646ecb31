"""The TSP assembled from its parts (CA, issuance checks, OCSP, TSA, trusted list). No Flask.

:func:`build_tsp` loads the provisioned state from the data directory; the HTTP layer holds one
:class:`TrustServiceProvider` per app.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass, field

from services.ca.authority import CertificateAuthority
from services.ca.faults import build_fault_board
from services.ca.issuance import IssuanceService
from services.ca.issuance_log import IssuanceLog
from services.ca.ocsp_responder import OcspResponder
from services.ca.pki import Hierarchy, load_hierarchy
from services.ca.provision import load_pseudonym_key
from services.ca.settings import CaSettings
from services.ca.store import CertificateStore
from services.ca.trusted_list import build_trusted_list
from services.ca.tsa import TimeStampAuthority
from shared.client_assertion import ReplayCache
from shared.remote_jwks import JsonClient, RemoteJwks, idp_jwks_url
from shared.faults import FaultBoard
from shared.flow import Role, step

__all__ = ["PUBLISHED_CERTIFICATES", "TrustServiceProvider", "build_tsp"]

PUBLISHED_CERTIFICATES = ("root", "issuing", "tsa", "ocsp", "tl-signer")
"""Certificates downloadable at ``/certs/<name>.crt``."""


@dataclass
class TrustServiceProvider:
    """Everything the TSP serves."""

    settings: CaSettings
    hierarchy: Hierarchy
    authority: CertificateAuthority
    issuance: IssuanceService
    ocsp: OcspResponder
    tsa: TimeStampAuthority
    faults: FaultBoard | None = None
    """Lab fault injection (``services.ca.faults``); None unless ``FAULTS_ENABLED``."""
    _tl: tuple[bytes, dt.datetime] | None = None
    _tl_lock: threading.Lock = field(default_factory=threading.Lock)

    def trusted_list(self, now: dt.datetime | None = None) -> bytes:
        """The signed trusted list; re-signed every 12 hours (its NextUpdate is one day)."""
        now = now or dt.datetime.now(dt.UTC)
        with self._tl_lock:
            if self._tl is None or now - self._tl[1] > dt.timedelta(hours=12):
                sequence = int(now.timestamp()) // 3600  # grows with every re-signing
                xml = build_trusted_list(self.hierarchy, sequence_number=sequence,
                                         public_base=self.settings.public_cert_base,
                                         version=self.settings.trusted_list_version, now=now)
                self._tl = (xml, now)
            return self._tl[0]


def build_tsp(settings: CaSettings) -> TrustServiceProvider:
    """Load the provisioned TSP from ``settings.data_dir``.

    :raises FileNotFoundError: provisioning has not run.
    """
    data_dir = settings.data_dir
    hierarchy = load_hierarchy(data_dir)
    faults = build_fault_board(settings)
    authority = CertificateAuthority(settings=settings, hierarchy=hierarchy, store=CertificateStore(settings.database_path),
                                     log=IssuanceLog(settings.issuance_log_path), faults=faults)
    timeout = settings.http_timeout_seconds
    signer_keys = RemoteJwks(settings.signer_jwks_url, Role.SSASP, cache_seconds=settings.jwks_cache_seconds,
                             timeout=timeout, step=step(7))
    discovery_client = JsonClient(Role.IPSP, timeout, step(7))
    idp_keys = RemoteJwks(lambda: idp_jwks_url(settings.idp_url, discovery_client), Role.IPSP,
                          cache_seconds=settings.jwks_cache_seconds, timeout=timeout, step=step(7))
    issuance = IssuanceService(authority=authority, signer_keys=signer_keys, idp_keys=idp_keys,
                               replay_cache=ReplayCache(), pseudonym_key=load_pseudonym_key(data_dir), faults=faults)
    return TrustServiceProvider(settings=settings, hierarchy=hierarchy, authority=authority, issuance=issuance,
                                ocsp=OcspResponder(authority),
                                tsa=TimeStampAuthority(hierarchy.tsa, settings.tsa_policy_oid, faults=faults),
                                faults=faults)
