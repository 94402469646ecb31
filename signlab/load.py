"""Load and soak runs against a running ecosystem: N complete signing flows at concurrency C, every
result checked.

A *flow* is the whole person-signing flow over real HTTP, driven like a browser plus (in
``partner`` mode) like the partner:

* ``portal`` mode (default): ``POST /api/v1/sign-requests`` at the portal as the lab's partner
  application (step 1, a fresh small text document, CAdES B-B), then the browser: the portal's
  review page, confirmed with its CSRF token (the portal pushes the PAR, step 2), signer
  ``/oauth2/authorize`` (3) → IdP with a headless ``login_hint`` (4) → signer callback → consent
  page submitted with its CSRF token (5) → the portal's ``/sign/callback`` (the portal redeems the
  code and calls signDoc, 5-10) → ``GET /api/v1/transactions/<id>`` and the ``.p7s`` download.
* ``partner`` mode: the agent plays the partner with the portal's client credentials (PAR, PKCE,
  code exchange, signDoc itself) — the signer and CA under load without the portal's packaging.

Each signature is checked **independently of the code that made it** (:func:`verify_cms_signature`,
with ``cryptography`` and ``asn1crypto`` only): message-digest = SHA-256 of the document, the
ECDSA/RSA signature over the signed attributes with the leaf key, leaf ← issuing CA ← the CA's root
(fetched from the CA), validity at signing, keyUsage nonRepudiation. After the run: the signer's
audit log and the CA's issuance log verify (hash chains), every ``key.created`` of the run has its
``key.destroyed``, the HSM holds no key object (the signer's own ``/healthz`` count, since one-time
keys are session objects of the signer process) and the per-service resident memory (gunicorn
master + worker) at start, at each quarter and at the end.

Limits: local runtime only (the data directory locates the logs, pid files and secrets); flows of
one document each.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import requests
from asn1crypto import cms, x509
from cryptography import x509 as cx509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from services.ca.settings import CaSettings
from services.portal.settings import PortalSettings
from services.registry import entry
from services.signer.settings import SignerSettings
from shared.audit import AuditLog
from shared.client_assertion import CLIENT_ASSERTION_TYPE, create_client_assertion
from shared.clients.signer import SignerClient
from shared.jose_keys import load_ec_key
from signlab.errors import CliError

__all__ = [
    "BrowserAgent",
    "Ecosystem",
    "FlowFailed",
    "FlowResult",
    "LoadReport",
    "authorize_as_partner",
    "hsm_key_objects",
    "partner_client",
    "partner_flow",
    "portal_flow",
    "run_load",
    "service_rss",
    "verify_cms_signature",
]

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
_CSRF = re.compile(r'name="csrf_token"\s+value="([^"]+)"')
_KEY_OBJECTS = re.compile(r"(\d+) key objects")


class FlowFailed(CliError):
    """A flow did not end with a valid signature; the message names the step and the reason."""


@dataclass(frozen=True)
class Ecosystem:
    """Where the services are and what the agent needs to play the partner.

    :ivar urls: base URL by service name.
    :ivar portal_client_id / portal_assertion_key: the portal's client at the signer and the key of
        its ``private_key_jwt`` client assertions (partner mode: the agent plays the portal).
    :ivar partner_api: the lab's partner application at the portal API (id, secret; portal mode).
    :ivar redirect_uri: the portal's registered redirect URI at the signer.
    :ivar signer_audit / ca_issuance_log: the hash-chained logs.
    :ivar run_dir: the pid files.
    """

    urls: dict[str, str]
    portal_client_id: str
    portal_assertion_key: Path
    redirect_uri: str
    signer_audit: Path
    ca_issuance_log: Path
    run_dir: Path
    partner_api: tuple[str, str] = ("", "")

    @classmethod
    def from_runtime(cls, runtime: Any) -> Ecosystem:
        """The ecosystem a :class:`~signlab.runtime.LocalRuntime` runs."""
        signer = SignerSettings.from_env(runtime.service_environment(entry("signer")))
        ca = CaSettings.from_env(runtime.service_environment(entry("ca")))
        portal = PortalSettings.from_env(runtime.service_environment(entry("portal")))
        urls = {name: runtime.url(name) for name in runtime.ports}
        return cls(urls=urls, portal_client_id=signer.portal_client_id,
                   portal_assertion_key=portal.client_assertion_key_path,
                   redirect_uri=signer.portal_redirect_uris[0], signer_audit=signer.audit_path,
                   ca_issuance_log=ca.issuance_log_path, run_dir=runtime.run_dir,
                   partner_api=(portal.api_client_id, portal.api_client_secret.get_secret_value()))

    def portal_authentication(self) -> dict[str, str]:
        """Form fields that authenticate the portal's client at the signer: a fresh
        ``private_key_jwt`` client assertion signed with the portal's key (for raw requests)."""
        assertion = create_client_assertion(load_ec_key(self.portal_assertion_key), client_id=self.portal_client_id,
                                            audience=self.urls["signer"])
        return {"client_id": self.portal_client_id, "client_assertion_type": CLIENT_ASSERTION_TYPE,
                "client_assertion": assertion}

    def signer_client(self, timeout: float = 60.0) -> SignerClient:
        """A client of the signer with the portal's key (the agent plays the partner)."""
        return SignerClient(self.urls["signer"], client_id=self.portal_client_id,
                            assertion_key=load_ec_key(self.portal_assertion_key), timeout=timeout)


