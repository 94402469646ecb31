"""The login_hint grammar."""

from __future__ import annotations

import pytest

from services.idp.catalogue import load_catalogue
from services.idp.failures import FAILURES, Failure, parse_failure
from services.idp.login_hint import parse_login_hint

CATALOGUE = load_catalogue()


@pytest.mark.parametrize(("text", "person", "means", "failures"), [
    ("kari-nordmann@no-bankid", "kari-nordmann", "no-bankid", ()),
    ("signlab:kari-nordmann@no-bankid", "kari-nordmann", "no-bankid", ()),
    ("KARI-NORDMANN", "kari-nordmann", None, ()),
    ("14838540105", "kari-nordmann", None, ()),
    ("197904052383@se-bankid", "astrid-svensson", "se-bankid", ()),
    ("kari-nordmann!slow=2.5!wrong-nonce", "kari-nordmann", None, (Failure("slow", 2.5), Failure("wrong-nonce"))),
    ("!cancel", None, None, (Failure("cancel"),)),
])
def test_parse(text: str, person: str | None, means: str | None, failures: tuple[Failure, ...]) -> None:
    hint = parse_login_hint(text, CATALOGUE, failures_allowed=True)
    assert (hint.person.id if hint.person else None) == person
    assert (hint.means.id if hint.means else None) == means
    assert hint.failures == failures
    assert hint.headless is (person is not None)


@pytest.mark.parametrize(("text", "message"), [
    ("nobody@no-bankid", "unknown person 'nobody'"),
    ("kari-nordmann@no-such", "unknown eID means 'no-such'"),
    ("kari-nordmann!explode", "unknown failure 'explode'"),
    ("kari-nordmann!cancel=3", "takes no value"),
    ("kari-nordmann!slow=soon", "not a number"),
    ("@no-bankid", "without a person"),
])
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_login_hint(text, CATALOGUE, failures_allowed=True)


@pytest.mark.parametrize("text", ["kari-nordmann!slow=30", "kari-nordmann@no-bankid!cancel", "!unavailable"])
def test_failure_directives_are_refused_without_fault_injection(text: str) -> None:
    with pytest.raises(ValueError, match="fault injection"):
        parse_login_hint(text, CATALOGUE, failures_allowed=False)
    # Without directives the same hint parses as before.
    assert parse_login_hint(text.split("!")[0], CATALOGUE, failures_allowed=False).failures == ()


def test_every_failure_parses_and_has_documentation() -> None:
    for name, spec in FAILURES.items():
        assert parse_failure(name).name == name
        assert spec.summary and 3 <= spec.step <= 5
        assert (spec.stage == "id_token") == (spec.detected_by is not None)
