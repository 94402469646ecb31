"""The login state machine of flow steps 3-4 (Flask-free): from the authorization request to the
authentication a code is issued for, or to the refusal sent back to the client.

* :meth:`LoginCore.start` decides an authorization request (step 3) that authlib has validated: a
  headless login (``login_hint``), the single sign-on session, ``prompt=none``, or a login in
  progress the browser is sent to (the login pages or the EUDI Wallet).
* :meth:`LoginCore.advance` moves a login in progress one step (step 4) on what the person did:
  person → eID means → one-time code, "Another person", Cancel, the wallet button. Per login,
  :data:`MAX_CODE_ATTEMPTS` wrong codes refuse it; per person, ``lockout_failures`` wrong codes within
  ``lockout_seconds`` (any login, any browser) lock the eID login.

Each call returns one typed result: :class:`Render` (show the login page, maybe with a message),
:class:`Redirect` (to the next page), :class:`Completed` (issue a code for this authentication) or
:class:`Refusal` (send this error to the client's redirect URI). The HTTP layer maps request →
action and result → response; requests that cannot be answered at all (unknown or foreign login,
unexpected form action) raise :class:`~shared.errors.SignLabError`. The time comes from an injected
:class:`~shared.clock.LabClock` (the provider's), never the machine's.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Literal

from services.idp.authn import Authentication, LoginOutcome, authenticate, choose_means, parse_acr_values, satisfies, usable_means
from services.idp.catalogue import EidMeans, Holding, Person
from services.idp.errors import (
    AuthorizationRefused,
    InvalidAuthorizationRequest,
    LoginRefused,
    LoginRequestUnknown,
    LoginRequired,
    RequestObjectNotSupported,
    TemporarilyUnavailable,
    UnmetAuthenticationRequirements,
)
from services.idp.failures import Failure
from services.idp.identifiers import validate_identifier
from services.idp.login_hint import parse_login_hint
from services.idp.provider import IdpCore, RegisteredClient
from services.idp.store import StoredPending
from shared.errors import InvalidRequest
from shared.eudi import WALLET_MEANS_ID
from shared.flow import step
from shared.identity import LOA_NAMES

__all__ = [
    "MAX_CODE_ATTEMPTS",
    "Action",
    "Cancel",
    "ChooseMeans",
    "ChoosePerson",
    "Completed",
    "EnterCode",
    "LoginCore",
    "LoginPage",
    "LoginState",
    "Redirect",
    "Refusal",
    "Render",
    "Result",
    "Show",
    "StartOver",
    "Unexpected",
    "Unmet",
    "UseWallet",
]

STEP_3, STEP_4 = step(3), step(4)
MAX_CODE_ATTEMPTS = 3
"""Wrong one-time codes one login accepts before it is refused."""

Stage = Literal["person", "means", "otp", "wallet"]


@dataclass(frozen=True)
class LoginState:
    """A login in progress (stored between pages under its ``rid``, bound to one browser)."""

    rid: str
    expires: float
    params: Mapping[str, str]
    """The authorization request's parameters (rebuilt for authlib when the login ends)."""
    client_id: str
    redirect_uri: str
    min_rank: int | None
    failures: tuple[Failure, ...]
    browser: str
    """The browser that started the login (its id in the IdP session cookie)."""
    stage: Stage
    person: str | None = None
    means: str | None = None
    otp: str | None = None
    """The simulated one-time code (shown on the page: this is a lab)."""
    attempts: int = 0
    message: str | None = None
    """What was wrong with the last form (shown on the page)."""

    def as_dict(self) -> dict[str, Any]:
        """The stored JSON form (keys as the pages and older data directories know them)."""
        return {"params": dict(self.params), "client_id": self.client_id, "redirect_uri": self.redirect_uri,
                "min_rank": self.min_rank, "failures": [f.as_dict() for f in self.failures], "bid": self.browser,
                "stage": self.stage, "person": self.person, "means": self.means, "otp": self.otp,
                "attempts": self.attempts, "message": self.message}

    @classmethod
    def from_stored(cls, pending: StoredPending) -> LoginState:
        """Inverse of :meth:`as_dict`."""
        data = pending.data
        return cls(pending.rid, pending.expires, dict(data["params"]), str(data["client_id"]), str(data["redirect_uri"]),
                   data.get("min_rank"), tuple(Failure.from_dict(f) for f in data.get("failures") or ()),
                   str(data.get("bid") or ""), data.get("stage", "person"), data.get("person"), data.get("means"),
                   data.get("otp"), int(data.get("attempts") or 0), data.get("message"))

    @property
    def required(self) -> str | None:
        """The minimum level's name (``high``), or None when any level will do."""
        return LOA_NAMES[self.min_rank - 1] if self.min_rank else None