class BrowserAgent:
    """A minimal headless browser for the redirect chain and the consent form (no JavaScript needed).

    :param eco: the ecosystem.
    :param timeout: per request.
    """

    def __init__(self, eco: Ecosystem, timeout: float = 60.0) -> None:
        self.eco = eco
        self.timeout = timeout
        self.session = requests.Session()
        # The ecosystem is reached on configured URLs: no proxy or .netrc lookup in the environment
        # (requests scans os.environ on every request otherwise: half of the agent's CPU).
        self.session.trust_env = False
        self.session.headers.update({"Accept": BROWSER_ACCEPT, "User-Agent": "SignLab-load/1.0"})

    def walk(self, url: str, *, stop_at: str | None = None, decision: str = "approve",
             on_consent: Callable[[str], None] | None = None, max_hops: int = 20) -> requests.Response | str:
        """Follow redirects from ``url``; confirm the portal's review page; submit the signer's
        consent form with ``decision``.

        :param stop_at: a URL prefix; the first redirect to it is returned (as the URL) unfollowed.
        :param on_consent: called with the transaction's consent URL before the form is submitted.
        :return: the final response, or the redirect URL that matched ``stop_at``.
        """
        method, data = "GET", None
        for _ in range(max_hops):
            response = self.session.request(method, url, data=data, allow_redirects=False, timeout=self.timeout)
            method, data = "GET", None
            if response.status_code in (301, 302, 303, 307):
                target = urljoin(url, response.headers["Location"])
                if stop_at is not None and target.startswith(stop_at):
                    return target
                url = target
                continue
            match = _CSRF.search(response.text) if response.status_code == 200 else None
            if match and "/review/" in url and 'value="confirm"' in response.text:
                method, data = "POST", {"csrf_token": html.unescape(match.group(1)), "decision": "confirm"}
                continue
            if match and "/oauth2/consent/" in url:
                if on_consent is not None:
                    on_consent(url)
                method, data = "POST", {"csrf_token": html.unescape(match.group(1)), "decision": decision}
                continue
            return response
        raise FlowFailed(f"more than {max_hops} redirects from {url}")


@dataclass
class FlowResult:
    """One checked flow."""

    transaction_id: str | None = None
    signer_transaction_id: str | None = None
    certificate_serial: str | None = None
    seconds: float = 0.0
    error: str | None = None


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@contextmanager
def partner_client(eco: Ecosystem) -> Iterator[SignerClient]:
    """The agent's client as partner at the SSASP; any refusal inside becomes :class:`FlowFailed`."""
    client = eco.signer_client()
    try:
        yield client
    except FlowFailed:
        raise
    except Exception as exc:  # a refusal of any role: keep its words
        raise FlowFailed(f"{exc.__class__.__name__}: {exc}") from None
    finally:
        client.close()


