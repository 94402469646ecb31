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
from services.ca.trusted_list import SERVICE_STATUSES, TL_SERVICES, StatusChange, build_trusted_list
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
    _tl: tuple[bytes, dt.datetime, tuple[StatusChange, ...]] | None = None
    _tl_lock: threading.Lock = field(default_factory=threading.Lock)

    def status_changes(self) -> list[StatusChange]:
        """The recorded status changes of the listed services, oldest first."""
        return [StatusChange(service, status, since, note)
                for _id, service, status, since, note in self.authority.store.status_changes()]

    def change_status(self, service: str, status: str, since: dt.datetime | None = None, note: str = "") -> StatusChange:
        """Change the status of a listed service from ``since`` on (default: now on the lab clock);
        the next trusted list shows it.

        :raises ValueError: unknown service or status.
        """
        if service not in TL_SERVICES:
            raise ValueError(f"unknown trusted-list service {service!r}; use one of {', '.join(TL_SERVICES)}")
        if status not in SERVICE_STATUSES:
            raise ValueError(f"unknown service status {status!r}; use one of {', '.join(SERVICE_STATUSES)}")
        change = StatusChange(service, status, (since or self.authority.clock.now()).replace(microsecond=0), note[:200])
        self.authority.store.add_status_change(change.service, change.status, change.since, change.note)
        return change

    def trusted_list(self, now: dt.datetime | None = None) -> bytes:
        """The signed trusted list as of ``now`` (the lab clock by default); re-signed every 12 hours
        (its NextUpdate is one day), at once when a service's status changed or the lab clock moved
        back before the list's issue time."""
        now = now or self.authority.clock.now()
        changes = tuple(self.status_changes())
        with self._tl_lock:
            if (self._tl is None or not dt.timedelta(0) <= now - self._tl[1] <= dt.timedelta(hours=12)
                    or self._tl[2] != changes or any(self._tl[1] < c.since <= now for c in changes)):
                # grows with every re-signing (hours since the epoch), and with every status change
                sequence = int(now.timestamp()) // 3600 * 100 + len(changes) % 100
                xml = build_trusted_list(self.hierarchy, sequence_number=sequence,
                                         public_base=self.settings.public_cert_base,
                                         version=self.settings.trusted_list_version, now=now, changes=changes)
                self._tl = (xml, now, changes)
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
                                tsa=TimeStampAuthority(hierarchy.tsa, settings.tsa_policy_oid, faults=faults,
                                                        clock=authority.clock),
                                faults=faults)
