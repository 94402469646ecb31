"""The login state machine (services/idp/login.py) without HTTP: a real provider (catalogue, SQLite
store, keys) whose lab clock runs on a fake machine time the tests move (no waiting, no timing)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest

from services.idp.errors import LoginRefused, LoginRequestUnknown
from services.idp.login import (
    MAX_CODE_ATTEMPTS,
    Cancel,
    ChooseMeans,
    ChoosePerson,
    Completed,
    EnterCode,
    LoginCore,
    LoginState,
    Redirect,
    Refusal,
    Render,
    Result,
    Show,
    StartOver,
    Unexpected,
    Unmet,
    UseWallet,
)
from services.idp.provider import IdpCore
from services.idp.settings import IdpSettings
from shared.clock import LabClock
from shared.errors import InvalidRequest
from shared.identity import LOA_HIGH, LOA_SUBSTANTIAL

CLIENT_ID = "signlab-signer"
REDIRECT_URI = "http://127.0.0.1:8999/oauth2/idp-callback"
BROWSER = "browser-of-the-test"
START = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC).timestamp()


class MachineTime:
    """The machine's time as the lab clock reads it, moved by the test."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def machine() -> MachineTime:
    return MachineTime()


@pytest.fixture
def core(settings: IdpSettings, machine: MachineTime) -> Iterator[LoginCore]:
    provider = IdpCore(settings, clock=LabClock(None, system=machine))
    yield LoginCore(provider)
    provider.close()


def params(**extra: str) -> dict[str, str]:
    """An authorization request's parameters (authlib has validated them before the core sees them)."""
    return {"response_type": "code", "client_id": CLIENT_ID, "redirect_uri": REDIRECT_URI, "scope": "openid profile",
            "state": "state-1", "nonce": "nonce-1", "code_challenge": "c" * 43, "code_challenge_method": "S256", **extra}


def start(core: LoginCore, sso_session: object = None, **extra: str) -> Result:
    return core.start(params(**extra), client_id=CLIENT_ID, redirect_uri=REDIRECT_URI, scope="openid profile",
                      sso_session=sso_session, browser=lambda: BROWSER)


def begin(core: LoginCore, **extra: str) -> LoginState:
    """A login in progress at the person page."""
    result = start(core, **extra)
    assert isinstance(result, Redirect) and result.to == "login", result
    state = core.pending(result.rid, BROWSER)
    assert state.stage == "person" and state.browser == BROWSER
    return state


def step(core: LoginCore, state: LoginState, action: object) -> tuple[Result, LoginState | None]:
    """Advance and reload the stored login (None when it ended)."""
    result = core.advance(state, action)  # type: ignore[arg-type]
    return result, core.find(state.rid)


def at_code(core: LoginCore, person: str, means: str, **extra: str) -> LoginState:
    """A login in progress at the one-time code page of ``person`` with ``means``."""
    state = begin(core, **extra)
    result, state_ = step(core, state, ChoosePerson(person))
    assert result == Redirect(state.rid, "login") and state_ is not None and state_.stage == "means"
    result, state_ = step(core, state_, ChooseMeans(means))
    assert result == Redirect(state.rid, "login") and state_ is not None
    assert state_.stage == "otp" and state_.means == means and state_.otp is not None and len(state_.otp) == 6
    return state_


def refusal_of(result: Result) -> tuple[str, str]:
    assert isinstance(result, Refusal), result
    assert result.redirect_uri == REDIRECT_URI and result.params["state"] == "state-1"
    return result.refusal.error, result.refusal.error_description


# -- success -----------------------------------------------------------------------------------------
def test_person_means_code_completes_with_the_means_level_at_lab_time(core: LoginCore, settings: IdpSettings) -> None:
    state = at_code(core, "aase-aerlig", "no-buypass", acr_values=LOA_SUBSTANTIAL)
    page = core.advance(state, Show())
    assert isinstance(page, Render) and page.status == 200
    assert page.page.person is not None and page.page.person.id == "aase-aerlig"
    assert page.page.means is not None and page.page.means.id == "no-buypass"
    result, after = step(core, state, EnterCode(f" {state.otp} "))
    assert isinstance(result, Completed) and after is None, "a finished login is gone"
    auth = result.outcome.auth
    assert (auth.person_id, auth.means_id, auth.acr) == ("aase-aerlig", "no-buypass", LOA_HIGH)
    assert auth.auth_time == int(START) and result.outcome.min_rank == 2
    assert result.sso_until == START + settings.sso_session_seconds
    assert result.redirect_uri == REDIRECT_URI and result.params["nonce"] == "nonce-1"
    with pytest.raises(LoginRequestUnknown):
        core.advance(state, EnterCode(str(state.otp)))  # the same login cannot finish twice


