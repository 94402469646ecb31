"""``signlab tour [--browser] [--auto] [--delay S] [--scenario NAME]``: a guided run of the person-signing flow.

For trainers, in the terminal: before each step the tour explains, in two or three sentences,
what happens, which eIDAS role acts and why (the step texts of :mod:`shared.flow` plus the
reason); then it shows what crossed the wire, decoded and redacted, as the services' trace store
recorded it — each message under the heading of its own step (the one step table,
:data:`shared.tracing.labels.ROUTES`). Text wraps at the terminal's width on word boundaries.

Two ways to run it:

* **headless** (default): the scenario runner's user agent plays the signer's browser over real
  HTTP and stops before each part of the flow until the trainer presses Enter (``--auto``: a
  delay). Steps 6-10 happen inside one request (the portal's callback: it redeems the code and
  calls signDoc; the SSASP makes the key, gets the certificate, signs and destroys the key), so
  they run together and the tour then walks through them one by one from the trace.
* **browser** (``--browser``): the class does it in a real browser. The tour creates the signing
  request as the partner application (step 1) and prints the address to open; the class reviews
  and confirms the documents, logs in at the eID provider (step 4) and consents (step 5) on the
  real pages, while the tour waits, polls the transaction and the trace store, and narrates each
  step as it appears. It ends when the portal's transaction ends (completed, refused, expired).

Needs the ecosystem running (``signlab up``) with tracing on (the default).
"""

from __future__ import annotations

import argparse
import base64
import json
import queue
import shutil
import textwrap
import threading
import time
from collections.abc import Callable
from typing import Any

from signlab.commands import CommandError, hint

__all__ = ["PARTS", "WHY", "Presenter", "register"]

WHY: dict[int, str] = {
    1: "The partner keeps the documents: under eIDAS the signature creation application (SCASP) is the "
       "partner's, and the documents never leave it.",
    2: "Only the digests travel, over a back channel the browser never sees (RFC 9126 PAR): the SSASP can "
       "bind the signer's consent to exactly these hashes without seeing the documents.",
    3: "The SSASP must know who signs before it may create a key for them; it asks the eID provider (IPSP) "
       "for the level of assurance the certificate type needs (QES: high).",
    4: "Only the eID provider sees the signer's credentials; the other roles learn the result as a signed "
       "ID token, never the password or one-time code.",
    5: "Sole control (SCAL2): the SSASP verifies the identity evidence itself, the signer consents to these "
       "documents, and the token it issues (the SAD) is bound to exactly these digests, once, for minutes.",
    6: "A fresh key per transaction lives only in the HSM (the QSCD): it cannot be exported, so only this "
       "SAD can ever make it sign.",
    7: "The CA (TSP) re-checks the identity evidence and the level of assurance itself before it vouches "
       "for the key with a short-term certificate: QES only from LoA high.",
    8: "The signed attributes must reference the new certificate, which is why the SSASP builds them after "
       "step 7 and signs their hash, not the document's.",
    9: "The HSM signs, and the one-time key is destroyed at once, so it can never sign again.",
    10: "The SCASP embeds the signature into the document (PAdES, CAdES, JAdES), adds time-stamps and "
        "revocation data for long-term validation, and validates the result against the trusted list.",
}
"""Why each step is done this way (the sentence the trainer says after "what happens")."""

PARTS: tuple[tuple[tuple[int, ...], int, str], ...] = (
    ((1,), 1, "The partner application sends the documents to the portal's API; the portal prepares each one and "
              "computes the digest that will be signed; the signer's browser opens the review page."),
    ((2, 3), 3, "The signer confirms on the review page: the portal pushes the signing request (PAR), and the "
                "browser goes to the signing service, which sends it on to the eID provider."),
    ((4,), 4, "The browser arrives at the eID provider; with the login hint the person logs in at once."),
    ((5,), 5, "The eID provider sends the browser back with a code; the SSASP verifies it and asks for consent."),
    ((6, 7, 8, 9, 10), 10, "The browser returns to the portal with the SSASP's code: the portal's callback "
                           "redeems it (step 5) and runs steps 6-10 in one request."),
)
"""Parts of the headless tour, each run on one Enter: (the steps explained, the step whose first
exchange the user agent stops before — the step its answer reaches, as the scenario runner counts —,
what the user agent does)."""

FINAL_STATES = ("completed", "failed", "expired")


