"""``signlab bench``: how fast is remote QES with eID login, one-time keys and short-term
certificates, compared with signing the same PDF locally?

Three parts, each against the running ecosystem (real processes, real HTTP on loopback):

* **e2e** — N complete person-signing flows (steps 1-10) at concurrency C through the portal,
  driven by the headless agent of :mod:`signlab.load` (:class:`~signlab.load.BrowserAgent`): a
  small PDF, PAdES B-B, QES, the eID login by ``login_hint``, the consent form, the download.
  Reported: flows/s, latency p50/p95/p99 per flow, and the median time per flow step taken from
  the trace store (:mod:`shared.tracing`: per step, the union of the intervals of its exchanges).
  In the same run, pyHanko signs the same PDF locally at PAdES B-B with a software key
  (:func:`local_pades_seconds`), and the ratio e2e median / local median is reported.
* **signer** — the signing service alone: N credential tokens (SADs) are obtained first through
  real flows in partner mode (PAR → browser → eID → consent → token; untimed), then N timed
  ``signDoc`` calls at concurrency C, each making a fresh one-time key and certificate.
  Reported: signatures/s and latency percentiles; and the *floor* — the same operations in one
  process without HTTP (SoftHSM key generation and signing, CSR, certificate by the TSP's own
  :class:`~services.ca.authority.CertificateAuthority`, CMS by the signer's own
  :func:`~services.signer.signing.build_cms`, key destruction) measured in a child process with a
  temporary SoftHSM token (one SoftHSM configuration per process) — and the ratio. Then the cost
  of one exchange without crypto: N CSC ``info`` calls, CPU per call of the signer and the bench.
* **batch** — one authorization for B documents (default 100): the agent plays the partner and
  packages like the portal (:func:`services.portal.pades.prepare_pdf` / ``finish_pdf``): total
  time from preparing the first PDF to the last signed PDF. The portal itself accepts at most
  ``SIGNLAB_PORTAL_MAX_DOCUMENTS`` (≤ 50) per request, hence the partner path; the signer needs
  ``SIGNLAB_SIGNER_MAX_DOCUMENTS`` ≥ B (the bench sets 100 when it starts the ecosystem itself).

The report ends with the targets and the *CPU budget*: what each throughput the targets need
leaves per flow or signature on this machine's CPUs, next to the CPU measured per item
(:meth:`BenchReport.budget`) — why a target is or is not within reach.

Peak resident memory per service (gunicorn master + workers, psutil, sampled every 50 ms) is
recorded over the whole run. Every signature is checked after the timed part, independently of
the code that made it (:func:`signlab.load.verify_cms_signature` against the CA's root).

Limits: local runtime only (pid files, secrets); the bench process shares the machine with the
services, so its own client work (HTTP, PDF preparation in the batch) is inside the figures.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

import psutil
import requests
from asn1crypto import x509

from shared.clients.signer import SignerClient
from signlab.load import (
    BrowserAgent,
    FlowFailed,
    authorize_as_partner,
    fetch_root,
    partner_client,
    verify_cms_signature,
)
from signlab.processes import ServiceProcesses
from signlab.scenarios.environment import Ecosystem, ecosystem_from_runtime

__all__ = [
    "TARGETS",
    "BenchReport",
    "RssSampler",
    "bench_pdf",
    "floor_in_process",
    "local_pades_seconds",
    "percentiles",
    "run_bench",
    "step_durations",
]

PARTS = ("e2e", "signer", "batch")
LOGIN_HINT = "kari-nordmann@no-bankid"

TARGETS: dict[str, tuple[str, float]] = {
    "e2e_ratio": ("e2e median / local pyHanko median", 1.5),
    "e2e_throughput": ("e2e flows/s at concurrency 8", 20.0),
    "signer_throughput": ("signer one-time-key signatures/s", 300.0),
    "batch_seconds": ("batch of 100 documents, seconds", 3.0),
    "rss_mib": ("peak RSS per service, MiB", 150.0),
}
"""Issue 12's targets: key → (what, limit). ``*_throughput`` are minimums, the others maximums."""


# ------------------------------------------------------------------------------------ statistics


def percentiles(values: Iterable[float]) -> dict[str, float]:
    """``n``, ``p50``, ``p95``, ``p99``, ``mean``, ``min``, ``max`` (nearest-rank, in the values' unit)."""
    data = sorted(values)
    if not data:
        return {"n": 0}

    def rank(p: float) -> float:
        return data[min(len(data) - 1, max(0, int(round(p / 100 * len(data) + 0.5)) - 1))]

    return {"n": len(data), "p50": statistics.median(data), "p95": rank(95), "p99": rank(99),
            "mean": statistics.fmean(data), "min": data[0], "max": data[-1]}


