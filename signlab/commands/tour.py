"""``signlab tour [--auto] [--delay S] [--scenario NAME]``: a guided run of the person-signing flow.

For trainers, in the terminal: before each part of the flow the tour explains, in two or three
sentences, what happens, which eIDAS role acts and why (the step texts of :mod:`shared.flow`
plus the reason); it then lets the real flow run one part further (the scenario runner's
headless user agent, driving the running services over real HTTP) and shows what just crossed
the wire, decoded and redacted, as the services' trace store recorded it. It waits for Enter
(``--auto``: a delay instead).

Steps 1, 2 (the signer reviews the documents and digests at the portal and confirms), 3, 4 and 5
each run when the trainer presses Enter. Steps 6-10 happen inside one
request (the portal's callback: it redeems the code and calls signDoc, the SSASP makes the key,
gets the certificate, signs and destroys the key), so they run together and the tour then walks
through them one by one from the trace.

Needs the ecosystem running (``signlab up``) with tracing on (the default).
"""

from __future__ import annotations

import argparse
import json
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from signlab.commands import CommandError

__all__ = ["WHY", "Presenter", "register"]

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

GROUPS: tuple[tuple[tuple[int, ...], int, str], ...] = (
    ((1,), 1, "The partner application sends the documents to the portal's API; the portal prepares each one and "
              "computes the digest that will be signed."),
    ((2,), 2, "The signer's browser opens the portal's review page, sees each document with its digest and confirms; "
              "only then does the portal push the signing request (PAR)."),
    ((3,), 3, "The signer's browser opens the signing service's authorize URL."),
    ((4,), 4, "The browser arrives at the eID provider; with the login hint it logs in headlessly."),
    ((5,), 5, "The eID provider sends the browser back with a code; the SSASP verifies and asks for consent."),
    ((6, 7, 8, 9, 10), 10, "The browser returns to the portal with the SSASP's code: the portal's callback "
                           "runs steps 5 (token) and 6-10 in one request."),
)
"""Parts of the flow that run on one Enter: (steps explained, the agent's step number that starts
them, what the user agent does)."""


def register(commands: Any) -> None:
    """Add ``tour``."""
    parser = commands.add_parser("tour", help="guided, step-by-step run of the person-signing flow (for trainers)")
    parser.add_argument("--auto", action="store_true", help="do not wait for Enter; pause --delay seconds instead")
    parser.add_argument("--delay", type=float, default=3.0, help="seconds between steps with --auto (default 3)")
    parser.add_argument("--scenario", default="qes-pades-b-b",
                        help="the scenario whose persona, documents and request the tour uses (default qes-pades-b-b)")
    parser.add_argument("--no-payloads", action="store_true", help="show arrows only, not the decoded messages")
    parser.set_defaults(handler=_tour)


class Presenter:
    """Prints explanations and the messages that just crossed the wire; waits between parts.

    :param store: the trace store.
    :param out: where to print.
    :param wait: called between parts (Enter, or a delay).
    :param payloads: also print each message's decoded summary.
    """

    def __init__(self, store: Any, out: Callable[[str], None], wait: Callable[[], None], payloads: bool = True) -> None:
        self.store = store
        self.out = out
        self.wait = wait
        self.payloads = payloads
        self.shown: set[tuple[str, str]] = set()

    def explain(self, number: int) -> None:
        """Two or three sentences on step ``number``: what, who, why."""
        from shared.flow import step

        flow_step = step(number)
        self.out(f"\n━━ Step {number}: {flow_step.name} · {flow_step.source} → {flow_step.target} · {flow_step.protocol}")
        self.out(f"   {flow_step.summary}")
        self.out(f"   Why: {WHY[number]}")

    def transaction(self, key: str | None) -> Any:
        """The transaction ``key`` from the trace store (None until something was recorded)."""
        from shared.tracing import build_transaction

        group = self.store.find(key) if key else None
        return build_transaction(group) if group is not None else None

    def show_new(self, key: str | None, only_steps: tuple[int, ...] | None = None) -> int:
        """Print the arrows not shown yet (of ``only_steps`` when given); return how many."""
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
            mark = "✗" if arrow.failed else "→" if arrow.kind != "response" else "⇢"
            self.out(f"   [{arrow.step:>2}] {arrow.source:>6} {mark} {arrow.target:<6} {arrow.label}"
                     + (f" ({arrow.duration_ms:.0f} ms)" if arrow.duration_ms is not None else ""))
            if self.payloads and arrow.summary:
                self.out(_indent(_compact(arrow.summary), "           "))
        return count