# -- actions: what the person did on a login page --------------------------------------------------
@dataclass(frozen=True)
class Show:
    """The page is (re)loaded."""


@dataclass(frozen=True)
class Cancel:
    """The Cancel button."""

    form_action: ClassVar[str] = "cancel"


@dataclass(frozen=True)
class Unmet:
    """"Return to the service" when none of the person's means reaches the level."""

    form_action: ClassVar[str] = "unmet"


@dataclass(frozen=True)
class UseWallet:
    """The EUDI Wallet button: the wallet login takes over."""

    form_action: ClassVar[str] = "wallet"


@dataclass(frozen=True)
class StartOver:
    """"Another person" / "Start over"."""

    form_action: ClassVar[str] = "back"


@dataclass(frozen=True)
class ChoosePerson:
    """A test person (id or national identifier): the one typed, else the one picked from the list."""

    form_action: ClassVar[str] = "person"

    chosen: str


@dataclass(frozen=True)
class ChooseMeans:
    """One of the person's eID means."""

    form_action: ClassVar[str] = "means"

    means_id: str


@dataclass(frozen=True)
class EnterCode:
    """The one-time code."""

    form_action: ClassVar[str] = "otp"

    code: str


@dataclass(frozen=True)
class Unexpected:
    """A form action that does not exist."""

    form_action: str


Action = Show | Cancel | Unmet | UseWallet | StartOver | ChoosePerson | ChooseMeans | EnterCode | Unexpected


# -- results ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LoginPage:
    """What the login page shows for a state."""

    state: LoginState
    client: RegisteredClient | None
    person: Person | None
    means: EidMeans | None
    held: list[tuple[EidMeans, Holding]]
    usable: set[str]
    persons: tuple[Person, ...]


@dataclass(frozen=True)
class Render:
    """Show the login page (status 400: with the message of a refused form)."""

    page: LoginPage
    status: int = 200


@dataclass(frozen=True)
class Redirect:
    """Send the browser to the login page of ``rid`` or to the wallet login."""

    rid: str
    to: Literal["login", "wallet"]


@dataclass(frozen=True)
class Completed:
    """The person is authenticated: issue a code for ``outcome`` to ``redirect_uri``."""

    outcome: LoginOutcome
    params: Mapping[str, str]
    redirect_uri: str
    sso_until: float | None = None
    """Keep a single sign-on session until then (None: keep none)."""


@dataclass(frozen=True)
class Refusal:
    """The login ends with ``refusal`` at the client's ``redirect_uri``."""

    refusal: AuthorizationRefused
    params: Mapping[str, str]
    redirect_uri: str


Result = Render | Redirect | Completed | Refusal