def register(commands: Any) -> None:
    """Add ``tour``."""
    parser = commands.add_parser("tour", help="guided, step-by-step run of the person-signing flow (for trainers)")
    parser.add_argument("--browser", action="store_true",
                        help="the class does the review, eID login and consent in a real browser; the tour prints the "
                             "address to open, waits and narrates each step as it happens")
    parser.add_argument("--auto", action="store_true", help="do not wait for Enter; pause --delay seconds instead")
    parser.add_argument("--delay", type=float, default=3.0, help="seconds between steps with --auto (default 3)")
    parser.add_argument("--timeout", type=float, default=900.0,
                        help="--browser: seconds to wait for the class to finish (default 900)")
    parser.add_argument("--scenario", default="qes-pades-b-b",
                        help="the scenario whose persona, documents and request the tour uses (default qes-pades-b-b)")
    parser.add_argument("--no-payloads", action="store_true", help="show arrows only, not the decoded messages")
    parser.set_defaults(handler=_tour)


def terminal_width() -> int:
    """The width to wrap at: the terminal's (``$COLUMNS`` when not a terminal), 60-160 characters."""
    return max(60, min(160, shutil.get_terminal_size((100, 24)).columns))


class Presenter:
    """Prints explanations and the messages that crossed the wire, each under its own step.

    :param store: the trace store.
    :param out: where to print one line.
    :param wait: called between parts (Enter, or a delay).
    :param payloads: also print each message's decoded summary.
    :param width: wrap text at this many characters, on word boundaries.
    """

    def __init__(self, store: Any, out: Callable[[str], None], wait: Callable[[], None], payloads: bool = True,
                 width: int | None = None) -> None:
        self.store = store
        self.out = out
        self.wait = wait
        self.payloads = payloads
        self.width = width or terminal_width()
        self.shown: set[tuple[str, str]] = set()
        self.explained: set[int] = set()
        self._last_heading: int | None = None

    def say(self, text: str, indent: str = "   ", hanging: str | None = None) -> None:
        """Print ``text`` wrapped at the width, on word boundaries (a word longer than a line — a
        URL — stays whole on its own line)."""
        for paragraph in text.splitlines() or [""]:
            self.out(textwrap.fill(paragraph, self.width, initial_indent=indent,
                                   subsequent_indent=hanging if hanging is not None else indent,
                                   break_long_words=False, break_on_hyphens=False) if paragraph.strip() else "")

    def explain(self, number: int) -> None:
        """Two or three sentences on step ``number``: what, who, why."""
        from shared.flow import step

        flow_step = step(number)
        self.explained.add(number)
        self._last_heading = number
        self.out("")
        self.say(f"━━ Step {number}: {flow_step.name} · {flow_step.source} → {flow_step.target} · {flow_step.protocol}",
                 indent="", hanging="   ")
        self.say(flow_step.summary)
        self.say(f"Why: {WHY[number]}", hanging="        ")

    def transaction(self, key: str | None) -> Any:
        """The transaction ``key`` from the trace store (None until something was recorded)."""
        from shared.tracing import build_transaction

        group = self.store.find(key) if key else None
        return build_transaction(group) if group is not None else None

    def show_new(self, key: str | None, only_steps: tuple[int, ...] | None = None, *, explain: bool = False) -> int:
        """Print the arrows not shown yet (of ``only_steps`` when given), each under the heading of
        its own step; with ``explain``, a step seen for the first time is explained first. Return
        how many arrows were printed."""
        transaction = self.transaction(key)
        if transaction is None:
            return 0
        count = 0
        for arrow in transaction.arrows():
            ident = (arrow.span_id, arrow.kind)
            if ident in self.shown or (only_steps is not None and arrow.step not in only_steps):
                continue
            self.shown.add(ident)
            count += 1
            if explain and arrow.step not in self.explained:
                self.explain(arrow.step)
            elif arrow.step != self._last_heading:
                from shared.flow import step

                self._last_heading = arrow.step
                self.say(f"· step {arrow.step} ({step(arrow.step).name})", indent="   ")
            mark = "✗" if arrow.failed else "→" if arrow.kind != "response" else "⇢"
            self.say(f"[{arrow.step:>2}] {arrow.source:>6} {mark} {arrow.target:<6} {arrow.label}"
                     + (f" ({arrow.duration_ms:.0f} ms)" if arrow.duration_ms is not None else ""),
                     hanging=" " * 21)
            if self.payloads and arrow.summary:
                for line in _compact(arrow.summary).splitlines():
                    self.say(line.strip(), indent="           " + " " * (len(line) - len(line.lstrip())),
                             hanging="             " + " " * (len(line) - len(line.lstrip())))
        return count


