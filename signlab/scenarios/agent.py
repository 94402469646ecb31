"""The headless user agent: a real HTTP client that walks the signing flow like a browser.

Two drivers:

* **portal** — the partner application and the signer's browser: ``POST /api/v1/sign-requests``
  at the portal with the lab's partner credentials (step 1), then the browser opens the
  ``review_url`` — the portal's review page with each document and the digest to be signed — and
  confirms it (a real form with its CSRF token; the portal pushes the PAR, step 2), then the real
  redirect chain: signer ``/oauth2/authorize`` (3) → IdP ``/authorize`` with the ``login_hint``
  (headless login, 4) → signer ``/oauth2/idp-callback`` (5) → the signer's consent page (SCAL2,
  5), submitted as a real form with its CSRF token → the portal's ``/sign/callback`` (the portal
  redeems the code and calls signDoc: 5-10); finally ``GET /api/v1/transactions/<id>`` and the
  downloads, as the partner application.
* **partner** — the user agent also plays the partner (SCASP) at the protocol level, with the
  portal's registered client id, secret and redirect URI: it pushes the PAR itself, stops the
  redirect chain at the redirect URI to keep the code, redeems it with PKCE, and calls signDoc.
  This is how tampering between steps is done (substitute a digest, replay a SAD, reuse a code,
  wrong PKCE verifier, let the SAD expire, change the document after hashing). Only CAdES
  (detached: the DTBS/R is the file's SHA-256) and the person-signing flow are driven this way.

Every exchange is recorded, decoded and redacted (:mod:`signlab.scenarios.messages`). A refusal
anywhere becomes :class:`Refused` with the protocol error and the step: the step named in the
``error_description`` (``"step 5 (IPSP → SSASP): …"``, as :mod:`shared.errors` writes it) or
else the step of the exchange that carried it.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import requests

from shared.client_assertion import CLIENT_ASSERTION_TYPE, create_client_assertion
from shared.flow import step_in_text
from shared.jose_keys import load_ec_key
from shared.tracing.labels import label_for
from signlab.errors import CliError
from signlab.scenarios.environment import Ecosystem
from signlab.scenarios.messages import error_page, parse_forms, summarize_body, summarize_url
from signlab.scenarios.model import DocumentSpec, Scenario
from signlab.scenarios.results import Exchange, Refusal, ScenarioResult, StepRecord

if TYPE_CHECKING:
    from signlab.scenarios.wallet import WalletDriver

__all__ = ["AgentError", "Document", "FlowOutcome", "Refused", "UserAgent", "materialize"]

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
SHA256_OID = "2.16.840.1.101.3.4.2.1"
_INNER_ERROR = re.compile(r"answered (?:HTTP )?\d{3} ([a-z_]+)\b")


class Refused(CliError):
    """The ecosystem refused the flow (an expected outcome for negative scenarios)."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(f"{refusal.error} at step {refusal.step}: {refusal.description}")
        self.refusal = refusal


class AgentError(CliError):
    """The agent could not go on for a reason that is not a protocol refusal (a bug, a 500, a
    page without the expected form, a service that does not answer)."""

    def __init__(self, message: str, step: int | None = None) -> None:
        super().__init__(message)
        self.step = step


@dataclass(frozen=True)
class Document:
    """A document as sent: name and bytes."""

    name: str
    content: bytes
    sample: str | None = None


@dataclass
class FlowOutcome:
    """What the flow produced."""

    transaction_id: str | None = None
    signed: list[tuple[str, bytes]] = field(default_factory=list)
    """(file name, signed bytes) per document; for detached formats the signature file."""
    originals: list[Document] = field(default_factory=list)
    """The documents as the agent holds them for validation (possibly changed by a tamper fault)."""
    reports: list[dict[str, Any]] = field(default_factory=list)
    """Validation reports the portal attached to the transaction."""
    certificate_serial: str | None = None
    format: str = "pades"