def authorize_as_partner(eco: Ecosystem, client: SignerClient, documents: list[tuple[bytes, str]], *,
                         login_hint: str, qualifier: str) -> Any:
    """Steps 2-5 with the agent as partner: PAR for ``documents`` (digest, label) → browser (eID login
    by ``login_hint``, consent) → code → token. Returns the token response (the SAD is its
    ``access_token``).

    :raises FlowFailed: the browser did not come back, or came back with an error or another state.
    """
    verifier, state = secrets.token_urlsafe(48), secrets.token_urlsafe(16)
    pushed = client.push_authorization_request(
        redirect_uri=eco.redirect_uri, state=state, code_challenge=_b64url(hashlib.sha256(verifier.encode()).digest()),
        qualifier=qualifier, documents=documents, login_hint=login_hint)
    back = BrowserAgent(eco).walk(pushed.authorize_url, stop_at=eco.redirect_uri)
    if not isinstance(back, str):
        raise FlowFailed(f"steps 3-5: the browser did not come back to the partner (HTTP {back.status_code}: "
                         f"{back.text[:200]})")
    params = parse_qs(urlsplit(back).query)
    if "code" not in params:
        raise FlowFailed(f"step 5: {params.get('error', ['?'])[0]}: {params.get('error_description', [''])[0]}")
    if params.get("state") != [state]:
        raise FlowFailed("step 5: the state came back changed")
    return client.exchange_code(params["code"][0], eco.redirect_uri, verifier)


def partner_flow(eco: Ecosystem, document: bytes, *, login_hint: str = "kari-nordmann@no-bankid",
                 qualifier: str = "eu_eidas_qes", fmt: str = "C", label: str = "load.txt",
                 root: x509.Certificate | None = None) -> tuple[FlowResult, Any]:
    """One person-signing flow with the agent as partner: PAR → browser → consent → token → signDoc.

    :return: the checked result and the :class:`~shared.clients.signer.SignDocResult`.
    :raises FlowFailed: any refusal or an invalid signature.
    """
    started = time.monotonic()
    digest = hashlib.sha256(document).digest()
    with partner_client(eco) as client:
        token = authorize_as_partner(eco, client, [(digest, label)], login_hint=login_hint, qualifier=qualifier)
        result = client.sign_doc(token.access_token, digests=[digest], signature_format=fmt, qualifier=qualifier)
    if fmt in ("C", "P"):
        chain = [x509.Certificate.load(c) for c in result.certificates]
        verify_cms_signature(result.signature_objects[0], digest, chain, root)
    return FlowResult(signer_transaction_id=result.transaction_id, certificate_serial=result.certificate_serial,
                      seconds=time.monotonic() - started), result


def portal_flow(eco: Ecosystem, document: bytes, *, login_hint: str = "kari-nordmann@no-bankid",
                qualifier: str = "qes", label: str = "load.txt", root: x509.Certificate | None = None,
                timeout: float = 120.0) -> FlowResult:
    """One complete flow through the portal (CAdES B-B of ``document``), independently verified.

    :raises FlowFailed: any refusal, a transaction that does not complete, or an invalid signature.
    """
    started = time.monotonic()
    portal = eco.urls["portal"]
    browser = BrowserAgent(eco, timeout=timeout)
    created = requests.post(f"{portal}/api/v1/sign-requests", timeout=timeout, auth=eco.partner_api, json={
        "documents": [{"name": label, "content": base64.b64encode(document).decode()}],
        "qualifier": qualifier, "format": "cades", "level": "B-B", "login_hint": login_hint})
    if created.status_code != 201:
        raise FlowFailed(f"step 1: the portal answered {created.status_code}: {created.text[:300]}")
    body = created.json()
    tx_id = body["transaction_id"]
    final = browser.walk(body["review_url"])
    status = requests.get(f"{portal}/api/v1/transactions/{tx_id}", timeout=timeout, auth=eco.partner_api).json()
    if status.get("state") != "completed":
        where = final.status_code if isinstance(final, requests.Response) else final
        raise FlowFailed(f"transaction {tx_id} is {status.get('state')}: {status.get('error')}: "
                         f"{status.get('error_description')} (last page: {where})")
    signed = requests.get(f"{portal}/api/v1/transactions/{tx_id}/documents/0", timeout=timeout, auth=eco.partner_api)
    if signed.status_code != 200:
        raise FlowFailed(f"step 10: download answered {signed.status_code}")
    info = cms.ContentInfo.load(signed.content)
    chain = list(info["content"]["certificates"] or [])
    verify_cms_signature(signed.content, hashlib.sha256(document).digest(),
                         [c.chosen for c in chain], root)
    signer = status.get("signer") or {}
    return FlowResult(transaction_id=tx_id, signer_transaction_id=signer.get("signer_transaction_id"),
                      certificate_serial=signer.get("certificate_serial"), seconds=time.monotonic() - started)


