"""Helpers of the reliability suite: real ecosystems (gunicorn processes started by
:class:`~signlab.runtime.LocalRuntime` on free loopback ports in temporary data directories),
hard kills and pauses of those processes, a network fault proxy, and audit-log readers.

Seeded secrets: every secret setting of every service gets a known, unique, recognisable value
(``seeded-…``) so that the secrets-hygiene tests can search every log, trace, audit file, page and
error message for them afterwards.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import os
import secrets
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from services.registry import LINKED_SECRETS, REGISTRY
from shared.audit import AuditEntry, AuditLog
from shared.clients.ca import CaClient
from shared.settings import secret_fields
from shared.testing import free_port
from signlab.runtime import LocalRuntime
from signlab.scenarios.environment import Ecosystem, ecosystem_from_runtime


def seeded_secrets() -> dict[str, str]:
    """A known value for every secret variable; linked secrets share theirs."""
    values: dict[str, str] = {}
    for item in REGISTRY:
        for name in sorted(secret_fields(item.settings_class)):
            variable = item.settings_class.env_name(name)
            if variable in values:
                continue
            value = f"seeded-{name.replace('_', '-')}-{secrets.token_hex(10)}"
            for group in LINKED_SECRETS:
                if variable in group:
                    for member in group:
                        values[member] = value
            values.setdefault(variable, value)
    return values


@dataclass
class Lab:
    """A running ecosystem under test and the handles to break it."""

    runtime: LocalRuntime
    secrets: dict[str, str]
    eco: Ecosystem
    proxies: dict[str, FaultProxy] = field(default_factory=dict)

    @property
    def urls(self) -> dict[str, str]:
        """Base URL by service."""
        return self.eco.urls

    def pid(self, name: str) -> int:
        """The gunicorn master's pid (also its process group: the runtime starts a new session)."""
        return self.runtime.running()[name]

    def kill(self, name: str) -> None:
        """SIGKILL the whole process group of a service (master and worker): a hard crash."""
        pid = self.pid(name)
        os.killpg(pid, signal.SIGKILL)
        child = self.runtime._children.get(name)
        if child is not None:
            child.wait(timeout=10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _group_alive(pid):
            time.sleep(0.05)

    def pause(self, name: str) -> None:
        """SIGSTOP a service: it accepts connections (kernel backlog) but never answers."""
        os.killpg(self.pid(name), signal.SIGSTOP)

    def resume(self, name: str) -> None:
        """SIGCONT a paused service."""
        os.killpg(self.pid(name), signal.SIGCONT)

    def restart(self, name: str) -> None:
        """Start a (killed) service again with the same settings and wait until it is healthy.

        """
        self.runtime.start_service(name)

    def audit(self, since: int = 0) -> list[AuditEntry]:
        """Signer audit entries after the first ``since``."""
        return list(AuditLog(self.eco.signer_audit).entries())[since:]

    def audit_count(self) -> int:
        """Number of signer audit entries."""
        return len(list(AuditLog(self.eco.signer_audit).entries()))

    def ca_log(self) -> list[AuditEntry]:
        """CA issuance log entries."""
        return list(AuditLog(self.eco.ca_issuance_log).entries())

    def wait_audit(self, predicate: Callable[[AuditEntry], bool], since: int = 0, timeout: float = 20) -> AuditEntry:
        """Wait until a signer audit entry matching ``predicate`` is written; return it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for item in self.audit(since):
                if predicate(item):
                    return item
            time.sleep(0.02)
        raise AssertionError("the awaited audit entry never came")

    def signer_transaction(self, transaction_id: str) -> dict[str, Any]:
        """The signer's row of a transaction, read from its SQLite database (WAL) by a second connection."""
        path = self.eco.signer_audit.parent / "signer.sqlite3"
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            db.row_factory = sqlite3.Row
            row = db.execute("SELECT * FROM transactions WHERE id = ?", (transaction_id,)).fetchone()
        assert row is not None, f"no transaction {transaction_id} at the signer"
        return dict(row)

    def hsm_keys(self) -> int:
        """Key objects the signer process sees in its HSM."""
        from signlab.load import hsm_key_objects

        return hsm_key_objects(self.eco)

    def authorize(self, document: bytes, hint: str = "kari-nordmann@no-bankid") -> tuple[str, bytes]:
        """Steps 2-5 as the partner (PAR, eID login, consent, token): the SAD and the document's digest."""
        from signlab.load import authorize_as_partner

        digest = hashlib.sha256(document).digest()
        client = self.eco.signer_client(timeout=30)
        try:
            token = authorize_as_partner(self.eco, client, [(digest, "doc.txt")], login_hint=hint,
                                         qualifier="eu_eidas_qes")
        finally:
            client.close()
        return token.access_token, digest

    def sign_doc(self, sad: str, digest: bytes, timeout: float = 30) -> requests.Response:
        """signDoc (steps 6-10) for ``digest`` with the SAD, as sent by the partner; the raw answer."""
        return requests.post(f"{self.urls['signer']}/csc/v2/signatures/signDoc", timeout=timeout,
                             headers={"Authorization": f"Bearer {sad}"},
                             json={"documentDigests": [{"hashes": [base64.b64encode(digest).decode()],
                                                        "hashAlgorithmOID": "2.16.840.1.101.3.4.2.1",
                                                        "signature_format": "C"}]})

    def chains_intact(self) -> None:
        """Both hash-chained logs verify."""
        for path in (self.eco.signer_audit, self.eco.ca_issuance_log):
            outcome = AuditLog(path).verify()
            assert outcome.ok, f"{path}: {outcome.reason}"


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    # Zombies of the group do not count: they hold no socket and run no code.
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


class FaultProxy:
    """A forwarding HTTP proxy on loopback between two roles that can hold, delay or drop requests.

    It stands for the network between two services (the only part that is "outside"): requests are
    forwarded unchanged to ``target`` unless a rule for the path prefix says otherwise:

    * ``("hold", seconds)`` — wait until :meth:`release` (or ``seconds``), then forward;
    * ``("delay", seconds)`` — wait, then forward;
    * ``("drop", 0)`` — close the connection without an answer;
    * ``("truncate", 0)`` — forward, then send the answer's status, headers (with its full
      ``Content-Length``) and only the first half of its body, and close the connection: what the
      caller sees when the other side dies while sending its answer.

    :ivar arrived: set each time a held request arrives (tests wait on it).
    """

    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/")
        self.rules: dict[str, tuple[str, float]] = {}
        self.arrived = threading.Event()
        self.released = threading.Event()
        self.hits: list[str] = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: Any) -> None:  # quiet
                pass

            def _forward(self) -> None:
                proxy.hits.append(f"{self.command} {self.path}")
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                rule = next((r for p, r in proxy.rules.items() if self.path.startswith(p)), None)
                if rule is not None:
                    kind, seconds = rule
                    if kind == "drop":
                        self.close_connection = True
                        self.connection.shutdown(2)
                        return
                    if kind == "hold":
                        proxy.arrived.set()
                        proxy.released.wait(seconds)
                    elif kind == "delay":
                        time.sleep(seconds)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length", "connection")}
                try:
                    answer = requests.request(self.command, proxy.target + self.path, data=body, headers=headers,
                                              timeout=30, allow_redirects=False)
                except requests.RequestException:
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.send_response(answer.status_code)
                for key, value in answer.headers.items():
                    if key.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                if rule is not None and rule[0] == "truncate":
                    self.wfile.write(answer.content[:len(answer.content) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.wfile.write(answer.content)

            do_GET = do_POST = _forward  # noqa: N815 - the names http.server dispatches to

        self.port = free_port()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        """The proxy's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def set(self, prefix: str, kind: str, seconds: float = 0) -> None:
        """Add a rule for paths starting with ``prefix``."""
        self.arrived.clear()
        self.released.clear()
        self.rules[prefix] = (kind, seconds)

    def release(self) -> None:
        """Let held requests through and forget every rule."""
        self.rules.clear()
        self.released.set()

    def close(self) -> None:
        """Stop the proxy."""
        self.release()
        self.server.shutdown()
        self.server.server_close()


def start_lab(data_dir: Path, extra_env: dict[str, str] | None = None,
              proxies: dict[str, tuple[str, ...]] | None = None, links: dict[str, str] | None = None) -> Lab:
    """Start an ecosystem with seeded secrets.

    :param proxies: ``name → (service to forward to, environment variables that point at the proxy …)``
        (e.g. a service's ``PUBLIC_URL`` too, when its callers derive an audience from the URL
        they call).
    :param links: ``variable → template`` of the services' own URLs (``{signer}``, ``{ca}`` …):
        e.g. the URL browsers use for a service whose back channel goes through a proxy.
    """
    ports = {item.info.name: free_port() for item in REGISTRY}
    seeded = seeded_secrets()
    environ = {**os.environ, **seeded, **(extra_env or {})}
    environ |= {variable: template.format(**{name: f"http://127.0.0.1:{port}" for name, port in ports.items()})
                for variable, template in (links or {}).items()}
    environ.pop("SIGNLAB_DATA_DIR", None)
    made: dict[str, FaultProxy] = {}
    for name, (service_name, *variables) in (proxies or {}).items():
        made[name] = FaultProxy(f"http://127.0.0.1:{ports[service_name]}")
        for variable in variables:
            path = {"SIGNLAB_CA_SIGNER_JWKS_URL": "/.well-known/jwks.json"}.get(variable, "")
            environ[variable] = made[name].url + path
    runtime = LocalRuntime(data_dir, ports, environ=environ)
    runtime.up(timeout=90, progress=lambda _line: None)
    return Lab(runtime, seeded, ecosystem_from_runtime(runtime), made)


def ocsp_answer(lab: Lab, serial: str) -> ocsp.OCSPResponse:
    """The TSP's OCSP answer for the certificate ``serial`` (hex) of its issuing CA."""
    ca = CaClient(lab.urls["ca"])
    issuing = x509.load_der_x509_certificate(ca.certificate("issuing"))
    name_hash, key_hash = hashes.Hash(hashes.SHA256()), hashes.Hash(hashes.SHA256())
    name_hash.update(issuing.subject.public_bytes())
    key_hash.update(issuing.public_key().public_bytes(serialization.Encoding.X962,
                                                      serialization.PublicFormat.UncompressedPoint))
    request = ocsp.OCSPRequestBuilder().add_certificate_by_hash(name_hash.finalize(), key_hash.finalize(),
                                                                 int(serial, 16), hashes.SHA256()).build()
    return ocsp.load_der_ocsp_response(ca.ocsp(request.public_bytes(serialization.Encoding.DER)))


def revoked_everywhere(lab: Lab, serial: str) -> None:
    """OCSP and the issuing CA's CRL say the certificate ``serial`` is revoked, cessationOfOperation."""
    answer = ocsp_answer(lab, serial)
    assert answer.certificate_status == ocsp.OCSPCertStatus.REVOKED
    assert answer.revocation_reason == x509.ReasonFlags.cessation_of_operation
    listed = x509.load_der_x509_crl(CaClient(lab.urls["ca"]).crl("issuing")).get_revoked_certificate_by_serial_number(
        int(serial, 16))
    assert listed is not None
    assert listed.extensions.get_extension_for_class(x509.CRLReason).value.reason == x509.ReasonFlags.cessation_of_operation


def json_or_text(response: requests.Response) -> Any:
    """The JSON body, or the text when it is not JSON."""
    try:
        return response.json()
    except ValueError:
        return response.text


__all__ = ["FaultProxy", "Lab", "json_or_text", "ocsp_answer", "revoked_everywhere", "seeded_secrets", "start_lab"]