def materialize(specs: tuple[DocumentSpec, ...], samples: Any) -> list[Document]:
    """The documents of a scenario, with ``copies`` expanded; copies of text and JSON documents are
    made distinct (a line / a key is added), so that each has its own digest."""
    out: list[Document] = []
    for spec in specs:
        if spec.source == "sample":
            content, sample = (samples / spec.value).read_bytes(), spec.value
        elif spec.source == "path":
            content, sample = open(spec.value, "rb").read(), None  # noqa: SIM115 - tiny read
        else:
            content, sample = spec.value.encode("utf-8"), None
        for k in range(1, spec.copies + 1):
            if spec.copies == 1:
                out.append(Document(spec.name, content, sample))
                continue
            stem, dot, ext = spec.name.rpartition(".")
            name = f"{stem}-{k:02d}.{ext}" if dot else f"{spec.name}-{k:02d}"
            out.append(Document(name, _variant(content, ext.lower() if dot else "", k)))
    return out


def _variant(content: bytes, ext: str, k: int) -> bytes:
    if ext == "json":
        try:
            data = json.loads(content)
            if isinstance(data, dict):
                data["copy"] = k
                return json.dumps(data, ensure_ascii=False, indent=2).encode()
        except ValueError:
            pass
    if ext == "pdf":
        return content  # PDFs are not rewritten: the portal's preparation makes each digest unique anyway
    return content + f"\n(copy {k})\n".encode()