def _verify(issuer: cx509.Certificate, data: bytes, signature: bytes, hash_name: str) -> None:
    algorithm = {"sha256": hashes.SHA256(), "sha384": hashes.SHA384(), "sha512": hashes.SHA512()}[hash_name]
    key = issuer.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        key.verify(signature, data, ec.ECDSA(algorithm))
    elif isinstance(key, rsa.RSAPublicKey):
        key.verify(signature, data, padding.PKCS1v15(), algorithm)
    else:
        raise FlowFailed(f"unexpected key type {type(key).__name__}")


def verify_cms_signature(cms_der: bytes, document_digest: bytes, certificates: list[x509.Certificate],
                         root: x509.Certificate | None) -> None:
    """Check a detached CMS signature over ``document_digest`` (SHA-256) without the signer's code.

    Checks: one SignerInfo; message-digest attribute = ``document_digest``; the signature over the
    DER SET OF signed attributes with the leaf's key; the leaf signed by a certificate of
    ``certificates`` that is signed by ``root`` (when given); leaf valid at the check and keyUsage
    nonRepudiation.

    :raises FlowFailed: naming the failed check.
    """
    signed_data = cms.ContentInfo.load(cms_der)["content"]
    infos = signed_data["signer_infos"]
    if len(infos) != 1:
        raise FlowFailed(f"the CMS has {len(infos)} SignerInfos, expected 1")
    info = infos[0]
    attrs = {a["type"].native: a["values"][0].native for a in info["signed_attrs"]}
    if attrs.get("message_digest") != document_digest:
        raise FlowFailed("the CMS message-digest is not the document's digest")
    issuer_serial = info["sid"].chosen
    embedded = [c.chosen for c in (signed_data["certificates"] or [])]
    pool = {c.serial_number: c for c in [*certificates, *embedded]}
    leaf = pool.get(issuer_serial["serial_number"].native) if info["sid"].name == "issuer_and_serial_number" else None
    if leaf is None:
        raise FlowFailed("the signer certificate is not among the returned certificates")
    to_be_signed = bytearray(info["signed_attrs"].dump())
    to_be_signed[0] = 0x31  # the signature covers the SET OF encoding (RFC 5652 §5.4)
    hash_name = info["digest_algorithm"]["algorithm"].native
    leaf_c = cx509.load_der_x509_certificate(leaf.dump())
    try:
        _verify(leaf_c, bytes(to_be_signed), info["signature"].native, hash_name)
    except InvalidSignature:
        raise FlowFailed("the signature value does not verify with the certificate's key") from None
    issuers = [c for c in pool.values() if c.subject == leaf.issuer and c.serial_number != leaf.serial_number]
    if not issuers:
        raise FlowFailed("the issuing CA certificate is missing")
    issuing = cx509.load_der_x509_certificate(issuers[0].dump())
    try:
        leaf_c.verify_directly_issued_by(issuing)
        if root is not None:
            issuing.verify_directly_issued_by(cx509.load_der_x509_certificate(root.dump()))
    except (InvalidSignature, ValueError, TypeError) as exc:
        raise FlowFailed(f"the certificate chain does not verify to the SignLab root ({exc})") from None
    usage = leaf.key_usage_value
    if usage is None or "non_repudiation" not in usage.native:
        raise FlowFailed("the signer certificate lacks keyUsage nonRepudiation")
    now = time.time()
    validity = leaf["tbs_certificate"]["validity"]
    if not validity["not_before"].native.timestamp() - 120 <= now <= validity["not_after"].native.timestamp() + 60:
        raise FlowFailed("the signer certificate is not valid at signing time")


