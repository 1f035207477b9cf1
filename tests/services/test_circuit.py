"""The shared circuit breaker on a real Redis: opening, cooldown, one probe, and the status report."""

from __future__ import annotations

import threading

import pytest

from wa_portal.services.circuit import CircuitBreaker, CircuitState, all_states


@pytest.fixture
def breaker(redis_client, fake_clock) -> CircuitBreaker:
    return CircuitBreaker(redis_client, "conn:1", clock=fake_clock)


def fail(breaker: CircuitBreaker, times: int) -> list[str]:
    return [breaker.record_failure() for _ in range(times)]


def test_closed_lets_everything_through(breaker: CircuitBreaker) -> None:
    assert all(breaker.allow() for _ in range(10))
    assert breaker.state() == CircuitState(name="conn:1", state="closed", failures=0)


def test_opens_after_three_consecutive_failures_within_a_minute(breaker, fake_clock) -> None:
    assert breaker.record_failure() == "closed"
    fake_clock.advance(30)
    assert breaker.record_failure() == "closed"
    assert breaker.allow()
    fake_clock.advance(29)
    assert breaker.record_failure() == "opened"
    assert not breaker.allow()
    state = breaker.state()
    assert state.state == "open"
    assert state.opened_at == fake_clock.now
    assert state.retry_at == fake_clock.now + 30


def test_failures_spread_over_more_than_the_window_do_not_open(breaker, fake_clock) -> None:
    for _ in range(5):
        assert breaker.record_failure() == "closed"
        fake_clock.advance(31)  # never three inside any 60 s
    assert breaker.allow()
    assert breaker.state().failures == 1  # 31 s after the last one, the one before is 62 s old


def test_failures_at_the_edge_of_the_window_still_count(breaker, fake_clock) -> None:
    breaker.record_failure()
    fake_clock.advance(30)
    breaker.record_failure()
    fake_clock.advance(30)  # the first is exactly 60 s old: still within the window
    assert breaker.record_failure() == "opened"


def test_a_success_in_between_resets_the_count(breaker) -> None:
    fail(breaker, 2)
    breaker.record_success()
    assert fail(breaker, 2) == ["closed", "closed"]
    assert breaker.allow()
    assert breaker.record_failure() == "opened"


def test_old_failures_leave_the_status_report(breaker, fake_clock) -> None:
    fail(breaker, 2)
    assert breaker.state().failures == 2
    fake_clock.advance(61)
    assert breaker.state() == CircuitState(name="conn:1", state="closed", failures=0)


def test_one_probe_after_the_cooldown(breaker, fake_clock) -> None:
    fail(breaker, 3)
    fake_clock.advance(29.9)
    assert not breaker.allow()
    fake_clock.advance(0.1)
    assert breaker.state().state == "half_open"
    assert breaker.allow()  # the probe
    assert not breaker.allow()
    assert not breaker.allow()
    assert breaker.state().probe_in_flight