def _compact(summary: Any, limit: int = 24) -> str:
    lines = json.dumps(summary, indent=1, ensure_ascii=False, default=str).splitlines()
    if len(lines) > limit:
        lines = [*lines[:limit], f"… ({len(lines) - limit} more lines: signlab trace ID --format json)"]
    return "\n".join(lines)


def _indent(text: str, prefix: str) -> str:
    return "\n".join(prefix + line for line in text.splitlines())


def _tour(args: argparse.Namespace) -> int:
    from signlab.commands.runtime import runtime_from
    from signlab.commands.trace import store_dir
    from signlab.scenarios.agent import Refused, UserAgent, materialize
    from signlab.scenarios.environment import ecosystem_from_runtime
    from signlab.scenarios.faults import plan_faults
    from signlab.scenarios.loader import catalogue_dir, load_scenario, samples_dir
    from signlab.scenarios.results import ScenarioResult
    from signlab.scenarios.wallet import wallet_driver
    from shared.flow import SERVICES
    from shared.tracing import TraceStore

    runtime = runtime_from(args)
    if len(runtime.running()) < 4:
        raise CommandError(f"the tour needs the four services running from {runtime.data_dir}: start them with "
                           "'signlab up' (same --data-dir)", exit_code=2)
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
    out(f"SignLab tour: {scenario.title}")
    out("The roles:")
    for info in SERVICES:
        out(f"  {info.role:<6} {info.title} ({eco.url(info.name)})")
    out("  Signer  the person, with a browser (played here by the headless user agent)")

    # The user agent runs in a thread and stops before each part until the presenter lets it go.
    events: queue.Queue[tuple[str, Any]] = queue.Queue()
    gates = {agent_step: threading.Event() for _, agent_step, _ in GROUPS}

    def gate(agent_step: int) -> Callable[[], str]:
        def hold() -> str:
            events.put(("waiting", agent_step))
            gates[agent_step].wait()
            return f"tour: step {agent_step}"
        return hold

    plan = plan_faults(scenario, eco)
    result = ScenarioResult(scenario)
    agent = UserAgent(eco, scenario, result, login_hint=plan.login_hint(scenario),
                      hooks={agent_step: [(f"tour pause before step {agent_step}", gate(agent_step))]
                             for _, agent_step, _ in GROUPS}, timeout=120.0,
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
    for steps, _, action in GROUPS:
        if state[0] != "waiting":
            break
        if steps[0] < 6:
            for number in steps:
                presenter.explain(number)
        else:
            out("\n━━ Steps 6-10 run inside one request")
            out("   " + action)
        wait()
        out(f"   … {action if steps[0] < 6 else 'running'}")
        gates[state[1]].set()
        state = events.get(timeout=300)  # stopped before the next part, or finished
        time.sleep(0.3)  # a span is written when its request ends
        if steps[0] < 6:
            if presenter.show_new(result.transaction_id) == 0:
                out("   (nothing recorded: is tracing on? see 'signlab trace --list')")
            continue
        for number in steps:
            presenter.explain(number)
            if presenter.show_new(result.transaction_id, only_steps=(5, 6) if number == 6 else (number,)) == 0:
                out("   (nothing recorded for this step)")
            if number != steps[-1]:
                wait()
    while state[0] == "waiting":  # gates the tour did not stop at (a refusal skipped parts)
        gates[state[1]].set()
        state = events.get(timeout=300)
    final = state
    presenter.show_new(result.transaction_id)
    worker.join(timeout=10)
    kind, value = final
    key = result.transaction_id or "latest"
    if kind == "done":
        out(f"\nSigned: {len(value.signed)} document(s), transaction {value.transaction_id}.")
    elif kind == "refused":
        out(f"\nRefused: {value}")
    else:
        out(f"\nThe tour stopped: {value.__class__.__name__}: {value}")
    out(f"The whole diagram: signlab trace {key} --format svg -o flow.svg  (or --format mermaid)")
    if kind == "error":
        raise CommandError(f"the flow could not run: {value}")
    return 0 if kind == "done" else 1