def _compact(summary: Any, limit: int = 24) -> str:
    lines = json.dumps(summary, indent=1, ensure_ascii=False, default=str).splitlines()
    if len(lines) > limit:
        lines = [*lines[:limit], f"… ({len(lines) - limit} more lines: signlab trace ID --format json)"]
    return "\n".join(lines)


def _tour(args: argparse.Namespace) -> int:
    from signlab.commands.runtime import runtime_from
    from signlab.commands.trace import store_dir
    from signlab.scenarios.environment import ecosystem_from_runtime
    from signlab.scenarios.loader import catalogue_dir, load_scenario
    from shared.flow import SERVICES
    from shared.tracing import TraceStore

    runtime = runtime_from(args)
    if len(runtime.running()) < 4:
        raise CommandError(f"the tour needs the four services running from {runtime.data_dir}: start them with "
                           f"'{hint(args, 'up')}'", exit_code=2)
    path = catalogue_dir() / f"{args.scenario.removesuffix('.yaml')}.yaml"
    if not path.exists():
        raise CommandError(f"no scenario {args.scenario!r} in {catalogue_dir()} (see 'signlab scenario list')", exit_code=2)
    scenario = load_scenario(path)
    eco = ecosystem_from_runtime(runtime)
    store = TraceStore(store_dir(args))

    def wait() -> None:
        if args.auto:
            time.sleep(args.delay)
        else:
            try:
                input("   ⏎ Enter to continue ")
            except EOFError:  # no terminal: go on
                pass

    def out(line: str) -> None:
        print(line, flush=True)

    presenter = Presenter(store, out, wait, payloads=not args.no_payloads)
    presenter.say(f"SignLab tour: {scenario.title}", indent="")
    out("The roles:")
    for info in SERVICES:
        presenter.say(f"{info.role:<6} {info.title} ({eco.url(info.name)})", indent="  ", hanging=" " * 9)
    who = "the class, in a real browser" if args.browser else "played here by the headless user agent"
    presenter.say(f"Signer the person, with a browser ({who})", indent="  ", hanging=" " * 9)
    run = _browser_tour if args.browser else _headless_tour
    kind, value, key = run(args, eco, scenario, presenter)
    if kind == "done":
        out(f"\nSigned: {value}, transaction {key}.")
    elif kind == "refused":
        presenter.say(f"\nRefused: {value}", indent="")
    else:
        presenter.say(f"\nThe tour stopped: {value}", indent="")
    export = hint(args, f"trace {key or 'latest'} --format svg -o flow.svg")
    presenter.say(f"The whole diagram: {export} (or --format mermaid)", indent="", hanging="  ")
    if kind == "error":
        raise CommandError(f"the flow could not run: {value}")
    return 0 if kind == "done" else 1


def _headless_tour(args: argparse.Namespace, eco: Any, scenario: Any, presenter: Presenter) -> tuple[str, Any, str | None]:
    """The user agent plays the browser and stops before each part until the trainer goes on."""
    from signlab.scenarios.agent import Refused, UserAgent, materialize
    from signlab.scenarios.faults import plan_faults
    from signlab.scenarios.loader import samples_dir
    from signlab.scenarios.results import ScenarioResult
    from signlab.scenarios.wallet import wallet_driver

    events: queue.Queue[tuple[str, Any]] = queue.Queue()
    gates = {gate_step: threading.Event() for _, gate_step, _ in PARTS}

    def gate(gate_step: int) -> Callable[[], str]:
        def hold() -> str:
            events.put(("waiting", gate_step))
            gates[gate_step].wait()
            return f"tour: before step {gate_step}"
        return hold

    plan = plan_faults(scenario, eco)
    result = ScenarioResult(scenario)
    agent = UserAgent(eco, scenario, result, login_hint=plan.login_hint(scenario),
                      hooks={gate_step: [(f"tour pause before step {gate_step}", gate(gate_step))]
                             for _, gate_step, _ in PARTS}, timeout=120.0,
                      wallet=wallet_driver(scenario, plan.wallet_faults))
    documents = materialize(scenario.documents, samples_dir())

    def drive() -> None:
        try:
            outcome = agent.run_portal(documents)
            events.put(("done", outcome))
        except Refused as exc:
            events.put(("refused", exc))
        except Exception as exc:  # reported by the presenter, never lost in the thread
            events.put(("error", exc))

    worker = threading.Thread(target=drive, name="tour-agent", daemon=True)
    worker.start()
    state = events.get(timeout=300)  # the agent stops before step 1 (or has already finished)
    for steps, gate_step, action in PARTS:
        if state != ("waiting", gate_step):
            break
        if steps[0] < 6:
            for number in steps:
                presenter.explain(number)
        else:
            presenter.out("\n━━ Steps 6-10 run inside one request")
            presenter.say(action)
        presenter.wait()
        presenter.say(f"… {action if steps[0] < 6 else 'running'}")
        gates[gate_step].set()
        state = events.get(timeout=300)  # stopped before the next part, or finished
        time.sleep(0.3)  # a span is written when its request ends
        if steps[0] < 6:
            if presenter.show_new(result.transaction_id) == 0:
                presenter.say("(nothing recorded: is tracing on? see 'signlab trace --list')")
            continue
        for number in steps:
            presenter.explain(number)
            if presenter.show_new(result.transaction_id, only_steps=tuple(range(1, number + 1))) == 0:
                presenter.say("(nothing recorded for this step)")
            if number != steps[-1]:
                presenter.wait()
    while state[0] == "waiting":  # gates the tour did not stop at (a refusal skipped parts)
        gates[state[1]].set()
        state = events.get(timeout=300)
    presenter.show_new(result.transaction_id, explain=True)
    worker.join(timeout=10)
    kind, value = state
    if kind == "done":
        return "done", f"{len(value.signed)} document(s)", value.transaction_id
    return kind, f"{value.__class__.__name__}: {value}" if kind == "error" else value, result.transaction_id


