"""The decision pages as a browser sees them: which page it is, and the POST a click sends."""

from __future__ import annotations

import pytest

from signlab.browser import DecisionPageError, decision_page, fill_decision_form

CONSENT = """<html><body><form method="post" action="/oauth2/consent/tx1">
<input type="hidden" name="csrf_token" value="tok&amp;1">
<input type="text" name="note" value="">
<button name="decision" value="approve">Sign</button><button name="decision" value="decline">Decline</button>
</form><form method="get" action="/help"><button>Help</button></form></body></html>"""


def test_pages_are_told_apart_by_path_and_by_a_pending_confirmation() -> None:
    assert decision_page("http://s/oauth2/consent/tx1", CONSENT) == "consent"
    assert decision_page("http://p/review/abc", '<button name="decision" value="confirm">') == "review"
    assert decision_page("http://p/review/abc", "<p>already confirmed</p>") is None
    assert decision_page("http://p/result/abc", CONSENT) is None


def test_the_click_sends_every_field_of_the_form_and_the_pressed_button() -> None:
    action, fields = fill_decision_form("http://s/oauth2/consent/tx1?x=1", CONSENT, "decline", "consent")
    assert action == "http://s/oauth2/consent/tx1"
    assert fields == {"csrf_token": "tok&1", "note": "", "decision": "decline"}


def test_a_missing_button_or_form_is_named() -> None:
    with pytest.raises(DecisionPageError, match="consent form has no 'maybe' button"):
        fill_decision_form("http://s/oauth2/consent/tx1", CONSENT, "maybe", "consent")
    with pytest.raises(DecisionPageError, match="review page has no POST form"):
        fill_decision_form("http://p/review/abc", "<form method='get'></form>", "confirm", "review")
