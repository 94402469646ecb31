"""A task every few seconds in a daemon thread: the signer's sweep, the portal's look at its
pending transactions. The thread dies with the process; a failing run is logged and the next one
comes anyway (a transient error must not stop the task for good)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

__all__ = ["run_periodically"]

log = logging.getLogger(__name__)


def run_periodically(name: str, interval: float, task: Callable[[], object], *, at_once: bool = True) -> threading.Thread:
    """Start a daemon thread ``name`` that runs ``task`` every ``interval`` seconds.

    :param at_once: run it once right away (before the first wait).
    """
    def loop() -> None:
        stop = threading.Event()
        if not at_once and stop.wait(interval):
            return
        while True:
            try:
                task()
            except Exception:  # the task must survive a transient failure and run again
                log.exception("%s failed; it runs again in %g s", name, interval)
            if stop.wait(interval):
                return

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    return thread
