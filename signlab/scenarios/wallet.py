"""The signer's phone in a scenario: the EUDI Wallet login of step 4, driven headlessly.

When the persona logs in with ``eid: eudi-wallet``, the IdP's ``/authorize`` leads to its wallet
page instead of a headless login. :class:`WalletDriver` then plays the person:

* on the IdP's device choice it presses "on this device" or "another device (QR code)" (the
  persona's ``device``);
* **same device** — the IdP redirects the browser to the wallet's ``/authorize`` link; instead of
  rendering the wallet's page, the driver hands that link to the wallet's headless API
  (``POST /api/v1/presentations``) as the persona, with the scenario's ``wallet:`` faults, and the
  browser follows the ``redirect_uri`` the IdP gave the wallet;
* **cross device** — the IdP shows a QR code page; the driver reads the ``openid4vp://`` link from
  it ("scans" it), lets the wallet answer, polls the page's status URL as the page's script does,
  and goes to the completion URL.

Every exchange goes through the user agent, so it is recorded with the scenario's steps.
"""

from __future__ import annotations

import time
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin, urlsplit

from shared.eudi import WALLET_MEANS_ID
from signlab.scenarios.agent import AgentError, Refused, UserAgent
from signlab.scenarios.messages import parse_forms
from signlab.scenarios.model import Scenario

__all__ = ["WalletDriver", "wallet_driver"]

POLL_SECONDS = 0.5
MAX_WAIT_SECONDS = 300.0


class _DataAttributes(HTMLParser):
    """The ``data-*`` attributes of the element with a given id."""

    def __init__(self, element_id: str) -> None:
        super().__init__()
        self.element_id = element_id
        self.found: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if values.get("id") == self.element_id:
            self.found = {k[5:]: v or "" for k, v in values.items() if k.startswith("data-")}


class WalletDriver:
    """Plays the persona's EUDI Wallet (see the module docstring).

    :param holder: the test person whose PID the wallet presents.
    :param device: ``same-device`` or ``cross-device``.
    :param faults: wallet fault names (``services/wallet/faults.py``) for the presentation.
    """

    def __init__(self, holder: str, device: str, faults: list[str]) -> None:
        self.holder = holder
        self.device = device
        self.faults = list(faults)

    def next_hop(self, agent: UserAgent, method: str, url: str, html: str | None) -> tuple[str, str, dict[str, str] | None] | None:
        """The browser's next request when the wallet login needs the person, else None.

        Called for a URL about to be opened (``html`` None) and for each HTML page the browser got.
        """
        service, path = agent.service_of(url), urlsplit(url).path
        if html is None:
            if service == "wallet" and method == "GET" and path == "/authorize":
                return self._same_device(agent, url)
            return None
        if service == "idp" and path.startswith("/openid4vp/login/"):
            return self._choose(url, html)
        if service == "idp" and path.startswith("/openid4vp/wait/"):
            return self._cross_device(agent, url, html)
        return None

    def _choose(self, url: str, html: str) -> tuple[str, str, dict[str, str]]:
        form = next((f for f in parse_forms(html) if any(n == "device" for n, _ in f["buttons"])), None)
        if form is None:
            raise AgentError("the IdP's EUDI Wallet page has no device choice", step=4)
        fields = dict(form["fields"])
        fields["device"] = self.device
        return "POST", urljoin(url, form["action"] or url), fields

    def _present(self, agent: UserAgent, request_url: str) -> dict[str, Any]:
        body = {"request_url": request_url, "holder": self.holder, "decision": "approve", "faults": self.faults}
        response = agent.send("POST", f"{agent.eco.url('wallet')}/api/v1/presentations", step=4, json=body,
                              headers={"Accept": "application/json"})
        if response.status_code != 200:
            raise Refused(agent._refusal_in_response(response, 4, "POST /api/v1/presentations"))
        answer: dict[str, Any] = response.json()
        if agent._current is not None:
            agent._current.detail = (f"wallet of {self.holder}: {answer.get('outcome')}"
                                     + (f" (faults {', '.join(self.faults)})" if self.faults else ""))
        return answer

    def _same_device(self, agent: UserAgent, url: str) -> tuple[str, str, None]:
        answer = self._present(agent, url)
        if not answer.get("redirect_uri"):
            raise AgentError(f"the wallet answered {answer.get('outcome')!r} without sending the browser back; "
                             "a wallet that never answers is a cross-device scenario", step=4)
        return "GET", str(answer["redirect_uri"]), None

    def _cross_device(self, agent: UserAgent, url: str, html: str) -> tuple[str, str, None]:
        parser = _DataAttributes("wallet-wait")
        parser.feed(html)
        page = parser.found
        if not page.get("invocation") or not page.get("status-url"):
            raise AgentError("the IdP's QR code page has no wallet request", step=4)
        self._present(agent, page["invocation"])  # the phone scans the code and answers on its own
        deadline = time.monotonic() + MAX_WAIT_SECONDS
        status_url = urljoin(url, page["status-url"])
        while True:
            status = agent.send("GET", status_url, step=4, headers={"Accept": "application/json"}).json()
            if status.get("done"):
                return "GET", urljoin(url, str(status.get("complete_url") or page["complete-url"])), None
            if time.monotonic() > deadline:
                raise AgentError(f"the IdP's wallet page was still waiting after {MAX_WAIT_SECONDS:g} s", step=4)
            time.sleep(POLL_SECONDS)


def wallet_driver(scenario: Scenario, faults: list[str]) -> WalletDriver | None:
    """The driver of ``scenario``'s wallet when its persona logs in with the EUDI Wallet, else None."""
    if scenario.persona.eid != WALLET_MEANS_ID:
        return None
    return WalletDriver(scenario.persona.person, scenario.persona.device, faults)

