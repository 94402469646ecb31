"""Brute-force protection for credential checks: lock a key after repeated failures.

A key (for example a client id with the caller's address) that fails ``limit`` times within
``window`` seconds is locked until the oldest of those failures leaves the window. In memory, per
process: the services run one process each, and a restart forgetting the count is acceptable for a
throttle (the audit log keeps every failure).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

__all__ = ["FailureThrottle"]


class FailureThrottle:
    """Counts failures per key in a sliding window. Thread-safe.

    :param limit: failures within the window that lock the key.
    :param window: the window, in seconds.
    """

    def __init__(self, limit: int, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        failures = self._failures.get(key, deque())
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            self._failures.pop(key, None)
        return failures

    def locked_for(self, key: str) -> float:
        """Seconds ``key`` stays locked (0 when it is not locked)."""
        with self._lock:
            now = self._clock()
            failures = self._recent(key, now)
            return failures[0] + self.window - now if len(failures) >= self.limit else 0.0

    def failed(self, key: str) -> None:
        """Record one failure of ``key``."""
        with self._lock:
            now = self._clock()
            failures = self._recent(key, now)
            failures.append(now)
            self._failures[key] = failures
            # Bound the memory an attacker can make us use with many keys.
            if len(self._failures) > 10_000:
                for stale in [k for k, v in self._failures.items() if not v or v[-1] <= now - self.window]:
                    del self._failures[stale]