def _browser_tour(args: argparse.Namespace, eco: Any, scenario: Any, presenter: Presenter) -> tuple[str, Any, str | None]:
    """The class signs in a real browser; the tour creates the request, waits and narrates."""
    import requests

    from signlab.scenarios.agent import materialize
    from signlab.scenarios.loader import samples_dir

    portal = eco.url("portal")
    secret = eco.secret("SIGNLAB_PORTAL_API_CLIENT_SECRET")
    if not secret:
        raise CommandError("the browser tour creates the signing request as the lab's partner application and needs "
                           "its secret (SIGNLAB_PORTAL_API_CLIENT_SECRET in secrets.env)", exit_code=2)
    partner = (str(eco.setting("portal", "api_client_id") or "signlab-lab"), secret)
    request = scenario.request
    documents = [{"sample": d.sample} if d.sample else {"name": d.name, "content": base64.b64encode(d.content).decode()}
                 for d in materialize(scenario.documents, samples_dir())]
    body = {"documents": documents, "qualifier": request.qualifier, "format": request.format.lower(),
            "level": request.level, "flow": request.flow}
    presenter.explain(1)
    presenter.wait()
    answer = requests.post(f"{portal}/api/v1/sign-requests", json=body, auth=partner, timeout=60,
                           headers={"Accept": "application/json"})
    if answer.status_code != 201:
        return "error", f"the portal refused the signing request: HTTP {answer.status_code} {answer.text[:300]}", None
    created = answer.json()
    tx_id = created["transaction_id"]
    presenter.show_new(tx_id, explain=True)
    persona = scenario.persona
    presenter.out("")
    presenter.say("Now the class signs in a real browser. Open this address (the signer's review link):", indent="")
    presenter.out(f"\n    {created['review_url']}\n")
    presenter.say(f"Then: read the document(s) and confirm (step 2); at the eID provider choose the test person "
                  f"{persona.person}{' with ' + persona.eid if persona.eid else ''} and type the test code the page "
                  "shows (step 4); approve on the consent page (step 5). The tour waits and explains each step as "
                  f"it happens (up to {args.timeout:g} s).", indent="")
    deadline = time.monotonic() + args.timeout
    state = "review"
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        presenter.show_new(tx_id, explain=True)
        status = requests.get(f"{portal}/api/v1/transactions/{tx_id}", auth=partner, timeout=30,
                              headers={"Accept": "application/json"}).json()
        state = str(status.get("state"))
        if state in FINAL_STATES:
            break
        time.sleep(1.0)
    time.sleep(0.5)  # the callback's span is written when its request ends
    presenter.show_new(tx_id, explain=True)
    if state == "completed":
        return "done", f"{len(status.get('documents') or [])} document(s)", tx_id
    if state in FINAL_STATES:
        return "refused", f"{status.get('error')}: {status.get('error_description')}", tx_id
    return "error", f"the class did not finish within {args.timeout:g} s (the transaction is {state})", tx_id