def fetch_root(eco: Ecosystem) -> x509.Certificate:
    """The SignLab root certificate from the CA (the trust anchor of the checks)."""
    response = requests.get(f"{eco.urls['ca']}/certs/root.crt", timeout=10)
    response.raise_for_status()
    return x509.Certificate.load(response.content)


def hsm_key_objects(eco: Ecosystem) -> int:
    """Key objects in the signer's HSM, as the signer process sees them (its ``/healthz``).

    One-time keys are PKCS#11 session objects: only the process that made them sees them.
    """
    health = requests.get(f"{eco.urls['signer']}/healthz", timeout=10).json()
    detail = str(health.get("checks", {}).get("hsm", {}).get("detail", ""))
    match = _KEY_OBJECTS.search(detail)
    if match is None:
        raise FlowFailed(f"the signer's health check does not report key objects: {detail!r}")
    return int(match.group(1))


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def service_rss(run_dir: Path) -> dict[str, int]:
    """Resident memory (KiB) per service: the recorded gunicorn master plus its workers."""
    import json

    out = {}
    for pid_file in sorted(run_dir.glob("*.pid")):
        try:
            pid = int(json.loads(pid_file.read_text())["pid"])
        except (OSError, ValueError, KeyError):
            continue
        out[pid_file.stem] = _rss_kib(pid) + sum(_rss_kib(child) for child in _children(pid))
    return out


@dataclass
class LoadReport:
    """The outcome of :func:`run_load`."""

    flows: int
    concurrency: int
    mode: str
    seconds: float = 0.0
    results: list[FlowResult] = field(default_factory=list)
    rss_samples: list[dict[str, int]] = field(default_factory=list)
    """Per-service RSS (KiB): at start, after each quarter of the flows, at the end."""
    audit: dict[str, str] = field(default_factory=dict)
    hsm_key_objects: int | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[FlowResult]:
        """Flows that failed."""
        return [r for r in self.results if r.error]

    @property
    def ok(self) -> bool:
        """Zero flow errors and every after-run check passed."""
        return not self.errors and not self.problems and len(self.results) == self.flows

    def memory_growth(self) -> dict[str, float]:
        """Per service: RSS after the last quarter relative to after the first quarter (1.0 = no growth)."""
        if len(self.rss_samples) < 3:
            return {}
        first, last = self.rss_samples[1], self.rss_samples[-1]
        return {name: (last.get(name, 0) / first[name]) if first.get(name) else 0.0 for name in first}

    def summary(self) -> str:
        """Human-readable summary."""
        times = sorted(r.seconds for r in self.results if not r.error)
        lines = [f"{len(self.results)} flows ({self.mode} mode) at concurrency {self.concurrency} in {self.seconds:.1f} s"
                 f" ({len(self.results) / self.seconds:.2f} flows/s), {len(self.errors)} error(s)" if self.seconds else ""]
        if times:
            lines.append(f"flow time: median {times[len(times) // 2]:.2f} s, p95 {times[int(len(times) * 0.95) - 1 if len(times) > 1 else 0]:.2f} s,"
                         f" max {times[-1]:.2f} s")
        for item in self.errors[:10]:
            lines.append(f"  ERROR {item.error}")
        for label, verdict in self.audit.items():
            lines.append(f"{label}: {verdict}")
        lines.append(f"HSM key objects after the run: {self.hsm_key_objects}")
        if self.rss_samples:
            names = sorted(self.rss_samples[0])
            lines.append("RSS MiB   " + "  ".join(f"{n:>8}" for n in names))
            labels = ["start"] + [f"q{i}" for i in range(1, len(self.rss_samples) - 1)] + ["end"]
            for label, sample in zip(labels, self.rss_samples, strict=False):
                lines.append(f"{label:<9} " + "  ".join(f"{sample.get(n, 0) / 1024:8.1f}" for n in names))
            growth = self.memory_growth()
            if growth:
                lines.append("growth q1→end " + ", ".join(f"{n} {100 * (g - 1):+.1f} %" for n, g in sorted(growth.items())))
        for problem in self.problems:
            lines.append(f"PROBLEM: {problem}")
        lines.append("OK" if self.ok else "FAILED")
        return "\n".join(line for line in lines if line)