class UserAgent:
    """Drives one scenario's flow over real HTTP and records every exchange into ``result``."""

    def __init__(self, eco: Ecosystem, scenario: Scenario, result: ScenarioResult, *,
                 login_hint: str, delays: dict[int, float] | None = None,
                 hooks: dict[int, list[tuple[str, Callable[[], str]]]] | None = None, timeout: float = 60.0,
                 wallet: WalletDriver | None = None) -> None:
        self.eco = eco
        self.scenario = scenario
        self.result = result
        self.login_hint = login_hint
        self.delays = dict(delays or {})
        self.hooks = {k: list(v) for k, v in (hooks or {}).items()}
        self.timeout = timeout
        self.wallet = wallet
        """Plays the signer's EUDI Wallet when the persona logs in with it (step 4)."""
        self.session = requests.Session()
        self.session.headers.update({"Accept": BROWSER_ACCEPT, "User-Agent": "SignLab-scenario-agent/1.0"})
        self._current: StepRecord | None = None
        self._documents: list[Document] = []
        self.first_error: Refusal | None = None

    # -- recording ----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def step(self, number: int | None, name: str) -> Iterator[StepRecord]:
        """Record one action; failed when it raises (the exception propagates)."""
        record = StepRecord(number, name)
        self.result.steps.append(record)
        previous, self._current = self._current, record
        start = time.monotonic()
        try:
            yield record
        except Refused as exc:
            record.status, record.detail = "refused", f"refused: {exc}"
            raise
        except Exception as exc:
            record.status, record.detail = "failed", f"{exc.__class__.__name__}: {exc}"
            raise
        finally:
            record.duration = time.monotonic() - start
            self._current = previous

    def service_of(self, url: str) -> str | None:
        """Which service a URL belongs to."""
        for name, base in self.eco.urls.items():
            if url.startswith(base.rstrip("/") + "/") or url == base.rstrip("/"):
                return name
        return None

    def steps_of(self, method: str, url: str) -> tuple[int, int] | None:
        """The flow steps of an exchange: the step of its request and the step its answer reaches
        (the portal's callback is step 5 and runs 6-10 before it answers). Taken from the one
        table of routes (:data:`shared.tracing.labels.ROUTES`), so the runner, the traces and the
        error messages name the same step; None for a URL no step owns."""
        svc = self.service_of(url)
        label = label_for(svc, method, urlsplit(url).path) if svc else None
        return None if label is None else (label.step, label.response_step or label.step)

    def send(self, method: str, url: str, *, step: int | None = None, **kwargs: Any) -> requests.Response:
        """One HTTP exchange (no redirect following), recorded; the faults due before the step its
        answer reaches act before it.

        :param step: the step of the request, when the caller knows better than the table (a
            partner's own calls); default: :meth:`steps_of`.
        """
        steps = (step, step) if step is not None else self.steps_of(method, url)
        number, reached = steps if steps is not None else (None, None)
        if reached is not None:
            self.before(reached)
        kwargs.setdefault("allow_redirects", False)
        kwargs.setdefault("timeout", self.timeout)
        started = time.time()
        try:
            response = self.session.request(method, url, **kwargs)
        except requests.RequestException as exc:
            self._record(number, method, url, None, kwargs, None, started)
            svc = self.service_of(url) or url
            raise Refused(Refusal("unreachable", f"no answer from the {svc} ({exc.__class__.__name__})",
                                  number, f"{method} {summarize_url(url)['url']}")) from None
        self._record(reached, method, url, response, kwargs, response, started)
        return response

    def before(self, number: int) -> None:
        """Run the fault hooks and waits due before the first exchange that reaches step ``number``
        or later (steps 6-10 happen inside the portal's callback, so a hook for step 6 runs before it)."""
        for due in sorted(k for k in self.hooks if k <= number):
            for description, action in self.hooks.pop(due):
                record = StepRecord(due, f"fault: {description}")
                start = time.monotonic()
                try:
                    record.detail = action()
                except Exception as exc:
                    record.status, record.detail = "error", f"{exc.__class__.__name__}: {exc}"
                    self.result.steps.append(record)
                    raise AgentError(f"fault injection failed: {description}: {exc}", step=due) from exc
                record.duration = time.monotonic() - start
                self.result.steps.append(record)
        for due in sorted(k for k in self.delays if k <= number):
            wait = self.delays.pop(due)
            record = StepRecord(due, f"fault: the user agent waits {wait:g} s before step {due}")
            time.sleep(wait)
            record.duration = wait
            self.result.steps.append(record)

    def _record(self, number: int | None, method: str, url: str, response: requests.Response | None,
                kwargs: dict[str, Any], _r: Any, started: float) -> None:
        request_summary: dict[str, Any] = summarize_url(url)
        if "json" in kwargs and kwargs["json"] is not None:
            request_summary["json"] = summarize_body("application/json", json.dumps(kwargs["json"]).encode())
        if "data" in kwargs and isinstance(kwargs["data"], dict):
            request_summary["form"] = summarize_body("application/x-www-form-urlencoded",
                                                     urlencode(kwargs["data"]).encode())
        if kwargs.get("auth") is not None:
            request_summary["auth"] = f"client_secret_basic ({kwargs['auth'][0]}:***)"
        response_summary: dict[str, Any] = {}
        if response is not None:
            response_summary["status"] = response.status_code
            if "Location" in response.headers:
                response_summary["location"] = summarize_url(urljoin(url, response.headers["Location"]))
            body = summarize_body(response.headers.get("Content-Type", ""), response.content)
            if body is not None:
                response_summary["body"] = body
        else:
            response_summary["error"] = "no answer"
        exchange = Exchange(number, method, summarize_url(url)["url"], response.status_code if response is not None else None,
                            request_summary, response_summary, started, time.time() - started)
        if self._current is not None:
            self._current.exchanges.append(exchange)

    # -- refusals -------------------------------------------------------------------------------------

    @staticmethod
    def _step_from(description: str, fallback: int | None) -> int | None:
        """The innermost step named in a description (:func:`shared.flow.step_in_text`, the trace
        model's reading too), else ``fallback``."""
        return step_in_text(description) or fallback

    @staticmethod
    def _error_from(error: str, description: str) -> str:
        """The innermost protocol error: a relayed error (``"the SSASP answered 503
        temporarily_unavailable: …"``) is reported by its origin's code."""
        found = _INNER_ERROR.findall(description or "")
        return found[-1] if found else error

    def _refusal_in_location(self, location: str, number: int | None, where: str) -> Refusal | None:
        params = parse_qs(urlsplit(location).query)
        if "error" not in params:
            return None
        description = params.get("error_description", [""])[0]
        return Refusal(self._error_from(params["error"][0], description), description,
                       self._step_from(description, number), where)

    def _refusal_in_response(self, response: requests.Response, number: int | None, where: str) -> Refusal:
        ctype = response.headers.get("Content-Type", "")
        error, description = f"http_{response.status_code}", response.text[:300]
        if "json" in ctype:
            try:
                body = response.json()
                error, description = str(body.get("error", error)), str(body.get("error_description", ""))
            except ValueError:
                pass
        elif "html" in ctype:
            page = error_page(response.text)
            if page:
                error, description = page
        return Refusal(self._error_from(error, description), description, self._step_from(description, number), where)

    def _note_error(self, refusal: Refusal) -> None:
        if self.first_error is None:
            self.first_error = refusal

    # -- the browser part -----------------------------------------------------------------------------

    def browse(self, url: str, *, stop_at: str | None = None, decision: str = "approve",
               max_hops: int = 25) -> tuple[str, requests.Response | None]:
        """Follow the redirect chain from ``url`` like a browser, submitting the consent form.

        :returns: ``("stopped", None)`` with the URL when a redirect reaches ``stop_at`` (the
            partner driver keeps the code), else ``(final_url, final_response)``.
        :raises Refused: a hop answered with an error status (4xx/5xx).
        """
        method, data = "GET", None
        for _ in range(max_hops):
            hop = self.wallet.next_hop(self, method, url, None) if self.wallet is not None else None
            if hop is not None:  # the wallet's link: the phone answers (signlab/scenarios/wallet.py)
                method, url, data = hop
                continue
            steps = self.steps_of(method, url)
            number = steps[0] if steps else None
            if method == "POST":
                response = self.send(method, url, data=data)
            else:
                response = self.send(method, url)
            where = f"{method} {summarize_url(url)['url']}"
            if response.is_redirect:
                location = urljoin(url, response.headers["Location"])
                refusal = self._refusal_in_location(location, number, where)
                if refusal is not None:
                    self._note_error(refusal)
                if stop_at is not None and location.startswith(stop_at):
                    return location, None
                method, data, url = "GET", None, location
                continue
            if response.status_code >= 400:
                refusal = self._refusal_in_response(response, number, where)
                self._note_error(refusal)
                raise Refused(self.first_error or refusal)
            ctype = response.headers.get("Content-Type", "")
            if "html" in ctype and self.service_of(url) == "signer" and "/oauth2/consent/" in url:
                url, data = self._decide(url, response.text, decision, "consent", 5)
                method = "POST"
                continue
            if ("html" in ctype and self.service_of(url) == "portal" and "/review/" in url and method == "GET"
                    and 'value="confirm"' in response.text):
                self._check_review(response.text)
                url, data = self._decide(url, response.text, "confirm", "review", 2)
                method = "POST"
                continue
            hop = self.wallet.next_hop(self, method, url, response.text) if self.wallet and "html" in ctype else None
            if hop is not None:  # the IdP's EUDI Wallet pages (device choice, QR code)
                method, url, data = hop
                continue
            return url, response
        raise AgentError(f"more than {max_hops} redirects from {url}")

    def _check_review(self, html: str) -> None:
        """What the signer sees before confirming: one digest fingerprint per document sent."""
        shown = html.count('class="fingerprint"')
        if shown != len(self._documents):
            raise AgentError(f"the portal's review page shows {shown} digest(s) for {len(self._documents)} document(s)",
                             step=1)

    def _decide(self, url: str, html: str, decision: str, page: str, number: int) -> tuple[str, dict[str, str]]:
        """Parse a decision page (the portal's review, the SSASP's consent) and fill its form:
        hidden fields incl. the CSRF token, and the ``decision`` button."""
        forms = [f for f in parse_forms(html) if f["method"] == "post"]
        form = next((f for f in forms if any(name == "decision" for name, _ in f["buttons"])), forms[0] if forms else None)
        if form is None:
            raise AgentError(f"the {page} page has no POST form", step=number)
        fields = dict(form["fields"])
        buttons = [(n, v) for n, v in form["buttons"]]
        chosen = next(((n, v) for n, v in buttons if v == decision), None)
        if chosen is None:
            raise AgentError(f"the {page} form has no {decision!r} button (buttons: {buttons})", step=number)
        fields[chosen[0]] = chosen[1]
        if self._current is not None:
            self._current.detail = f"{page} form: {decision}; fields {sorted(fields)}"
        return urljoin(url, form["action"] or url), fields

    # -- portal driver -----------------------------------------------------------------------------------

    def run_portal(self, documents: list[Document], *, decision: str = "approve") -> FlowOutcome:
        """The default driver: the portal API, then the browser through the redirect chain."""
        portal = self.eco.url("portal")
        req = self.scenario.request
        payload_docs = [{"sample": d.sample} if d.sample else
                        {"name": d.name, "content": base64.b64encode(d.content).decode()} for d in documents]
        body = {"documents": payload_docs, "qualifier": req.qualifier, "format": req.format.lower(),
                "level": req.level, "flow": req.flow, "login_hint": self.login_hint}
        if req.timestamp_fallback:
            body["timestamp_fallback"] = True
        outcome = FlowOutcome(originals=documents, format=req.format.lower())
        self._documents = documents
        partner = self.partner_application()
        with self.step(1, "step 1: the partner application creates the signing request at the portal"):
            response = self.send("POST", f"{portal}/api/v1/sign-requests", json=body, auth=partner,
                                 headers={"Accept": "application/json"})
            if response.status_code != 201:
                refusal = self._refusal_in_response(response, 1, "POST /api/v1/sign-requests")
                self._note_error(refusal)
                raise Refused(refusal)
            created = response.json()
            outcome.transaction_id = created["transaction_id"]
            self.result.transaction_id = outcome.transaction_id
        refused: Refused | None = None
        with self.step(2, "steps 2-10: browser reviews and confirms at the portal (PAR), then signer, IdP "
                          "(login_hint), consent, back to the portal"):
            try:
                self.browse(created["review_url"], decision=decision)
            except Refused as exc:
                refused = exc
                if self._current is not None:
                    self._current.status, self._current.detail = "refused", f"refused: {exc}"
        with self.step(10, "result: the portal's transaction"):
            tx = self.send("GET", f"{portal}/api/v1/transactions/{outcome.transaction_id}", auth=partner,
                           headers={"Accept": "application/json"}).json()
            state = tx.get("state")
            self._current.detail = f"state {state}" if self._current else ""  # type: ignore[union-attr]
            if state != "completed":
                if refused is not None:
                    raise refused
                if self.first_error is not None:
                    raise Refused(self.first_error)
                description = str(tx.get("error_description") or "")
                refusal = Refusal(self._error_from(str(tx.get("error") or f"state_{state}"), description), description,
                                  self._step_from(description, None), "portal transaction")
                raise Refused(refusal)
            meta = tx.get("signer") or {}
            outcome.certificate_serial = meta.get("certificateSerial") or meta.get("certificate_serial")
            for doc in tx.get("documents", []):
                signed = self.send("GET", doc["download_url"], step=10, auth=partner)
                if signed.status_code != 200:
                    raise AgentError(f"download of {doc['label']} failed: HTTP {signed.status_code}", step=10)
                outcome.signed.append((doc.get("signed_name") or doc["label"], signed.content))
                if doc.get("report"):
                    outcome.reports.append(doc["report"])
        return outcome

    def partner_application(self) -> tuple[str, str]:
        """The lab's partner application at the portal API (HTTP Basic id and secret)."""
        secret = self.eco.secret("SIGNLAB_PORTAL_API_CLIENT_SECRET")
        if not secret:
            raise AgentError("the portal driver needs the partner application's secret at the portal "
                             "(SIGNLAB_PORTAL_API_CLIENT_SECRET); run against a local runtime", step=1)
        return str(self.eco.setting("portal", "api_client_id") or "signlab-lab"), secret

    # -- partner driver -----------------------------------------------------------------------------------

    def partner_credentials(self) -> tuple[str, dict[str, str], str]:
        """The portal's client id, a fresh ``private_key_jwt`` client assertion signed with the
        portal's key (as form fields), and its registered redirect URI at the signer."""
        key_path = self.eco.setting("portal", "client_assertion_key_path")
        if key_path is None or not key_path.exists():
            raise AgentError("the partner driver signs the portal's client assertions with the portal's key "
                             "(<data_dir>/portal/client-assertion-key.pem); run against a local runtime")
        client_id = str(self.eco.setting("portal", "signer_client_id") or "signlab-portal")
        issuer = self.eco.setting("signer", "base_url") or self.eco.url("signer")
        assertion = create_client_assertion(load_ec_key(key_path), client_id=client_id, audience=issuer)
        redirects = self.eco.setting("signer", "portal_redirect_uris") or [f"{self.eco.url('portal')}/sign/callback"]
        return client_id, {"client_id": client_id, "client_assertion_type": CLIENT_ASSERTION_TYPE,
                           "client_assertion": assertion}, str(redirects[0])

    def authorize_as_partner(self, digests: list[bytes], labels: list[str], *, verifier: str,
                             decision: str = "approve") -> tuple[str, str]:
        """Steps 2-5 as the partner: PAR with these digests, the browser chain, the code back.

        :returns: (code, redirect_uri).
        """
        signer = self.eco.url("signer")
        client_id, authentication, redirect_uri = self.partner_credentials()
        state = secrets.token_urlsafe(16)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        details = [{"type": "credential", "signatureQualifier": self.scenario.request.signature_qualifier,
                    "documentDigests": [{"hash": base64.b64encode(d).decode(), "label": label}
                                        for d, label in zip(digests, labels, strict=True)],
                    "hashAlgorithmOID": SHA256_OID}]
        form = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri, "state": state,
                "code_challenge": challenge, "code_challenge_method": "S256",
                "authorization_details": json.dumps(details), "login_hint": self.login_hint, **authentication}
        with self.step(2, "step 2: PAR as the partner (digests only)"):
            response = self.send("POST", f"{signer}/oauth2/par", data=form, headers={"Accept": "application/json"})
            if response.status_code != 201:
                raise Refused(self._refusal_in_response(response, 2, "POST /oauth2/par"))
            request_uri = response.json()["request_uri"]
        with self.step(3, "steps 3-5: browser through signer, IdP (login_hint) and consent"):
            url = f"{signer}/oauth2/authorize?{urlencode({'client_id': client_id, 'request_uri': request_uri})}"
            location, _ = self.browse(url, stop_at=redirect_uri, decision=decision)
            if location == url or not location.startswith(redirect_uri):
                raise AgentError("the redirect chain did not come back to the partner's redirect URI", step=5)
            params = parse_qs(urlsplit(location).query)
            if "error" in params:
                raise Refused(self.first_error or self._refusal_in_location(location, 5, "redirect to partner"))  # type: ignore[arg-type]
            if params.get("state", [""])[0] != state:
                raise AgentError("the state returned to the partner differs from the one sent", step=5)
            return params["code"][0], redirect_uri

    def exchange_code(self, code: str, redirect_uri: str, verifier: str, *, label: str) -> dict[str, Any]:
        """Step 5: redeem the code for the credential token (the SAD)."""
        _, authentication, _ = self.partner_credentials()
        with self.step(5, label):
            response = self.send("POST", f"{self.eco.url('signer')}/oauth2/token", step=5,
                                 data={"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
                                       "code_verifier": verifier, **authentication},
                                 headers={"Accept": "application/json"})
            if response.status_code != 200:
                raise Refused(self._refusal_in_response(response, 5, "POST /oauth2/token"))
            return dict(response.json())

    def sign_doc(self, token: str, digests: list[bytes], *, label: str) -> dict[str, Any]:
        """Steps 6-10: CSC v2 signDoc with these digests (CAdES detached, SHA-256)."""
        req = self.scenario.request
        body = {"documentDigests": [{"hashes": [base64.b64encode(d).decode() for d in digests],
                                     "hashAlgorithmOID": SHA256_OID, "signature_format": "C",
                                     "conformance_level": "AdES-B-B"}],
                "signatureQualifier": req.signature_qualifier}
        with self.step(6, label):
            response = self.send("POST", f"{self.eco.url('signer')}/csc/v2/signatures/signDoc", step=6, json=body,
                                 headers={"Authorization": f"Bearer {token}", "Accept": "application/json"})
            if response.status_code != 200:
                raise Refused(self._refusal_in_response(response, 6, "POST /csc/v2/signatures/signDoc"))
            return dict(response.json())
