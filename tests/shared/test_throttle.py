"""The failure throttle: locks after the limit, unlocks when failures leave the window."""

from shared.throttle import FailureThrottle


def test_locks_at_the_limit_and_unlocks_after_the_window() -> None:
    now = [100.0]
    throttle = FailureThrottle(3, 60, clock=lambda: now[0])
    for _ in range(2):
        throttle.failed("client@127.0.0.1")
    assert throttle.locked_for("client@127.0.0.1") == 0
    throttle.failed("client@127.0.0.1")
    assert throttle.locked_for("client@127.0.0.1") == 60
    assert throttle.locked_for("other@127.0.0.1") == 0
    now[0] += 30
    assert throttle.locked_for("client@127.0.0.1") == 30
    now[0] += 31
    assert throttle.locked_for("client@127.0.0.1") == 0