@dataclass
class LoginCore:
    """The login state machine over one provider (catalogue, store, settings and its clock)."""

    provider: IdpCore
    _persons: tuple[Person, ...] = field(init=False)

    def __post_init__(self) -> None:
        self._persons = tuple(self.provider.catalogue.persons)

    @property
    def _now(self) -> float:
        return self.provider.clock.time()

    def _today(self) -> dt.date:
        return dt.datetime.fromtimestamp(self._now, dt.UTC).date()

    # -- step 3 ------------------------------------------------------------------------------------
    def sso_authentication(self, sso_session: Any) -> Authentication | None:
        """The authentication kept in an unexpired single sign-on session (the session cookie's ``sso``)."""
        if not isinstance(sso_session, dict) or float(sso_session.get("expires", 0)) < self._now:
            return None
        try:
            return Authentication.from_dict(sso_session["auth"])
        except (KeyError, TypeError, ValueError):
            return None

    def start(self, args: Mapping[str, str], *, client_id: str, redirect_uri: str, scope: str | None,
              sso_session: Any, browser: Callable[[], str]) -> Completed | Refusal | Redirect:
        """Decide an authorization request authlib has validated (step 3).

        :param args: the request's parameters (the first value of each).
        :param sso_session: the browser's single sign-on session, as stored in its cookie.
        :param browser: the browser's id; called only when a login page is needed (it may set a cookie).
        """
        settings = self.provider.settings
        try:
            for parameter in ("request", "request_uri"):
                if parameter in args:
                    raise RequestObjectNotSupported(parameter, step=STEP_3)
            if "openid" not in (scope or "").split():
                raise InvalidAuthorizationRequest("scope must include openid", step=STEP_3)
            max_age = _max_age(args)
            min_rank = parse_acr_values(args.get("acr_values"))
            prompts = set(args.get("prompt", "").split())
            hint = None
            if args.get("login_hint"):
                try:
                    hint = parse_login_hint(args["login_hint"], self.provider.catalogue,
                                            failures_allowed=settings.admin_api_enabled)
                except ValueError as exc:
                    raise InvalidAuthorizationRequest(f"login_hint: {exc}", step=STEP_3) from None
            failures = self.provider.failures_for_request(client_id, hint.failures if hint else ())
            if any(f.spec.stage == "authorize" for f in failures):
                raise TemporarilyUnavailable("the eID service is temporarily unavailable (injected failure 'unavailable')",
                                             step=STEP_3)
            # "@eudi-wallet": the wallet presents the PID (services/idp/openid4vp_http.py), no headless login.
            wallet = hint is not None and hint.means is not None and hint.means.id == WALLET_MEANS_ID
            if hint is not None and hint.person is not None and not wallet:
                means = hint.means or choose_means(self.provider.catalogue, hint.person, min_rank)
                auth = authenticate(self.provider.catalogue, hint.person, means, min_rank=min_rank, failures=failures,
                                    now=self._now, today=self._today())
                return Completed(LoginOutcome(auth, failures, min_rank), args, redirect_uri)
            sso = self.sso_authentication(sso_session)
            login_failures = any(f.spec.stage == "login" for f in failures)
            if (sso is not None and not wallet and "login" not in prompts and not login_failures and satisfies(sso, min_rank)
                    and (max_age is None or self._now - sso.auth_time <= max_age)):
                return Completed(LoginOutcome(sso, failures, min_rank), args, redirect_uri)
            if "none" in prompts:
                raise LoginRequired("prompt=none but there is no usable login session at the IdP", step=STEP_3)
        except AuthorizationRefused as refusal:
            return Refusal(refusal, args, redirect_uri)
        state = LoginState(secrets.token_urlsafe(18), self._now + settings.login_request_lifetime_seconds, dict(args),
                           client_id, redirect_uri, min_rank, failures, browser(), "wallet" if wallet else "person")
        self._save(state)
        return Redirect(state.rid, "wallet" if wallet else "login")

    # -- step 4 ------------------------------------------------------------------------------------
    def find(self, rid: str) -> LoginState | None:
        """The login in progress ``rid`` (unless expired or finished), whichever browser asks."""
        pending = self.provider.store.get_pending(rid)
        return LoginState.from_stored(pending) if pending is not None else None

    def pending(self, rid: str, browser: str | None) -> LoginState:
        """The login in progress ``rid``, started in ``browser``.

        :raises LoginRequestUnknown: unknown, expired, finished, or started in another browser.
        """
        state = self.find(rid)
        if state is None:
            raise LoginRequestUnknown(step=STEP_4)
        if state.browser != browser:
            raise LoginRequestUnknown("this login was started in another browser; go back to the service and start again",
                                      step=STEP_4)
        return state

    def advance(self, state: LoginState, action: Action) -> Result:
        """Move the login ``state`` on ``action`` (module docstring).

        :raises InvalidRequest: a form action that does not fit the login's stage.
        :raises LoginRequestUnknown: the login finished meanwhile (another tab), or its person or
            means left the catalogue.
        """
        if isinstance(action, Show):
            return self._render(state)
        state = replace(state, message=None)
        match action:
            case Cancel():
                return self.refuse(state, LoginRefused("the user cancelled the login", step=STEP_4))
            case Unmet():
                return self.refuse(state, UnmetAuthenticationRequirements(
                    f"none of the person's eID means reaches level {state.required or 'requested'}", step=STEP_4))
            case UseWallet():
                return self._moved(replace(state, stage="wallet"), "wallet")
            case StartOver():
                return self._moved(replace(state, stage="person", person=None, means=None, otp=None, attempts=0))
            case ChoosePerson(chosen=chosen):
                return self._choose_person(state, chosen.strip())
            case ChooseMeans(means_id=means_id) if state.person:
                return self._choose_means(state, state.person, means_id)
            case EnterCode(code=code) if state.means and state.otp:
                return self._enter_code(state, state.otp, code.strip())
        raise InvalidRequest(f"unexpected form action {action.form_action!r} at this stage of the login", step=STEP_4)

    def refuse(self, state: LoginState, refusal: AuthorizationRefused) -> Refusal:
        """End the login ``state`` with ``refusal`` (it can no longer be continued)."""
        self.provider.store.take_pending(state.rid)
        return Refusal(refusal, state.params, state.redirect_uri)

    def complete(self, state: LoginState, auth: Authentication, *, sso: bool = False) -> Completed:
        """End the login ``state`` with ``auth`` (``sso``: keep a single sign-on session).

        :raises LoginRequestUnknown: it finished meanwhile (another tab).
        """
        self._take(state)
        return self._completed(state, auth, sso=sso)

    # -- the steps of the pages ---------------------------------------------------------------------
    def _choose_person(self, state: LoginState, chosen: str) -> Result:
        person = self.provider.catalogue.find_person(chosen) if chosen else None
        if person is None:
            return self._refused_form(state, _unknown_identifier_message(chosen))
        return self._moved(replace(state, stage="means", person=person.id, means=None))

    def _choose_means(self, state: LoginState, person_id: str, means_id: str) -> Result:
        person = self.provider.catalogue.get_person(person_id)
        means = self.provider.catalogue.get_means(means_id)
        if person is None or means is None or person.holding(means.id) is None:
            return self._refused_form(state, "choose one of the eID means listed")
        if self._locked(person.id):
            return self.refuse(state, self._lockout_refusal())
        return self._moved(replace(state, stage="otp", means=means.id, otp=f"{secrets.randbelow(10**6):06d}", attempts=0))

    def _enter_code(self, state: LoginState, expected: str, code: str) -> Result:
        if secrets.compare_digest(code.encode(), expected.encode()):
            return self._finish(state)
        person_id = str(state.person)
        self.provider.store.record_failed_code(person_id, self._now)
        if self._locked(person_id):
            return self.refuse(state, self._lockout_refusal())
        attempts = state.attempts + 1
        if attempts >= MAX_CODE_ATTEMPTS:
            return self.refuse(state, LoginRefused(f"wrong one-time code {MAX_CODE_ATTEMPTS} times; authentication failed",
                                                   step=STEP_4))
        return self._refused_form(replace(state, attempts=attempts),
                                  f"wrong code; {MAX_CODE_ATTEMPTS - attempts} attempt(s) left")

    def _finish(self, state: LoginState) -> Completed | Refusal:
        person = self.provider.catalogue.get_person(str(state.person))
        means = self.provider.catalogue.get_means(str(state.means))
        if person is None or means is None:
            raise LoginRequestUnknown(step=STEP_4)
        self._take(state)
        try:
            auth = authenticate(self.provider.catalogue, person, means, min_rank=state.min_rank, failures=state.failures,
                                now=self._now, today=self._today())
        except AuthorizationRefused as refusal:
            return Refusal(refusal, state.params, state.redirect_uri)
        return self._completed(state, auth, sso=True)

    def _take(self, state: LoginState) -> None:
        if self.provider.store.take_pending(state.rid) is None:  # finished in another tab meanwhile
            raise LoginRequestUnknown(step=STEP_4)

    def _completed(self, state: LoginState, auth: Authentication, *, sso: bool) -> Completed:
        seconds = self.provider.settings.sso_session_seconds
        return Completed(LoginOutcome(auth, state.failures, state.min_rank), state.params, state.redirect_uri,
                         self._now + seconds if sso and seconds > 0 else None)

    def _locked(self, person_id: str) -> bool:
        """Brute-force protection: too many wrong codes for this person recently (any login, any browser)."""
        settings = self.provider.settings
        since = self._now - settings.lockout_seconds
        return self.provider.store.failed_codes_since(person_id, since) >= settings.lockout_failures

    def _lockout_refusal(self) -> LoginRefused:
        settings = self.provider.settings
        return LoginRefused(f"this eID login is locked for {settings.lockout_seconds // 60} minutes after "
                            f"{settings.lockout_failures} wrong one-time codes", step=STEP_4)

    # -- state and pages ---------------------------------------------------------------------------
    def _save(self, state: LoginState) -> None:
        self.provider.store.put_pending(state.rid, state.expires, state.as_dict())

    def _moved(self, state: LoginState, to: Literal["login", "wallet"] = "login") -> Redirect:
        self._save(state)
        return Redirect(state.rid, to)

    def _refused_form(self, state: LoginState, message: str) -> Render:
        state = replace(state, message=message)
        self._save(state)
        return self._render(state, 400)

    def _render(self, state: LoginState, status: int = 200) -> Render:
        catalogue = self.provider.catalogue
        person = catalogue.get_person(state.person) if state.person else None
        page = LoginPage(
            state, self.provider.client(state.client_id), person,
            catalogue.get_means(state.means) if state.means else None,
            catalogue.means_of(person) if person else [],
            {m.id for m in usable_means(catalogue, person, None)} if person else set(), self._persons)
        return Render(page, status)


def _max_age(args: Mapping[str, str]) -> int | None:
    raw = args.get("max_age")
    if raw is None or raw == "":
        return None
    if not raw.isdigit():
        raise InvalidAuthorizationRequest(f"max_age must be a non-negative integer of seconds, not {raw!r}", step=STEP_3)
    return int(raw)


def _unknown_identifier_message(typed: str) -> str:
    compact = "".join(typed.split())
    for country, semantics in (("NO", "PNO"), ("SE", "PNO"), ("FI", "PNO"), ("DK", "PNO")):
        looks_like = {"NO": compact.isdigit() and len(compact) == 11,
                      "SE": compact.replace("-", "").replace("+", "").isdigit() and len(compact.replace("-", "")) in (10, 12),
                      "FI": len(compact) == 11 and compact[:6].isdigit() and compact[6] in "+-ABCDEFUVWXY",
                      "DK": compact.replace("-", "").isdigit() and len(compact.replace("-", "")) == 10}[country]
        if looks_like:
            try:
                validate_identifier(country, semantics, compact)
            except ValueError as exc:
                if country != "SE" or len(compact) != 10:  # Danish and Swedish short forms overlap
                    return f"{exc}; check the number"
    return "no test person with this id or national identifier; pick one from the list"