def _audit_events(path: Path) -> list[Any]:
    return list(AuditLog(path).entries()) if path.exists() else []


def run_load(eco: Ecosystem, *, flows: int, concurrency: int, mode: str = "portal",
             login_hint: str = "kari-nordmann@no-bankid", max_growth: float | None = None,
             progress: Callable[[str], None] | None = None) -> LoadReport:
    """Run ``flows`` checked flows with ``concurrency`` workers, then check the logs, HSM and memory.

    :param mode: ``portal`` (through the partner portal) or ``partner`` (the agent is the partner).
    :param max_growth: when given, RSS growth between the first and the last quarter above this
        fraction (0.10 = 10 %) is a problem.
    """
    report = LoadReport(flows, concurrency, mode)
    root = fetch_root(eco)
    audit_before = len(_audit_events(eco.signer_audit))
    report.rss_samples.append(service_rss(eco.run_dir))
    quarters = {max(1, round(flows * q / 4)) for q in (1, 2, 3)} if flows >= 4 else set()
    lock = threading.Lock()
    done = 0

    def one(index: int) -> FlowResult:
        nonlocal done
        document = f"SignLab load flow {index} {secrets.token_hex(8)}\n".encode()
        try:
            if mode == "portal":
                result = portal_flow(eco, document, login_hint=login_hint, root=root, label=f"load-{index}.txt")
            else:
                result, _ = partner_flow(eco, document, login_hint=login_hint, root=root, label=f"load-{index}.txt")
        except FlowFailed as exc:
            result = FlowResult(error=f"flow {index}: {exc}")
        except Exception as exc:  # a transport failure of the agent itself is an error of the run too
            result = FlowResult(error=f"flow {index}: {exc.__class__.__name__}: {exc}")
        with lock:
            done += 1
            if done in quarters:
                report.rss_samples.append(service_rss(eco.run_dir))
            if progress is not None and (done % max(1, flows // 10) == 0 or result.error):
                progress(f"{done}/{flows} flows" + (f" — {result.error}" if result.error else ""))
        return result

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        report.results = list(pool.map(one, range(flows)))
    report.seconds = time.monotonic() - started
    report.rss_samples.append(service_rss(eco.run_dir))
    # After-run checks: hash chains, keys created == destroyed, HSM empty.
    for label, path in (("signer (SSASP) audit log", eco.signer_audit), ("ca (TSP) issuance log", eco.ca_issuance_log)):
        outcome = AuditLog(path).verify()
        report.audit[label] = f"{outcome.entries} entries, " + ("intact" if outcome.ok else f"BROKEN: {outcome.reason}")
        if not outcome.ok:
            report.problems.append(f"{label} does not verify: {outcome.reason}")
    events = _audit_events(eco.signer_audit)[audit_before:]
    created = {e.data.get("key_id") for e in events if e.event == "key.created"}
    destroyed = {e.data.get("key_id") for e in events if e.event == "key.destroyed"}
    if created - destroyed:
        report.problems.append(f"{len(created - destroyed)} one-time key(s) created but never destroyed")
    completed = sum(1 for e in events if e.event == "transaction.completed")
    successes = len([r for r in report.results if not r.error])
    if completed < successes:
        report.problems.append(f"the audit log records {completed} completed transactions for {successes} signatures")
    report.hsm_key_objects = hsm_key_objects(eco)
    if report.hsm_key_objects:
        report.problems.append(f"{report.hsm_key_objects} key object(s) left in the HSM")
    if max_growth is not None:
        for name, growth in report.memory_growth().items():
            if growth > 1 + max_growth:
                report.problems.append(f"{name} memory grew {100 * (growth - 1):.1f} % between the first and last quarter")
    return report
