"""The per-connection token bucket on a real Redis, with a fake clock."""

from __future__ import annotations

import threading

import pytest

from wa_portal.services.ratelimit import DEFAULT_RATES, TokenBucket


def test_a_burst_is_allowed_then_the_next_waits_one_interval(redis_client, fake_clock) -> None:
    bucket = TokenBucket(redis_client, "conn:1", rate_per_second=10, burst=5, clock=fake_clock)
    assert [bucket.try_acquire() for _ in range(5)] == [0.0] * 5
    assert bucket.try_acquire() == pytest.approx(0.1)
    # Asking again without time passing takes nothing and gives the same answer.
    assert bucket.try_acquire() == pytest.approx(0.1)


def test_tokens_refill_over_time_up_to_the_burst(redis_client, fake_clock) -> None:
    bucket = TokenBucket(redis_client, "conn:1", rate_per_second=2, burst=4, clock=fake_clock)
    for _ in range(4):
        assert bucket.try_acquire() == 0.0
    fake_clock.advance(0.25)  # half a token
    assert bucket.try_acquire() == pytest.approx(0.25)
    fake_clock.advance(0.25)
    assert bucket.try_acquire() == 0.0
    assert bucket.try_acquire() == pytest.approx(0.5)

    fake_clock.advance(3600)  # a long idle spell saves up no more than the burst
    assert [bucket.try_acquire() for _ in range(5)][-2:] == [0.0, pytest.approx(0.5)]


def test_default_burst_is_one_second_of_tokens(redis_client, fake_clock) -> None:
    assert TokenBucket(redis_client, "a", rate_per_second=80, clock=fake_clock).burst == 80
    assert TokenBucket(redis_client, "b", rate_per_second=2.5, clock=fake_clock).burst == 3
    slow = TokenBucket(redis_client, "c", rate_per_second=0.2, clock=fake_clock)
    assert slow.burst == 1
    assert slow.try_acquire() == 0.0
    assert slow.try_acquire() == pytest.approx(5.0)


def test_several_tokens_at_once_for_multi_segment_sms(redis_client, fake_clock) -> None:
    bucket = TokenBucket(redis_client, "conn:sms", rate_per_second=1, burst=3, clock=fake_clock)
    assert bucket.try_acquire(3) == 0.0
    assert bucket.try_acquire(2) == pytest.approx(2.0)
    fake_clock.advance(1)
    assert bucket.try_acquire(2) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="cannot take 4"):
        bucket.try_acquire(4)
    with pytest.raises(ValueError, match="at least 1"):
        bucket.try_acquire(0)


def test_two_clients_on_the_same_name_share_the_bucket(redis_client, redis_factory, fake_clock) -> None:
    worker_a = TokenBucket(redis_client, "conn:7", rate_per_second=1, burst=2, clock=fake_clock)
    worker_b = TokenBucket(redis_factory(), "conn:7", rate_per_second=1, burst=2, clock=fake_clock)
    other = TokenBucket(redis_factory(), "conn:8", rate_per_second=1, burst=2, clock=fake_clock)
    assert worker_a.try_acquire() == 0.0
    assert worker_b.try_acquire() == 0.0
    assert worker_a.try_acquire() == pytest.approx(1.0)
    assert worker_b.try_acquire() == pytest.approx(1.0)
    assert other.try_acquire() == 0.0  # another connection has its own bucket


def test_concurrent_workers_never_overspend(redis_client, redis_factory, fake_clock) -> None:
    burst = 20
    buckets = [
        TokenBucket(redis_factory(), "conn:hot", rate_per_second=1, burst=burst, clock=fake_clock)
        for _ in range(8)
    ]
    granted: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(len(buckets))

    def work(bucket: TokenBucket) -> None:
        start.wait()
        ok = sum(1 for _ in range(10) if bucket.try_acquire() == 0.0)
        with lock:
            granted.append(ok)

    threads = [threading.Thread(target=work, args=(b,)) for b in buckets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(granted) == burst


def test_unlimited_never_waits_and_never_touches_redis(redis_client, fake_clock) -> None:
    for rate in (None, 0, -1):
        bucket = TokenBucket(redis_client, "conn:sandbox", rate_per_second=rate, clock=fake_clock)
        assert bucket.unlimited
        assert all(bucket.try_acquire() == 0.0 for _ in range(1000))
        assert bucket.acquire(500, timeout=0)
    assert redis_client.keys("*") == []


def test_acquire_sleeps_until_the_tokens_are_there(redis_client, fake_clock) -> None:
    bucket = TokenBucket(redis_client, "conn:1", rate_per_second=4, burst=1, clock=fake_clock)
    assert bucket.acquire(timeout=1, sleep=fake_clock.sleep)
    assert bucket.acquire(timeout=1, sleep=fake_clock.sleep)
    assert fake_clock.slept == [pytest.approx(0.25)]


def test_acquire_gives_up_when_the_wait_exceeds_the_timeout(redis_client, fake_clock) -> None:
    bucket = TokenBucket(redis_client, "conn:1", rate_per_second=0.5, burst=1, clock=fake_clock)
    assert bucket.acquire(timeout=0, sleep=fake_clock.sleep)
    assert not bucket.acquire(timeout=1.5, sleep=fake_clock.sleep)
    assert fake_clock.slept == []  # it did not sleep in vain
    assert bucket.acquire(timeout=2.0, sleep=fake_clock.sleep)


def test_acquire_ends_even_if_sleep_does_not_move_the_clock(redis_client, fake_clock) -> None:
    other = TokenBucket(redis_client, "conn:1", rate_per_second=1, burst=1, clock=fake_clock)
    bucket = TokenBucket(redis_client, "conn:1", rate_per_second=1, burst=1, clock=fake_clock)
    assert other.try_acquire() == 0.0
    naps: list[float] = []
    assert not bucket.acquire(timeout=3, sleep=naps.append)
    assert sum(naps) <= 3


def test_the_key_expires_once_the_bucket_would_be_full(redis_client, fake_clock) -> None:
    bucket = TokenBucket(redis_client, "conn:1", rate_per_second=10, burst=20, clock=fake_clock)
    bucket.try_acquire()
    ttl_ms = redis_client.pttl(bucket.key)
    assert 2000 < ttl_ms <= 3000  # 20 tokens / 10 per s = 2 s, plus a second of slack
    bucket.reset()
    assert not redis_client.exists(bucket.key)


def test_a_clock_that_steps_back_does_not_refill(redis_client, fake_clock) -> None:
    bucket = TokenBucket(redis_client, "conn:1", rate_per_second=1, burst=1, clock=fake_clock)
    assert bucket.try_acquire() == 0.0
    fake_clock.advance(-5)  # another host's clock, a little behind
    assert bucket.try_acquire() == pytest.approx(1.0)


def test_default_rates_cover_every_provider() -> None:
    assert set(DEFAULT_RATES) >= {
        "meta",
        "dialog360",
        "twilio",
        "twilio_sms",
        "waha",
        "sandbox",
        "ses",
        "chatwoot",
    }
    assert DEFAULT_RATES["meta"] == 80
    assert DEFAULT_RATES["sandbox"] == 0  # unlimited
    assert all(rate >= 0 for rate in DEFAULT_RATES.values())


def test_burst_must_be_positive(redis_client) -> None:
    with pytest.raises(ValueError, match="burst"):
        TokenBucket(redis_client, "x", rate_per_second=1, burst=0)
