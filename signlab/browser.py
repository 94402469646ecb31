"""What the lab's headless browsers do on the two decision pages of a flow — the one place both the
scenario runner's :class:`~signlab.scenarios.agent.UserAgent` (every exchange recorded) and the
load/bench :class:`~signlab.load.BrowserAgent` (lean, for throughput) take it from.

The pages: the portal's review page (step 2: the signer confirms the documents and their digests;
the portal then pushes the PAR) and the SSASP's consent page (step 5: SCAL2 approval of the exact
digests). Each is a real HTML form with hidden fields (the CSRF token among them) and ``decision``
buttons; the browser fills the hidden fields and presses one button, as a person would.

Limits: no JavaScript (none of SignLab's pages needs it for these forms).
"""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit

from signlab.errors import CliError
from signlab.scenarios.messages import parse_forms

__all__ = ["BROWSER_ACCEPT", "DecisionPageError", "decision_page", "fill_decision_form"]

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
"""The Accept header of a browser navigating (HTML first): the services answer pages, not JSON."""


class DecisionPageError(CliError):
    """A decision page without the form or the button a person would use."""


def decision_page(url: str, html: str) -> str | None:
    """``"review"`` (step 2, the portal's review page still waiting for confirmation),
    ``"consent"`` (step 5, the SSASP's consent page) or None for any other page."""
    path = urlsplit(url).path
    if "/oauth2/consent/" in path:
        return "consent"
    if "/review/" in path and 'value="confirm"' in html:
        return "review"
    return None


def fill_decision_form(url: str, html: str, decision: str, page: str) -> tuple[str, dict[str, str]]:
    """The POST a person's click on ``decision`` sends: ``(action URL, fields)`` with every hidden
    field of the page's decision form (the CSRF token among them) and the button's name and value.

    :raises DecisionPageError: the page has no POST form or no such button (names the page).
    """
    forms = [f for f in parse_forms(html) if f["method"] == "post"]
    form = next((f for f in forms if any(name == "decision" for name, _ in f["buttons"])), forms[0] if forms else None)
    if form is None:
        raise DecisionPageError(f"the {page} page has no POST form")
    fields = dict(form["fields"])
    buttons = [(name, value) for name, value in form["buttons"]]
    chosen = next(((name, value) for name, value in buttons if value == decision), None)
    if chosen is None:
        raise DecisionPageError(f"the {page} form has no {decision!r} button (buttons: {buttons})")
    fields[chosen[0]] = chosen[1]
    return urljoin(url, form["action"] or url), fields