def test_typed_identifier_and_unknown_person(core: LoginCore) -> None:
    state = begin(core)
    result, stored = step(core, state, ChoosePerson("14838540106"))  # check digit wrong
    assert isinstance(result, Render) and result.status == 400
    assert stored is not None and stored.stage == "person" and "not a valid Norwegian" in str(stored.message)
    result, stored = step(core, state, ChoosePerson("nobody-here"))
    assert isinstance(result, Render) and "no test person" in str(result.page.state.message)
    result, stored = step(core, state, ChoosePerson("19790405-2383"))
    assert isinstance(result, Redirect) and stored is not None and stored.person == "astrid-svensson"
    assert stored.message is None, "a good form clears the last message"


def test_means_the_person_does_not_hold_is_refused_on_the_page(core: LoginCore) -> None:
    state = begin(core)
    _, state_ = step(core, state, ChoosePerson("ola-nordmann"))
    assert state_ is not None
    result, stored = step(core, state_, ChooseMeans("dk-mitid"))
    assert isinstance(result, Render) and result.status == 400
    assert stored is not None and stored.stage == "means" and stored.message == "choose one of the eID means listed"


# -- wrong codes and lockout -------------------------------------------------------------------------
def test_wrong_code_counts_down_then_refuses(core: LoginCore) -> None:
    state = at_code(core, "ola-nordmann", "no-bankid")
    for left in range(MAX_CODE_ATTEMPTS - 1, 0, -1):
        result, stored = step(core, state, EnterCode("000000x"))
        assert isinstance(result, Render) and result.status == 400
        assert stored is not None and stored.message == f"wrong code; {left} attempt(s) left"
        state = stored
    error, description = refusal_of(core.advance(state, EnterCode("000000x")))
    assert error == "access_denied" and f"wrong one-time code {MAX_CODE_ATTEMPTS} times" in description
    assert core.find(state.rid) is None


def test_wrong_codes_lock_the_person_until_the_lab_clock_passes_the_window(core: LoginCore, settings: IdpSettings,
                                                                         machine: MachineTime) -> None:
    outcomes = []
    for _ in range(settings.lockout_failures):  # one wrong code in each of several logins
        outcomes.append(core.advance(at_code(core, "ola-nordmann", "no-bankid"), EnterCode("000000x")))
    assert all(isinstance(r, Render) for r in outcomes[:-1])
    assert "locked" in refusal_of(outcomes[-1])[1]
    state = begin(core)
    _, state_ = step(core, state, ChoosePerson("ola-nordmann"))
    assert state_ is not None
    error, description = refusal_of(core.advance(state_, ChooseMeans("no-bankid")))
    assert error == "access_denied" and f"locked for {settings.lockout_seconds // 60} minutes" in description
    assert isinstance(core.advance(at_code(core, "aase-aerlig", "no-buypass"), Show()), Render), "others are not locked"
    machine.advance(settings.lockout_seconds + 1)
    at_code(core, "ola-nordmann", "no-bankid")  # the window has passed: the code page again


# -- cancel, unmet, wallet, start over ---------------------------------------------------------------
def test_cancel_refuses_and_ends_the_login(core: LoginCore) -> None:
    state = begin(core)
    assert refusal_of(core.advance(state, Cancel())) == ("access_denied", "step 4 (Signer->IPSP): the user cancelled the login")
    with pytest.raises(LoginRequestUnknown):
        core.pending(state.rid, BROWSER)


def test_unmet_level_returns_unmet_authentication_requirements(core: LoginCore) -> None:
    state = begin(core, acr_values=LOA_HIGH)
    _, state_ = step(core, state, ChoosePerson("siri-substans"))
    assert state_ is not None
    page = core.advance(state_, Show())
    assert isinstance(page, Render) and page.page.usable and page.page.state.required == "high"
    assert all(m.rank < 3 for m, _ in page.page.held), "siri holds nothing at high"
    error, description = refusal_of(core.advance(state_, Unmet()))
    assert error == "unmet_authentication_requirements" and "reaches level high" in description


def test_wallet_button_hands_over_and_start_over_resets(core: LoginCore) -> None:
    state = at_code(core, "ola-nordmann", "no-bankid")
    result, stored = step(core, state, StartOver())
    assert result == Redirect(state.rid, "login") and stored is not None
    assert (stored.stage, stored.person, stored.means, stored.otp, stored.attempts) == ("person", None, None, None, 0)
    result, stored = step(core, stored, UseWallet())
    assert result == Redirect(state.rid, "wallet") and stored is not None and stored.stage == "wallet"


@pytest.mark.parametrize("action", [EnterCode("123456"), ChooseMeans("no-bankid"), Unexpected("teleport")])
def test_actions_out_of_place_are_invalid_requests(core: LoginCore, action: object) -> None:
    state = begin(core)
    with pytest.raises(InvalidRequest, match="unexpected form action"):
        core.advance(state, action)  # type: ignore[arg-type]
    assert core.find(state.rid) == state, "nothing changed"


