"""The trainer token: who may open the views of other people's transactions (docs/design.md §6).

One secret, ``TRAINER_TOKEN`` of each service (``signlab up`` generates one value for all of them,
``services.registry.LINKED_SECRETS``), guards the portal's trainer dashboard and trace API, the
IdP's debugger, the CA's list of issued certificates and the SSASP's audit-log view. Two ways in:

* programs send ``Authorization: Bearer <token>`` (the scenario runner, ``curl``);
* browsers open the sign-in link ``<service>/trainer/sign-in?token=<token>`` once (``signlab up``
  prints the portal's): the service sets a signed, HttpOnly, SameSite=Lax cookie (``Secure`` when
  the service's public URL is https) valid for :data:`SESSION_SECONDS`, and redirects to the view
  without the token in the address bar. ``POST /trainer/sign-out`` ends it.

Without either, a guarded view answers 401 with ``WWW-Authenticate: Bearer realm="signlab-trainer"``
(an HTML page for a browser, with the sign-in form). Wrong tokens are throttled per address
(:class:`shared.guard.SecretGuard`). ``/trainer`` is never traced, so the sign-in link's token is
not written to the trace store; the logs record paths without query strings.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, Response, abort, current_app, redirect, render_template, request, url_for
from itsdangerous import BadSignature, URLSafeTimedSerializer
from pydantic import SecretStr

from shared.errors import InvalidToken
from shared.guard import SecretGuard, bearer_token
from shared.web import wants_html

__all__ = ["SESSION_SECONDS", "TrainerAccess", "TrainerRequired", "install_trainer_access", "is_trainer", "require_trainer"]

SESSION_SECONDS = 12 * 3600
"""How long a browser stays signed in as trainer (a lab day)."""

_REALM = "signlab-trainer"


class TrainerRequired(InvalidToken):
    """A trainer view was asked for without the trainer token (or with a wrong one)."""

    def __init__(self, presented: bool, env_name: str) -> None:
        super().__init__(f"this trainer view needs the trainer token: open the sign-in link 'signlab up' printed, "
                         f"or send 'Authorization: Bearer <{env_name}>'")
        # RFC 6750 §3.1: no error code when no credentials were sent.
        challenge = f'Bearer realm="{_REALM}"' + (', error="invalid_token"' if presented else "")
        self.headers = {"WWW-Authenticate": challenge}


class TrainerAccess:
    """The trainer token of one service, its throttle and the signed browser cookie.

    :param token: the trainer token.
    :param service: the service name (the cookie is ``signlab_<service>_trainer``: on 127.0.0.1
        the four services share one cookie jar).
    :param env_name: the variable that sets the token, for messages.
    :param secure_cookie: set ``Secure`` on the cookie (the service is reached over https).
    """

    def __init__(self, token: SecretStr, service: str, env_name: str, *, secure_cookie: bool = False) -> None:
        self.guard = SecretGuard(token, "the trainer views")
        self.cookie_name = f"signlab_{service}_trainer"
        self.env_name = env_name
        self.secure_cookie = secure_cookie
        self._cookies = URLSafeTimedSerializer(token.get_secret_value(), salt="signlab-trainer-session")

    def allowed(self, authorization: str | None, cookie: str | None, address: str | None) -> bool:
        """True for the right bearer token or a valid sign-in cookie.

        :raises TrainerRequired: a wrong bearer token (counted by the throttle).
        :raises shared.guard.TooManyAttempts: the address is locked.
        """
        presented = bearer_token(authorization)
        if presented is not None:
            if self.guard.matches(presented, address):
                return True
            raise TrainerRequired(True, self.env_name)
        if cookie:
            try:
                return self._cookies.loads(cookie, max_age=SESSION_SECONDS) == "trainer"
            except BadSignature:
                return False
        return False

    def cookie_value(self) -> str:
        """A fresh signed sign-in cookie."""
        return self._cookies.dumps("trainer")


def _access() -> TrainerAccess:
    return current_app.extensions["signlab.trainer"]


def is_trainer() -> bool:
    """True when the current request comes from a trainer (never raises: for templates)."""
    access = current_app.extensions.get("signlab.trainer")
    if access is None:
        return False
    try:
        return access.allowed(request.headers.get("Authorization"), request.cookies.get(access.cookie_name),
                              request.remote_addr)
    except InvalidToken:
        return False


def require_trainer() -> None:
    """Refuse the current request unless it comes from a trainer.

    :raises TrainerRequired: 401 with the ``WWW-Authenticate`` challenge.
    """
    access = _access()
    if not access.allowed(request.headers.get("Authorization"), request.cookies.get(access.cookie_name),
                          request.remote_addr):
        refusal = TrainerRequired(False, access.env_name)
        if wants_html():  # a browser gets the sign-in form, still with the 401 and its challenge
            abort(Response(render_template("signlab_trainer_sign_in.html", next=request.full_path.rstrip("?"),
                                           failed=False), 401, refusal.headers))
        raise refusal


def _safe_next(target: str | None, default: str) -> str:
    """Only a path of this service (no scheme, no host, no ``//``): the sign-in is no open redirect."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return default


def install_trainer_access(app: Flask, token: SecretStr, *, env_name: str, landing: str) -> TrainerAccess:
    """Guard ``app``'s trainer views with ``token``; add ``/trainer/sign-in`` and ``/trainer/sign-out``.

    :param landing: where the sign-in goes when the link names no ``next`` path.
    """
    settings = app.extensions["signlab.settings"]
    access = TrainerAccess(token, app.extensions["signlab.service"].name, env_name,
                           secure_cookie=settings.base_url.startswith("https://"))
    app.extensions["signlab.trainer"] = access
    app.jinja_env.globals["signlab_is_trainer"] = is_trainer
    bp = Blueprint("signlab_trainer_access", __name__, url_prefix="/trainer")

    @bp.route("/sign-in", methods=["GET", "POST"])
    def sign_in() -> Any:
        """Exchange the token (link or form) for the signed cookie."""
        token_value = (request.form if request.method == "POST" else request.args).get("token")
        target = _safe_next(request.values.get("next"), landing)
        if not token_value:
            return render_template("signlab_trainer_sign_in.html", next=target, failed=False), 200
        if not access.guard.matches(token_value, request.remote_addr):
            return (render_template("signlab_trainer_sign_in.html", next=target, failed=True), 401,
                    TrainerRequired(True, access.env_name).headers)
        response: Response = redirect(target, code=303)  # type: ignore[assignment]
        response.set_cookie(access.cookie_name, access.cookie_value(), max_age=SESSION_SECONDS, httponly=True,
                            samesite="Lax", secure=access.secure_cookie)
        return response

    @bp.post("/sign-out")
    def sign_out() -> Any:
        """Forget the trainer cookie."""
        response: Response = redirect(url_for("signlab_trainer_access.sign_in"), code=303)  # type: ignore[assignment]
        response.delete_cookie(access.cookie_name)
        return response

    app.register_blueprint(bp)
    return access
