"""One guard for the lab's bearer secrets: admin tokens, the trainer token, partner API secrets.

:class:`SecretGuard` compares a presented secret with the expected one in constant time and
throttles guessing: a caller address that presents ``limit`` wrong secrets within ``window``
seconds gets 429 ``too_many_attempts`` (with ``Retry-After``) for every further attempt — right or
wrong, so the lock is no oracle — until the oldest failure leaves the window. A request that
presents no secret is not a guess and is never counted.

Limits: the count is per process and per address (``signlab up`` runs everything on 127.0.0.1, so
a local guesser also delays the lab's own tools for at most ``window`` seconds; the generated
secrets are 192-bit random values, so the throttle guards weak operator-chosen values and makes
guessing visible in the log, it is not what keeps the generated ones safe). Browsers of trainers
sign in once and then use a signed cookie, which the throttle does not touch.
"""

from __future__ import annotations

import hmac
import logging
import math
import time
from collections.abc import Callable

from pydantic import SecretStr

from shared.errors import SignLabError
from shared.throttle import FailureThrottle

__all__ = ["GUESS_LIMIT", "GUESS_WINDOW_SECONDS", "SecretGuard", "TooManyAttempts", "bearer_token"]

log = logging.getLogger(__name__)

GUESS_LIMIT = 10
"""Wrong secrets one address may present within :data:`GUESS_WINDOW_SECONDS` before it is locked."""
GUESS_WINDOW_SECONDS = 60.0


class TooManyAttempts(SignLabError):
    """Too many wrong secrets from this address: wait ``Retry-After`` seconds."""

    error = "too_many_attempts"
    status = 429

    def __init__(self, what: str, seconds: float) -> None:
        self.retry_after = max(1, math.ceil(seconds))
        super().__init__(f"{what}: too many wrong attempts from this address; try again in {self.retry_after} s")
        self.headers = {"Retry-After": str(self.retry_after)}


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header; None for no or another scheme."""
    scheme, _, token = (authorization or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


class SecretGuard:
    """Checks presented secrets against one expected secret, throttling wrong ones per address.

    :param secret: the expected value.
    :param what: what it guards, for messages (``"the fault-injection admin API"``).
    """

    def __init__(self, secret: SecretStr, what: str, *, limit: int = GUESS_LIMIT,
                 window: float = GUESS_WINDOW_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self._secret = secret.get_secret_value().encode()
        self.what = what
        self.throttle = FailureThrottle(limit, window, clock)

    def matches(self, presented: str | None, address: str | None) -> bool:
        """True when ``presented`` is the secret; a wrong one is counted against ``address``.

        :raises TooManyAttempts: ``address`` is locked (whatever it presents).
        """
        if presented is None:
            return False
        key = address or "unknown"
        locked = self.throttle.locked_for(key)
        if locked:
            log.warning("%s: locked address %s presented a secret", self.what, key, extra={"locked_seconds": round(locked)})
            raise TooManyAttempts(self.what, locked)
        if self._secret and hmac.compare_digest(presented.encode(), self._secret):
            return True
        self.throttle.failed(key)
        log.warning("%s: wrong secret from %s", self.what, key)
        return False