# -- refused persons -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("person", "means", "words"), [
    ("per-gjenganger", "no-bankid", "deceased"),
    ("tor-tilbakekalt", "no-bankid", "is revoked"),
    ("lars-ostergaard", "dk-mitid", "is blocked"),
])
def test_deceased_revoked_and_blocked_are_refused_after_the_code(core: LoginCore, person: str, means: str,
                                                                 words: str) -> None:
    state = at_code(core, person, means)
    error, description = refusal_of(core.advance(state, EnterCode(str(state.otp))))
    assert error == "access_denied" and words in description
    assert core.find(state.rid) is None


def test_death_is_judged_at_lab_time(settings: IdpSettings) -> None:
    """Before the registered date of death (2025-08-01) on the lab clock, the person still logs in."""
    before = MachineTime(dt.datetime(2025, 7, 1, tzinfo=dt.UTC).timestamp())
    provider = IdpCore(settings, clock=LabClock(None, system=before))
    try:
        core = LoginCore(provider)
        state = at_code(core, "per-gjenganger", "no-bankid")
        assert isinstance(core.advance(state, EnterCode(str(state.otp))), Completed)
    finally:
        provider.close()


def test_injected_login_failure_refuses_after_the_code(core: LoginCore) -> None:
    state = at_code(core, "ola-nordmann", "no-bankid", login_hint="!locked")
    assert [f.name for f in state.failures] == ["locked"]
    assert "account is locked (injected failure 'locked')" in refusal_of(core.advance(state, EnterCode(str(state.otp))))[1]


# -- expiry and browser binding -----------------------------------------------------------------------
def test_login_expires_on_the_lab_clock(core: LoginCore, settings: IdpSettings, machine: MachineTime) -> None:
    state = begin(core)
    assert state.expires == START + settings.login_request_lifetime_seconds
    machine.advance(settings.login_request_lifetime_seconds - 1)
    assert core.pending(state.rid, BROWSER) == state
    machine.advance(2)
    assert core.find(state.rid) is None
    with pytest.raises(LoginRequestUnknown):
        core.pending(state.rid, BROWSER)


def test_login_is_bound_to_its_browser(core: LoginCore) -> None:
    state = begin(core)
    with pytest.raises(LoginRequestUnknown, match="another browser"):
        core.pending(state.rid, "another-browser")
    with pytest.raises(LoginRequestUnknown):
        core.pending(state.rid, None)


# -- step 3: the request ---------------------------------------------------------------------------------
def test_headless_hint_logs_in_at_once(core: LoginCore) -> None:
    result = start(core, login_hint="kari-nordmann@no-minid")
    assert isinstance(result, Completed) and result.sso_until is None
    assert (result.outcome.auth.person_id, result.outcome.auth.means_id) == ("kari-nordmann", "no-minid")
    assert refusal_of(start(core, login_hint="per-gjenganger"))[0] == "access_denied"


def test_wallet_hint_goes_to_the_wallet_login(core: LoginCore) -> None:
    result = start(core, login_hint="kari-nordmann@eudi-wallet")
    assert isinstance(result, Redirect) and result.to == "wallet"
    assert core.pending(result.rid, BROWSER).stage == "wallet"


@pytest.mark.parametrize(("extra", "error"), [
    ({"prompt": "none"}, "login_required"),
    ({"max_age": "soon"}, "invalid_request"),
    ({"acr_values": "urn:unknown"}, "invalid_request"),
    ({"request": "eyJ"}, "request_not_supported"),
])
def test_request_refusals_go_to_the_client(core: LoginCore, extra: dict[str, str], error: str) -> None:
    assert refusal_of(start(core, **extra))[0] == error


def test_sso_session_is_reused_until_it_expires_or_max_age_passes(core: LoginCore, machine: MachineTime) -> None:
    first = start(core, login_hint="kari-nordmann@no-bankid")
    assert isinstance(first, Completed)
    sso = {"auth": first.outcome.auth.as_dict(), "expires": START + 600}
    machine.advance(120)
    reused = start(core, sso, max_age="300")
    assert isinstance(reused, Completed) and reused.outcome.auth == first.outcome.auth
    assert isinstance(start(core, sso, max_age="60"), Redirect), "older than max_age: log in again"
    assert isinstance(start(core, sso, prompt="login"), Redirect)
    machine.advance(600)
    assert core.sso_authentication(sso) is None
    assert refusal_of(start(core, sso, prompt="none"))[0] == "login_required"


def test_wallet_completion_and_refusal_end_the_login(core: LoginCore) -> None:
    state = begin(core)
    other = begin(core)
    auth = start(core, login_hint="kari-nordmann@no-bankid")
    assert isinstance(auth, Completed)
    done = core.complete(state, auth.outcome.auth)
    assert done.sso_until is None and done.outcome.auth == auth.outcome.auth and core.find(state.rid) is None
    with pytest.raises(LoginRequestUnknown):
        core.complete(state, auth.outcome.auth)
    refused = core.refuse(other, LoginRefused("the user cancelled the wallet login"))
    assert refusal_of(refused) == ("access_denied", "the user cancelled the wallet login")
    assert core.find(other.rid) is None
