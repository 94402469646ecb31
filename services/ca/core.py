"""The TSP assembled from its parts (CA, issuance checks, OCSP, TSA, trusted list). No Flask.

:func:`build_tsp` loads the provisioned state from the data directory; the HTTP layer holds one
:class:`CaCore` per app.
"""

from __future__ import annotations

import base64
import datetime as dt
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from services.ca.authority import CertificateAuthority, IssuedCertificate
from services.ca.faults import build_fault_board
from services.ca.issuance import IssuanceService, certified_key, parse_csr
from services.ca.issuance_log import CrossCheck, IssuanceGate, IssuanceLog, cross_check
from services.ca.ocsp_responder import OcspResponder
from services.ca.pki import Hierarchy, load_hierarchy
from services.ca.profiles import Profile, SubjectIdentity
from services.ca.provision import load_pseudonym_key
from services.ca.settings import CaSettings
from services.ca.store import CertificateStore
from services.ca.trusted_list import SERVICE_STATUSES, TL_SERVICES, StatusChange, build_trusted_list
from services.ca.tsa import TimeStampAuthority
from shared.audit import AuditLog
from shared.client_assertion import ReplayCache
from shared.faults import FaultBoard
from shared.flow import Role, step
from shared.remote_jwks import JsonClient, RemoteJwks, idp_jwks_url

__all__ = ["PUBLISHED_CERTIFICATES", "CaCore", "build_tsp", "cross_check_installation", "detached_qes_issuer"]

PUBLISHED_CERTIFICATES = ("root", "issuing", "tsa", "ocsp", "tl-signer")
"""Certificates downloadable at ``/certs/<name>.crt``."""


@dataclass
class CaCore:
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


def build_tsp(settings: CaSettings) -> CaCore:
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
    return CaCore(settings=settings, hierarchy=hierarchy, authority=authority, issuance=issuance,
                                ocsp=OcspResponder(authority),
                                tsa=TimeStampAuthority(hierarchy.tsa, settings.tsa_policy_oid, faults=faults,
                                                        clock=authority.clock),
                                faults=faults)


def cross_check_installation(settings: CaSettings, quiet_seconds: float) -> CrossCheck | None:
    """The CA's certificate database against its issuance log (:func:`~services.ca.issuance_log.cross_check`),
    read only, while no issuance is halfway between the two (``signlab audit verify``).

    :param quiet_seconds: how long to wait for issuances halfway between log and database.
    :returns: None when an issuance stayed halfway for ``quiet_seconds`` (a CA paused in the middle).
    :raises sqlite3.Error: the database cannot be read (not provisioned).
    """
    with IssuanceGate(settings.issuance_log_path).quiet(quiet_seconds) as quiet:
        if not quiet:
            return None
        states = CertificateStore.read_states(settings.database_path)
        return cross_check(states, AuditLog(settings.issuance_log_path).entries())


DETACHED_SUBJECT = SubjectIdentity(country="NO", given_name="Kari", family_name="Nordmann",
                                   serial_number="PNONO-01017012345")
"""The test person of :func:`detached_qes_issuer`'s certificates."""


def detached_qes_issuer(settings: CaSettings, hierarchy_dir: Path, work_dir: Path) -> Callable[[bytes, str], IssuedCertificate]:
    """A QES issuer over a provisioned hierarchy, without HTTP and apart from the running TSP.

    The TSP's own :class:`~services.ca.authority.CertificateAuthority` over the issuing CA in
    ``hierarchy_dir`` (read only), with its own certificate store and issuance log in ``work_dir``,
    so the TSP's records are not touched (``signlab bench``'s in-process floor). The returned
    function takes a DER PKCS#10 request and a transaction id, checks the request as the issuance
    API does and issues a QES certificate to :data:`DETACHED_SUBJECT`. No identity evidence is
    checked: the caller is trusted.

    :raises CsrRejected: (from the returned function) the request fails the API's CSR checks.
    """
    authority = CertificateAuthority(settings=settings, hierarchy=load_hierarchy(hierarchy_dir),
                                     store=CertificateStore(work_dir / "ca.sqlite3"), log=IssuanceLog(work_dir / "issuance.log"))

    def issue(csr_der: bytes, transaction_id: str) -> IssuedCertificate:
        csr = parse_csr(base64.b64encode(csr_der).decode())
        return authority.issue(public_key=certified_key(csr), subject=DETACHED_SUBJECT, profile=Profile.QES,
                               subject_id="ps-bench", loa="high", requester="bench", transaction_id=transaction_id)

    return issue
