"""Fixtures for the service tests: a real Redis (its own db, flushed) and a fake clock."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/14")


class FakeClock:
    """A clock the test moves by hand; ``sleep`` advances it instead of waiting."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _connect(**kwargs: Any) -> redis.Redis:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, **kwargs)
    try:
        client.ping()
    except redis.RedisError as exc:
        problem = str(exc)
    else:
        return client
    client.close()
    # Outside the except block, so the report is this one line and not a chained traceback.
    pytest.fail(
        f"Redis does not answer at {REDIS_URL} ({problem}). Start redis-server or point "
        "TEST_REDIS_URL at one (use a spare db number: the tests flush it).",
        pytrace=False,
    )


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    client = _connect()
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def redis_factory(redis_client: redis.Redis) -> Iterator[Callable[..., redis.Redis]]:
    """Extra clients with their own connection pools, standing in for other processes."""
    clients: list[redis.Redis] = []

    def make(**kwargs: Any) -> redis.Redis:
        client = _connect(**kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()