def test_only_one_probe_among_many_concurrent_callers(redis_client, redis_factory, fake_clock) -> None:
    CircuitBreaker(redis_client, "conn:9", clock=fake_clock).record_failure()
    opener = CircuitBreaker(redis_client, "conn:9", clock=fake_clock)
    fail(opener, 2)
    fake_clock.advance(30)

    # Each thread is its own "process": its own client, connection pool and breaker object.
    workers = [CircuitBreaker(redis_factory(), "conn:9", clock=fake_clock) for _ in range(24)]
    answers: list[bool] = []
    lock = threading.Lock()
    start = threading.Barrier(len(workers))

    def ask(cb: CircuitBreaker) -> None:
        start.wait()
        got = [cb.allow() for _ in range(5)]
        with lock:
            answers.extend(got)

    threads = [threading.Thread(target=ask, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(answers) == 24 * 5
    assert answers.count(True) == 1


def test_probe_success_closes(breaker, fake_clock) -> None:
    fail(breaker, 3)
    fake_clock.advance(30)
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state() == CircuitState(name="conn:1", state="closed", failures=0)
    assert all(breaker.allow() for _ in range(5))
    # Counting starts afresh.
    assert fail(breaker, 2) == ["closed", "closed"]


def test_probe_failure_reopens_for_another_cooldown(breaker, fake_clock) -> None:
    fail(breaker, 3)
    fake_clock.advance(30)
    assert breaker.allow()
    assert breaker.record_failure() == "reopened"
    state = breaker.state()
    assert state.state == "open"
    assert state.opened_at == fake_clock.now
    assert state.retry_at == fake_clock.now + 30
    assert not state.probe_in_flight
    fake_clock.advance(29)
    assert not breaker.allow()
    fake_clock.advance(1)
    assert breaker.allow()  # the next probe
    assert not breaker.allow()


def test_late_failures_during_the_cooldown_do_not_extend_it(breaker, fake_clock) -> None:
    fail(breaker, 3)
    opened = breaker.state()
    fake_clock.advance(10)
    assert breaker.record_failure() == "open"  # a request that was already in flight
    state = breaker.state()
    assert state.retry_at == opened.retry_at
    assert state.failures == 4


def test_a_probe_that_never_reports_frees_the_slot_after_its_lease(redis_client, fake_clock) -> None:
    cb = CircuitBreaker(redis_client, "conn:2", clock=fake_clock, probe_timeout_seconds=10)
    fail(cb, 3)
    fake_clock.advance(30)
    assert cb.allow()  # this worker dies mid-send
    fake_clock.advance(9)
    assert not cb.allow()
    fake_clock.advance(1)
    assert cb.allow()


def test_reset_closes_by_hand(breaker) -> None:
    fail(breaker, 3)
    breaker.reset()
    assert breaker.allow()
    assert breaker.state().state == "closed"


def test_custom_threshold_window_and_cooldown(redis_client, fake_clock) -> None:
    cb = CircuitBreaker(
        redis_client, "conn:3", threshold=1, window_seconds=5, cooldown_seconds=120, clock=fake_clock
    )
    assert cb.record_failure() == "opened"
    fake_clock.advance(119)
    assert not cb.allow()
    fake_clock.advance(1)
    assert cb.allow()


def test_closed_breaker_keys_expire_open_ones_do_not(breaker, redis_client) -> None:
    breaker.record_failure()
    assert 60_000 < redis_client.pttl(breaker.key) <= 61_000
    fail(breaker, 2)
    assert redis_client.pttl(breaker.key) == -1  # open until a probe closes it


def test_all_states_reports_every_breaker(redis_client, fake_clock) -> None:
    healthy = CircuitBreaker(redis_client, "conn:1", clock=fake_clock)
    flaky = CircuitBreaker(redis_client, "conn:2", clock=fake_clock)
    down = CircuitBreaker(redis_client, "conn:3", clock=fake_clock)
    probing = CircuitBreaker(redis_client, "conn:4", clock=fake_clock)
    elsewhere = CircuitBreaker(redis_client, "conn:5", clock=fake_clock, prefix="other:")
    assert healthy.allow()
    flaky.record_failure()
    fail(probing, 3)
    fake_clock.advance(30)
    fail(down, 3)
    assert probing.allow()
    fail(elsewhere, 3)

    states = all_states(redis_client, clock=fake_clock)
    assert list(states) == ["conn:2", "conn:3", "conn:4"]  # a healthy breaker stores nothing
    assert states["conn:2"] == CircuitState(name="conn:2", state="closed", failures=1)
    assert states["conn:3"].state == "open"
    assert states["conn:3"].retry_at == fake_clock.now + 30
    assert states["conn:4"].state == "half_open"
    assert states["conn:4"].probe_in_flight
    assert list(all_states(redis_client, "other:", clock=fake_clock)) == ["conn:5"]
    assert all_states(redis_client, "nothing:", clock=fake_clock) == {}


def test_all_states_with_a_decoding_client(redis_factory, fake_clock) -> None:
    client = redis_factory(decode_responses=True)
    cb = CircuitBreaker(client, "clinic[1]*", clock=fake_clock, prefix="wa:cb[x]:")
    fail(cb, 3)
    CircuitBreaker(client, "decoy", clock=fake_clock, prefix="wa:cbx:").record_failure()
    states = all_states(client, "wa:cb[x]:", clock=fake_clock)
    assert list(states) == ["clinic[1]*"]
    assert states["clinic[1]*"].state == "open"
    assert cb.allow() is False


@pytest.mark.parametrize(
    "kwargs",
    [{"threshold": 0}, {"window_seconds": 0}, {"cooldown_seconds": -1}, {"probe_timeout_seconds": 0}],
)
def test_invalid_settings_are_refused(redis_client, kwargs) -> None:
    with pytest.raises(ValueError, match="must be"):
        CircuitBreaker(redis_client, "x", **kwargs)