def _ms(stats: dict[str, float]) -> dict[str, float]:
    return {k: (v if k == "n" else round(v * 1000, 2)) for k, v in stats.items()}


# ------------------------------------------------------------------------------------ memory


class RssSampler:
    """Samples the resident memory of every service (master + children) in a thread; keeps the peak.

    :param run_dir: the runtime's pid files (``<data_dir>/run/<service>.pid``, JSON with ``pid``).
    :param interval: seconds between samples.
    """

    CHILDREN_REFRESH_SECONDS = 1.0
    """How often the worker processes of each service are looked up again (a worker restarted by
    gunicorn is seen within this time)."""

    def __init__(self, run_dir: Path, interval: float = 0.05) -> None:
        self.run_dir = run_dir
        self.interval = interval
        self.peak: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-rss", daemon=True)
        self._processes = ServiceProcesses(run_dir, children_refresh_seconds=self.CHILDREN_REFRESH_SECONDS)

    def sample(self) -> dict[str, int]:
        """One sample: bytes per service; updates the peaks."""
        now = self._processes.resident_bytes()
        for name, total in now.items():
            self.peak[name] = max(self.peak.get(name, 0), total)
        return now

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time (user + system) used so far per service (master + workers) and by this bench process."""
        out = self._processes.cpu_seconds()
        out["bench"] = sum(psutil.Process().cpu_times()[:2])
        return out

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> RssSampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


# ------------------------------------------------------------------------------------ documents


def bench_pdf() -> bytes:
    """A small one-page PDF (the portal's bundled sample), about 1.2 kB."""
    from services.portal.samples import sample_path

    return sample_path("employment-contract.pdf").read_bytes()


def _pades_cms(signed_pdf: bytes) -> tuple[bytes, bytes]:
    """The CMS and the byte-range digest of the (only) signature of a signed PDF."""
    from pyhanko.pdf_utils.reader import PdfFileReader

    signature = PdfFileReader(BytesIO(signed_pdf)).embedded_signatures[0]
    return bytes(signature.sig_object["/Contents"]), signature.compute_digest("sha256")


def verify_signed_pdf(signed_pdf: bytes, root: x509.Certificate) -> None:
    """Check a PAdES signature without the code that made it (:func:`signlab.load.verify_cms_signature`).

    :raises FlowFailed: naming the failed check.
    """
    cms_der, digest = _pades_cms(signed_pdf)
    verify_cms_signature(cms_der, digest, [], root)


# ------------------------------------------------------------------------------------ local baseline


def local_pades_seconds(pdf: bytes, iterations: int) -> list[float]:
    """Seconds per local pyHanko PAdES B-B signature of ``pdf`` with a software EC P-256 key.

    The key and a two-level chain (root → leaf with nonRepudiation) are made once, untimed; each
    iteration signs a fresh incremental update of the same PDF (``PdfSigner.sign_pdf``, SHA-256,
    ETSI.CAdES.detached) — what a desktop signing tool does per signature.
    """
    from asn1crypto import keys as asn1_keys
    from cryptography import x509 as cx509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import fields, signers
    from pyhanko_certvalidator.registry import SimpleCertificateStore

    now = dt.datetime.now(dt.UTC)
    root_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    root_name = cx509.Name([cx509.NameAttribute(NameOID.COMMON_NAME, "SignLab bench local root")])
    leaf_name = cx509.Name([cx509.NameAttribute(NameOID.COMMON_NAME, "SignLab bench local signer")])
    root = (cx509.CertificateBuilder().subject_name(root_name).issuer_name(root_name).public_key(root_key.public_key())
            .serial_number(cx509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(cx509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(root_key, hashes.SHA256()))
    leaf = (cx509.CertificateBuilder().subject_name(leaf_name).issuer_name(root_name).public_key(leaf_key.public_key())
            .serial_number(cx509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(cx509.KeyUsage(digital_signature=False, content_commitment=True, key_encipherment=False,
                                          data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                          crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(root_key, hashes.SHA256()))
    der = serialization.Encoding.DER
    signer = signers.SimpleSigner(
        signing_cert=x509.Certificate.load(leaf.public_bytes(der)),
        signing_key=asn1_keys.PrivateKeyInfo.load(leaf_key.private_bytes(
            der, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())),
        cert_registry=SimpleCertificateStore.from_certs([x509.Certificate.load(root.public_bytes(der))]),
    )
    meta = signers.PdfSignatureMetadata(field_name="Signature1", md_algorithm="sha256",
                                        subfilter=fields.SigSeedSubFilter.PADES)
    times = []
    for _ in range(iterations):
        started = time.perf_counter()
        signers.sign_pdf(IncrementalPdfFileWriter(BytesIO(pdf), strict=False), meta, signer=signer)
        times.append(time.perf_counter() - started)
    return times


# ------------------------------------------------------------------------------------ flows


@dataclass
class FlowRun:
    """One timed flow."""

    seconds: float
    transaction_id: str | None = None
    signed: bytes | None = None
    error: str | None = None


def pades_portal_flow(eco: Ecosystem, pdf: bytes, *, label: str, login_hint: str = LOGIN_HINT,
                      timeout: float = 120.0) -> FlowRun:
    """Steps 1-10 through the portal for one PDF (PAdES B-B, QES), timed from the request to the download.

    :raises FlowFailed: a refusal or a transaction that does not complete.
    """
    portal = eco.urls["portal"]
    browser = BrowserAgent(eco, timeout=timeout)
    started = time.perf_counter()
    created = browser.session.post(f"{portal}/api/v1/sign-requests", timeout=timeout, auth=eco.partner_api, json={
        "documents": [{"name": label, "content": base64.b64encode(pdf).decode()}],
        "qualifier": "qes", "format": "pades", "level": "B-B", "login_hint": login_hint},
        headers={"Accept": "application/json"})
    if created.status_code != 201:
        raise FlowFailed(f"step 1: the portal answered {created.status_code}: {created.text[:300]}")
    body = created.json()
    tx_id = body["transaction_id"]
    # The signer's browser: the review page (confirmed; its page images are not fetched, as a
    # headless agent loads no images), the SSASP, back to the portal.
    browser.walk(body["review_url"])
    signed = browser.session.get(f"{portal}/api/v1/transactions/{tx_id}/documents/0", timeout=timeout,
                                 auth=eco.partner_api)
    if signed.status_code != 200:
        # Only a failed flow asks why: the partner application downloads after the callback.
        status = browser.session.get(f"{portal}/api/v1/transactions/{tx_id}", timeout=timeout, auth=eco.partner_api,
                                     headers={"Accept": "application/json"}).json()
        raise FlowFailed(f"step 10: download answered {signed.status_code}; transaction {tx_id} is "
                         f"{status.get('state')}: {status.get('error')}: {status.get('error_description')}")
    return FlowRun(time.perf_counter() - started, tx_id, signed.content)


def sad_as_partner(eco: Ecosystem, digests: list[bytes], *, login_hint: str = LOGIN_HINT,
                   qualifier: str = "eu_eidas_qes") -> str:
    """Steps 2-5 with the agent as partner for ``digests``; return the credential token (the SAD).

    :raises FlowFailed: any refusal.
    """
    with partner_client(eco) as client:
        token = authorize_as_partner(eco, client, [(d, f"bench-{i}.pdf") for i, d in enumerate(digests)],
                                     login_hint=login_hint, qualifier=qualifier)
        return token.access_token


def _pool_map(fn: Callable[[int], Any], count: int, concurrency: int) -> tuple[list[Any], float]:
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        results = list(pool.map(fn, range(count)))
    return results, time.perf_counter() - started


def _cpu_per_item(before: dict[str, float], after: dict[str, float], count: int) -> dict[str, float]:
    """Milliseconds of CPU per flow/signature, per service and for the bench process itself."""
    return {name: round(1000 * (after[name] - before.get(name, 0.0)) / max(1, count), 2) for name in sorted(after)}


# ------------------------------------------------------------------------------------ traces


def step_durations(data_dir: Path, transaction_ids: list[str]) -> dict[int, float]:
    """Median milliseconds per flow step over the transactions, from the trace store.

    A step's time in one transaction is the union of the intervals of its exchanges (nested and
    parallel calls are not counted twice); steps 8 and 9 happen inside the signer's signDoc
    (step 6 on the wire), so their time is also inside step 6's.
    """
    from shared.tracing import TraceStore, build_transaction

    store = TraceStore(data_dir / "traces")
    per_step: dict[int, list[float]] = {}
    for tx_id in transaction_ids:
        group = store.find(tx_id)
        if group is None:
            continue
        intervals: dict[int, list[tuple[int, int]]] = {}
        for exchange in build_transaction(group).exchanges:
            intervals.setdefault(exchange.step, []).append((exchange.start, exchange.end))
        for number, spans in intervals.items():
            total, current_start, current_end = 0, None, None
            for start, end in sorted(spans):
                if current_end is None or start > current_end:
                    if current_end is not None and current_start is not None:
                        total += current_end - current_start
                    current_start, current_end = start, end
                else:
                    current_end = max(current_end, end)
            if current_end is not None and current_start is not None:
                total += current_end - current_start
            per_step.setdefault(number, []).append(total / 1e6)
    return {n: round(statistics.median(v), 2) for n, v in sorted(per_step.items())}


# ------------------------------------------------------------------------------------ the floor


def floor_in_process(ca_data_dir: Path, ca_env: dict[str, str], iterations: int) -> dict[str, Any]:
    """The signer's one-time-key operations in this process without HTTP; seconds per operation.

    Must run in a process that has not loaded SoftHSM yet (a temporary token is provisioned).
    The certificate comes from the TSP's own ``CertificateAuthority`` over the ecosystem's
    issuing CA (read only), with a temporary store and issuance log.
    """
    from services.ca.authority import CertificateAuthority
    from services.ca.issuance import parse_csr
    from services.ca.issuance_log import IssuanceLog
    from services.ca.pki import load_hierarchy
    from services.ca.profiles import Profile, SubjectIdentity
    from services.ca.settings import CaSettings
    from services.ca.store import CertificateStore
    from services.signer.hsm import Hsm, provision_token
    from services.signer.settings import SignerSettings
    from services.signer.signing import HsmCmsSigner, build_cms, build_csr
    from shared.settings import secret_fields

    with tempfile.TemporaryDirectory(prefix="signlab-bench-floor-") as tmp:
        work = Path(tmp)
        signer_settings = SignerSettings.model_validate({
            "data_dir": work / "signer", **{name: secrets.token_urlsafe(12)[:12] for name in secret_fields(SignerSettings)},
            "hsm_user_pin": "1234", "hsm_so_pin": "5678"})
        (work / "signer").mkdir()
        provision_token(signer_settings)
        hsm = Hsm(signer_settings)
        ca_settings = CaSettings.from_env({**ca_env, CaSettings.env_name("data_dir"): str(work / "ca")})
        authority = CertificateAuthority(settings=ca_settings, hierarchy=load_hierarchy(ca_data_dir),
                                         store=CertificateStore(work / "ca.sqlite3"), log=IssuanceLog(work / "issuance.log"))
        subject = SubjectIdentity(country="NO", given_name="Kari", family_name="Nordmann", serial_number="PNONO-01017012345")
        ops: dict[str, list[float]] = {k: [] for k in ("keygen", "csr", "certificate", "cms", "destroy", "total")}
        for i in range(iterations + 3):
            marks = [time.perf_counter()]
            key = hsm.create_one_time_key("ec-p256", label=f"floor-{i}")
            marks.append(time.perf_counter())
            csr_der = build_csr(hsm, key, common_name=f"floor {i}")
            marks.append(time.perf_counter())
            csr = parse_csr(base64.b64encode(csr_der).decode())
            issued = authority.issue(public_key=csr.public_key(), subject=subject, profile=Profile.QES,  # type: ignore[arg-type]
                                     subject_id="ps-bench", loa="high", requester="bench", transaction_id=f"floor-{i}")
            from cryptography.hazmat.primitives import serialization

            leaf = x509.Certificate.load(issued.certificate.public_bytes(serialization.Encoding.DER))
            chain = [x509.Certificate.load(c.public_bytes(serialization.Encoding.DER)) for c in issued.chain]
            marks.append(time.perf_counter())
            build_cms(HsmCmsSigner(hsm, key, leaf, chain, "sha256"), hashlib.sha256(f"doc {i}".encode()).digest(),
                      "sha256", "P")
            marks.append(time.perf_counter())
            hsm.destroy_key(key.key_id)
            marks.append(time.perf_counter())
            if i < 3:
                continue  # warm-up
            for name, (a, b) in zip(("keygen", "csr", "certificate", "cms", "destroy"), zip(marks, marks[1:]), strict=True):
                ops[name].append(b - a)
            ops["total"].append(marks[-1] - marks[0])
        hsm.close()
    return {name: _ms(percentiles(values)) for name, values in ops.items()}


def _floor_child() -> None:
    """Entry point of the floor's child process: JSON parameters on stdin, JSON result on stdout."""
    params = json.loads(sys.stdin.read())
    result = floor_in_process(Path(params["ca_data_dir"]), params["ca_env"], int(params["iterations"]))
    sys.stdout.write(json.dumps(result))


def run_floor(ca_data_dir: Path, ca_env: dict[str, str], iterations: int) -> dict[str, Any]:
    """:func:`floor_in_process` in a child process (SoftHSM allows one configuration per process)."""
    done = subprocess.run([sys.executable, "-c", "from signlab.bench import _floor_child; _floor_child()"],
                          input=json.dumps({"ca_data_dir": str(ca_data_dir), "ca_env": ca_env, "iterations": iterations}),
                          capture_output=True, text=True, check=False, timeout=600,
                          cwd=str(Path(__file__).resolve().parents[1]))
    if done.returncode != 0:
        raise RuntimeError(f"the in-process floor failed: {done.stderr.strip()[-800:]}")
    return dict(json.loads(done.stdout))


# ------------------------------------------------------------------------------------ the report


@dataclass
class BenchReport:
    """Everything one run measured (seconds inside, milliseconds in the JSON form)."""

    machine: dict[str, Any] = field(default_factory=dict)
    e2e: dict[str, Any] = field(default_factory=dict)
    signer: dict[str, Any] = field(default_factory=dict)
    batch: dict[str, Any] = field(default_factory=dict)
    rss_peak_mib: dict[str, float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def targets(self) -> list[dict[str, Any]]:
        """Each target of issue 12 with the measured value and whether it is met (None: not measured)."""
        values = {
            "e2e_ratio": self.e2e.get("ratio"),
            "e2e_throughput": self.e2e.get("flows_per_second") if self.e2e.get("concurrency") == 8 else None,
            "signer_throughput": self.signer.get("signatures_per_second"),
            "batch_seconds": self.batch.get("seconds") if self.batch.get("documents") == 100 else None,
            "rss_mib": max(self.rss_peak_mib.values()) if self.rss_peak_mib else None,
        }
        rows = []
        for key, (what, limit) in TARGETS.items():
            value = values[key]
            met = None if value is None else (value >= limit if key.endswith("throughput") else value <= limit)
            rows.append({"target": key, "what": what, "limit": limit, "value": value, "met": met})
        return rows

    def budget(self) -> list[dict[str, Any]]:
        """What each throughput the targets need leaves per item on this machine's CPUs, next to the
        CPU the run measured per item (every service and the bench's own client together).

        ``T`` items/s on ``N`` CPUs leave ``N / T`` s of CPU per item. The ratio target becomes a
        throughput by Little's law: ``C`` flows in progress at a latency ``L`` complete ``C / L``
        flows/s, so a median of 1.5 × the local signature at concurrency ``C`` needs about
        ``C / (1.5 × local)`` flows/s (the mean stands in for the median). The signer's one-time
        keys are PKCS#11 session objects of its one process, whose Python runs on one core at a
        time: its own share is ``1 / T`` s per signature.
        """
        cpus = float(self.machine.get("cpus") or 1)
        rows = []

        def add(what: str, per_second: float, unit: str, measured: dict[str, float] | None,
                only: str | None = None, cores: float = cpus) -> None:
            if not measured:
                return
            value = measured.get(only, 0.0) if only else sum(measured.values())
            rows.append({"what": what, "needs_per_second": round(per_second, 1), "unit": unit,
                         "allowed_cpu_ms": round(1000 * cores / per_second, 2), "measured_cpu_ms": round(value, 2)})

        e2e_cpu, signer_cpu = self.e2e.get("cpu_ms_per_flow"), self.signer.get("cpu_ms_per_signature")
        flows, ratio, signatures = (TARGETS[k][1] for k in ("e2e_throughput", "e2e_ratio", "signer_throughput"))
        add(f"e2e ≥ {flows:g} flows/s", flows, "flow", e2e_cpu)
        local_ms = self.e2e.get("local_ms", {}).get("p50")
        if local_ms:
            concurrency = self.e2e["concurrency"]
            add(f"e2e median ≤ {ratio:g} × local at concurrency {concurrency} (Little's law)",
                concurrency / (ratio * local_ms / 1000), "flow", e2e_cpu)
        add(f"signer ≥ {signatures:g} signatures/s", signatures, "signature", signer_cpu)
        add(f"signer ≥ {signatures:g}/s: the signer's own process", signatures, "signature", signer_cpu,
            only="signer", cores=1.0)
        return rows

    @property
    def ok(self) -> bool:
        """Every part completed and every signature verified (targets are reported, not enforced)."""
        return not self.errors

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (``--json FILE``)."""
        return {"ok": self.ok, "machine": self.machine, "e2e": self.e2e, "signer": self.signer, "batch": self.batch,
                "rss_peak_mib": self.rss_peak_mib, "targets": self.targets(), "budget": self.budget(),
                "errors": self.errors}

    def table(self) -> str:
        """The human-readable table."""
        lines = [f"machine: {self.machine.get('cpus')} CPUs ({self.machine.get('cpu', '?')}), "
                 f"load {self.machine.get('load_before')} before, {self.machine.get('load_after')} after; "
                 f"Python {self.machine.get('python')}"]

        def row(label: str, value: str) -> None:
            lines.append(f"  {label:<44} {value}")

        if self.e2e:
            e = self.e2e
            lines.append(f"e2e: {e['flows']} flows (PAdES B-B, QES, steps 1-10) at concurrency {e['concurrency']}")
            row("throughput", f"{e['flows_per_second']:.2f} flows/s ({e['seconds']:.2f} s)")
            lat = e["latency_ms"]
            row("flow latency p50 / p95 / p99", f"{lat.get('p50', 0):.1f} / {lat.get('p95', 0):.1f} / {lat.get('p99', 0):.1f} ms")
            if e.get("sequential_latency_ms"):
                row("flow latency alone (concurrency 1) p50", f"{e['sequential_latency_ms']['p50']:.1f} ms")
            row("local pyHanko PAdES B-B p50", f"{e['local_ms']['p50']:.2f} ms")
            row("ratio e2e median / local median", f"{e['ratio']:.1f} (a flow alone: {e.get('ratio_alone', 0):.1f})")
            row("CPU per flow (ms)", ", ".join(f"{n} {v:.1f}" for n, v in e.get("cpu_ms_per_flow", {}).items()))
            if e.get("steps_ms"):
                from shared.flow import step as flow_step

                lines.append("  median time per step (trace store):")
                for number, ms in e["steps_ms"].items():
                    lines.append(f"    step {int(number):>2} {flow_step(int(number)).name:<40} {ms:8.2f} ms")
        if self.signer:
            s = self.signer
            lines.append(f"signer: {s['signatures']} signDoc calls (fresh one-time key + certificate each) at "
                         f"concurrency {s['concurrency']}")
            row("throughput", f"{s['signatures_per_second']:.1f} signatures/s")
            lat = s["latency_ms"]
            row("latency p50 / p95 / p99", f"{lat.get('p50', 0):.1f} / {lat.get('p95', 0):.1f} / {lat.get('p99', 0):.1f} ms")
            row("CPU per signature (ms)", ", ".join(f"{n} {v:.1f}" for n, v in s.get("cpu_ms_per_signature", {}).items()))
            floor = s.get("floor_ms", {})
            if floor:
                row("floor in-process p50 (keygen/csr/cert/cms/destroy)",
                    " / ".join(f"{floor[k]['p50']:.2f}" for k in ("keygen", "csr", "certificate", "cms", "destroy")) + " ms")
                row("floor per signature p50 → signatures/s", f"{floor['total']['p50']:.2f} ms → {s['floor_per_second']:.0f}/s")
                row("ratio signer / floor throughput", f"{s['ratio']:.2f}")
            exchange = s.get("exchange_cpu_ms")
            if exchange:
                row("one info call (an exchange without crypto)",
                    f"CPU {sum(exchange.values()):.2f} ms (" + ", ".join(f"{n} {v:.2f}" for n, v in exchange.items()) + ")")
        if self.batch:
            b = self.batch
            lines.append(f"batch: one authorization for {b['documents']} PDFs (partner path)")
            row("first request → last signed PDF", f"{b['seconds']:.2f} s")
            for name, value in b.get("phases_s", {}).items():
                row(f"  {name}", f"{value:.2f} s")
        if self.rss_peak_mib:
            lines.append("peak RSS (MiB, master + workers): " +
                         ", ".join(f"{n} {v:.1f}" for n, v in sorted(self.rss_peak_mib.items())))
        lines.append("targets:")
        for t in self.targets():
            verdict = "not measured" if t["met"] is None else ("MET" if t["met"] else "NOT MET")
            value = "-" if t["value"] is None else f"{t['value']:.2f}"
            lines.append(f"  {t['what']:<44} limit {t['limit']:<6g} measured {value:<10} {verdict}")
        budget = self.budget()
        if budget:
            lines.append(f"CPU budget on {self.machine.get('cpus')} CPUs (what a throughput leaves per item, all "
                         "processes together, against the CPU measured per item):")
            for b in budget:
                lines.append(f"  {b['what']:<58} needs {b['needs_per_second']:>6g}/s → "
                             f"≤ {b['allowed_cpu_ms']:.2f} ms per {b['unit']}, measured {b['measured_cpu_ms']:.2f}")
        for error in self.errors[:20]:
            lines.append(f"ERROR {error}")
        lines.append("OK" if self.ok else "FAILED")
        return "\n".join(lines)


def machine_info() -> dict[str, Any]:
    """CPU count and model, load average, Python and platform."""
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu": cpu, "load_before": round(os.getloadavg()[0], 2),
            "python": platform.python_version(), "platform": platform.platform()}


# ------------------------------------------------------------------------------------ the run


def _run_e2e(eco: Ecosystem, data_dir: Path, report: BenchReport, rss: RssSampler, *, flows: int, concurrency: int,
             root: x509.Certificate, progress: Callable[[str], None]) -> None:
    pdf = bench_pdf()
    progress(f"e2e: local pyHanko baseline ({max(20, min(100, flows))} signatures)")
    local = local_pades_seconds(pdf, max(20, min(100, flows)) + 3)[3:]
    progress("e2e: warm-up (3 flows, untimed), then 10 flows alone for the unloaded latency")
    for i in range(3):
        pades_portal_flow(eco, pdf, label=f"warmup-{i}.pdf")
    alone = [pades_portal_flow(eco, pdf, label=f"alone-{i}.pdf").seconds for i in range(10)]
    done = 0
    lock = threading.Lock()

    def one(index: int) -> FlowRun:
        nonlocal done
        try:
            run = pades_portal_flow(eco, pdf, label=f"bench-{index}.pdf")
        except FlowFailed as exc:
            run = FlowRun(0.0, error=f"e2e flow {index}: {exc}")
        except Exception as exc:  # the agent's own transport failure is an error of the run too
            run = FlowRun(0.0, error=f"e2e flow {index}: {exc.__class__.__name__}: {exc}")
        with lock:
            done += 1
            if done % max(1, flows // 10) == 0 or run.error:
                progress(f"e2e: {done}/{flows} flows" + (f" — {run.error}" if run.error else ""))
        return run

    progress(f"e2e: {flows} flows at concurrency {concurrency}")
    cpu_before = rss.cpu_seconds()
    runs, seconds = _pool_map(one, flows, concurrency)
    cpu = _cpu_per_item(cpu_before, rss.cpu_seconds(), flows)
    good = [r for r in runs if r.error is None]
    report.errors += [r.error for r in runs if r.error]
    progress(f"e2e: verifying {len(good)} signed PDFs against the SignLab root")
    for run in good:
        try:
            verify_signed_pdf(run.signed or b"", root)
        except (FlowFailed, Exception) as exc:  # noqa: BLE001 - every failed check is reported
            report.errors.append(f"e2e transaction {run.transaction_id}: {exc}")
    latency = percentiles(r.seconds for r in good)
    local_stats = percentiles(local)
    report.e2e = {
        "flows": flows, "concurrency": concurrency, "seconds": round(seconds, 3), "completed": len(good),
        "flows_per_second": round(len(good) / seconds, 2) if seconds else 0.0,
        "latency_ms": _ms(latency), "sequential_latency_ms": _ms(percentiles(alone)),
        "local_ms": _ms(local_stats), "pdf_bytes": len(pdf), "cpu_ms_per_flow": cpu,
        "ratio": round(latency["p50"] / local_stats["p50"], 2) if good else None,
        # One flow with nothing else running against one local signature: what a person waits for.
        "ratio_alone": round(percentiles(alone)["p50"] / local_stats["p50"], 2),
        "steps_ms": {str(k): v for k, v in step_durations(data_dir, [r.transaction_id for r in good if r.transaction_id]).items()},
    }


def _thread_client(local: threading.local, eco: Ecosystem) -> SignerClient:
    """This thread's signer client (one keep-alive connection per bench thread, as a partner has)."""
    client = getattr(local, "client", None)
    if client is None:
        client = local.client = eco.signer_client()
    return client


def _run_signer(eco: Ecosystem, runtime: Any, report: BenchReport, rss: RssSampler, *, signatures: int, concurrency: int,
                root: x509.Certificate, progress: Callable[[str], None]) -> None:
    digests = [hashlib.sha256(f"SignLab bench signer {i} {secrets.token_hex(8)}".encode()).digest() for i in range(signatures)]
    progress(f"signer: obtaining {signatures} SADs through real flows (partner mode, untimed)")
    tokens, _ = _pool_map(lambda i: sad_as_partner(eco, [digests[i]]), signatures, concurrency)
    client_local = threading.local()

    def one(index: int) -> tuple[float, Any, str | None]:
        client = _thread_client(client_local, eco)
        started = time.perf_counter()
        try:
            result = client.sign_doc(tokens[index], digests=[digests[index]], signature_format="P",
                                     qualifier="eu_eidas_qes")
        except Exception as exc:  # noqa: BLE001 - reported
            return 0.0, None, f"signDoc {index}: {exc.__class__.__name__}: {exc}"
        return time.perf_counter() - started, result, None

    progress(f"signer: {signatures} timed signDoc calls at concurrency {concurrency}")
    cpu_before = rss.cpu_seconds()
    results, seconds = _pool_map(one, signatures, concurrency)
    cpu = _cpu_per_item(cpu_before, rss.cpu_seconds(), signatures)
    report.errors += [e for _, _, e in results if e]
    progress("signer: verifying every signature")
    for index, (_, result, error) in enumerate(results):
        if error is None:
            try:
                chain = [x509.Certificate.load(c) for c in result.certificates]
                verify_cms_signature(result.signature_objects[0], digests[index], chain, root)
            except Exception as exc:  # noqa: BLE001 - reported
                report.errors.append(f"signDoc {index}: {exc}")
    good = [s for s, _, e in results if e is None]
    calls = max(300, signatures)
    progress(f"signer: {calls} CSC info calls at concurrency {concurrency} (the cost of one exchange without crypto)")
    cpu_before = rss.cpu_seconds()
    _pool_map(lambda _i: _thread_client(client_local, eco).info(), calls, concurrency)
    exchange = {name: ms for name, ms in _cpu_per_item(cpu_before, rss.cpu_seconds(), calls).items()
                if name in ("bench", "signer")}
    from services.ca.settings import CaSettings
    from services.registry import entry

    progress("signer: the in-process floor (child process, temporary SoftHSM token)")
    ca_env = runtime.service_environment(entry("ca"))
    floor = run_floor(CaSettings.from_env(ca_env).data_dir, ca_env, max(50, min(300, signatures)))
    per_second = len(good) / seconds if seconds else 0.0
    floor_per_second = 1000.0 / floor["total"]["p50"]
    report.signer = {"signatures": signatures, "concurrency": concurrency, "seconds": round(seconds, 3),
                     "completed": len(good), "signatures_per_second": round(per_second, 1),
                     "latency_ms": _ms(percentiles(good)), "cpu_ms_per_signature": cpu, "exchange_cpu_ms": exchange,
                     "floor_ms": floor,
                     "floor_per_second": round(floor_per_second, 1), "ratio": round(per_second / floor_per_second, 3)}


def _run_batch(eco: Ecosystem, runtime: Any, report: BenchReport, *, documents: int, root: x509.Certificate,
               progress: Callable[[str], None]) -> None:
    from services.portal.documents import Level, Qualifier
    from services.portal.pades import contents_reservation, finish_pdf, prepare_pdf
    from services.portal.settings import PortalSettings

    reserved = contents_reservation(Level.B_B, PortalSettings.model_fields["pdf_bytes_reserved"].default)
    pdf = bench_pdf()
    progress(f"batch: one authorization for {documents} PDFs")
    started = time.perf_counter()

    async def prepare_all() -> list[Any]:
        return [await prepare_pdf(pdf, label=f"batch-{i}.pdf", qualifier=Qualifier.QES, visible=False,
                                  signer_name="", bytes_reserved=reserved) for i in range(documents)]

    prepared = asyncio.run(prepare_all())
    t_prepared = time.perf_counter()
    try:
        token = sad_as_partner(eco, [p.digest for p in prepared])
    except FlowFailed as exc:
        # The signer's SIGNLAB_SIGNER_MAX_DOCUMENTS (default 20) bounds one authorization.
        raise FlowFailed(f"{exc} (a batch of {documents} needs SIGNLAB_SIGNER_MAX_DOCUMENTS >= {documents} "
                         "at the signer)") from None
    t_authorized = time.perf_counter()
    client = eco.signer_client(timeout=300)
    try:
        result = client.sign_doc(token, digests=[p.digest for p in prepared], signature_format="P",
                                 qualifier="eu_eidas_qes")
    finally:
        client.close()
    t_signed = time.perf_counter()

    async def finish_all() -> list[bytes]:
        return [await finish_pdf(p, bytes(s)) for p, s in zip(prepared, result.signature_objects, strict=True)]

    signed = asyncio.run(finish_all())
    finished = time.perf_counter()
    progress(f"batch: verifying {len(signed)} signed PDFs")
    for i, document in enumerate(signed):
        try:
            verify_signed_pdf(document, root)
        except Exception as exc:  # noqa: BLE001 - reported
            report.errors.append(f"batch document {i}: {exc}")
    report.batch = {"documents": documents, "seconds": round(finished - started, 3), "phases_s": {
        "prepare PDFs (steps 1-2, partner)": round(t_prepared - started, 3),
        "authorize (steps 2-5)": round(t_authorized - t_prepared, 3),
        "signDoc (steps 6-10)": round(t_signed - t_authorized, 3),
        "embed CMS (step 10)": round(finished - t_signed, 3)}}


def run_bench(runtime: Any, *, parts: Iterable[str] = PARTS, flows: int = 200, concurrency: int = 8,
              signatures: int = 300, batch: int = 100,
              progress: Callable[[str], None] = lambda _line: None) -> BenchReport:
    """Run the chosen parts against the ecosystem ``runtime`` (a healthy :class:`~signlab.runtime.LocalRuntime`)."""
    parts = set(parts)
    eco = ecosystem_from_runtime(runtime)
    report = BenchReport(machine=machine_info())
    root = fetch_root(eco)
    with RssSampler(runtime.run_dir) as rss:
        for part in PARTS:
            if part not in parts:
                continue
            try:
                if part == "e2e":
                    _run_e2e(eco, runtime.data_dir, report, rss, flows=flows, concurrency=concurrency, root=root, progress=progress)
                elif part == "signer":
                    _run_signer(eco, runtime, report, rss, signatures=signatures, concurrency=concurrency, root=root,
                                progress=progress)
                else:
                    _run_batch(eco, runtime, report, documents=batch, root=root, progress=progress)
            except (FlowFailed, requests.RequestException, RuntimeError) as exc:
                report.errors.append(f"{part}: {exc.__class__.__name__}: {exc}")
    report.rss_peak_mib = {name: round(value / 2**20, 1) for name, value in sorted(rss.peak.items())}
    report.machine["load_after"] = round(os.getloadavg()[0], 2)
    return report
